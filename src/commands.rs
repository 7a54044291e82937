//! The entry point behind `main`: setuid stage 1, parse the command line, dispatch to a launch or a
//! subcommand; errors end here, printed once and mapped to an exit status.

use crate::{cli, error, model, privilege, probe, run};
use clap::Parser;

mod op;

/// Run sbx-exec with this process's arguments; never returns.
pub fn main() -> ! {
    // The egress gate and its dialer are this binary too, started by a launcher without
    // privileges (they refuse to run otherwise): [`run::gate`].
    match run::gate::role() {
        Some(run::gate::GATE) => run::gate::serve::main(),
        Some(run::gate::DIAL) => run::gate::dial::main(),
        _ => {}
    }
    // So is the file tool, started by a launcher as a context's target: [`run::file`].
    if run::file::tool::is_tool() {
        run::file::tool::main()
    }
    // Before any deep call: a caller's tiny RLIMIT_STACK must not turn into a SIGSEGV.
    privilege::raise_stack_limit();
    // Setuid root: reset what the caller controls before anything else (privilege.rs, stage 1).
    if privilege::is_setuid() {
        if let Err(e) = privilege::enter_setuid_mode() {
            eprintln!("sbx-exec: {e:#}");
            std::process::exit(error::EXIT_SBX);
        }
    } else if let Err(e) = privilege::check_process_ids() {
        eprintln!("sbx-exec: {e:#}");
        std::process::exit(error::EXIT_SBX);
    }
    let args = cli::globals_after_subcommand(std::env::args_os().collect());
    let file_op = args.get(1).is_some_and(|a| a == "file");
    let cli = match <cli::Cli as Parser>::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if file_op && e.use_stderr() => std::process::exit(file_usage(&e)),
        Err(e) => {
            let code = if e.use_stderr() { error::EXIT_SBX } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if privilege::is_setuid() {
        close_unnamed_caller_fds(&cli);
    }
    match dispatch(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sbx-exec: {e:#}");
            std::process::exit(error::exit_code_of(&e));
        }
    }
}

/// Setuid mode: close every fd the caller passed but did not name (the secrets and status fds, a
/// file operation's status fd and the kept fds are named); exits with EXIT_SBX if that fails.
fn close_unnamed_caller_fds(cli: &cli::Cli) {
    // The kept fds too (a bad --keep-fd/--listen-fd is reported by the launch itself).
    let kept = run::inherited::passed_fds(&cli.run).map_or(cli.run.keep_fd.clone(), |p| p.fds);
    let named: Vec<i32> = cli
        .run
        .secrets_fd
        .into_iter()
        .chain(cli.run.status_fd)
        .chain(match &cli.command {
            Some(cli::Command::File(f)) => f.status_fd,
            _ => None,
        })
        .chain(kept)
        .collect();
    if let Err(e) = privilege::close_caller_fds(&named) {
        eprintln!("sbx-exec: {e:#}");
        std::process::exit(error::EXIT_SBX);
    }
}

/// Run what the command line asks for: a subcommand, else a launch; its exit code.
fn dispatch(mut cli: cli::Cli) -> anyhow::Result<i32> {
    // `--policy` is global: given before or after a subcommand, it is the same option.
    let policy = cli.policy.take();
    match cli.command {
        Some(cli::Command::File(args)) => std::process::exit(run::file::run(args, policy)),
        Some(cli::Command::Policy(cmd)) => policy_command(cmd, policy),
        Some(cli::Command::Probe { json }) => probe::run(json, policy.as_deref()),
        Some(cli::Command::Op { name, params }) => {
            // Set-uid or not, the client runs as its caller: it needs no privilege.
            if let Some(caller) = privilege::mode().caller() {
                privilege::drop::drop_privs(caller)?;
            }
            op::run(&name, params.as_deref())
        }
        Some(cli::Command::Pool(cli::PoolCommand::Serve)) => {
            run::pool::serve::run(policy.as_deref())
        }
        Some(cli::Command::Ctx(cmd)) => match cmd {
            cli::CtxCommand::List { json } => run::persist::list(json, policy.as_deref()),
            cli::CtxCommand::Stop { name, timeout } => {
                run::persist::stop(&name, timeout, policy.as_deref())
            }
            cli::CtxCommand::Net {
                name,
                allow,
                deny,
                reset,
                show: _,
            } => {
                let change = crate::plan::live_rules::Change { reset, deny, allow };
                run::persist::net(&name, &change, policy.as_deref())
            }
        },
        None => {
            cli.run.policy = policy;
            run::launch::run(cli.run)
        }
    }
}

/// A usage error of `sbx-exec file`: clap's message, then its JSON line (kind usage); exit 2.
fn file_usage(e: &clap::Error) -> i32 {
    let _ = e.print();
    let first = e.to_string();
    let message = first.lines().next().unwrap_or_default();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    let f = run::file::error::Failure::new(run::file::error::Kind::Usage, message);
    eprintln!(
        "{}",
        run::file::error::json_line("?", std::ffi::OsStr::new(""), &f)
    );
    run::file::EXIT_USAGE
}

fn policy_command(
    cmd: cli::PolicyCommand,
    policy: Option<std::path::PathBuf>,
) -> anyhow::Result<i32> {
    match cmd {
        cli::PolicyCommand::Check { file } => {
            let file = match (file, policy) {
                (Some(f), Some(p)) if f != p => anyhow::bail!(
                    "policy check takes one file: {} (argument) or {} (--policy); give one",
                    f.display(),
                    p.display()
                ),
                (Some(f), _) | (None, Some(f)) => f,
                (None, None) => anyhow::bail!(
                    "policy check needs a file: sbx-exec policy check FILE (or --policy FILE)"
                ),
            };
            // In setuid mode the caller's file is read with the caller's access, never root's.
            let (p, text) = privilege::as_caller(privilege::mode(), || model::check_file(&file))?;
            let names: Vec<&str> = p.context.keys().map(|k| k.0.as_str()).collect();
            println!("{}: valid; contexts: {}", file.display(), names.join(", "));
            for w in model::trust_warnings(&p) {
                eprintln!("sbx-exec: warning: {}: {w}", file.display());
            }
            for w in model::weak_warnings(&p, &text) {
                eprintln!("sbx-exec: warning: {}: {w}", file.display());
            }
            Ok(0)
        }
        cli::PolicyCommand::Show { ctx } => {
            let file = policy;
            // In setuid mode the policy is read with the caller's access: a file root keeps
            // unreadable (mode 0600) is not shown to someone who could not read it.
            let mode = privilege::mode();
            let loaded =
                privilege::as_caller(mode, || privilege::load_policy(mode, file.as_deref()))?;
            println!("# source: {}", loaded.source);
            match ctx {
                None => print!("{}", loaded.text),
                Some(name) => {
                    let c = loaded.policy.context(&name)?;
                    let mut one = toml::map::Map::new();
                    one.insert(name.clone(), toml::Value::try_from(c)?);
                    let mut top = toml::map::Map::new();
                    top.insert("context".into(), toml::Value::Table(one));
                    print!("{}", toml::to_string_pretty(&toml::Value::Table(top))?);
                }
            }
            Ok(0)
        }
    }
}
