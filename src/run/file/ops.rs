//! The operations, run by the tool where it stands: inside the context, as its identity, after
//! every wall of the context is up. Paths are resolved as the code there would resolve them,
//! with two rules of our own: a magic link (`/proc/PID/fd/N`, `/proc/PID/root`) is never followed
//! (`RESOLVE_NO_MAGICLINKS`), and what is written, removed or made is the entry the last
//! component names, never what a link there points to (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`,
//! `unlinkat`). A FIFO, socket or device is opened without blocking and refused by its type.

use std::ffi::{CStr, CString, OsStr};
use std::io::Write as _;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, FcntlArg, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::unistd::UnlinkatFlags;

use super::call;
use super::error::{Failure, Kind};
use super::stream::{copy, Side, CHUNK};
use super::EXIT_ABSENT;
use crate::cli::FileOp;
use crate::sys::open_beneath_magic;

/// Run `op`; `Ok` is the exit status (0, or [`EXIT_ABSENT`] for `exists`).
pub fn run(op: &FileOp) -> Result<i32, Failure> {
    match op {
        FileOp::Read { path } => read(path).map(|()| 0),
        FileOp::Write { path, append, mode } => {
            write(path, *append, mode.unwrap_or(0o644)).map(|()| 0)
        }
        FileOp::Stat { path } => stat(path).map(|()| 0),
        FileOp::Ls { path } => ls(path).map(|()| 0),
        FileOp::Exists { path } => exists(path),
        FileOp::Rm { path, recursive } => rm(path, *recursive).map(|()| 0),
        FileOp::Mkdir { path, parents } => mkdir(path, *parents).map(|()| 0),
    }
}

fn shown(p: &OsStr) -> String {
    p.to_string_lossy().into_owned()
}

fn cstr(p: &OsStr) -> Result<CString, Failure> {
    CString::new(p.as_bytes())
        .map_err(|_| Failure::new(Kind::Usage, format!("{}: contains a NUL byte", shown(p))))
}

/// Open `path` (below `dir`, else from the working directory or the root), as
/// [`open_beneath_magic`]; a failure names `path`.
fn open(dir: Option<BorrowedFd<'_>>, path: &OsStr, flags: OFlag) -> Result<OwnedFd, Failure> {
    open_beneath_magic(dir, &cstr(path)?, flags.bits(), 0).map_err(|e| opening(&e, path))
}

/// The failure of opening `path`: ELOOP says which links it means.
fn opening(e: &std::io::Error, path: &OsStr) -> Failure {
    match e.raw_os_error() {
        Some(libc::ELOOP) => Failure {
            kind: Kind::Symlink,
            errno: Some(libc::ELOOP),
            message: format!(
                "{}: a loop of symbolic links, a link where none is followed, or a magic /proc link (never followed)",
                shown(path)
            ),
        },
        _ => Failure::io(e, shown(path)),
    }
}

/// An error of stdin or stdout: `io` whatever its errno (a full disk behind stdout is not the
/// file's doing).
fn stream(e: &std::io::Error, what: &str) -> Failure {
    Failure {
        kind: Kind::Io,
        errno: e.raw_os_error(),
        message: format!("{what}: {e}"),
    }
}

fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// The `type` of stat and ls.
fn type_name(st: &FileStat) -> &'static str {
    match file_type(st) {
        SFlag::S_IFREG => "file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFLNK => "symlink",
        SFlag::S_IFIFO => "fifo",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR => "char_device",
        SFlag::S_IFBLK => "block_device",
        _ => "unknown",
    }
}

/// The open `fd` must be a regular file (it was opened without blocking: a FIFO or device is
/// refused here, before a byte moves); then it is made blocking again.
fn regular_file(fd: &OwnedFd, p: &OsStr) -> Result<(), Failure> {
    let st =
        nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Failure::errno(e as i32, shown(p)))?;
    match file_type(&st) {
        SFlag::S_IFREG => {}
        SFlag::S_IFDIR => return Err(Failure::errno(libc::EISDIR, shown(p))),
        _ => {
            return Err(Failure::new(
                Kind::NotRegular,
                format!("{}: a {}, not a regular file", shown(p), type_name(&st)),
            ))
        }
    }
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)
        .map_err(|e| Failure::errno(e as i32, shown(p)))?;
    let flags = OFlag::from_bits_retain(flags) & !OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags))
        .map_err(|e| Failure::errno(e as i32, shown(p)))?;
    Ok(())
}

/// read: the file's contents to stdout (a link is followed, inside the context).
fn read(path: &Path) -> Result<(), Failure> {
    let p = path.as_os_str();
    let fd = open(
        None,
        p,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
    )?;
    regular_file(&fd, p)?;
    let mut buf = vec![0u8; CHUNK];
    let out = std::io::stdout();
    copy(fd.as_fd(), out.as_fd(), &mut buf).map_err(|(side, e)| match side {
        Side::From => Failure::io(&e, shown(p)),
        Side::To => stream(&e, "writing to stdout"),
    })?;
    Ok(())
}

/// The directory and name of a path that must end in one (the launcher checked it did).
fn parts(p: &OsStr) -> Result<(&OsStr, &OsStr, bool), Failure> {
    call::split(p).ok_or_else(|| {
        Failure::new(
            Kind::Usage,
            format!("{}: names no entry of a directory", shown(p)),
        )
    })
}

/// write: stdin into the file, created with `mode` (under the umask) or truncated (or appended
/// to); never through a link in the last component.
fn write(path: &Path, append: bool, mode: u32) -> Result<(), Failure> {
    let p = path.as_os_str();
    let (dir, name, slash) = parts(p)?;
    if slash {
        return Err(Failure::errno(
            libc::EISDIR,
            format!("{} (a path ending in / names a directory)", shown(p)),
        ));
    }
    let dir = open(None, dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let mut flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
    if append {
        flags |= OFlag::O_APPEND;
    }
    let fd = open_beneath_magic(Some(dir.as_fd()), &cstr(name)?, flags.bits(), mode).map_err(
        |e| match e.raw_os_error() {
            Some(libc::ELOOP) => Failure {
                kind: Kind::Symlink,
                errno: Some(libc::ELOOP),
                message: format!(
                    "{}: is a symbolic link; write never follows a link in the last component (remove it first)",
                    shown(p)
                ),
            },
            Some(libc::ENXIO) => Failure {
                kind: Kind::NotRegular,
                errno: Some(libc::ENXIO),
                message: format!("{}: a FIFO or socket, not a regular file", shown(p)),
            },
            _ => Failure::io(&e, shown(p)),
        },
    )?;
    regular_file(&fd, p)?;
    if !append {
        nix::unistd::ftruncate(&fd, 0).map_err(|e| Failure::errno(e as i32, shown(p)))?;
    }
    let mut buf = vec![0u8; CHUNK];
    let input = std::io::stdin();
    copy(input.as_fd(), fd.as_fd(), &mut buf).map_err(|(side, e)| match side {
        Side::From => stream(&e, "reading stdin"),
        Side::To => Failure::io(&e, shown(p)),
    })?;
    Ok(())
}

/// One JSON line on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let line = serde_json::to_string(value)
        .map_err(|e| Failure::new(Kind::Io, format!("cannot encode the answer: {e}")))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| stream(&e, "writing to stdout"))
}

/// stat: the entry itself (a link, not what it names).
fn stat(path: &Path) -> Result<(), Failure> {
    let p = path.as_os_str();
    let fd = open(None, p, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
    let st =
        nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| Failure::errno(e as i32, shown(p)))?;
    #[derive(serde::Serialize)]
    struct Stat {
        r#type: &'static str,
        size: i64,
        mode: u32,
        mtime: i64,
        mtime_nsec: i64,
        uid: u32,
        gid: u32,
    }
    print_json(&Stat {
        r#type: type_name(&st),
        size: st.st_size,
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec,
        uid: st.st_uid,
        gid: st.st_gid,
    })
}

/// ls: the directory's entries (a link to a directory is listed as the directory), sorted by
/// name; each entry's type and size are its own (a link is a link).
fn ls(path: &Path) -> Result<(), Failure> {
    let p = path.as_os_str();
    let fd = open(None, p, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let mut dir =
        nix::dir::Dir::from_fd(fd.into_raw_fd()).map_err(|e| Failure::errno(e as i32, shown(p)))?;
    let dfd = dir.as_raw_fd();
    let mut entries: Vec<(Vec<u8>, &'static str, i64)> = Vec::new();
    for e in dir.iter() {
        let e = e.map_err(|e| Failure::errno(e as i32, shown(p)))?;
        let name = e.file_name();
        if is_dot(name) {
            continue;
        }
        match nix::sys::stat::fstatat(Some(dfd), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => entries.push((name.to_bytes().to_vec(), type_name(&st), st.st_size)),
            // Removed since it was listed.
            Err(Errno::ENOENT) => {}
            Err(err) => {
                let child = path.join(OsStr::from_bytes(name.to_bytes()));
                return Err(Failure::errno(err as i32, child.display()));
            }
        }
    }
    entries.sort();
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        name: std::borrow::Cow<'a, str>,
        r#type: &'static str,
        size: i64,
    }
    let list: Vec<Entry> = entries
        .iter()
        .map(|(name, kind, size)| Entry {
            name: String::from_utf8_lossy(name),
            r#type: kind,
            size: *size,
        })
        .collect();
    print_json(&list)
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

/// exists: 0 when the entry is there (a dangling link too), [`EXIT_ABSENT`] when it is not.
fn exists(path: &Path) -> Result<i32, Failure> {
    let p = path.as_os_str();
    match open_beneath_magic(
        None,
        &cstr(p)?,
        (OFlag::O_PATH | OFlag::O_NOFOLLOW).bits(),
        0,
    ) {
        Ok(_) => Ok(0),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            Ok(EXIT_ABSENT)
        }
        Err(e) => Err(opening(&e, p)),
    }
}

/// rm: the entry the last component names (a link itself); a directory only when empty, or
/// with `recursive` everything in it, never following a link and never entering another file
/// system.
fn rm(path: &Path, recursive: bool) -> Result<(), Failure> {
    let p = path.as_os_str();
    let (dir, name, slash) = parts(p)?;
    let dir = open(None, dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let name = cstr(name)?;
    let st = nix::sys::stat::fstatat(
        Some(dir.as_raw_fd()),
        name.as_c_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Failure::errno(e as i32, shown(p)))?;
    let is_dir = file_type(&st) == SFlag::S_IFDIR;
    if slash && !is_dir {
        return Err(Failure::errno(libc::ENOTDIR, shown(p)));
    }
    if !is_dir {
        return nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name.as_c_str(),
            UnlinkatFlags::NoRemoveDir,
        )
        .map_err(|e| Failure::errno(e as i32, shown(p)));
    }
    if recursive {
        return remove_tree(dir.as_raw_fd(), &name, st.st_dev, path);
    }
    nix::unistd::unlinkat(
        Some(dir.as_raw_fd()),
        name.as_c_str(),
        UnlinkatFlags::RemoveDir,
    )
    .map_err(|e| match e {
        Errno::ENOTEMPTY | Errno::EEXIST => Failure {
            kind: Kind::NotEmpty,
            errno: Some(libc::ENOTEMPTY),
            message: format!(
                "{}: the directory is not empty (rm -r removes it whole)",
                shown(p)
            ),
        },
        e => Failure::errno(e as i32, shown(p)),
    })
}

/// Remove directory `name` below `parent` and everything in it: opened without following a link
/// (one swapped in since it was looked at fails), not entered when it is on another file system
/// than `dev`; entries are removed as they are read, and the directory read again if some were
/// added meanwhile. `shown` is its path for messages.
fn remove_tree(parent: RawFd, name: &CStr, dev: u64, shown: &Path) -> Result<(), Failure> {
    let here = |e: Errno| Failure::errno(e as i32, shown.display());
    let fd = open_beneath_magic(
        Some(crate::sys::borrow_raw(parent)),
        name,
        (OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits(),
        0,
    )
    .map_err(|e| opening(&e, shown.as_os_str()))?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(here)?;
    if st.st_dev != dev {
        return Err(Failure::new(
            Kind::Refused,
            format!(
                "{}: another file system is mounted here; rm -r does not enter it",
                shown.display()
            ),
        ));
    }
    let mut dir = nix::dir::Dir::from_fd(fd.into_raw_fd()).map_err(here)?;
    let dfd = dir.as_raw_fd();
    for pass in 0.. {
        // The iterator rewinds the directory when dropped, for the next pass.
        for e in dir.iter() {
            let e = e.map_err(here)?;
            let n = e.file_name();
            if is_dot(n) {
                continue;
            }
            let child: PathBuf = shown.join(OsStr::from_bytes(n.to_bytes()));
            let st = match nix::sys::stat::fstatat(Some(dfd), n, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(err) => return Err(Failure::errno(err as i32, child.display())),
            };
            if file_type(&st) == SFlag::S_IFDIR {
                remove_tree(dfd, n, dev, &child)?;
            } else {
                match nix::unistd::unlinkat(Some(dfd), n, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(err) => return Err(Failure::errno(err as i32, child.display())),
                }
            }
        }
        match nix::unistd::unlinkat(Some(parent), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => return Ok(()),
            Err(Errno::ENOTEMPTY | Errno::EEXIST) if pass < 3 => {}
            Err(e) => return Err(here(e)),
        }
    }
    unreachable!("the loop returns")
}

/// mkdir: one directory (mode 0755 under the umask), or with `parents` each missing one on the
/// way (links on the way followed inside the context, as mkdir -p does), succeeding if it exists.
fn mkdir(path: &Path, parents: bool) -> Result<(), Failure> {
    let p = path.as_os_str();
    let mode = Mode::from_bits_truncate(0o755);
    if !parents {
        let (dir, name, _) = parts(p)?;
        let dir = open(None, dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        return nix::sys::stat::mkdirat(Some(dir.as_raw_fd()), name, mode)
            .map_err(|e| Failure::errno(e as i32, shown(p)));
    }
    let bytes = p.as_bytes();
    let absolute = bytes.first() == Some(&b'/');
    let start = OsStr::new(if absolute { "/" } else { "." });
    let mut cur = open(None, start, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let mut sofar = PathBuf::from(start);
    for comp in bytes
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
    {
        let comp = OsStr::from_bytes(comp);
        sofar.push(comp);
        if comp != ".." {
            match nix::sys::stat::mkdirat(Some(cur.as_raw_fd()), comp, mode) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(Failure::errno(e as i32, sofar.display())),
            }
        }
        let flags = (OFlag::O_PATH | OFlag::O_DIRECTORY).bits();
        cur = open_beneath_magic(Some(cur.as_fd()), &cstr(comp)?, flags, 0)
            .map_err(|e| opening(&e, sofar.as_os_str()))?;
    }
    Ok(())
}
