//! File operations inside a context: `sbx-exec file --ctx NAME OP PATH` reads, writes, lists or
//! removes a file *as code in the context would*: in its namespaces and mount view, as its
//! identity, with its capabilities dropped, no_new_privs, Landlock, seccomp and limits. A link
//! user code planted can then lead a write only where that code could write itself, and what the
//! control plane writes for it belongs to its identity (host uid 100000 for the default `user`),
//! so it can change it afterwards. Nothing is done by the launcher outside the sandbox: it never
//! opens the path.
//!
//! ```text
//! launcher ── the call checked as a command's (policy, context, setuid admission, timeout,
//!    │         audit, --status-fd) ── the launch of [`crate::run::launch`], unchanged, with
//!    │         sbx-exec's own binary as the program (/proc/self/exe, opened once, O_PATH;
//!    │         no `[exec]` rule applies: the caller names no program) ─execveat─>
//!    └─ "sbx-file" (the target, every wall up): [`tool`] refuses privileges its caller lacks,
//!       [`ops`] does the operation where it stands, streaming stdin/stdout in fixed chunks
//!       ([`stream`])
//! ```
//!
//! Exit status: 0 done, [`EXIT_ABSENT`] (`exists`: not there), [`EXIT_USAGE`], [`EXIT_FAILED`]
//! (one JSON line on stderr, [`error::json_line`]), 124 timeout, 125 refused (the same JSON line,
//! kind `refused`).

pub mod call;
pub mod error;
mod ops;
mod stream;
pub mod tool;

use std::path::PathBuf;

use crate::cli::{FileArgs, RunArgs};
use crate::error::{exit_code_of, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_SBX};
use crate::run::launch::{self, Runs};
use error::{json_line, Failure, Kind};

/// `exists`: the path is not there.
pub const EXIT_ABSENT: i32 = 1;
/// A usage error (also clap's, for `sbx-exec file`).
pub const EXIT_USAGE: i32 = 2;
/// The operation failed (its kind on stderr).
pub const EXIT_FAILED: i32 = 3;

/// Run one file operation in `args.ctx`; returns the exit status. Every failure ends with its
/// JSON line on stderr.
pub fn run(args: FileArgs, policy: Option<PathBuf>) -> i32 {
    let op = &args.op;
    let say = |f: Failure| {
        eprintln!(
            "{}",
            json_line(call::name(op), call::path(op).as_os_str(), &f)
        )
    };
    let Some(ctx) = args.ctx.clone() else {
        say(Failure::new(
            Kind::Usage,
            "--ctx NAME is required: the context whose files these are (e.g. --ctx user)",
        ));
        return EXIT_USAGE;
    };
    if let Err(why) = call::check(op) {
        say(Failure::new(Kind::Usage, why));
        return EXIT_USAGE;
    }
    let argv = call::argv(op);
    let run = RunArgs {
        policy,
        ctx: Some(ctx.clone()),
        secrets_fd: None,
        status_fd: args.status_fd,
        env: Vec::new(),
        cwd: None,
        // Relative paths are the context's: its workdir, never the caller's directory.
        in_workdir: true,
        timeout: args.timeout,
        keep_fd: Vec::new(),
        listen_fd: Vec::new(),
        cmd: call::audit_cmd(op),
    };
    match launch::run_program(run, Runs::Own(&argv)) {
        // The tool never exits so: its exec was refused inside the context.
        Ok(code @ (EXIT_NOT_EXECUTABLE | EXIT_NOT_FOUND)) => {
            say(Failure::new(
                Kind::Refused,
                format!("sbx-exec's file tool could not be started inside context {ctx:?} (exit {code})"),
            ));
            EXIT_SBX
        }
        Ok(code) => code,
        Err(e) => {
            say(Failure::new(Kind::Refused, format!("{e:#}")));
            exit_code_of(&e)
        }
    }
}
