//! The egress gate's own seccomp filter: an allow-list of what a forward proxy with TLS and a
//! resolver needs (sockets of the four families it uses, reading and writing them, threads,
//! memory, time, randomness, reading the resolver's files), everything else failing with `EPERM`.
//! No `execve`, no `ptrace`, no mount or namespace calls, no `open` for writing (Landlock refuses
//! the paths too), no new socket family (vsock, packet, ALG...). Built as data ([`build`]); the gate
//! installs it before it reads a byte from the sandbox.

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
    libc::SYS_openat,
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
    libc::SYS_tgkill,
    libc::SYS_pause,
    libc::SYS_restart_syscall,
    libc::SYS_prctl,
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

/// The gate's filter.
pub fn build() -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let family = |f: i32| -> Result<SeccompRule> {
        let c = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, f as u64)
            .context("seccomp condition")?;
        SeccompRule::new(vec![c]).context("seccomp rule")
    };
    let sockets = SOCKET_FAMILIES
        .iter()
        .map(|&f| family(f))
        .collect::<Result<Vec<_>>>()?;
    rules.insert(libc::SYS_socket, sockets);
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

    #[test]
    fn the_gate_filter_builds_and_allows_no_exec_or_ptrace() {
        let prog = build().unwrap();
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
        ] {
            assert!(!ALLOWED.contains(&never), "{never}");
        }
        assert!(!SOCKET_FAMILIES.contains(&libc::AF_VSOCK));
        assert!(!SOCKET_FAMILIES.contains(&libc::AF_PACKET));
        assert!(!SOCKET_FAMILIES.contains(&libc::AF_ALG));
    }
}
