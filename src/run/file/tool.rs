//! The file tool: sbx-exec started by a launcher as a context's target, with argv[0]
//! [`ROLE`](super::call::ROLE), to do one file operation where it now stands (inside the
//! context, as its identity, in its mount view, confined as any command there) and exit.
//!
//! It holds nothing but what the context gives: it refuses to start with privileges its caller
//! lacks (a setuid or setgid bit, file capabilities), so `exec -a sbx-file` on an installed
//! setuid sbx-exec is no way around the launcher. It makes itself non-dumpable first (code of a
//! persistent context cannot attach to it), ignores SIGXFSZ (a file size limit is a `too_large`
//! error, not a death); contents stream through one fixed buffer ([`super::stream`]).

use std::io::Write as _;

use super::error::{json_line, Failure, Kind};
use super::{call, ops, EXIT_FAILED, EXIT_USAGE};
use crate::error::EXIT_SBX;

/// Is this process the file tool (its argv[0])?
pub fn is_tool() -> bool {
    std::env::args_os().next().is_some_and(|a| a == call::ROLE)
}

/// Run the operation in argv; never returns.
pub fn main() -> ! {
    if crate::sys::started_secure() || !same_ids() {
        eprintln!(
            "sbx-exec: {} runs only as sbx-exec starts it inside a context, never with privileges its caller lacks \
             (a setuid, setgid or file-capability start); use `sbx-exec file --ctx NAME ...`",
            call::ROLE
        );
        std::process::exit(EXIT_SBX);
    }
    let _ = nix::sys::prctl::set_dumpable(false);
    let _ = crate::sys::set_signal_handler(
        nix::sys::signal::Signal::SIGXFSZ,
        nix::sys::signal::SigHandler::SigIgn,
    );
    let op = match call::parse(std::env::args_os()) {
        Ok(op) => op,
        Err(why) => {
            let f = Failure::new(Kind::Usage, why);
            eprintln!("{}", json_line("?", std::ffi::OsStr::new(""), &f));
            std::process::exit(EXIT_USAGE);
        }
    };
    let code = match ops::run(&op) {
        Ok(code) => code,
        Err(f) => {
            let _ = std::io::stdout().flush();
            eprintln!(
                "{}",
                json_line(call::name(&op), call::path(&op).as_os_str(), &f)
            );
            EXIT_FAILED
        }
    };
    std::process::exit(code)
}

/// Real, effective and saved ids all equal (as a launcher's target has them).
fn same_ids() -> bool {
    let (Ok(u), Ok(g)) = (nix::unistd::getresuid(), nix::unistd::getresgid()) else {
        return false;
    };
    u.real == u.effective
        && u.effective == u.saved
        && g.real == g.effective
        && g.effective == g.saved
}
