//! Build script: stamps the version with the git revision it was built from.
//!
//! Sets `SBX_VERSION` for `sbx-exec --version`: `0.1.0 (git abc1234)`, with `-dirty` when tracked
//! files differ from HEAD, or just the crate version when there is no git or no repository (a
//! source tarball). `SBX_GIT_REV=abc1234` in the build environment overrides the lookup (for builds
//! from an exported tree, e.g. a Docker context without `.git`). It reruns only when HEAD, the
//! branch it points to, the index, or the sources change, not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    println!("cargo:rerun-if-env-changed=SBX_GIT_REV");
    let rev = match std::env::var("SBX_GIT_REV") {
        Ok(rev) if !rev.trim().is_empty() => Some(rev.trim().to_string()),
        _ => git_rev(),
    };
    match rev {
        Some(rev) => println!("cargo:rustc-env=SBX_VERSION={version} (git {rev})"),
        None => println!("cargo:rustc-env=SBX_VERSION={version}"),
    }
}

/// `abc1234` or `abc1234-dirty`, and the rerun-if-changed lines for what would change it.
fn git_rev() -> Option<String> {
    if !Path::new(".git").exists() {
        return None;
    }
    let git_dir = PathBuf::from(git(&["rev-parse", "--git-dir"])?);
    let common_dir = PathBuf::from(git(&["rev-parse", "--git-common-dir"])?);
    // HEAD moves on checkout; the branch ref on commit (loose ref, or packed after `git gc`); the
    // index on `git add`; the sources when they are edited (dirty or not).
    println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
    println!("cargo:rerun-if-changed={}", git_dir.join("index").display());
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        println!(
            "cargo:rerun-if-changed={}",
            common_dir.join(branch).display()
        );
    }
    // A path that does not exist makes cargo rerun the script (and rebuild) every time: name
    // packed-refs only once `git gc` has written it.
    let packed = common_dir.join("packed-refs");
    if packed.exists() {
        println!("cargo:rerun-if-changed={}", packed.display());
    }
    for tracked in ["src", "policies", "Cargo.toml", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={tracked}");
    }
    let short = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = Command::new("git")
        .args(["diff-index", "--quiet", "HEAD", "--"])
        .status()
        .map(|s| s.code() == Some(1))
        .unwrap_or(false);
    Some(if dirty {
        format!("{short}-dirty")
    } else {
        short
    })
}

/// Run git, returning its trimmed stdout if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}
