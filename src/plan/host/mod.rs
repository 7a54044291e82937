//! Host facts: the one module of `model` and `plan` that reads the system (files, /proc, the
//! kernel's answers). Everything else there is pure: a launch gathers these facts first
//! ([`crate::plan::launch::Facts`]) and plans from them ([`crate::plan::launch::plan`]); `probe`
//! asks the same functions.
//!
//! - [`exec`]: the command resolved in PATH, checked against `[exec]` and opened once (the checked
//!   program handle);
//! - [`cgroup`]: the cgroup hierarchy and this process's own cgroups;
//! - [`idmap`]: whether an identity's host ids exist in the user namespace sbx-exec runs in;
//! - [`local_addrs`]: the container's own addresses (the egress gate asks at each connection);
//! - [`landlock_abi`], [`current_dir`], [`current_exe`].

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};

pub mod cgroup;
pub mod exec;
pub mod idmap;

/// The Landlock ABI of the running kernel (0: none).
pub fn landlock_abi() -> i32 {
    // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    crate::sys::landlock_abi()
}

/// The current directory (the caller's, where a command starts unless told otherwise).
pub fn current_dir() -> Result<PathBuf> {
    std::env::current_dir().context("cannot read the current directory")
}

/// The sbx-exec binary (kept read-only inside every sandbox), if the kernel says where it is.
pub fn current_exe() -> Option<PathBuf> {
    std::env::current_exe().ok()
}

/// The addresses of this network namespace's interfaces (the container's own addresses, when
/// called by the outer sbx-exec), to refuse as destinations.
pub fn local_addrs() -> nix::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    #[test]
    fn local_addrs_include_loopback() {
        let addrs = super::local_addrs().unwrap();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
    }

    /// What reads or changes the system: files, the process's ids and directory, interfaces,
    /// randomness, raw system calls.
    const IO: &[&str] = &[
        "std::fs::",
        "File::open",
        "OpenOptions",
        "std::env::current_",
        "std::env::var",
        "std::process::id",
        "nix::unistd::",
        "nix::ifaddrs",
        "nix::sys::",
        "getrandom::",
        "crate::sys::",
    ];

    /// Names from `sys` that are plain types, not calls.
    const TYPES: &[&str] = &[
        "crate::sys::CapSets",
        "crate::sys::FdFacts",
        "nix::sys::signal::SigSet",
    ];

    /// `text` without its `#[cfg(test)]` items (an attribute and the item after it, braces
    /// matched).
    fn without_tests(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("#[cfg(test)]") {
            out.push_str(&rest[..at]);
            let after = &rest[at..];
            let Some(open) = after.find(['{', ';']) else {
                return out;
            };
            if after.as_bytes()[open] == b';' {
                rest = &after[open + 1..];
                continue;
            }
            let mut depth = 0;
            let mut end = after.len();
            for (i, c) in after[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &after[end..];
        }
        out.push_str(rest);
        out
    }

    /// The lines of `text` (tests and comments left out) that do I/O.
    fn io_lines(text: &str) -> Vec<String> {
        without_tests(text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .filter(|l| {
                let l = TYPES.iter().fold(l.to_string(), |l, t| l.replace(t, ""));
                IO.iter().any(|io| l.contains(io))
            })
            .map(|l| l.trim().to_string())
            .collect()
    }

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// `model` and `plan` do no I/O but here (host facts). The one exception: model/load.rs
    /// reads the policy file, the input of everything (privilege, below plan, loads it).
    #[test]
    fn model_and_plan_read_the_system_only_here() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src.join("model"), &mut files);
        sources(&src.join("plan"), &mut files);
        let host = src.join("plan/host");
        let mut found = Vec::new();
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy();
            let test_file = name.ends_with("_tests.rs") || name == "tests.rs";
            if f.starts_with(&host) || f.ends_with("model/load.rs") || test_file {
                continue;
            }
            for l in io_lines(&std::fs::read_to_string(&f).unwrap()) {
                found.push(format!("{}: {l}", f.strip_prefix(&src).unwrap().display()));
            }
        }
        assert!(
            found.is_empty(),
            "I/O outside plan/host:\n{}",
            found.join("\n")
        );
        // The control: the checker sees a call, and skips test items and comments.
        let planted = "fn f() {\n    let _ = std::fs::read(\"/etc/passwd\");\n}\n";
        assert_eq!(io_lines(planted).len(), 1);
        let in_test =
            "#[cfg(test)]\nmod tests {\n    fn g() { std::process::id(); }\n}\nfn h() {}\n";
        assert!(io_lines(in_test).is_empty());
        assert_eq!(
            io_lines("// std::fs::read\nuse crate::sys::CapSets;\n").len(),
            0
        );
    }
}
