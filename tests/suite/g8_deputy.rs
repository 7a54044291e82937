//! G8, no confused deputy: the program checked is the program executed (one `O_PATH` handle,
//! `execveat`), links and `#!` interpreters pass the same `[exec]` rules, a `platform` call cannot
//! change what a later one trusts (system paths read-only), and nothing user code wrote runs with
//! the secrets (`noexec`, `nosymfollow` where user code writes). Each attack has its control.
//!
//! The shipped platform settings are tested at a stand-in work area (a root-owned directory under
//! /var/lib named in place of `/workspace` in the default policy), so no test creates /workspace.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::harness::*;
use crate::policy_tests::{write_policy, DEFAULT_TOML};

/// A root-owned 0755 directory under `parent`, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(parent: &str, tag: &str) -> Dir {
        let d = Path::new(parent).join(marker(tag));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        Dir(d)
    }

    fn sub(&self, name: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    /// An executable file (mode 0755).
    fn program(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    fn path(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The default policy with `work` standing in for /workspace, written into `keep`.
fn default_with_workspace(keep: &TempDir, work: &str) -> PathBuf {
    let text = DEFAULT_TOML.replace("\"/workspace\"", &format!("\"{work}\""));
    write_policy(keep.path(), &text)
}

fn sbx_args<'a>(policy: &'a Path, ctx: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--policy", policy.to_str().unwrap(), "--ctx", ctx, "--"];
    v.extend(cmd);
    v
}

fn with_args(program: &str, args: &[&str]) -> Cmd {
    let mut c = Cmd::new(program);
    c.command().args(args);
    c
}

const TOKEN: &str = "tok-Sentinel-g8-91ab";

/// A link to a good system program, placed where user code writes (/tmp), is refused in platform
/// with secrets: run by its absolute path and found through the caller's PATH. The real program
/// runs.
pub fn links_where_user_code_writes_are_refused() -> Result<(), String> {
    needs_isolation()?;
    let d = Dir::new("/tmp", "g8link");
    let bin = d.sub("bin");
    let link = bin.join("tool");
    std::os::unix::fs::symlink("/usr/bin/id", &link).unwrap();
    let secrets = format!("API_TOKEN={TOKEN}\n");
    // Control: the real program runs with the secrets.
    let (c, _g) = sbx_with_secrets(
        &secrets,
        &[
            "--secrets-fd",
            "3",
            "--ctx",
            "platform",
            "--",
            "/usr/bin/id",
        ],
    );
    let r = c.run();
    r.expect_code(0, "control: /usr/bin/id in platform")?;
    check(r.stdout.contains("uid="), || r.show())?;
    let link_s = link.display().to_string();
    let (c, _g) = sbx_with_secrets(
        &secrets,
        &["--secrets-fd", "3", "--ctx", "platform", "--", &link_s],
    );
    let r = c.run();
    r.expect_code(125, "a link under /tmp by its absolute path")?;
    check(
        r.stderr.contains("deny_under") && !r.stdout.contains("uid="),
        || r.show(),
    )?;
    // Found through the caller's PATH: in a work area the sandbox sees (a stand-in for
    // /workspace, visible in platform), the link is refused; under /tmp, which platform covers
    // with its private tmpfs, the sandbox cannot see it, so it is not found at all (as execvp
    // inside would not find it). Either way it never runs.
    let work = Dir::new("/var/lib", "g8linkwork");
    std::os::unix::fs::symlink("/usr/bin/id", work.sub("bin").join("tool")).unwrap();
    let keep = TempDir::new("g8link");
    let policy = default_with_workspace(&keep, &work.path());
    let policy_s = policy.display().to_string();
    let visible = format!("{}/bin:/usr/bin:/bin", work.path());
    let args = [
        "--policy",
        policy_s.as_str(),
        "--secrets-fd",
        "3",
        "--ctx",
        "platform",
        "--",
        "tool",
    ];
    let (c, _g) = sbx_with_secrets(&secrets, &args);
    let r = c.env("PATH", &visible).run();
    r.expect_code(125, "a link in the work area found through PATH")?;
    check(
        r.stderr.contains("deny_under") && !r.stdout.contains("uid="),
        || r.show(),
    )?;
    let hidden = format!("{}:/usr/bin:/bin", bin.display());
    let (c, _g) = sbx_with_secrets(&secrets, &args);
    let r = c.env("PATH", &hidden).run();
    r.expect_code(
        127,
        "a link under /tmp (covered in platform) found through PATH",
    )?;
    check(
        r.stderr.contains("command not found") && !r.stdout.contains("uid="),
        || r.show(),
    )
}

/// A link flipped between /usr/bin/true (allowed) and a script (not allowed) while platform is
/// launched through it over and over: the script never runs, since what runs is the handle opened
/// after the check, not the path.
pub fn swapped_link_never_runs_in_place_of_the_checked_program() -> Result<(), String> {
    needs_isolation()?;
    let d = Dir::new("/var/lib", "g8swap");
    let bin = d.sub("bin");
    let evil = d.program("evil", "#!/bin/sh\necho swapped-in-ran\n");
    let keep = TempDir::new("g8swap");
    let text = DEFAULT_TOML.replacen(
        "[context.platform.exec]\n",
        "[context.platform.exec]\nallow = [\"/usr/bin/true\"]\n",
        1,
    );
    let policy = write_policy(keep.path(), &text);
    let tool = bin.join("tool");
    std::os::unix::fs::symlink("/usr/bin/true", &tool).unwrap();
    let tool_s = tool.display().to_string();
    // Control: through the link, the allowed program runs; the script itself is refused.
    Cmd::sbx(sbx_args(&policy, "platform", &[&tool_s]))
        .run()
        .expect_code(0, "control: the link to /usr/bin/true")?;
    let r = Cmd::sbx(sbx_args(&policy, "platform", &[&evil])).run();
    r.expect_code(125, "control: the script is not in exec.allow")?;

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let flipper = {
        let (stop, swaps, bin, evil) = (stop.clone(), swaps.clone(), bin.clone(), evil.clone());
        std::thread::spawn(move || {
            let tmp = bin.join("tool.new");
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) || n < 1000 {
                let target = if n.is_multiple_of(2) {
                    evil.as_str()
                } else {
                    "/usr/bin/true"
                };
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(target, &tmp).unwrap();
                std::fs::rename(&tmp, bin.join("tool")).unwrap();
                n += 1;
                swaps.store(n, Ordering::SeqCst);
            }
        })
    };
    let (mut good, mut refused, mut bad, mut other) = (0, 0, 0, Vec::new());
    let mut launches = 0;
    while launches < 60 || swaps.load(Ordering::SeqCst) < 1000 {
        let r = Cmd::sbx(sbx_args(&policy, "platform", &[&tool_s])).run();
        launches += 1;
        if r.stdout.contains("swapped-in-ran") {
            bad += 1;
        } else if r.ok() {
            good += 1;
        } else if r.code == Some(125) {
            refused += 1;
        } else {
            other.push(r.show());
        }
        if launches > 5000 {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    flipper.join().unwrap();
    let swapped = swaps.load(Ordering::SeqCst);
    check(bad == 0, || {
        format!("the swapped-in script ran {bad} times in {launches} launches ({swapped} swaps)")
    })?;
    check(good > 0, || {
        format!("the checked program never ran: {refused} refused, other: {other:?}")
    })?;
    check(other.is_empty(), || {
        format!("unexpected results: {other:?}")
    })
}

/// The default policy's platform, with a stand-in work area: a program user code planted there
/// cannot be executed (noexec: EACCES, also to mmap with PROT_EXEC), while /usr/bin/true runs and
/// the same file runs outside.
pub fn nothing_planted_in_the_work_area_runs() -> Result<(), String> {
    needs_isolation()?;
    let work = Dir::new("/var/lib", "g8work");
    let keep = TempDir::new("g8work");
    let policy = default_with_workspace(&keep, &work.path());
    let planted = work.program("planted", "#!/bin/sh\necho planted-ran\n");
    let elf = work.0.join("true-copy");
    std::fs::copy("/usr/bin/true", &elf).unwrap();
    let elf_s = elf.display().to_string();
    // Control: outside, both run.
    let r = Cmd::new(&planted).run();
    check(r.stdout.contains("planted-ran"), || r.show())?;
    Cmd::new(&elf_s)
        .run()
        .expect_code(0, "control: the copy runs outside")?;
    Cmd::sbx(sbx_args(&policy, "platform", &["/usr/bin/true"]))
        .run()
        .expect_code(0, "control: /usr/bin/true in platform")?;
    // Named directly: refused by deny_under (the stand-in is listed there too).
    let r = Cmd::sbx(sbx_args(&policy, "platform", &[&elf_s])).run();
    r.expect_code(125, "a planted program named directly")?;
    // Executed by a trusted tool (as a git hook or node_modules/.bin would be): EACCES.
    let script = format!("{elf_s}; echo rc=$?; {planted}; echo rc=$?");
    let r = Cmd::sbx(sbx_args(&policy, "platform", &["/bin/sh", "-c", &script])).run();
    check(
        !r.stdout.contains("planted-ran")
            && r.stdout.matches("rc=126").count() == 2
            && r.stderr.contains("ermission denied"),
        || format!("planted programs ran or failed otherwise: {}", r.show()),
    )?;
    // mmap(PROT_EXEC) of a planted file fails too.
    if Path::new("/usr/bin/python3").exists() {
        let py = format!(
            "import mmap\nf=open('{elf_s}','rb')\ntry:\n mmap.mmap(f.fileno(),0,prot=mmap.PROT_READ|mmap.PROT_EXEC); print('mapped')\nexcept OSError as e: print('refused', e.errno)"
        );
        let r = Cmd::sbx(sbx_args(
            &policy,
            "platform",
            &["/usr/bin/python3", "-c", &py],
        ))
        .run();
        check(r.stdout.contains("refused 1"), || {
            format!("mmap PROT_EXEC of a planted file: {}", r.show())
        })?;
        let r = with_args("/usr/bin/python3", &["-c", &py]).run();
        check(r.stdout.contains("mapped"), || {
            format!("control: mmap PROT_EXEC outside: {}", r.show())
        })?;
    }
    Ok(())
}

/// Landlock's execute right: below no `noexec` mount and not named directly, a program outside
/// `security.exec_only_under` (here a root-owned copy of /usr/bin/true under /var/lib) still cannot
/// be executed in platform; without the key it can.
pub fn landlock_executes_only_system_programs() -> Result<(), String> {
    needs_isolation()?;
    let d = Dir::new("/var/lib", "g8landlock");
    let copy = d.0.join("true-copy");
    std::fs::copy("/usr/bin/true", &copy).unwrap();
    let copy_s = copy.display().to_string();
    let script = format!("{copy_s}; echo rc=$?");
    let r = Cmd::sbx(["--ctx", "platform", "--", "/bin/sh", "-c", &script]).run();
    check(
        r.stdout.contains("rc=126") && r.stderr.contains("ermission denied"),
        || format!("a program outside exec_only_under ran: {}", r.show()),
    )?;
    // Control: the same policy without the Landlock rule runs it.
    let keep = TempDir::new("g8landlock");
    let text: String = DEFAULT_TOML
        .lines()
        .filter(|l| !l.starts_with("exec_only_under"))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = write_policy(keep.path(), &text);
    let r = Cmd::sbx(sbx_args(&p, "platform", &["/bin/sh", "-c", &script])).run();
    check(r.stdout.contains("rc=0"), || {
        format!("control: {}", r.show())
    })
}

/// A platform call cannot change what a later one trusts: appending to a file in /usr/local/bin
/// fails (read-only), while the work area stays writable.
pub fn platform_cannot_write_system_programs() -> Result<(), String> {
    needs_isolation()?;
    if !Path::new("/usr/local/bin").is_dir() {
        return Err(format!("{SKIP}no /usr/local/bin here"));
    }
    let work = Dir::new("/var/lib", "g8ro");
    let keep = TempDir::new("g8ro");
    let policy = default_with_workspace(&keep, &work.path());
    // The probe target: a sentinel file the suite created (append-open, nothing written).
    let sentinel = Path::new("/usr/local/bin").join(marker("g8sentinel"));
    std::fs::write(&sentinel, "").unwrap();
    let s = sentinel.display().to_string();
    let x = format!("{}/x", work.path());
    // Subshells: a failed redirection of `:` would end the whole shell.
    let probe = format!("(: >> {s}) && echo wrote-bin; (echo ok > {x}) && echo wrote-work");
    let r = Cmd::sbx(["--ctx", "platform", "--", "/bin/sh", "-c", &probe]).run();
    let r2 = Cmd::sbx(sbx_args(&policy, "platform", &["/bin/sh", "-c", &probe])).run();
    // Control: outside, the probe can append.
    let c = Cmd::sh(&format!(": >> {s} && echo wrote-bin")).run();
    let _ = std::fs::remove_file(&sentinel);
    check(c.stdout.contains("wrote-bin"), || {
        format!("control: {}", c.show())
    })?;
    check(
        !r.stdout.contains("wrote-bin") && r.stderr.contains("Read-only"),
        || format!("the default platform wrote /usr/local/bin: {}", r.show()),
    )?;
    check(
        !r2.stdout.contains("wrote-bin") && r2.stdout.contains("wrote-work"),
        || format!("platform with a work area: {}", r2.show()),
    )?;
    check(
        std::fs::read_to_string(&x).unwrap_or_default() == "ok\n",
        || "the work area write did not land".into(),
    )
}

/// nosymfollow: a link user code planted in the work area does not redirect a write of platform
/// (shell redirection through it fails), while writing a plain file there works.
pub fn platform_does_not_write_through_planted_links() -> Result<(), String> {
    needs_isolation()?;
    let work = Dir::new("/var/lib", "g8nosym");
    let keep = TempDir::new("g8nosym");
    let policy = default_with_workspace(&keep, &work.path());
    let target = Dir::new("/var/lib", "g8target");
    let victim = target.0.join("victim");
    std::fs::write(&victim, "").unwrap();
    let link = work.0.join("out.log");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let script = format!(
        "echo via-link >> {}; echo plain > {}/plain && echo wrote-plain",
        link.display(),
        work.path()
    );
    let r = Cmd::sbx(sbx_args(&policy, "platform", &["/bin/sh", "-c", &script])).run();
    check(
        std::fs::read_to_string(&victim)
            .unwrap_or_default()
            .is_empty()
            && r.stdout.contains("wrote-plain"),
        || format!("platform wrote through a planted link: {}", r.show()),
    )?;
    // Control: outside, the same redirection follows the link.
    Cmd::sh(&format!("echo via-link >> {}", link.display())).run();
    check(
        std::fs::read_to_string(&victim).unwrap_or_default() == "via-link\n",
        || "control: the link was not followed outside".into(),
    )
}

/// A git hook planted in a repository in the work area does not run when platform commits there;
/// the same commit outside does run it.
pub fn planted_git_hook_does_not_run_in_platform() -> Result<(), String> {
    needs_isolation()?;
    let git = require_tool("git")?;
    let git = git.as_str();
    let work = Dir::new("/var/lib", "g8git");
    let keep = TempDir::new("g8git");
    let policy = default_with_workspace(&keep, &work.path());
    let repo = work.sub("repo");
    let repo_s = repo.display().to_string();
    let sentinel = work.0.join("hook-ran");
    let id = ["-c", "user.name=t", "-c", "user.email=t@example.invalid"];
    let commit = |msg: &str| -> Vec<String> {
        let mut v = vec![git.to_string(), "-C".into(), repo_s.clone()];
        v.extend(id.iter().map(|s| s.to_string()));
        v.extend(["commit", "-q", "--allow-empty", "-m", msg].map(String::from));
        v
    };
    with_args(git, &["init", "-q", &repo_s])
        .run()
        .expect_code(0, "git init")?;
    let hook = repo.join(".git/hooks/pre-commit");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho ran >> {}\n", sentinel.display()),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let inside = commit("inside");
    let mut args = vec![
        "--policy",
        policy.to_str().unwrap(),
        "--ctx",
        "platform",
        "--",
    ];
    args.extend(inside.iter().map(String::as_str));
    let r = Cmd::sbx(args).run();
    r.expect_code(
        0,
        "git commit in platform (the hook is skipped, the commit made)",
    )?;
    check(!sentinel.exists(), || {
        format!("the planted hook ran in platform: {}", r.show())
    })?;
    // Control: the same commit outside runs the hook.
    let outside = commit("outside");
    let rest: Vec<&str> = outside[1..].iter().map(String::as_str).collect();
    let r = with_args(&outside[0], &rest).run();
    r.expect_code(0, "control: git commit outside")?;
    check(sentinel.exists(), || {
        format!("control: the hook did not run outside: {}", r.show())
    })
}

/// `#!/usr/bin/env NAME`: NAME is checked where it is found on PATH. A root-owned script run with
/// a caller PATH starting under /tmp, where `sh` was planted, is refused; with a clean PATH it runs.
pub fn env_interpreter_found_where_user_code_writes_is_refused() -> Result<(), String> {
    needs_isolation()?;
    let tools = Dir::new("/var/lib", "g8env");
    let script = tools.program("tool", "#!/usr/bin/env sh\necho real-ran\n");
    let planted = Dir::new("/tmp", "g8planted");
    planted.program("sh", "#!/bin/sh\necho planted-ran \"$API_TOKEN\"\n");
    let secrets = format!("API_TOKEN={TOKEN}\n");
    let args = [
        "--secrets-fd",
        "3",
        "--ctx",
        "platform",
        "--",
        script.as_str(),
    ];
    let (c, _g) = sbx_with_secrets(&secrets, &args);
    let r = c.run();
    r.expect_code(0, "control: the script with a clean PATH")?;
    check(r.stdout.contains("real-ran"), || r.show())?;
    // A planted `sh` first on PATH, in a work area platform sees: refused. (Under /tmp, which
    // platform covers with a private tmpfs, it would not even be found.)
    let work = Dir::new("/var/lib", "g8envwork");
    work.program("sh", "#!/bin/sh\necho planted-ran \"$API_TOKEN\"\n");
    let keep = TempDir::new("g8env");
    let policy = default_with_workspace(&keep, &work.path());
    let policy_s = policy.display().to_string();
    let args = [
        "--policy",
        policy_s.as_str(),
        "--secrets-fd",
        "3",
        "--ctx",
        "platform",
        "--",
        script.as_str(),
    ];
    let (c, _g) = sbx_with_secrets(&secrets, &args);
    let path = format!("{}:/usr/bin:/bin", work.path());
    let r = c.env("PATH", &path).run();
    r.expect_code(125, "env NAME found in the work area")?;
    check(
        !r.stdout.contains(TOKEN) && !r.stdout.contains("ran") && r.stderr.contains("deny_under"),
        || r.show(),
    )?;
    let (c, _g) = sbx_with_secrets(&secrets, &args);
    let r = c
        .env("PATH", &format!("{}:/usr/bin:/bin", planted.path()))
        .run();
    r.expect_code(
        0,
        "env NAME under /tmp: not visible in platform, the real sh runs",
    )?;
    check(
        r.stdout.contains("real-ran") && !r.stdout.contains("planted"),
        || r.show(),
    )
}

/// psql and aws (real tools, where installed) run under the SDK policy's platform, whose allowlist
/// names psql by its link /usr/bin/psql; and every exec.allow tool of every shipped policy that
/// exists here runs `--version` in its context.
pub fn allowlisted_tools_run_through_links_and_scripts() -> Result<(), String> {
    needs_isolation()?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let sdk = root.join("sandbox-sdk.toml");
    let mut ran = Vec::new();
    if Path::new("/usr/bin/psql").exists() {
        let r = Cmd::sbx(sbx_args(&sdk, "platform", &["psql", "--version"])).run();
        r.expect_code(0, "psql --version in the SDK platform")?;
        check(r.stdout.contains("PostgreSQL"), || r.show())?;
        ran.push("psql".to_string());
    }
    let venv_aws = "/opt/sbx-test-venv/bin/aws";
    if Path::new(venv_aws).exists() {
        // The test venv stands in for /usr/local/bin/aws (a #! script run by the venv's python).
        let keep = TempDir::new("g8aws");
        let text = std::fs::read_to_string(&sdk).unwrap().replacen(
            "\"/usr/local/bin/aws\"",
            &format!("\"{venv_aws}\""),
            1,
        );
        let p = write_policy(keep.path(), &text);
        let r = Cmd::sbx(sbx_args(&p, "platform", &[venv_aws, "--version"])).run();
        r.expect_code(0, "aws --version in the SDK platform")?;
        check(r.stdout.contains("aws-cli"), || r.show())?;
        ran.push("aws".into());
    }
    for entry in std::fs::read_dir(&root).unwrap() {
        let file = entry.unwrap().path();
        let text = std::fs::read_to_string(&file).unwrap();
        let policy: toml::Value = toml::from_str(&text).unwrap();
        let Some(contexts) = policy.get("context").and_then(|c| c.as_table()) else {
            continue;
        };
        for (name, ctx) in contexts {
            let allow = ctx
                .get("exec")
                .and_then(|e| e.get("allow"))
                .and_then(|a| a.as_array())
                .cloned()
                .unwrap_or_default();
            for tool in allow.iter().filter_map(|t| t.as_str()) {
                if !Path::new(tool).exists() || ctx.get("userns").is_some() {
                    continue;
                }
                let r = Cmd::sbx(sbx_args(&file, name, &[tool, "--version"])).run();
                r.expect_code(0, &format!("{tool} --version in {}:{name}", file.display()))?;
                ran.push(tool.to_string());
            }
        }
    }
    if ran.is_empty() {
        return Err(format!(
            "{SKIP}none of the allowlisted tools is installed here"
        ));
    }
    Ok(())
}
