//! Inside it is still root, and the tools user code runs (python, pip installing a wheel, git)
//! work.

use super::*;

/// (4) Inside, the command is still root (with the kept capabilities, a writable HOME), so tools
/// that expect root keep working; its map is the range.
pub fn inside_it_is_still_root() -> Result<(), String> {
    needs_isolation()?;
    let w = Work::new("g7id");
    let r = w.user(
        "id -u; id -g; id -G; cat /proc/self/uid_map; grep CapEff /proc/self/status; \
         touch /root/.x && echo home-ok; touch /tmp/x && echo tmp-ok; stat -c '%u' /root",
    );
    r.expect_code(0, "id in user")?;
    let lines: Vec<&str> = r.stdout.lines().collect();
    check(
        lines.len() >= 3 && lines[0] == "0" && lines[1] == "0" && lines[2] == "0",
        || format!("uid, gid and groups inside: {}", r.show()),
    )?;
    let map: Vec<&str> = lines.get(3).unwrap_or(&"").split_whitespace().collect();
    check(map == ["0", "100000", "65536"], || r.show())?;
    check(
        !r.stdout.contains("CapEff:\t0000000000000000")
            && r.stdout.contains("home-ok")
            && r.stdout.contains("tmp-ok"),
        || r.show(),
    )
}

/// A wheel with one module, built by hand (a zip with the module and its dist-info).
fn tiny_wheel(dir: &Path) -> Result<(), String> {
    let script = r#"
import base64, hashlib, sys, zipfile
out = sys.argv[1] + "/sbxdemo-1.0-py3-none-any.whl"
files = {
    "sbxdemo.py": "ANSWER = 'wheel-ok-g7'\n",
    "sbxdemo-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: sbxdemo\nVersion: 1.0\n",
    "sbxdemo-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("sbxdemo-1.0.dist-info/RECORD,,")
    z.writestr("sbxdemo-1.0.dist-info/RECORD", "\n".join(record) + "\n")
"#;
    let r = Cmd::new(PY)
        .command_args(&["-c", script, dir.to_str().unwrap()])
        .run();
    r.expect_code(0, "build the wheel").map(drop)
}

/// (5) Python, pip installing a wheel from a local directory, and git init/commit work in the work
/// area; root outside reads the repository (naming it safe: it belongs to the mapped uid).
pub fn python_pip_and_git_work() -> Result<(), String> {
    needs_isolation()?;
    require_tool(PY)?;
    let git = require_tool("git")?;
    let w = Work::new("g7tools");
    let pip = Cmd::new(PY).command_args(&["-m", "pip", "--version"]).run();
    if !pip.ok() {
        return Err(if in_ci() {
            format!(
                "pip is not installed (apt-get install python3-pip): {}",
                pip.show()
            )
        } else {
            format!("{SKIP_HOST}pip is not installed (apt-get install python3-pip)")
        });
    }
    let wheels = w.dir.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    tiny_wheel(&wheels)?;
    let r = w.user(&format!(
        "{PY} -m pip install -q --disable-pip-version-check --no-index --find-links wheels \
           --target site sbxdemo && PYTHONPATH=site {PY} -c 'import sbxdemo; print(sbxdemo.ANSWER)' && \
         mkdir repo && cd repo && {git} init -q && echo hi > f && {git} add f && \
         {git} -c user.name=t -c user.email=t@example.invalid commit -q -m first && \
         {git} log --format=%s"
    ));
    r.expect_code(0, "pip and git in user")?;
    check(
        r.stdout.contains("wheel-ok-g7") && r.stdout.contains("first"),
        || r.show(),
    )?;
    let m = std::fs::metadata(w.dir.join("site/sbxdemo.py")).map_err(|e| e.to_string())?;
    check(m.uid() == MAPPED, || {
        format!("installed file uid {}", m.uid())
    })?;
    let repo = w.path("repo");
    let r = Cmd::new(&git)
        .command_args(&["-c", "safe.directory=*", "-C", &repo, "log", "--format=%s"])
        .run();
    r.expect_code(0, "git log outside")?;
    check(r.stdout.contains("first"), || r.show())
}
