//! Tests of cgroup creation against a fake v2 hierarchy in a temporary directory (the EBUSY of
//! "no internal processes", the order of steps, the sweep of stale leaves) and of the counters.

use super::*;
use std::cell::RefCell;

/// A v2 hierarchy in a temporary directory that behaves like the kernel where it matters:
/// `cgroup.procs` writes move a pid, and enabling controllers in a cgroup that holds
/// processes fails with EBUSY. Every mutating operation is logged in order.
struct FakeV2 {
    root: PathBuf,
    log: RefCell<Vec<String>>,
}

impl FakeV2 {
    fn real(&self, p: &Path) -> PathBuf {
        // Only paths below the fake root: a stray absolute path must never reach the host.
        self.root
            .join(p.strip_prefix("/sys/fs/cgroup").expect("a cgroup path"))
    }
    fn short(&self, p: &Path) -> String {
        format!(
            "/{}",
            p.strip_prefix("/sys/fs/cgroup").unwrap_or(p).display()
        )
    }
    fn all_procs(&self, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.path().is_dir() {
                self.all_procs(&e.path(), out);
            } else if e.file_name() == "cgroup.procs" {
                out.push(e.path());
            }
        }
    }
}

impl CgroupFs for FakeV2 {
    fn mkdir(&self, path: &Path) -> std::io::Result<()> {
        let r = self.real(path);
        std::fs::create_dir(&r)?;
        std::fs::write(r.join("cgroup.procs"), "")?;
        std::fs::write(r.join("cgroup.subtree_control"), "")?;
        self.log
            .borrow_mut()
            .push(format!("mkdir {}", self.short(path)));
        Ok(())
    }
    fn rmdir(&self, path: &Path) -> std::io::Result<()> {
        std::fs::remove_dir_all(self.real(path))
    }
    fn write(&self, path: &Path, value: &str) -> std::io::Result<()> {
        let r = self.real(path);
        let name = r.file_name().unwrap().to_str().unwrap().to_string();
        if name == "cgroup.subtree_control" {
            let procs = std::fs::read_to_string(r.parent().unwrap().join("cgroup.procs"))?;
            if !procs.trim().is_empty() {
                return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
            }
        }
        if name == "cgroup.procs" {
            let pid = if value == "0" {
                std::process::id().to_string()
            } else {
                value.to_string()
            };
            let mut files = Vec::new();
            self.all_procs(&self.root, &mut files);
            for f in files {
                let keep: Vec<String> = std::fs::read_to_string(&f)?
                    .split_whitespace()
                    .filter(|p| *p != pid)
                    .map(|p| format!("{p}\n"))
                    .collect();
                std::fs::write(&f, keep.concat())?;
            }
            let mut old = std::fs::read_to_string(&r)?;
            old.push_str(&format!("{pid}\n"));
            std::fs::write(&r, old)?;
        } else if name == "cgroup.subtree_control" {
            // The kernel lists enabled controllers without the "+".
            let mut on = std::fs::read_to_string(&r)?;
            for c in value.split_whitespace() {
                on.push_str(&format!("{} ", c.trim_start_matches('+')));
            }
            std::fs::write(&r, on)?;
        } else {
            std::fs::write(&r, value)?;
        }
        self.log
            .borrow_mut()
            .push(format!("write {} {value}", self.short(path)));
        Ok(())
    }
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(self.real(path))
    }
    fn list(&self, path: &Path) -> std::io::Result<Vec<String>> {
        Host.list(&self.real(path))
    }
    fn open_procs(&self, cgroup: &Path) -> std::io::Result<OwnedFd> {
        File::open(self.real(cgroup).join("cgroup.procs")).map(OwnedFd::from)
    }
    fn age(&self, path: &Path) -> Option<Duration> {
        // "sbx-user-999999999" is a leaf from an earlier boot; the others were just made.
        let old = path.to_string_lossy().ends_with("999999999");
        Some(if old {
            Duration::from_secs(3600)
        } else {
            Duration::ZERO
        })
    }
}

fn fake(name: &str) -> FakeV2 {
    let root = std::env::temp_dir().join(format!("sbx-cgfake-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("ctr")).unwrap();
    // The container's cgroup holds sbx-exec and another process (the control plane).
    std::fs::write(
        root.join("ctr/cgroup.procs"),
        format!("{}\n77\n", std::process::id()),
    )
    .unwrap();
    std::fs::write(root.join("ctr/cgroup.subtree_control"), "").unwrap();
    std::fs::write(root.join("ctr/cgroup.type"), "domain\n").unwrap();
    FakeV2 {
        root,
        log: RefCell::new(Vec::new()),
    }
}

fn limits() -> crate::model::limits::Limits {
    crate::model::limits::Limits {
        pids_max: Some(16),
        memory_max: Some(crate::model::limits::Bytes(64 << 20)),
        ..Default::default()
    }
}

/// The plan of leaf `leaf` with pids and memory on cgroup v2, for a process in `self_cgroup`.
fn v2_plan(self_cgroup: &str, leaf: &str) -> Plan {
    let info = crate::plan::cgroup::CgroupInfo {
        version: Version::V2,
        controllers: vec!["pids".into(), "memory".into()],
    };
    crate::plan::cgroup::plan(&info, self_cgroup, leaf, &limits()).unwrap()
}

#[test]
fn v2_moves_itself_to_a_leaf_before_enabling_controllers() {
    let fs = fake("order");
    let plan = v2_plan("0::/ctr\n", "sbx-user-1");
    // Enabling controllers while the parent holds processes is what the kernel refuses.
    assert_eq!(
        fs.write(
            Path::new("/sys/fs/cgroup/ctr/cgroup.subtree_control"),
            "+pids"
        )
        .unwrap_err()
        .raw_os_error(),
        Some(libc::EBUSY)
    );
    let procs = create(&fs, &plan).unwrap();
    assert_eq!(procs.len(), 1);
    let me = std::process::id();
    assert_eq!(
        fs.log.borrow().clone(),
        vec![
            "mkdir /ctr/sbx-init".to_string(),
            "write /ctr/sbx-init/cgroup.procs 0".into(),
            "write /ctr/sbx-init/cgroup.procs 77".into(),
            "write /ctr/cgroup.subtree_control +pids +memory".into(),
            "mkdir /ctr/sbx".into(),
            "write /ctr/sbx/cgroup.subtree_control +pids +memory".into(),
            "mkdir /ctr/sbx/sbx-user-1".into(),
            "write /ctr/sbx/sbx-user-1/pids.max 16".into(),
            format!("write /ctr/sbx/sbx-user-1/memory.max {}", 64u64 << 20),
            "write /ctr/sbx/sbx-user-1/memory.oom.group 1".into(),
        ]
        .into_iter()
        .filter(|l| !l.ends_with(&format!(" {me}")))
        .collect::<Vec<_>>()
    );
    let moved = std::fs::read_to_string(fs.root.join("ctr/sbx-init/cgroup.procs")).unwrap();
    assert_eq!(moved, format!("{me}\n77\n"));
    // A later call runs in sbx-init already: nothing moves, controllers are on, a new leaf.
    fs.log.borrow_mut().clear();
    let again = v2_plan("0::/ctr/sbx-init\n", "sbx-user-2");
    create(&fs, &again).unwrap();
    assert_eq!(fs.log.borrow()[0], "mkdir /ctr/sbx/sbx-user-2");
    // Stale leaves of dead creators are swept; live ones stay.
    let dead = fs.root.join("ctr/sbx/sbx-user-999999999");
    std::fs::create_dir(&dead).unwrap();
    create(&fs, &v2_plan("0::/ctr/sbx-init\n", "sbx-user-3")).unwrap();
    assert!(!dead.exists());
    assert!(fs.root.join("ctr/sbx/sbx-user-2").exists());
    let _ = std::fs::remove_dir_all(&fs.root);
}

#[test]
fn v2_in_the_real_root_cgroup_moves_nothing() {
    // The root cgroup (no cgroup.type) may enable controllers while it holds processes.
    struct RootFake(FakeV2);
    impl CgroupFs for RootFake {
        fn mkdir(&self, p: &Path) -> std::io::Result<()> {
            self.0.mkdir(p)
        }
        fn rmdir(&self, p: &Path) -> std::io::Result<()> {
            self.0.rmdir(p)
        }
        fn write(&self, p: &Path, v: &str) -> std::io::Result<()> {
            if p == Path::new("/sys/fs/cgroup/cgroup.subtree_control") {
                self.0
                    .log
                    .borrow_mut()
                    .push(format!("write /cgroup.subtree_control {v}"));
                return Ok(());
            }
            self.0.write(p, v)
        }
        fn read(&self, p: &Path) -> std::io::Result<String> {
            self.0.read(p)
        }
        fn list(&self, p: &Path) -> std::io::Result<Vec<String>> {
            self.0.list(p)
        }
        fn open_procs(&self, c: &Path) -> std::io::Result<OwnedFd> {
            self.0.open_procs(c)
        }
        fn age(&self, p: &Path) -> Option<Duration> {
            self.0.age(p)
        }
    }
    let fs = RootFake(fake("root"));
    std::fs::write(fs.0.root.join("cgroup.procs"), "1\n").unwrap();
    create(&fs, &v2_plan("0::/\n", "sbx-user-1")).unwrap();
    let log = fs.0.log.borrow().clone();
    assert_eq!(log[0], "write /cgroup.subtree_control +pids +memory");
    assert!(!log.iter().any(|l| l.contains("sbx-init")), "{log:?}");
    let _ = std::fs::remove_dir_all(&fs.0.root);
}

#[test]
fn v2_counters_are_read_from_the_leaf() {
    let fs = fake("stats");
    let plan = v2_plan("0::/ctr\n", "sbx-user-1");
    create(&fs, &plan).unwrap();
    let leaf = fs.root.join("ctr/sbx/sbx-user-1");
    std::fs::write(
        leaf.join("memory.events"),
        "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    )
    .unwrap();
    std::fs::write(leaf.join("pids.events"), "max 3\n").unwrap();
    std::fs::write(leaf.join("memory.peak"), "67108864\n").unwrap();
    std::fs::write(leaf.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
    let s = stats(&fs, &plan);
    assert_eq!(
        s,
        Stats {
            oom_kills: 1,
            pids_refused: 3,
            peak_memory: Some(64 << 20),
            cpu_ns: Some(1_500_000),
        }
    );
    let _ = std::fs::remove_dir_all(&fs.root);
}
