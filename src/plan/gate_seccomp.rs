//! The egress gate's own seccomp filter: an allow-list of what a forward proxy with TLS and a
//! resolver needs (sockets of the four families it uses, reading and writing them, threads,
//! memory, time, randomness, reading the resolver's files), everything else failing with `EPERM`.
//! No `execve`, no `ptrace`, no mount or namespace calls, no new socket family (vsock, packet,
//! ALG...). Checked arguments where a call could reach beyond the gate: `openat` only without a
//! flag that writes or creates ([`OPEN_WRITES`]; `open`, `creat` and `openat2` are not allowed at
//! all, so libc's `openat` is the one way to open, and Landlock refuses the paths too), `tgkill`
//! only to the gate's own threads, no `kill` or `tkill`, and `prctl` only to name a thread. Built
//! as data ([`build`]) in the process it confines (it knows its own pid); the gate installs it
//! before it reads a byte from the sandbox.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// System calls allowed whatever their arguments.
const ALLOWED: &[i64] = &[
    // I/O on the sockets, pipes and files it holds
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    // sockets (creation is checked below)
    libc::SYS_connect,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_bind,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_shutdown,
    libc::SYS_sendto,
    libc::SYS_recvfrom,
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
    // memory
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_brk,
    // threads and signals
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_set_tid_address,
    libc::SYS_rseq,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_pause,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // time, ids, randomness, limits
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getrandom,
    libc::SYS_uname,
    libc::SYS_prlimit64,
    libc::SYS_getrlimit,
];

/// The socket families the gate may create: unix (syslog), inet, inet6, netlink (its addresses).
pub const SOCKET_FAMILIES: &[i32] = &[
    libc::AF_UNIX,
    libc::AF_INET,
    libc::AF_INET6,
    libc::AF_NETLINK,
];

/// The `open` flags that write, create or truncate: `openat` with any of them is refused
/// (`EPERM`). What the gate opens after the filter (the resolver's files, glibc's CPU count) it
/// opens read-only.
pub const OPEN_WRITES: u64 = (libc::O_WRONLY
    | libc::O_RDWR
    | libc::O_CREAT
    | libc::O_TRUNC
    | libc::O_APPEND
    | (libc::O_TMPFILE & !libc::O_DIRECTORY)) as u64;

/// The one `prctl` option the gate uses once confined: naming a thread (Rust's threads name
/// themselves with `PR_SET_NAME`). Everything before the filter (dumpable, parent-death signal,
/// no_new_privs) is done by then.
pub const PRCTL_OPTIONS: &[i32] = &[libc::PR_SET_NAME];

/// The gate's filter, for the process `own` (its pid, the tgid of all its threads): the only
/// process `tgkill` may reach (glibc's `raise` and `abort`).
pub fn build(own: libc::pid_t) -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let arg = |index: u8, op: SeccompCmpOp, value: u64| -> Result<SeccompRule> {
        let c = SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value)
            .context("seccomp condition")?;
        SeccompRule::new(vec![c]).context("seccomp rule")
    };
    let sockets = SOCKET_FAMILIES
        .iter()
        .map(|&f| arg(0, SeccompCmpOp::Eq, f as u64))
        .collect::<Result<Vec<_>>>()?;
    rules.insert(libc::SYS_socket, sockets);
    // openat(dirfd, path, flags, mode): flags without a bit of OPEN_WRITES.
    rules.insert(
        libc::SYS_openat,
        vec![arg(2, SeccompCmpOp::MaskedEq(OPEN_WRITES), 0)?],
    );
    // tgkill(tgid, tid, sig): its own threads only.
    rules.insert(
        libc::SYS_tgkill,
        vec![arg(0, SeccompCmpOp::Eq, own as u32 as u64)?],
    );
    let prctl = PRCTL_OPTIONS
        .iter()
        .map(|&o| arg(0, SeccompCmpOp::Eq, o as u64))
        .collect::<Result<Vec<_>>>()?;
    rules.insert(libc::SYS_prctl, prctl);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        std::env::consts::ARCH
            .try_into()
            .context("seccomp: this architecture")?,
    )
    .context("the gate's seccomp filter")?;
    filter.try_into().context("the gate's seccomp program")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    #[test]
    fn the_gate_filter_builds_and_allows_no_exec_or_ptrace() {
        let prog = build(std::process::id() as libc::pid_t).unwrap();
        assert!(!prog.is_empty());
        for never in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_setns,
            libc::SYS_unshare,
            libc::SYS_socketpair,
            libc::SYS_kill,
            libc::SYS_tkill,
            libc::SYS_openat2,
            // checked below, never allowed whatever their arguments
            libc::SYS_openat,
            libc::SYS_tgkill,
            libc::SYS_prctl,
        ] {
            assert!(!ALLOWED.contains(&never), "{never}");
        }
        #[cfg(target_arch = "x86_64")]
        for never in [libc::SYS_open, libc::SYS_creat] {
            assert!(!ALLOWED.contains(&never), "{never}");
        }
        assert!(!SOCKET_FAMILIES.contains(&libc::AF_VSOCK));
        assert!(!SOCKET_FAMILIES.contains(&libc::AF_PACKET));
        assert!(!SOCKET_FAMILIES.contains(&libc::AF_ALG));
    }

    /// `f` run on a thread of its own under the gate's filter for this process (seccomp without
    /// TSYNC confines only the calling thread): the kernel decides, not a model of the filter.
    fn confined<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let prog = build(std::process::id() as libc::pid_t).unwrap();
        std::thread::spawn(move || {
            seccompiler::apply_filter(&prog).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    use crate::sys::errno_of;

    fn openat(path: &CString, flags: i32) -> i32 {
        errno_of::openat(path, flags)
    }

    #[test]
    fn the_gate_opens_files_only_for_reading() {
        let dir = std::env::temp_dir().join(format!("sbx-gate-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sentinel");
        std::fs::write(&file, "sentinel").unwrap();
        let path = CString::new(file.to_str().unwrap()).unwrap();
        let fresh = CString::new(dir.join("created").to_str().unwrap()).unwrap();
        let dir_c = CString::new(dir.to_str().unwrap()).unwrap();
        // The control: unconfined, the file can be opened for writing.
        assert_eq!(openat(&path, libc::O_WRONLY | libc::O_CLOEXEC), 0);
        let (p, f, d) = (path.clone(), fresh.clone(), dir_c.clone());
        let seen = confined(move || {
            let writes = [
                ("O_WRONLY", openat(&p, libc::O_WRONLY)),
                ("O_RDWR", openat(&p, libc::O_RDWR)),
                ("O_APPEND", openat(&p, libc::O_RDONLY | libc::O_APPEND)),
                ("O_TRUNC", openat(&p, libc::O_RDONLY | libc::O_TRUNC)),
                ("O_CREAT", openat(&f, libc::O_RDONLY | libc::O_CREAT)),
                ("O_TMPFILE", openat(&d, libc::O_TMPFILE | libc::O_WRONLY)),
                (
                    "O_WRONLY|O_CREAT|O_TRUNC",
                    openat(&f, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC),
                ),
            ];
            let openat2 = errno_of::openat2_read(&p);
            let reads = [
                openat(&p, libc::O_RDONLY | libc::O_CLOEXEC),
                openat(
                    &p,
                    libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
                ),
                openat(&d, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC),
            ];
            (writes, openat2, reads)
        });
        let (writes, openat2, reads) = seen;
        for (how, e) in writes {
            assert_eq!(e, libc::EPERM, "openat with {how} under the gate's filter");
        }
        assert_eq!(openat2, libc::EPERM, "openat2 under the gate's filter");
        assert_eq!(reads, [0, 0, 0], "reading under the gate's filter");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "sentinel");
        assert!(!dir.join("created").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_gate_signals_only_itself() {
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = other.id() as libc::c_long;
        // Signal 0 checks only that the target exists and may be signalled.
        let unconfined = errno_of::tgkill(pid, pid);
        let (own, tgkill, tkill, kill) = confined(move || {
            // The gate's own thread, then another process.
            let me = std::process::id() as libc::c_long;
            (
                errno_of::tgkill(me, errno_of::gettid()),
                errno_of::tgkill(pid, pid),
                errno_of::tkill(pid),
                errno_of::kill(pid),
            )
        });
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(
            unconfined, 0,
            "the control: another process can be signalled"
        );
        assert_eq!(own, 0, "tgkill to the gate's own thread");
        assert_eq!(tgkill, libc::EPERM, "tgkill to another process");
        assert_eq!(tkill, libc::EPERM, "tkill");
        assert_eq!(kill, libc::EPERM, "kill");
    }

    #[test]
    fn the_gate_may_only_name_its_threads() {
        let unconfined = errno_of::get_dumpable();
        let (name, dumpable, pdeathsig) = confined(|| {
            // The others read or set flags of this thread only if the filter is broken (then
            // the test fails).
            (
                errno_of::set_name(c"sbx-test"),
                errno_of::get_dumpable_errno(),
                errno_of::set_pdeathsig(0),
            )
        });
        assert!(unconfined >= 0, "the control: prctl works unconfined");
        assert_eq!(name, 0, "PR_SET_NAME under the gate's filter");
        assert_eq!(
            dumpable,
            libc::EPERM,
            "PR_GET_DUMPABLE under the gate's filter"
        );
        assert_eq!(
            pdeathsig,
            libc::EPERM,
            "PR_SET_PDEATHSIG under the gate's filter"
        );
    }
}
