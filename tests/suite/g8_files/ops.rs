//! Every operation with its exit status and typed error, usage errors and refusals, the status
//! fd, and 100 MB through both ways with the launcher's peak RSS measured.

use std::io::Read as _;
use std::time::Instant;

use super::*;

/// `file OP ...` in `user`, no stdin.
fn op(w: &Work, args: &[&str]) -> Run {
    w.file("user", args, b"")
}

/// mkdir, write, read, stat, ls, exists and rm, each with what it answers when it works and the
/// kind of its error when it does not; usage errors exit 2 and refusals 125, both with their JSON
/// line; `--ctx` after the operation; `--status-fd` records as for a command.
pub fn every_operation_answers_with_its_exit_code_and_kind() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g8fops");
    let p = |rel: &str| w.path(rel);
    op(&w, &["mkdir", &p("a")]).expect_code(0, "mkdir a")?;
    typed(
        &op(&w, &["mkdir", &p("a")]),
        3,
        &["exists"],
        "mkdir a again",
    )?;
    op(&w, &["mkdir", "-p", &p("a/b/c")]).expect_code(0, "mkdir -p a/b/c")?;
    op(&w, &["mkdir", "-p", &p("a")]).expect_code(0, "mkdir -p of an existing directory")?;
    typed(
        &op(&w, &["mkdir", &p("no/x")]),
        3,
        &["not_found"],
        "mkdir no/x",
    )?;

    let f = p("a/b/c/f");
    w.file("user", &["write", &f], b"one\n")
        .expect_code(0, "write f")?;
    w.file("user", &["write", "--append", &f], b"two\n")
        .expect_code(0, "write --append f")?;
    let r = op(&w, &["read", &f]);
    r.expect_code(0, "read f")?;
    check(r.stdout == "one\ntwo\n", || r.show())?;
    w.file("user", &["write", &f], b"3\n")
        .expect_code(0, "write truncates f")?;
    check(std::fs::read_to_string(&f).unwrap() == "3\n", || {
        "write did not truncate".into()
    })?;
    w.file("user", &["write", "--mode", "600", &p("m")], b"")
        .expect_code(0, "write --mode 600")?;
    check(
        std::fs::metadata(p("m")).unwrap().mode() & 0o777 == 0o600,
        || "--mode 600 was not applied".into(),
    )?;
    typed(
        &w.file("user", &["write", &p("a")], b"x"),
        3,
        &["is_a_directory"],
        "write a directory",
    )?;
    typed(
        &w.file("user", &["write", &format!("{f}/")], b"x"),
        3,
        &["is_a_directory"],
        "write f/",
    )?;
    typed(
        &op(&w, &["read", &p("a")]),
        3,
        &["is_a_directory"],
        "read a directory",
    )?;
    typed(
        &op(&w, &["read", &p("nope")]),
        3,
        &["not_found"],
        "read nope",
    )?;
    typed(
        &op(&w, &["read", &format!("{f}/x")]),
        3,
        &["not_a_directory"],
        "read f/x",
    )?;
    let r = op(&w, &["read", "/proc/self/fd/0"]);
    typed(&r, 3, &["symlink"], "read through a magic /proc link")?;

    let r = op(&w, &["stat", &f]);
    r.expect_code(0, "stat f")?;
    let st: serde_json::Value =
        serde_json::from_str(r.stdout.trim()).map_err(|e| format!("{e}: {}", r.show()))?;
    check(
        st["type"] == "file"
            && st["size"] == 2
            && st["mode"] == 0o644
            && st["uid"] == 0
            && st["gid"] == 0
            && st["mtime"].as_i64().is_some_and(|t| t > 0),
        || format!("stat f: {st}"),
    )?;
    w.user("ln -s a/b/c/f link && ln -s nowhere dangling")?;
    let r = op(&w, &["stat", &p("link")]);
    check(r.stdout.contains("\"type\":\"symlink\""), || r.show())?;
    let r = op(&w, &["ls", &p("a/b/c")]);
    r.expect_code(0, "ls a/b/c")?;
    check(
        r.stdout.trim() == r#"[{"name":"f","type":"file","size":2}]"#,
        || r.show(),
    )?;
    typed(
        &op(&w, &["ls", &f]),
        3,
        &["not_a_directory"],
        "ls of a file",
    )?;
    op(&w, &["exists", &f]).expect_code(0, "exists f")?;
    op(&w, &["exists", &p("dangling")]).expect_code(0, "exists of a dangling link")?;
    op(&w, &["exists", &p("nope")]).expect_code(1, "exists nope")?;
    op(&w, &["exists", &format!("{f}/x")]).expect_code(1, "exists f/x")?;

    // rm: a non-empty directory needs -r; -r removes a tree with a link to the root-only
    // directory inside, which keeps its files.
    let keep = w.sentinel("keep", "KEEP\n");
    w.user(&format!("ln -s {} a/b/out", w.root_only.display()))?;
    typed(
        &op(&w, &["rm", &p("a")]),
        3,
        &["not_empty"],
        "rm a non-empty directory",
    )?;
    op(&w, &["rm", "-r", &p("a")]).expect_code(0, "rm -r a")?;
    op(&w, &["exists", &p("a")]).expect_code(1, "a after rm -r")?;
    keep.unchanged("rm -r of a tree holding a link to it")?;
    typed(&op(&w, &["rm", &p("a")]), 3, &["not_found"], "rm a again")?;
    op(&w, &["rm", &p("m")]).expect_code(0, "rm a file")?;

    // Usage (2) and refusals (125), each with its JSON line.
    let usage = |args: &[&str]| file_call(&["--policy", w.policy()], args, b"");
    for args in [
        &["file", "--ctx", "user", "write", "--mode", "4755", "/w/x"][..],
        &["file", "--ctx", "user", "rm", "-r", "/"],
        &["file", "--ctx", "user", "rm", "/w/.."],
        &["file", "read", "/etc/hostname"],
        &["file", "--ctx", "user", "chmod", "/w/x"],
    ] {
        typed(&usage(args), 2, &["usage"], &format!("{args:?}"))?;
    }
    for ctx in ["no-such-context", "control"] {
        let r = file_call(
            &["--policy", w.policy(), "file", "--ctx", ctx],
            &["read", "/etc/hostname"],
            b"",
        );
        typed(&r, 125, &["refused"], &format!("file --ctx {ctx}"))?;
    }
    let r = file_call(
        &["--policy", w.policy(), "file", "read", "--ctx", "user"],
        &["/etc/hostname"],
        b"",
    );
    r.expect_code(0, "--ctx after the operation")?;

    // --status-fd: the records of a command's call, with the operation's exit status.
    let status = w._keep.path().join("status.jsonl");
    let script = format!(
        "\"$0\" --policy {} file --ctx user --status-fd 4 exists {} 4>{}",
        w.policy(),
        p("nope"),
        status.display()
    );
    let mut c = Cmd::new("/bin/sh").args(["-c", &script, bin()]);
    c.command().current_dir("/");
    c.run().expect_code(1, "exists with --status-fd")?;
    let text = std::fs::read_to_string(&status).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    check(
        lines.len() == 2
            && lines[0].starts_with("{\"child-pid\":")
            && lines[1].starts_with("{\"exit-code\":1,\"reason\":\"exited\""),
        || format!("status records: {text:?}"),
    )
}

/// Size of the round trip.
const BIG: usize = 100 * 1024 * 1024;

/// Bytes that do not compress or repeat (xorshift), `len` of them from `seed`.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Kill `pid` if it runs past `secs` (a hung copy must not hang the suite).
fn watchdog(pid: i32, secs: u64) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if d.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    done
}

/// 100 MB of incompressible bytes written with `file write` and read back with `file read`:
/// the same SHA-256 both ways, the file owned by the context's identity, and the peak RSS of the
/// call (launcher, sandbox pid 1 and tool: wait4's ru_maxrss, measured from a small waiter,
/// see [`measured`]) far below the file's size, so
/// nothing held it whole. The times and RSS are printed.
pub fn a_hundred_megabytes_stream_through_in_bounded_memory() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g8fbig");
    let path = w.path("big.bin");
    let args = ["--policy", w.policy(), "file", "--ctx", "user"];
    // Write: fed 1 MiB at a time, hashed as it goes.
    let rss = w.path("write.rss");
    let mut child = measured(bin(), Path::new(&rss))
        .args(args)
        .args(["write", &path])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id() as i32;
    let done = watchdog(pid, 300);
    let mut stdin = child.stdin.take().unwrap();
    let start = Instant::now();
    let feeder = std::thread::spawn(move || {
        let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut buf = vec![0u8; 1 << 20];
        let mut sent = 0;
        while sent < BIG {
            fill(&mut buf, &mut state);
            if stdin.write_all(&buf).is_err() {
                break;
            }
            hash.update(&buf);
            sent += buf.len();
        }
        (sent, hash.finish())
    });
    let (sent, written) = feeder.join().unwrap();
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let write_rss = peak_kib(Path::new(&w.path("write.rss")))?;
    let write_time = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    check(status.success() && sent == BIG, || {
        format!("file write of 100 MB: {status:?}, {sent} bytes sent\n{err}")
    })?;
    let meta = std::fs::metadata(&path).unwrap();
    check(meta.len() == BIG as u64 && meta.uid() == MAPPED, || {
        format!("the written file: {} bytes, uid {}", meta.len(), meta.uid())
    })?;

    // Read: hashed as it comes.
    let rss = w.path("read.rss");
    let mut child = measured(bin(), Path::new(&rss))
        .args(args)
        .args(["read", &path])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let pid = child.id() as i32;
    let done = watchdog(pid, 300);
    let start = Instant::now();
    let mut out = child.stdout.take().unwrap();
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hash.update(&buf[..n]);
                got += n;
            }
            Err(e) => return Err(format!("reading file read's output: {e}")),
        }
    }
    let status = child.wait().map_err(|e| format!("wait: {e}"))?;
    let read_rss = peak_kib(Path::new(&rss))?;
    let read_time = start.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    check(status.success() && got == BIG, || {
        format!("file read of 100 MB: {status:?}, {got} bytes")
    })?;
    check(hash.finish().as_ref() == written.as_ref(), || {
        "the bytes read back differ from those written (SHA-256)".into()
    })?;
    let mib = |kib: i64| kib as f64 / 1024.0;
    println!(
        "    100 MiB: write {:.2} s (peak RSS {:.1} MiB), read {:.2} s (peak RSS {:.1} MiB); SHA-256 equal",
        write_time.as_secs_f64(),
        mib(write_rss),
        read_time.as_secs_f64(),
        mib(read_rss)
    );
    // A whole-file buffer anywhere in the call would show as 100 MiB and more.
    check(write_rss < 48 * 1024 && read_rss < 48 * 1024, || {
        format!("peak RSS {write_rss} KiB (write), {read_rss} KiB (read): not bounded")
    })
}
