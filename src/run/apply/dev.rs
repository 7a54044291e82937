//! A private /dev for a confined context (G7: no host device node, no host pseudo-terminal), the
//! way bubblewrap's `--dev` makes one, without /dev/console:
//!
//! - a tmpfs on /dev (mode 0755, nosuid, noexec), made read-only (this mount only) once filled,
//!   before anything of the sandbox runs: no node, file or link can be added or replaced there;
//! - null, zero, full, random, urandom and tty: each host node opened without following symlinks
//!   and checked to be the character device it should be, then made anew with its device number,
//!   mode and owner (mknod: no mount per node); where sbx-exec cannot mknod (rootless), the host
//!   node is bound in instead (nosuid, noexec) and the /dev tmpfs is also nodev;
//! - the devices of `fs.devices`, each checked to be a character device (block devices refused),
//!   made the same way;
//! - a new devpts instance on /dev/pts (`newinstance,ptmxmode=0666,mode=0620`): the context's own
//!   ptys, none of the host's; /dev/ptmx → pts/ptmx;
//! - /dev/shm, a tmpfs (mode 1777, nosuid, nodev);
//! - /dev/fd → /proc/self/fd and /dev/std{in,out,err} → /proc/self/fd/{0,1,2}.
//!
//! Every host node is opened before the tmpfs covers /dev; every new node is made relative to the
//! new tmpfs's handle, and every mount goes through `/proc/self/fd/N`.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};
use nix::unistd::symlinkat;

use super::fs::{open, show, tmpfs};
use crate::sys::{self, MountFlag};

/// The host devices every private /dev has: (path, major, minor).
pub const STANDARD: &[(&CStr, u32, u32)] = &[
    (c"/dev/null", 1, 3),
    (c"/dev/zero", 1, 5),
    (c"/dev/full", 1, 7),
    (c"/dev/random", 1, 8),
    (c"/dev/urandom", 1, 9),
    (c"/dev/tty", 5, 0),
];

/// Options of the context's own devpts: a new instance (not the host's ptys), /dev/pts/ptmx usable
/// by anyone, new ptys readable and writable by their owner, writable by the group.
pub const DEVPTS_OPTIONS: &CStr = c"newinstance,ptmxmode=0666,mode=0620";

/// The links of a private /dev: (name, target).
const LINKS: &[(&CStr, &CStr)] = &[
    (c"ptmx", c"pts/ptmx"),
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
];

/// Mount the private /dev on /dev, with the host character devices `extra` added at their paths.
pub fn mount_private(extra: &[CString]) -> Result<()> {
    // The host's nodes, opened (and checked) while they are still reachable.
    let mut nodes = Vec::with_capacity(STANDARD.len() + extra.len());
    for (path, major, minor) in STANDARD {
        let fd = open(path)?.ok_or_else(|| anyhow!("{} does not exist", show(path)))?;
        check_char_device(&fd, path, Some((*major, *minor)))?;
        nodes.push((*path, fd));
    }
    for path in extra {
        let fd = open(path)?.ok_or_else(|| {
            anyhow!(
                "fs.devices: {} does not exist here; remove it from the context's fs.devices or make the device available",
                show(path)
            )
        })?;
        check_char_device(&fd, path, None)?;
        nodes.push((path.as_c_str(), fd));
    }

    let dev = open(c"/dev")?.ok_or_else(|| anyhow!("/dev does not exist"))?;
    // Not nodev: the nodes below are made in it (mknod). It is made read-only before anything of
    // the sandbox runs, so nobody can add a node, whatever capabilities a context has.
    tmpfs_dev(&dev, MsFlags::empty()).context("cannot mount a tmpfs on /dev")?;
    drop(dev);
    // Reopen: the handle must name the new tmpfs, not the host's /dev under it.
    let dev = open(c"/dev")?.ok_or_else(|| anyhow!("/dev vanished during setup"))?;

    // Each node made anew with the host node's device number, mode and owner (one mknod, no
    // mount); where mknod is refused (rootless: no CAP_MKNOD in the host's user namespace; or a
    // device cgroup), the host node is bound instead.
    let mut made_any = false;
    for (path, src) in &nodes {
        let (dir, name) = parent_of(&dev, path)?;
        if make_node(&dir, &name, src).with_context(|| format!("cannot make {}", show(path)))? {
            made_any = true;
        } else {
            bind_node(&dir, &name, src).with_context(|| format!("cannot bind {}", show(path)))?;
        }
    }
    drop(nodes);

    let pts = make_dir(&dev, c"pts")?;
    let shm = make_dir(&dev, c"shm")?;
    for (name, target) in LINKS {
        symlinkat(*target, Some(dev.as_raw_fd()), *name)
            .with_context(|| format!("cannot create /dev/{}", name.to_string_lossy()))?;
    }
    // Read-only from here on (this mount only; pts and shm are mounted on it next): no node,
    // file or link can be added or replaced. Nodev as well when no node was made on it (each
    // bound node is a mount of its own, which this does not change).
    let extra = match made_any {
        false => MsFlags::MS_NODEV,
        true => MsFlags::empty(),
    };
    tmpfs_dev(
        &dev,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra,
    )
    .context("cannot make the private /dev read-only")?;
    mount(
        Some(c"devpts"),
        sys::fd_path(&pts).as_c_str(),
        Some(c"devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(DEVPTS_OPTIONS),
    )
    .context("cannot mount a new devpts instance on /dev/pts (the kernel must allow devpts newinstance); or set fs.dev = \"host\" for this context")?;
    tmpfs(&shm, 0o1777, MsFlags::empty()).context("cannot mount a tmpfs on /dev/shm")?;
    Ok(())
}

/// Mount the /dev tmpfs at `fd` (mode 0755, nosuid, noexec, never suid or exec), or with
/// `MS_REMOUNT | MS_BIND` change its flags to these.
fn tmpfs_dev(fd: &OwnedFd, extra: MsFlags) -> std::io::Result<()> {
    let at = sys::fd_path(fd);
    mount(
        Some(c"tmpfs"),
        at.as_c_str(),
        Some(c"tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | extra,
        Some(c"mode=755,size=64k"),
    )
    .map_err(std::io::Error::from)
}

/// Make the node `name` in `dir` (below the private /dev, [`parent_of`]) with the device number,
/// permission bits and owner of the checked host node `src`. `false` (nothing made) when mknod is
/// refused.
fn make_node(dir: &OwnedFd, name: &CStr, src: &OwnedFd) -> Result<bool> {
    let st = fstat(src.as_raw_fd())?;
    let perm = Mode::from_bits_truncate(st.st_mode & 0o777);
    match nix::sys::stat::mknodat(
        Some(dir.as_raw_fd()),
        name,
        SFlag::S_IFCHR,
        perm,
        st.st_rdev,
    ) {
        Ok(()) => {}
        Err(Errno::EPERM) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    // mknod applied the umask: set the bits exactly, and the host node's owner (tty: group tty).
    nix::sys::stat::fchmodat(
        Some(dir.as_raw_fd()),
        name,
        perm,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )?;
    if (st.st_uid, st.st_gid) != (0, 0) {
        nix::unistd::fchownat(
            Some(dir.as_raw_fd()),
            name,
            Some(st.st_uid.into()),
            Some(st.st_gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(true)
}

/// The directory (made as needed) and last name of `path` below the private /dev.
fn parent_of(dev: &OwnedFd, path: &CStr) -> Result<(OwnedFd, CString)> {
    let rel = Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()))
        .strip_prefix("/dev")
        .map_err(|_| anyhow!("{} is not below /dev", show(path)))?;
    let mut dir = sys::dup_cloexec(dev.as_raw_fd())?;
    let mut parts = rel.iter().peekable();
    while let Some(part) = parts.next() {
        let name = CString::new(part.as_bytes()).expect("no NUL in a path");
        if parts.peek().is_none() {
            return Ok((dir, name));
        }
        dir = make_dir(&dir, &name)?;
    }
    bail!("{} names no node below /dev", show(path))
}

/// Fail unless `fd` is a character device (with this major:minor, when given).
fn check_char_device(fd: &OwnedFd, path: &CStr, want: Option<(u32, u32)>) -> Result<()> {
    let st = fstat(fd.as_raw_fd())?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if kind == SFlag::S_IFBLK {
        bail!(
            "{} is a block device; a private /dev takes only character devices (remove it from fs.devices)",
            show(path)
        );
    }
    if kind != SFlag::S_IFCHR {
        bail!(
            "{} is not a character device (mode {:o}); refusing to put it in the private /dev",
            show(path),
            st.st_mode
        );
    }
    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    if let Some((m, n)) = want {
        if (major, minor) != (m, n) {
            bail!(
                "{} is device {major}:{minor}, not {m}:{n}; refusing to put it in the private /dev",
                show(path)
            );
        }
    }
    Ok(())
}

/// Bind the host node `src` as `name` in `dir` (below the private /dev, [`parent_of`]), then make
/// that bind nosuid and noexec (never nodev: it is a device).
fn bind_node(dir: &OwnedFd, name: &CStr, src: &OwnedFd) -> Result<()> {
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDONLY | OFlag::O_NOFOLLOW;
    let target =
        sys::openat_nofollow(dir, name, flags, 0).context("cannot create the mount point")?;
    super::fs::bind(src, &target)?;
    drop(target);
    // Reopen: the handle must name the new bind mount, not the file under it.
    let bound = sys::openat_nofollow(dir, name, OFlag::O_PATH, 0)
        .context("cannot reopen the bound device")?;
    sys::mount_setattr(&bound, MountFlag::NoSuidNoExec).context("mount_setattr")?;
    Ok(())
}

/// `mkdir` (mode 0755, an existing directory is fine) below `dir`, opened without following links.
fn make_dir(dir: &OwnedFd, name: &CStr) -> Result<OwnedFd> {
    match mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => bail!("cannot create /dev/…/{}: {e}", name.to_string_lossy()),
    }
    sys::openat_nofollow(dir, name, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
        .with_context(|| format!("cannot open /dev/…/{}", name.to_string_lossy()))
}

/// Can a private /dev be made here (`sbx-exec probe`)? The very same [`mount_private`], in a
/// throwaway child in a new mount namespace (and, with `userns`, a user namespace with these ids
/// mapped, as a rootless launch makes) that exits at once.
pub fn can_mount_private(userns: Option<&crate::privilege::userns::IdMap>) -> bool {
    super::fs::can_mount(0, userns, || mount_private(&[]))
}
