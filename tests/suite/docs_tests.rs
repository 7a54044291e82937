//! The documentation does what it says: README.md's shell commands run with the documented exit
//! status, every shipped policy launches, the shell completions load and complete context names,
//! the man pages render without warnings, and `--version`/`--help` carry what they promise.

use std::path::{Path, PathBuf};

use crate::harness::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A directory whose `sbx-exec` is the binary under test, to put first on PATH.
fn bin_dir() -> TempDir {
    let d = TempDir::new("bindir");
    std::os::unix::fs::symlink(bin(), d.path().join("sbx-exec")).unwrap();
    d
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        dir.display()
    )
}

// ---------------------------------------------------------------- README and docs/

/// What marks a documented line (or, alone on a line, the rest of its block) as not run here.
const NOT_RUN: &str = "# not run by the docs test:";

/// One documented command: the file and line it is written on, the line as written, the exit
/// status it documents, and what it prints when the line says so.
#[derive(Debug)]
struct DocCommand {
    file: String,
    line: usize,
    text: String,
    expect: i32,
    prints: Option<String>,
}

/// The documents whose shell blocks are run: README.md, then every docs/*.md, by name. Each with
/// its path relative to the repository.
fn documents() -> Vec<(String, String)> {
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    std::iter::once("README.md".to_string())
        .chain(docs)
        .map(|rel| {
            let text = std::fs::read_to_string(root().join(&rel)).unwrap();
            (rel, text)
        })
        .collect()
}

/// The commands of a document's `sh`/`bash`/`shell` blocks, minus the explicit skips: lines
/// marked [`NOT_RUN`] (or a block after such a line) and `cargo` commands (the quick start's
/// install and the test command itself, which this test is part of). A trailing `# exits N`
/// documents status N; a trailing `# prints TEXT` documents the whole of stdout (one line).
fn doc_commands(file: &str, text: &str) -> (Vec<DocCommand>, Vec<String>) {
    let (mut cmds, mut skipped) = (Vec::new(), Vec::new());
    let mut in_block = false;
    let mut block_skipped = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(lang) = t.strip_prefix("```") {
            if in_block {
                in_block = false;
            } else {
                in_block = matches!(lang.trim(), "sh" | "bash" | "shell");
                block_skipped = false;
            }
            continue;
        }
        if !in_block || t.is_empty() {
            continue;
        }
        if t.starts_with(NOT_RUN) {
            block_skipped = true;
            continue;
        }
        if t.starts_with('#') {
            continue;
        }
        let first_word = t
            .split_whitespace()
            .find(|w| !w.contains('='))
            .unwrap_or("");
        if block_skipped || t.contains(NOT_RUN) || first_word == "cargo" {
            skipped.push(format!("{file}:{}: {t}", i + 1));
            continue;
        }
        let expect = t
            .rsplit_once("# exits ")
            .and_then(|(_, n)| n.trim().parse().ok())
            .unwrap_or(0);
        let prints = t
            .rsplit_once("# prints ")
            .map(|(_, out)| out.trim().to_string());
        cmds.push(DocCommand {
            file: file.to_string(),
            line: i + 1,
            text: t.to_string(),
            expect,
            prints,
        });
    }
    (cmds, skipped)
}

/// What a documented command prints, where the document says so (`# prints TEXT`, or in the
/// command itself), checked beyond its exit status. `work` is the directory the commands run in.
fn documented_output(c: &DocCommand, r: &Run, work: &Path) -> Result<(), String> {
    let text = c.text.as_str();
    if let Some(want) = &c.prints {
        check(r.stdout.trim_end() == want, || {
            format!(
                "it prints {:?}, documented {want:?}\n{}",
                r.stdout,
                r.show()
            )
        })?;
    }
    if text.contains("4>status.jsonl") {
        // `# {"child-pid":N} then {"exit-code":0}`
        let file = std::fs::read_to_string(work.join("status.jsonl"))
            .map_err(|e| format!("status.jsonl: {e}"))?;
        check(r.stdout == file, || {
            format!(
                "cat status.jsonl printed {:?}, the file holds {file:?}",
                r.stdout
            )
        })?;
        let lines: Vec<serde_json::Value> = file
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("not JSON: {l:?}: {e}")))
            .collect::<Result<_, _>>()?;
        let pid_only = lines.first().and_then(|l| l.as_object()).is_some_and(|o| {
            o.len() == 1
                && o.get("child-pid")
                    .and_then(|p| p.as_i64())
                    .is_some_and(|p| p > 0)
        });
        // The end record: exit-code first, then why the call ended.
        let end_ok = file
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("{\"exit-code\":0,"))
            && lines.get(1).and_then(|l| l.get("reason")) == Some(&serde_json::json!("exited"));
        check(lines.len() == 2 && pid_only && end_ok, || {
            format!(
                "status.jsonl is not {{\"child-pid\":N}} then {{\"exit-code\":0,\"reason\":\"exited\",...}}: {file:?}"
            )
        })?;
    } else if text.contains("print(\"my pid:\"") {
        // Its own PID namespace: sbx-exec is pid 1 there, the command pid 2 (as `ps aux` shows).
        check(r.stdout == "my pid: 2\n", || r.show())?;
    } else if text.contains("/usr is read-only here") {
        check(r.stdout == "/usr is read-only here\n", || r.show())?;
    } else if text.contains("echo offline build step") {
        check(r.stdout == "offline build step\n", || r.show())?;
    }
    Ok(())
}

/// The `ps aux` table README.md shows under its first example, as (USER, PID, COMMAND) rows.
fn ps_rows(table: &str) -> Vec<(String, String, String)> {
    table
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("USER"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("```"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let command = f.get(10..).map(|c| c.join(" ")).unwrap_or_default();
            (
                f[0].to_string(),
                f.get(1).unwrap_or(&"").to_string(),
                command,
            )
        })
        .collect()
}

/// A directory to run one document's commands in, with copies of the repository's files the
/// commands refer to. On the suite's staging tmpfs, next to the staged binary, where every
/// context sees it wherever the repository is cloned (not under /tmp or /root, private in
/// `user`); without one, under the build's target directory.
fn work_dir(tag: &str) -> PathBuf {
    let staged = Path::new(bin())
        .parent()
        .and_then(Path::parent)
        .filter(|_| bin() != env!("CARGO_BIN_EXE_sbx-exec"));
    let base = staged.map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")),
        Path::to_path_buf,
    );
    let work = base.join(format!("docs-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    // Copies, not symlinks: sbx-exec refuses to bind a policy file reached through a link.
    for name in ["policies", "completions", "man", "docs/examples"] {
        let Ok(entries) = std::fs::read_dir(root().join(name)) else {
            continue;
        };
        std::fs::create_dir_all(work.join(name)).unwrap();
        for e in entries.flatten() {
            std::fs::copy(e.path(), work.join(name).join(e.file_name())).unwrap();
        }
    }
    work
}

pub fn readme_commands_run_as_documented() -> Result<(), String> {
    needs_isolation()?;
    // The persistent-context commands start keepers: their state goes to the suite's /run/sbx.
    crate::persist::runtime()?;
    let docs = documents();
    let readme = &docs[0].1;
    check(
        readme.contains(
            "cargo install --locked --path . && sbx-exec --ctx user -- ps aux\ncargo test\n",
        ),
        || "README.md lost the quick start's two commands".into(),
    )?;
    // Every example policy under docs/examples is shown as it is, in some document.
    let examples = root().join("docs/examples");
    for e in std::fs::read_dir(&examples).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        check(docs.iter().any(|(_, d)| d.contains(&text)), || {
            format!(
                "docs/examples/{:?} is not shown verbatim in any document",
                e.file_name()
            )
        })?;
    }
    let bins = bin_dir();
    let (mut all, mut skipped, mut failures) = (0, Vec::new(), Vec::new());
    let mut checked_output = 0;
    for (file, text) in &docs {
        let (cmds, skips) = doc_commands(file, text);
        skipped.extend(skips);
        // A document with shell examples runs at least one of them (a marker does not hide a
        // whole document).
        if text.contains("```sh") || text.contains("```bash") {
            check(!cmds.is_empty(), || {
                format!("{file} has shell blocks but none of its commands is run")
            })?;
        }
        all += cmds.len();
        let work = work_dir(&file.replace('/', "-"));
        for c in &cmds {
            let mut cmd = Cmd::new("/bin/bash");
            cmd.command()
                .args(["-c", &c.text])
                .current_dir(&work)
                .env("PATH", path_with(bins.path()));
            let r = cmd.run();
            if r.code != Some(c.expect) {
                failures.push(format!(
                    "{}:{}: `{}` exited {:?}, documented {}\n{}",
                    c.file,
                    c.line,
                    c.text,
                    r.code,
                    c.expect,
                    r.show()
                ));
            } else if let Err(e) = documented_output(c, &r, &work) {
                failures.push(format!(
                    "{}:{}: `{}` does not do what the document says: {e}",
                    c.file, c.line, c.text
                ));
            }
            checked_output += c.text.contains("4>status.jsonl") as usize;
        }
        let _ = std::fs::remove_dir_all(&work);
    }
    if all < 40 {
        failures.push(format!("only {all} documented commands found"));
    }
    // The skip list stays small and explicit: the cargo commands, docker, podman (tests/container
    // runs those), aws, installs, benchmarks.
    if skipped.len() > 20 {
        failures.push(format!(
            "too many documented commands skipped: {skipped:#?}"
        ));
    }
    if checked_output != 1 {
        failures.push(
            "the docs no longer have the --status-fd example whose output this test checks".into(),
        );
    }
    // The first example's output is what `user` really prints: who pid 1 and the command are,
    // seen from inside (the numbers vary).
    let shown = ps_rows(readme);
    let mut ps = Cmd::new("/bin/bash");
    ps.command()
        .args(["-c", "sbx-exec --ctx user -- ps aux"])
        .env("PATH", path_with(bins.path()));
    let ps = ps.run();
    let real = ps_rows(&ps.stdout);
    if !ps.ok() || shown.is_empty() || shown != real {
        failures.push(format!(
            "README.md shows {shown:?} for `sbx-exec --ctx user -- ps aux`; it prints {real:?}\n{}",
            ps.show()
        ));
    }
    check(failures.is_empty(), || failures.join("\n"))
}

pub fn readme_extractor_skips_only_what_is_marked() -> Result<(), String> {
    // The extractor itself: a broken one would make the test above pass on nothing.
    let text = "x\n```sh\nsbx-exec a   # exits 3\n# comment\ncargo test\nFOO=1 cargo b\nsbx-exec b # not run by the docs test: why\nsbx-exec e   # prints e f\n```\n```ts\nsbx-exec ts\n```\n```sh\n# not run by the docs test: all\nsbx-exec c\n```\n```bash\nsbx-exec d\n```\n";
    let (cmds, skipped) = doc_commands("docs/x.md", text);
    let got: Vec<(&str, i32, Option<&str>)> = cmds
        .iter()
        .map(|c| (c.text.as_str(), c.expect, c.prints.as_deref()))
        .collect();
    check(
        got == [
            ("sbx-exec a   # exits 3", 3, None),
            ("sbx-exec e   # prints e f", 0, Some("e f")),
            ("sbx-exec d", 0, None),
        ],
        || format!("{got:?}"),
    )?;
    check(
        cmds.iter().all(|c| c.file == "docs/x.md") && cmds[0].line == 3,
        || format!("{cmds:?}"),
    )?;
    check(skipped.len() == 4, || format!("{skipped:?}"))?;
    // Every document is read: README.md first, then each docs/*.md.
    let docs = documents();
    check(
        docs[0].0 == "README.md"
            && docs.iter().any(|(f, _)| f == "docs/DESIGN.md")
            && docs.len() >= 3,
        || format!("{:?}", docs.iter().map(|(f, _)| f).collect::<Vec<_>>()),
    )?;
    // A `# prints` the command does not print is a failure, not a pass.
    let c = &cmds[1];
    let r = Run {
        code: Some(0),
        stdout: "something else\n".into(),
        stderr: String::new(),
        signal: None,
    };
    check(documented_output(c, &r, Path::new("/")).is_err(), || {
        "a wrong `# prints` output was accepted".into()
    })?;
    check(
        ps_rows("```\n$ x\nUSER PID %CPU %MEM VSZ RSS TTY STAT START TIME COMMAND\nnobody 1 0 0 1 1 ? Ss 07:37 0:00 sbx-exec --ctx user -- ps aux\n```\n")
            == [("nobody".into(), "1".into(), "sbx-exec --ctx user -- ps aux".into())],
        || "ps_rows".into(),
    )
}

// ---------------------------------------------------------------- shipped policies

/// Every context of every file in policies/ that runs one command and exits (no `supervise`, no
/// `persist`) launches `true`; where `exec.allow` leaves `true` out, the launch is refused with
/// 125 naming exec.allow (the allowlist works, and the context is otherwise valid).
pub fn every_shipped_policy_launches_its_one_shot_contexts() -> Result<(), String> {
    needs_isolation()?;
    let true_path = std::fs::canonicalize("/bin/true").unwrap();
    let mut launched = 0;
    for e in std::fs::read_dir(root().join("policies"))
        .unwrap()
        .flatten()
    {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: toml::Table = toml::from_str(&text).map_err(|e| format!("{path:?}: {e}"))?;
        let contexts = doc
            .get("context")
            .and_then(|c| c.as_table())
            .cloned()
            .unwrap_or_default();
        for (name, ctx) in &contexts {
            let ctx = ctx.as_table().unwrap();
            let persists = ctx.get("persist").and_then(|p| p.as_bool()) == Some(true);
            if ctx.contains_key("supervise") || persists {
                continue;
            }
            let allow: Vec<String> = ctx
                .get("exec")
                .and_then(|x| x.get("allow"))
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let runs_true = allow.is_empty() || allow.iter().any(|a| Path::new(a) == true_path);
            let r = Cmd::sbx([
                "--policy".as_ref(),
                path.as_os_str(),
                "--ctx".as_ref(),
                name.as_ref(),
                "--".as_ref(),
                "true".as_ref(),
            ])
            .run();
            let what = format!("{} --ctx {name} -- true", path.display());
            if runs_true {
                r.expect_code(0, &what)?;
            } else {
                r.expect_code(125, &what)?;
                check(r.stderr.contains("exec] allow"), || r.show())?;
            }
            launched += 1;
        }
    }
    check(launched >= 6, || {
        format!("only {launched} contexts launched")
    })
}

pub fn ci_runner_build_is_offline_and_deploy_takes_only_its_secrets() -> Result<(), String> {
    needs_isolation()?;
    let p = root().join("policies/ci-runner.toml");
    let p = p.to_str().unwrap();
    // build, fetch and test: only loopback (fetch and test reach out through the egress proxy);
    // deploy: the host's interfaces (the control).
    let ifaces =
        |ctx: &str| Cmd::sbx(["--policy", p, "--ctx", ctx, "--", "cat", "/proc/net/dev"]).run();
    let count = |out: &str| out.lines().filter(|l| l.contains(':')).count();
    for ctx in ["build", "fetch", "test"] {
        let own = ifaces(ctx);
        own.expect_code(0, ctx)?;
        check(
            count(&own.stdout) == 1 && own.stdout.contains("lo:"),
            || format!("{ctx}: {}", own.show()),
        )?;
    }
    let fetch_env = Cmd::sbx([
        "--policy",
        p,
        "--ctx",
        "fetch",
        "--",
        "printenv",
        "HTTPS_PROXY",
    ])
    .run();
    check(fetch_env.stdout.trim() == "http://127.0.0.1:3128", || {
        fetch_env.show()
    })?;

    // Secrets: refused in build, a listed name is taken by deploy, an unlisted one refused.
    let (c, _d) = sbx_with_secrets(
        "AWS_REGION=eu-west-1\n",
        &[
            "--policy",
            p,
            "--ctx",
            "build",
            "--secrets-fd",
            "3",
            "--",
            "true",
        ],
    );
    c.run().expect_code(125, "secrets to build")?;
    // deploy runs only its allowlisted tools, and the program is checked before the secrets are
    // read; a copy that also allows printenv lets the secret allowlist itself be exercised.
    let dir = TempDir::new("ci-runner");
    let text = std::fs::read_to_string(p).unwrap().replacen(
        "allow = [\"/usr/local/bin/aws\",",
        "allow = [\"/usr/bin/printenv\", \"/usr/bin/cat\", \"/usr/local/bin/aws\",",
        1,
    );
    let copy = crate::policy_tests::write_policy(dir.path(), &text);
    let copy = copy.to_str().unwrap();
    let deploy = Cmd::sbx([
        "--policy",
        copy,
        "--ctx",
        "deploy",
        "--",
        "cat",
        "/proc/net/dev",
    ])
    .run();
    let host = std::fs::read_to_string("/proc/net/dev").unwrap();
    check(count(&deploy.stdout) == count(&host), || deploy.show())?;
    let deploy = |secrets: &str| {
        let args = [
            "--policy",
            copy,
            "--ctx",
            "deploy",
            "--secrets-fd",
            "3",
            "--",
        ];
        let mut args = args.to_vec();
        args.extend(["printenv", "AWS_REGION"]);
        let (c, _d) = sbx_with_secrets(secrets, &args);
        c.run()
    };
    let listed = deploy("AWS_REGION=eu-west-1\n");
    listed.expect_code(0, "listed secret to deploy")?;
    check(listed.stdout.trim() == "eu-west-1", || listed.show())?;
    let r = deploy("GITHUB_TOKEN=x\n");
    r.expect_code(125, "unlisted secret to deploy")?;
    check(r.stderr.contains("GITHUB_TOKEN"), || r.show())?;
    // And the shipped policy itself refuses a program outside deploy's allowlist.
    let (c, _d) = sbx_with_secrets(
        "AWS_REGION=eu-west-1\n",
        &[
            "--policy",
            p,
            "--ctx",
            "deploy",
            "--secrets-fd",
            "3",
            "--",
            "true",
        ],
    );
    let r = c.run();
    r.expect_code(125, "true in deploy")?;
    check(r.stderr.contains("exec] allow"), || r.show())
}

// ---------------------------------------------------------------- completions and man pages

/// Run the bash completion for `words` (the last one being completed) and return COMPREPLY.
fn bash_complete(bins: &Path, words: &[&str]) -> Result<Vec<String>, String> {
    let script = format!(
        "source {}\nCOMP_WORDS=({})\nCOMP_CWORD={}\n_sbx_exec_with_contexts sbx-exec \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        root().join("completions/sbx-exec.bash").display(),
        words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
        words.len() - 1
    );
    let mut c = Cmd::new("/bin/bash");
    c.command()
        .args(["-c", &script])
        .env("PATH", path_with(bins));
    let r = c.run();
    r.expect_code(0, "bash completion")?;
    Ok(r.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

pub fn bash_completes_context_names_from_the_policy() -> Result<(), String> {
    require_tool("bash")?;
    let bins = bin_dir();
    // The effective policy's contexts, read independently of the completion script.
    let show = Cmd::sbx(["policy", "show"]).run();
    show.expect_code(0, "policy show")?;
    let doc: toml::Table = toml::from_str(show.stdout.split_once('\n').unwrap().1).unwrap();
    let want: Vec<String> = doc["context"].as_table().unwrap().keys().cloned().collect();
    if show.stdout.starts_with("# source: embedded") {
        check(want == ["control", "platform", "user"], || {
            format!("{want:?}")
        })?;
    }
    let got = bash_complete(bins.path(), &["sbx-exec", "--ctx", ""])?;
    check(got == want, || {
        format!("--ctx <TAB>: {got:?}, want {want:?}")
    })?;
    let got = bash_complete(bins.path(), &["sbx-exec", "--ctx", "pl"])?;
    check(got == ["platform"], || format!("--ctx pl<TAB>: {got:?}"))?;
    let got = bash_complete(bins.path(), &["sbx-exec", "policy", "show", "--ctx", "u"])?;
    check(got == ["user"], || {
        format!("policy show --ctx u<TAB>: {got:?}")
    })?;
    // --policy FILE on the line: that file's contexts.
    let d = TempDir::new("completion");
    let p = d.file(
        "policy.toml",
        "version = 1\n[context.alpha]\n[context.beta-2]\n[context.beta-2.env]\nallow = []\n",
    );
    let p = p.to_str().unwrap();
    let got = bash_complete(bins.path(), &["sbx-exec", "--policy", p, "--ctx", ""])?;
    check(got == ["alpha", "beta-2"], || format!("--policy: {got:?}"))?;
    // Elsewhere it is clap's completion: options, not contexts.
    let got = bash_complete(bins.path(), &["sbx-exec", "--po"])?;
    check(got == ["--policy"], || format!("--po<TAB>: {got:?}"))
}

pub fn bash_completes_subcommands_and_running_contexts() -> Result<(), String> {
    require_tool("bash")?;
    let bins = bin_dir();
    let has = |got: &[String], words: &[&str]| words.iter().all(|w| got.iter().any(|g| g == w));
    // The words after a subcommand: its own subcommands (clap's completion, which once offered
    // nothing here), also with --policy before the subcommand.
    for (line, want) in [
        (&["sbx-exec", "ctx", ""][..], &["list", "stop"][..]),
        (&["sbx-exec", "policy", ""], &["check", "show"]),
        (
            &["sbx-exec", "--policy", "policies/default.toml", "ctx", ""],
            &["list", "stop"],
        ),
    ] {
        let got = bash_complete(bins.path(), line)?;
        check(has(&got, want), || {
            format!("{}<TAB>: {got:?}, want {want:?} among them", line.join(" "))
        })?;
        check(!got.iter().any(|g| g == "probe"), || {
            format!(
                "{}<TAB> offers the top level's words: {got:?}",
                line.join(" ")
            )
        })?;
    }
    let got = bash_complete(bins.path(), &["sbx-exec", "policy", "c"])?;
    check(got == ["check"], || format!("policy c<TAB>: {got:?}"))?;
    let got = bash_complete(bins.path(), &["sbx-exec", "ctx", "s"])?;
    check(got == ["stop"], || format!("ctx s<TAB>: {got:?}"))?;
    // `ctx stop <TAB>`: the persistent contexts running now. Start one (in the suite's own
    // /run/sbx), complete, stop it: then it is no longer offered.
    needs_isolation()?;
    crate::persist::runtime()?;
    let name = unique_name("comp");
    let d = TempDir::new("completion-stop");
    let p = d.file(
        "policy.toml",
        &format!(
            "version = 1\n[context.{name}]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\n\
             persist = true\nenv.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n"
        ),
    );
    let p = p.to_str().unwrap();
    Cmd::sbx(["--policy", p, "--ctx", &name, "--", "true"])
        .run()
        .expect_code(0, "starting a persistent context")?;
    let got = bash_complete(bins.path(), &["sbx-exec", "ctx", "stop", ""]);
    let prefix = bash_complete(bins.path(), &["sbx-exec", "ctx", "stop", &name[..5]]);
    let stop = Cmd::sbx(["ctx", "stop", &name]).run();
    let (got, prefix) = (got?, prefix?);
    stop.expect_code(0, "ctx stop")?;
    check(got.contains(&name), || {
        format!("ctx stop <TAB>: {got:?}, want {name} among them")
    })?;
    check(
        prefix.contains(&name) && !prefix.iter().any(|w| w.starts_with('-')),
        || format!("ctx stop {}<TAB>: {prefix:?}", &name[..5]),
    )?;
    let after = bash_complete(bins.path(), &["sbx-exec", "ctx", "stop", ""])?;
    check(!after.contains(&name), || {
        format!("ctx stop <TAB> after the stop: {after:?}")
    })
}

pub fn completions_pass_each_shells_syntax_check() -> Result<(), String> {
    for (shell, file) in [
        ("bash", "sbx-exec.bash"),
        ("zsh", "_sbx-exec"),
        ("fish", "sbx-exec.fish"),
    ] {
        require_tool(shell)?;
        let path = root().join("completions").join(file);
        let mut c = Cmd::new(shell);
        c.command().arg("-n").arg(&path);
        let r = c.run();
        r.expect_code(0, &format!("{shell} -n {file}"))?;
        check(r.stderr.trim().is_empty(), || r.show())?;
    }
    Ok(())
}

pub fn fish_completes_context_names() -> Result<(), String> {
    require_tool("fish")?;
    let bins = bin_dir();
    let script = format!(
        "source {}; complete -C 'sbx-exec --ctx '",
        root().join("completions/sbx-exec.fish").display()
    );
    let mut c = Cmd::new("fish");
    c.command()
        .args(["--no-config", "-c", &script])
        .env("PATH", path_with(bins.path()));
    let r = c.run();
    r.expect_code(0, "fish complete")?;
    let got: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    check(got.contains(&"user") && got.contains(&"platform"), || {
        r.show()
    })
}

pub fn zsh_context_completer_lists_the_policys_contexts() -> Result<(), String> {
    require_tool("zsh")?;
    let bins = bin_dir();
    let d = TempDir::new("zsh");
    let p = d.file(
        "policy.toml",
        "version = 1\n[context.alpha]\n[context.beta-2]\n",
    );
    // The completer the generated `--ctx` specs call, with `_describe` replaced by a printer (the
    // specs themselves are checked by the unit test in src/docs_gen.rs).
    let script = format!(
        "compdef() {{ :; }}; _describe() {{ print -l -- ${{(P)4}}; }}; source {}; service=sbx-exec; \
         words=(sbx-exec --ctx ''); _sbx_exec_contexts; print -- ---; \
         words=(sbx-exec --policy {} --ctx ''); _sbx_exec_contexts",
        root().join("completions/_sbx-exec").display(),
        p.display()
    );
    let mut c = Cmd::new("zsh");
    c.command()
        .args(["-f", "-c", &script])
        .env("PATH", path_with(bins.path()));
    let r = c.run();
    r.expect_code(0, "zsh")?;
    let (default, custom) = r.stdout.split_once("---\n").ok_or_else(|| r.show())?;
    check(default.lines().any(|l| l == "user"), || r.show())?;
    check(
        custom.lines().collect::<Vec<_>>() == ["alpha", "beta-2"],
        || r.show(),
    )
}

pub fn man_pages_render_without_warnings() -> Result<(), String> {
    require_tool("groff")?;
    require_tool("man")?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("man"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    pages.sort();
    check(pages.len() >= 3, || format!("{pages:?}"))?;
    for page in &pages {
        let mut c = Cmd::new("groff");
        c.command().args(["-man", "-Tutf8", "-ww", "-z"]).arg(page);
        let r = c.run();
        r.expect_code(0, &format!("groff {}", page.display()))?;
        check(r.stderr.trim().is_empty(), || {
            format!("{}: {}", page.display(), r.show())
        })?;
        let mut c = Cmd::new("man").env("MANWIDTH", "80");
        c.command().arg("-l").arg(page);
        let r = c.run();
        r.expect_code(0, &format!("man -l {}", page.display()))?;
        check(
            r.stdout.contains("NAME") && r.stdout.contains("sbx-exec"),
            || r.show(),
        )?;
    }
    let mut c = Cmd::new("man").env("MANWIDTH", "80");
    c.command().arg("-l").arg(root().join("man/sbx-exec.1"));
    let r = c.run();
    check(
        r.stdout.contains("--secrets-fd") && r.stdout.contains("EXAMPLES"),
        || r.show(),
    )
}

// ---------------------------------------------------------------- --version, --help

pub fn version_names_the_git_revision() -> Result<(), String> {
    let r = Cmd::sbx(["--version"]).run();
    r.expect_code(0, "--version")?;
    let line = r.stdout.trim();
    let plain = format!("sbx-exec {}", env!("CARGO_PKG_VERSION"));
    let mut head = Cmd::new("git");
    head.command()
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root());
    let head = head.run();
    if !root().join(".git").exists() || head.code != Some(0) {
        // A source tree without git: the plain crate version.
        return check(line == plain, || r.show());
    }
    let rev = line
        .strip_prefix(&format!("{plain} (git "))
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("want `{plain} (git REV)`: {}", r.show()))?;
    let hex = rev.strip_suffix("-dirty").unwrap_or(rev);
    let head = head.stdout.trim();
    check(
        hex.len() >= 7
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && (head.starts_with(hex) || hex.starts_with(head)),
        || format!("HEAD is {head}: {}", r.show()),
    )
}

pub fn help_has_examples_and_exit_codes() -> Result<(), String> {
    let r = Cmd::sbx(["--help"]).run();
    r.expect_code(0, "--help")?;
    for want in [
        "Examples:",
        "--ctx user",
        "policy show",
        "Exit status:",
        "125",
        "127",
    ] {
        check(r.stdout.contains(want), || {
            format!("--help lacks {want:?}: {}", r.show())
        })?;
    }
    Ok(())
}
