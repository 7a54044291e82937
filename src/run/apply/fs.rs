//! Mount primitives on paths opened without following symlinks: the handle is checked, then
//! mounted through `/proc/self/fd/N`. Shared by [`super::mounts`], [`super::procfs`] and
//! [`super::secret_files`].

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, SFlag};

use crate::sys::{self, MountFlag};

pub fn show(p: &CStr) -> String {
    p.to_string_lossy().into_owned()
}

/// Open a path without following symlinks; `None` when it does not exist.
pub fn open(p: &CStr) -> Result<Option<OwnedFd>> {
    match sys::open_path_nofollow(p) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => bail!(
            "{} is or goes through a symbolic link; sbx-exec mounts only real paths (give the link's target instead, in the context's [fs] paths or to --policy)",
            show(p)
        ),
        Err(e) => Err(anyhow!(e)).with_context(|| format!("cannot open {}", show(p))),
    }
}

/// Make `p` (if it exists) and everything below it read-only, as its own bind mount.
pub fn read_only(p: &CStr) -> Result<()> {
    let Some(fd) = open(p)? else { return Ok(()) };
    if p.to_bytes() == b"/" {
        // The root mount itself: a bind on top of "/" would not be seen through the process root.
        return sys::mount_setattr(&fd, MountFlag::ReadOnly).map_err(Into::into);
    }
    set_flag_on_bind(p, fd, MountFlag::ReadOnly)
}

/// Bind `p` onto itself (so the change affects only this subtree) and set `flag` recursively.
pub fn set_flag_on_bind(p: &CStr, fd: OwnedFd, flag: MountFlag) -> Result<()> {
    let at = sys::fd_path(&fd);
    mount(
        Some(at.as_c_str()),
        at.as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("bind mount")?;
    drop(fd);
    // Reopen: the handle must name the new bind mount, not the one underneath it.
    let fd = open(p)?.ok_or_else(|| anyhow!("{} vanished during setup", show(p)))?;
    sys::mount_setattr(&fd, flag).context("mount_setattr")
}

pub fn tmpfs(fd: &OwnedFd, mode: u32, extra: MsFlags) -> io::Result<()> {
    let at = sys::fd_path(fd);
    let data = CString::new(format!("mode={mode:o},size=50%")).expect("no NUL");
    mount(
        Some(c"tmpfs"),
        at.as_c_str(),
        Some(c"tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | extra,
        Some(data.as_c_str()),
    )
    .map_err(io::Error::from)
}

/// Bind what `src` names onto `at` (both handles: no path is resolved again).
pub fn bind(src: &OwnedFd, at: &OwnedFd) -> Result<()> {
    mount(
        Some(sys::fd_path(src).as_c_str()),
        sys::fd_path(at).as_c_str(),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("bind mount")
}

/// Cover a directory with an empty read-only tmpfs, or a file with `/dev/null`.
pub fn hide(fd: &OwnedFd) -> Result<()> {
    let st = fstat(fd.as_raw_fd())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        tmpfs(fd, 0o755, MsFlags::MS_RDONLY | MsFlags::MS_NOEXEC)?;
        return Ok(());
    }
    bind(&dev_null()?, fd).context("bind /dev/null")
}

/// `/dev/null`, checked to really be the null device (not a file or link planted in its place).
fn dev_null() -> Result<OwnedFd> {
    let fd = open(c"/dev/null")?.context("/dev/null does not exist")?;
    let st = fstat(fd.as_raw_fd())?;
    let is_chr = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_chr || st.st_rdev != libc::makedev(1, 3) {
        bail!(
            "/dev/null is not the null device (mode {:o}); refusing to use it as a mask",
            st.st_mode
        );
    }
    Ok(fd)
}

/// Whether `mount_it` succeeds here (for `probe`): tried in a throwaway child with a new mount
/// namespace, the namespaces in `extra` and, rootless, a user namespace mapped by `userns`, after
/// making propagation private. Nothing outside the child changes.
pub fn can_mount(
    extra: libc::c_int,
    userns: Option<&crate::privilege::userns::IdMap>,
    mount_it: impl FnOnce() -> Result<()>,
) -> bool {
    use nix::sys::wait::{waitpid, WaitStatus};
    let user = if userns.is_some() {
        libc::CLONE_NEWUSER
    } else {
        0
    };
    match sys::clone_fork(libc::CLONE_NEWNS | extra | user) {
        Ok(None) => {
            if let Some(map) = userns {
                if crate::privilege::userns::write_id_maps(map).is_err() {
                    sys::exit_now(1);
                }
            }
            let private = mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            );
            let ok = private.is_ok() && mount_it().is_ok();
            sys::exit_now(if ok { 0 } else { 1 })
        }
        Ok(Some(pid)) => matches!(waitpid(pid, None), Ok(WaitStatus::Exited(_, 0))),
        Err(_) => false,
    }
}
