//! Secrets as files (`secrets.files`), in the sandbox's pid 1: a private tmpfs on
//! `/run/credentials`, one 0400 file per secret owned by the target's uid, then read-only. Every
//! path is opened without following symlinks. The plan is [`crate::plan::secret_files::Files`].

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{bail, Context as _, Result};
use nix::fcntl::OFlag;
use nix::sys::stat::{fchmod, fstat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, Gid, Uid};

use super::fs;
use crate::plan::secret_files::{CaBundle, Files, CA_BUNDLE};
use crate::sys::{self, MountFlag};

/// Where the private tmpfs is mounted (created, empty, if missing).
const MOUNT_AT: &CStr = c"/run/credentials";
const PARENT: &CStr = c"/run";
const LEAF: &CStr = c"credentials";

/// In pid 1, before the policy's mounts (which may make `/run` read-only): make sure the mount
/// point `/run/credentials` exists as a real directory. Creating it is the only trace outside.
pub fn prepare_mount_point() -> Result<()> {
    let run = fs::open(PARENT)?
        .context("/run does not exist; secrets.files needs it for /run/credentials")?;
    match mkdirat(Some(run.as_raw_fd()), LEAF, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
        Err(e) => bail!("cannot create /run/credentials for secrets.files: {e}"),
    }
    let at = fs::open(MOUNT_AT)?.context("/run/credentials vanished")?;
    if !is_dir(&at)? {
        bail!("/run/credentials is not a directory; remove it so secrets.files can mount its private tmpfs there");
    }
    Ok(())
}

/// In pid 1, after the policy's mounts: mount the private tmpfs, write the files, then make the
/// tmpfs read-only.
pub fn install(files: &Files) -> Result<()> {
    // A private tmpfs on /run (`fs.tmpfs`) covered the mount point made before the mounts: make it
    // again there (pid 1's own tmpfs; a read-only hide on /run refuses).
    if fs::open(MOUNT_AT)?.is_none() {
        prepare_mount_point()?;
    }
    let at = fs::open(MOUNT_AT)?.context(
        "/run/credentials is covered by the context's [fs] settings (a hide on /run); \
         secrets.files mounts its private tmpfs there, so leave /run/credentials visible",
    )?;
    fs::tmpfs(&at, 0o755, nix::mount::MsFlags::MS_NOEXEC)
        .context("cannot mount the private tmpfs on /run/credentials (secrets.files)")?;
    drop(at);
    // Reopen: the handle must name the new tmpfs, not the directory under it.
    let root = fs::open(MOUNT_AT)?.context("/run/credentials vanished")?;
    mkdirat(
        Some(root.as_raw_fd()),
        c"sbx",
        Mode::from_bits_truncate(0o700),
    )
    .context("cannot create /run/credentials/sbx")?;
    let dir = openat(&root, c"sbx", OFlag::O_DIRECTORY | OFlag::O_RDONLY, 0)?;
    for (name, value) in &files.entries {
        let mut f = std::fs::File::from(create(&dir, name, files)?);
        f.write_all(value)
            .with_context(|| format!("cannot write the credential file for {name}"))?;
    }
    if let Some(ca) = &files.ca {
        let fd = create(&dir, CA_BUNDLE, files)?;
        write_bundle(fd, ca).context("cannot write the CA bundle of the bound secrets")?;
    }
    fchown(
        dir.as_raw_fd(),
        Some(Uid::from_raw(files.uid)),
        Some(Gid::from_raw(files.gid)),
    )?;
    fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(0o500))?;
    drop(dir);
    sys::mount_setattr(&root, MountFlag::ReadOnly)
        .context("cannot make /run/credentials read-only")?;
    Ok(())
}

/// A new file `name` in `dir`: 0400, owned by the files' owner.
fn create(dir: &OwnedFd, name: &str, files: &Files) -> Result<OwnedFd> {
    let cname = std::ffi::CString::new(name).context("a file name with a NUL byte")?;
    let fd = openat(
        dir,
        &cname,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        0o400,
    )
    .with_context(|| format!("cannot create the credential file for {name}"))?;
    fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o400))?;
    fchown(
        fd.as_raw_fd(),
        Some(Uid::from_raw(files.uid)),
        Some(Gid::from_raw(files.gid)),
    )?;
    Ok(fd)
}

/// The CA bundle: the system's, copied by the kernel from its open file (read at explicit
/// offsets, so the handle shared by a pool's sandboxes keeps no position), a line break if it
/// lacks one, then the call's CA certificate.
fn write_bundle(fd: OwnedFd, ca: &CaBundle) -> Result<()> {
    let system = ca.system.as_fd();
    let size = fstat(system.as_raw_fd())?.st_size;
    let mut offset: i64 = 0;
    while offset < size {
        let left = (size - offset) as usize;
        match sys::sendfile_at(fd.as_fd(), system, &mut offset, left) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let system = std::fs::File::from(system.try_clone_to_owned()?);
    let mut last = [0u8; 1];
    let newline = offset == 0
        || (std::os::unix::fs::FileExt::read_at(&system, &mut last, (offset - 1) as u64)? == 1
            && last[0] == b'\n');
    let mut f = std::fs::File::from(fd);
    if !newline {
        f.write_all(b"\n")?;
    }
    f.write_all(&ca.ca_pem)?;
    Ok(())
}

fn is_dir(fd: &OwnedFd) -> Result<bool> {
    let st = fstat(fd.as_raw_fd())?;
    Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC, mode)`, owned.
fn openat(dir: &OwnedFd, name: &CStr, flags: OFlag, mode: u32) -> Result<OwnedFd> {
    sys::openat_nofollow(dir, name, flags, mode)
        .with_context(|| format!("cannot open {}", name.to_string_lossy()))
}
