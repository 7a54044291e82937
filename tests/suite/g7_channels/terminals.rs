//! Terminals: no pseudo-terminal held outside is reachable from `user`, and its own ptys work.

use super::*;

/// (a) A process outside holds a pty whose input is waiting ("typed" into its master); `user`
/// tries to open that pty by name and read it. Control: the process outside reads it afterwards.
pub fn host_pty_input_cannot_be_read() -> Result<(), String> {
    needs_isolation()?;
    const HOLDER: &str = r#"
import os, sys
m, s = os.openpty()
os.write(m, b"secret-typed-password\n")
print(os.ttyname(s), flush=True)
sys.stdin.readline()
os.set_blocking(s, False)
try:
    print("read:" + os.read(s, 100).decode().strip(), flush=True)
except OSError as e:
    print("error:", e, flush=True)
"#;
    let mut holder = Cmd::new("python3")
        .args(["-c", HOLDER])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin");
    holder
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut holder = holder.spawn();
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    let mut name = String::new();
    out.read_line(&mut name).map_err(|e| e.to_string())?;
    let name = name.trim().to_string();
    let steal = "import os, errno, sys\n\
                 try:\n fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)\n \
                 print('stolen:' + os.read(fd, 100).decode().strip())\n\
                 except OSError as e:\n print('refused:' + errno.errorcode.get(e.errno, str(e.errno)))";
    let attack = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", steal, &name]).run();
    let mut stdin = holder.stdin.take().unwrap();
    let _ = stdin.write_all(b"go\n");
    drop(stdin);
    let mut control = String::new();
    let _ = out.read_to_string_lossy(&mut control);
    let _ = holder.wait();
    check(name.starts_with("/dev/pts/"), || {
        format!("the holder's pty has no /dev/pts name: {name:?}")
    })?;
    check(attack.stdout.trim() == "refused:ENOENT", || {
        format!(
            "user reached the pty {name} held outside: {}",
            attack.show()
        )
    })?;
    check(control.contains("read:secret-typed-password"), || {
        format!("control: the holder could not read its own pty {name}: {control:?}")
    })
}

trait ReadAll {
    fn read_to_string_lossy(&mut self, s: &mut String) -> std::io::Result<()>;
}

impl<R: std::io::Read> ReadAll for R {
    fn read_to_string_lossy(&mut self, s: &mut String) -> std::io::Result<()> {
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        s.push_str(&String::from_utf8_lossy(&v));
        Ok(())
    }
}

/// (c) The context's own ptys work: a child on a new pty, its output read through the master;
/// `script` (util-linux) where it is installed.
pub fn own_ptys_work() -> Result<(), String> {
    needs_isolation()?;
    const PTY: &str = r#"
import pty, os
pid, fd = pty.fork()
if pid == 0:
    os.write(1, ("child-on-pty " + os.ttyname(0) + "\n").encode())
    os._exit(0)
out = b""
while True:
    try:
        b = os.read(fd, 1024)
    except OSError:
        break
    if not b:
        break
    out += b
os.waitpid(pid, 0)
print(out.decode().strip())
"#;
    let r = Cmd::sbx(["--ctx", "user", "--", "python3", "-c", PTY]).run();
    r.expect_code(0, "pty.fork in user")?;
    check(
        r.stdout.trim().starts_with("child-on-pty /dev/pts/"),
        || r.show(),
    )?;
    if Path::new("/usr/bin/script").exists() {
        let s = Cmd::sbx([
            "--ctx",
            "user",
            "--",
            "script",
            "-qc",
            "tty; echo via-script",
            "/dev/null",
        ])
        .run();
        s.expect_code(0, "script in user")?;
        check(
            s.stdout.contains("/dev/pts/") && s.stdout.contains("via-script"),
            || s.show(),
        )?;
    }
    Ok(())
}
