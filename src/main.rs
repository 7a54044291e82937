//! sbx-exec: parse the command line, then either run a command in a context (`launch::run`) or
//! answer a `policy` subcommand. Errors end here: printed once, mapped to an exit status.

mod caps;
mod cgroup;
mod cli;
mod control;
mod env;
mod error;
mod exec;
mod landlock;
mod launch;
mod mounts;
mod namespaces;
mod persist;
mod policy;
mod ports;
mod procfs;
mod reaper;
mod runstate;
mod seccomp;
mod secrets;
mod sys;

use clap::Parser;

/// Version string, with the git revision it was built from when known.
pub const VERSION: &str = match option_env!("SBX_GIT_REV") {
    Some(rev) => rev,
    None => env!("CARGO_PKG_VERSION"),
};

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { error::EXIT_SBX } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        Some(cli::Command::Policy(cmd)) => policy_command(cmd),
        Some(cli::Command::Ctx(cmd)) => match cmd {
            cli::CtxCommand::List { json, policy } => persist::list(json, policy.as_deref()),
            cli::CtxCommand::Stop {
                name,
                timeout,
                policy,
            } => persist::stop(&name, timeout, policy.as_deref()),
        },
        None => launch::run(cli.run),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("sbx-exec: {e:#}");
            std::process::exit(error::exit_code_of(&e));
        }
    }
}

fn policy_command(cmd: cli::PolicyCommand) -> anyhow::Result<i32> {
    match cmd {
        cli::PolicyCommand::Check { file } => {
            let p = policy::check_file(&file)?;
            let names: Vec<&str> = p.context.keys().map(|k| k.0.as_str()).collect();
            println!("{}: valid; contexts: {}", file.display(), names.join(", "));
            Ok(0)
        }
        cli::PolicyCommand::Show { policy: file, ctx } => {
            let loaded = policy::load(file.as_deref())?;
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
