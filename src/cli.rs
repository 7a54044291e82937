//! The command line: `sbx-exec [--policy FILE] --ctx NAME [--secrets-fd N] [--status-fd N] -- CMD...`
//! and the `policy` subcommands.

use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Version string, with the git revision it was built from when known: `0.1.0 (git abc1234)`
/// (set by build.rs).
pub const VERSION: &str = match option_env!("SBX_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

const EXAMPLES: &str = "\
Examples:
  sbx-exec --ctx user -- ps aux
      untrusted code: sees only its own processes, gets no secrets
  sbx-exec --ctx platform --secrets-fd 3 -- aws s3 ls 3< <(printf 'AWS_ACCESS_KEY_ID=%s\\n' \"$KEY\")
      trusted tool: the secret arrives as a variable, never in argv or the caller's env
  sbx-exec --ctx user --status-fd 4 -- make 4>status.jsonl
      JSON lines {\"child-pid\":N} then {\"exit-code\":N,\"reason\":\"exited\",...}
  echo 'print(1)' | sbx-exec file --ctx user write /workspace/app.py
      a file written inside the context, as its identity (see sbx-exec file --help)
  sbx-exec --ctx user -- sh -c 'npm run dev >/dev/null 2>&1 &'
      in a context with persist = true: the server keeps running after the call,
      and later calls (ps, kill, curl localhost:3000) see it
  sbx-exec --policy policies/sandbox-sdk.toml --ctx notebook --listen-fd 8888 -- python3 serve.py
      with LISTEN_FDS from the caller (control mode, systemd): the server gets the
      listening socket named 8888 as fd 3 and never binds the port itself
  sbx-exec --policy my-policy.toml ctx list
      --policy works before any subcommand too, as git-style options do
  sbx-exec ctx list
  sbx-exec ctx stop user
      end a persistent context and everything in it
  sbx-exec ctx net user --allow registry.npmjs.org
  sbx-exec ctx net user --reset
      open a running persistent context's egress to a host (npm install), then close
      it again before untrusted code runs; either change ends its open connections
  sbx-exec probe
      what this host can isolate; which contexts run as written
  sbx-exec policy show --ctx user
  sbx-exec policy check /etc/sbx/policy.toml
  man 5 sbx-exec-policy
      the policy reference (contexts, keys, defaults)

Installed setuid root, sbx-exec serves non-root callers: only /etc/sbx/policy.toml
(or the embedded default) applies, --policy is refused, and the command runs as the
caller (or security.run_as) without capabilities.

Working directory: the caller's, when the context shares it; otherwise (or with
--in-workdir) the context's `workdir` (default: its first existing writable area,
else /). A --cwd the context does not have is refused with 125.

Exit status: the command's own; 128+N if it died of signal N; 124 timeout;
125 sbx-exec refused or failed; 126 command not executable; 127 command not found.
ctx stop, ctx net: 1 if the context was not running. probe: 1 if some context cannot run as
written.";

/// sbx-exec: run a command in a named sandbox context from a policy.
#[derive(Debug, Parser)]
#[command(
    name = "sbx-exec",
    version = VERSION,
    about = "Run a command in a named sandbox context: secrets only where handed, private PID and mount namespaces, a clean environment",
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
)]
pub struct Cli {
    /// Policy file to use instead of /etc/sbx/policy.toml or the embedded default: a regular file
    /// of at most 4 MiB (before or after a subcommand; refused in setuid mode)
    #[arg(long, value_name = "FILE", global = true)]
    pub policy: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Running a command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The policy file (`--policy`, a global option; set from [`Cli::policy`] when parsed)
    #[arg(skip)]
    pub policy: Option<PathBuf>,

    /// Context to run in (e.g. user, platform, control)
    #[arg(long, value_name = "NAME", required = true)]
    pub ctx: Option<String>,

    /// Read secrets (JSON object or NAME=value lines) from this file descriptor (3 or more), then close it
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(3..))]
    pub secrets_fd: Option<RawFd>,

    /// Write JSON status lines ({"child-pid":N}, then {"exit-code":N,"reason":R,...}; R is exited, signaled, timeout, oom, pids_limit or refused) to this file descriptor (open for writing; a record a terminal or device cannot take within 0.5 s is dropped, never waited for)
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(1..))]
    pub status_fd: Option<RawFd>,

    /// Set a variable for this call (repeatable); only names the context lists in env.caller,
    /// never an injection variable (LD_*, NODE_OPTIONS...) or a name it takes as a secret
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,

    /// Run the command in this directory instead of the current one; it must exist inside the
    /// context (e.g. under /workspace), else the call is refused (125)
    #[arg(long, value_name = "DIR", conflicts_with = "in_workdir")]
    pub cwd: Option<PathBuf>,

    /// Start in the context's working directory (policy key `workdir`, default: its first
    /// existing writable area, else /), whatever the caller's is (what programs calling
    /// sbx-exec should pass unless they mean their own directory)
    #[arg(long)]
    pub in_workdir: bool,

    /// Stop the command after this many seconds (exit 124); at most the context's own timeout
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=crate::model::MAX_TIMEOUT_SECS))]
    pub timeout: Option<u64>,

    /// Keep this inherited file descriptor open in the command (repeatable); the kept fds are
    /// renumbered 3, 4, ... in order. When the caller's LISTEN_FDS/LISTEN_PID describe them, they
    /// are passed on as listening sockets with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID rewritten
    #[arg(long = "keep-fd", value_name = "FD", value_parser = clap::value_parser!(i32).range(3..))]
    pub keep_fd: Vec<RawFd>,

    /// Pass on the caller's socket-activation fds named NAME in LISTEN_FDNAMES (repeatable;
    /// placed before the --keep-fd ones); each must be a listening socket, and one on a reserved
    /// port only reaches a context whose `listen` names that port
    #[arg(long = "listen-fd", value_name = "NAME")]
    pub listen_fd: Vec<String>,

    /// The command and its arguments (after `--`, or from the first word that is not an option)
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true)]
    pub cmd: Vec<OsString>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read, write, list or remove a file inside a context, as its identity, in its mount view
    /// (so a link its code planted never redirects a write outside what it may write); exit 0
    /// done, 1 not there (exists), 2 usage, 3 failed (one JSON line on stderr), 125 refused
    File(FileArgs),
    /// Check a policy file, or show the effective policy
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Report what this host can isolate and whether each context can run fully, degraded or not
    /// at all; exit 0 when every context can run as written, 1 otherwise
    Probe {
        /// One JSON object instead of the table
        #[arg(long)]
        json: bool,
    },
    /// List, stop or change the egress rules of persistent contexts (policy key persist = true);
    /// needs root
    #[command(subcommand)]
    Ctx(CtxCommand),
    /// Keep prepared sandboxes of the contexts with pool = N, which calls claim instead of
    /// building their own (control mode starts this itself); needs root
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Inside a sandbox: ask the control plane to perform platform operation NAME (policy key
    /// ops) through the egress proxy (HTTP_PROXY) and print its answer; exit 0 ok, 1 the
    /// operation failed ("ok": false), 125 refused or unreachable
    Op {
        /// The operation, as the context's ops list it
        name: String,
        /// Its params as JSON ("-": read from stdin; absent: {})
        params: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CtxCommand {
    /// List persistent contexts: name, keeper pid, net helper pid, processes besides the keeper, age in seconds,
    /// and whether the keeper is running (a keeper whose /run/sbx record was removed or damaged is
    /// listed too, found in /proc)
    List {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Stop a persistent context: SIGTERM to all its processes, SIGKILL after the timeout; exit 0
    /// when nothing of it runs any more, 1 if it was not running (a keeper whose /run/sbx record
    /// was removed or damaged is found in /proc and stopped with its net helper and cgroups)
    Stop {
        /// The persistent context to stop
        name: String,
        /// Seconds between SIGTERM and SIGKILL
        #[arg(long, value_name = "S", default_value_t = 10)]
        timeout: u64,
    },
    /// Show or change the egress rules of a running persistent context (net = "private" with
    /// net.allow); needs root
    ///
    /// Prints the live rules, one a line on stdout (after the change, if one was asked for).
    /// Changes apply in the order --reset, --deny, --allow. A change restarts the context's
    /// egress gate with the new rules: every connection open through it ends (a denied host's
    /// open tunnel with them) and the next ones get the new rules; it is written to the audit
    /// log (event net-change) and kept if the net helper is replaced. A rule on a port the
    /// context did not capture when it started is reached through the proxy variables only (a
    /// warning says so). Exit 0 when done, 1 if the context is not running, 125 if refused
    /// (nothing changed)
    Net {
        /// The running persistent context
        name: String,
        /// Add a rule, written as in net.allow (pypi.org, *.github.com:443, 203.0.113.0/24,
        /// db.example.com:5432); repeatable
        #[arg(long, value_name = "RULE")]
        allow: Vec<String>,
        /// Remove a rule that is live, as it is listed (--show); repeatable
        #[arg(long, value_name = "RULE")]
        deny: Vec<String>,
        /// Go back to the policy's net.allow rules
        #[arg(long)]
        reset: bool,
        /// Print the live rules (what it does with no other option)
        #[arg(long)]
        show: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Prepare and hand out the sandboxes until SIGTERM, SIGINT or SIGHUP: for each context
    /// with pool = N, N sandboxes wait ready (namespaces, mounts, network, cgroup), each for
    /// one call of that context, and are made again as calls take them. A call claims one over
    /// /run/sbx/pool-NAME-KEY.sock (root only) when it runs in root mode with the plan the
    /// sandbox was made from; otherwise, or when none is ready, it builds its own as always.
    /// SIGTERM prints how many calls it served. Exit 0 when stopped (or when no context can have
    /// a pool here), 125 if it cannot start
    Serve,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; exit 0 if it is valid (warnings about weak contexts go to
    /// stderr, with their line), 125 with the file, line and column if not
    Check {
        /// The policy file (default: the one named by --policy)
        file: Option<PathBuf>,
    },
    /// Print the effective policy (or one context of it, `extends` resolved) and where it came from
    Show {
        /// Show only this context
        #[arg(long, value_name = "NAME")]
        ctx: Option<String>,
    },
}

/// What `sbx-exec file --help` ends with, and the EXAMPLES of its man page.
const FILE_EXAMPLES: &str = "\
Examples:
  echo hello | sbx-exec file --ctx user write /workspace/notes.txt
  sbx-exec file --ctx user write --append /workspace/notes.txt < more.txt
  sbx-exec file --ctx user read /workspace/notes.txt > copy.txt
  sbx-exec file --ctx user stat /workspace/notes.txt
      {\"type\":\"file\",\"size\":6,\"mode\":420,\"mtime\":1733480000,\"mtime_nsec\":0,\"uid\":0,\"gid\":0}
  sbx-exec file --ctx user ls /workspace
      [{\"name\":\"notes.txt\",\"type\":\"file\",\"size\":6}]
  sbx-exec file --ctx user exists /workspace/notes.txt
  sbx-exec file --ctx user mkdir -p /workspace/src/lib
  sbx-exec file --ctx user rm -r /workspace/build

The operation runs as a command of the context would (its namespaces, mounts, identity, dropped
capabilities, no_new_privs, Landlock, seccomp, limits), by sbx-exec itself: no program is chosen,
none needs to be visible inside, and exec.allow need not list it. It reads and writes exactly what
code in the context can; a file it creates belongs to the context's identity (host uid 100000 for
the default user), so that code can change it afterwards. Paths are resolved inside: absolute ones
from the context's root, relative ones from its workdir. In a one-shot context a private tmpfs
(/tmp) is gone when the operation ends; write to a work area, or use a persistent context.

Links: write, rm and mkdir never follow a symbolic link in the last component (write fails with
error symlink; rm removes the link itself; rm -r never descends through a link or into another
file system); links in earlier components are followed inside the context, magic /proc links
never. read and ls follow a link as cat and ls do; stat and exists look at the link itself. read
and write refuse a FIFO, socket or device (error not_regular) without blocking on it. Contents
stream through a 128 KiB buffer, never held whole.

Exit status: 0 done; 1 exists: the path does not exist; 2 usage (a --mode with setuid, setgid or
sticky bits; a path that is empty or ends in . or ..); 3 the operation failed; 124 timeout;
125 sbx-exec refused (an unknown context, a caller the context does not admit, isolation the
kernel would not give). On 2, 3 and 125 the last line on stderr is one JSON object:
  {\"error\":KIND,\"op\":OP,\"path\":PATH,\"errno\":\"ENOENT\",\"message\":TEXT}
KIND: not_found, permission_denied, is_a_directory, not_a_directory, exists, not_empty, symlink,
not_regular, too_large (no space, a quota or a file size limit), refused (the context's walls: a
read-only mount; and every 125), usage, io. --status-fd gets the records a command's call gets.";

/// `sbx-exec file`: one file operation inside a context ([`crate::run::file`]).
#[derive(Debug, Args)]
#[command(after_help = FILE_EXAMPLES)]
pub struct FileArgs {
    /// The context whose files these are (e.g. user, platform); before or after the operation
    #[arg(long, value_name = "NAME", global = true)]
    pub ctx: Option<String>,

    /// Write JSON status lines to this file descriptor, as for a command ({"child-pid":N}, then
    /// {"exit-code":N,"reason":R,...})
    #[arg(long, value_name = "FD", value_parser = clap::value_parser!(i32).range(1..), global = true)]
    pub status_fd: Option<RawFd>,

    /// Stop the operation after this many seconds (exit 124); at most the context's own timeout
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=crate::model::MAX_TIMEOUT_SECS), global = true)]
    pub timeout: Option<u64>,

    #[command(subcommand)]
    pub op: FileOp,
}

/// One file operation; each names one path, as the context sees it.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum FileOp {
    /// Copy the file's contents to stdout (a link is followed inside the context)
    Read {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Copy stdin into the file: created, or truncated if it exists; never through a symbolic
    /// link in the last component
    Write {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Add to the end of the file instead of truncating it
        #[arg(long)]
        append: bool,
        /// Permission bits of a new file, in octal, under the umask (default 0644); an existing
        /// file keeps its own. Setuid, setgid and sticky bits are refused
        #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
        mode: Option<u32>,
    },
    /// Print one JSON object: type, size, mode (permission bits), mtime, mtime_nsec, uid and gid
    /// as seen inside; of a link itself, not what it names
    Stat {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Print the directory's entries as a JSON array of {name, type, size}, sorted by name
    Ls {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Exit 0 if the path exists inside the context (a link counts, even one that leads
    /// nowhere), 1 if not
    Exists {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Remove a file, a link (never what it names) or an empty directory
    Rm {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Remove a directory and everything in it; links inside are removed, never followed,
        /// and no other file system mounted below is entered
        #[arg(short, long)]
        recursive: bool,
    },
    /// Make a directory (mode 0755 under the umask)
    Mkdir {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Make missing parents too, and succeed if the directory exists
        #[arg(short, long)]
        parents: bool,
    },
}

/// `--mode`: octal permission bits (`644`, `0600`); setuid, setgid and sticky bits are refused.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return Err(format!("{s:?} is not an octal mode such as 0644"));
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    if mode & !0o777 != 0 {
        return Err(format!(
            "{s}: setuid, setgid and sticky bits are refused; give permission bits only (0 to 0777)"
        ));
    }
    Ok(mode)
}

/// The subcommands' names (and clap's `help`).
const SUBCOMMANDS: &[&str] = &["policy", "probe", "ctx", "file", "pool", "help"];

/// Git-style global options: `--policy FILE` given before a subcommand (`sbx-exec --policy P ctx
/// stop NAME`) is moved after the subcommand's name, where clap's global option takes it. A
/// launch (`sbx-exec --policy P --ctx NAME -- CMD`) is left as it is.
pub fn globals_after_subcommand(args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while let Some(a) = args.get(i) {
        match a.to_str() {
            Some("--policy") => i += 2,
            Some(s) if s.starts_with("--policy=") => i += 1,
            _ => break,
        }
    }
    let is_sub = args
        .get(i)
        .and_then(|a| a.to_str())
        .is_some_and(|s| SUBCOMMANDS.contains(&s));
    if i == 1 || !is_sub || i > args.len() {
        return args;
    }
    let mut out = Vec::with_capacity(args.len());
    out.push(args[0].clone());
    out.push(args[i].clone());
    out.extend_from_slice(&args[1..i]);
    out.extend_from_slice(&args[i + 1..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn policy_before_a_subcommand_moves_after_it() {
        assert_eq!(
            globals_after_subcommand(os(&["sbx-exec", "--policy", "p.toml", "ctx", "stop", "u"])),
            os(&["sbx-exec", "ctx", "--policy", "p.toml", "stop", "u"])
        );
        assert_eq!(
            globals_after_subcommand(os(&["sbx-exec", "--policy=p.toml", "probe", "--json"])),
            os(&["sbx-exec", "probe", "--policy=p.toml", "--json"])
        );
        for unchanged in [
            &[
                "sbx-exec", "--policy", "p.toml", "--ctx", "user", "--", "ctx",
            ][..],
            &["sbx-exec", "ctx", "list"],
            &["sbx-exec", "--policy"],
            &["sbx-exec", "--policy", "ctx"],
        ] {
            assert_eq!(globals_after_subcommand(os(unchanged)), os(unchanged));
        }
        // Parsed: the subcommand sees the policy.
        let cli = Cli::try_parse_from(globals_after_subcommand(os(&[
            "sbx-exec", "--policy", "p.toml", "ctx", "stop", "u",
        ])))
        .unwrap();
        assert_eq!(cli.policy.as_deref(), Some(std::path::Path::new("p.toml")));
        assert!(matches!(
            cli.command,
            Some(Command::Ctx(CtxCommand::Stop { .. }))
        ));
    }
}
