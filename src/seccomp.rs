//! The seccomp filter of confined contexts: built as data before any process is created
//! ([`build`], unit-tested), installed as the last step before exec ([`install`]).
//!
//! It denies what untrusted code never needs and what could undo the sandbox: new namespaces
//! (user namespaces above all), mounts, `setns`, kernel keyrings, BPF, perf, module loading,
//! kexec, `open_by_handle_at`, `userfaultfd`, io_uring, `ptrace` (configurable), and the
//! `TIOCSTI`/`TIOCLINUX` ioctls that push keystrokes into a terminal. `clone3` answers `ENOSYS` so
//! libc falls back to `clone`, whose flags a filter can see. x32 system calls are denied.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op,
    SeccompCondition as Cond, SeccompFilter, SeccompRule, TargetArch,
};

use crate::policy::{SeccompAction as PolicyAction, SecurityPolicy};

/// System calls denied outright.
const DENIED: &[(i64, &str)] = &[
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_quotactl, "quotactl"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_iopl, "iopl"),
    #[cfg(target_arch = "x86_64")]
    (libc::SYS_ioperm, "ioperm"),
];

/// Denied unless `security.allow_ptrace`.
const PTRACE: &[(i64, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
];

/// Namespace flags refused in `clone` (CLONE_NEWTIME shares bits with clone's exit signal there).
const NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
];
const CLONE_NEWTIME: u64 = 0x80;

/// Terminal ioctls that inject input (bubblewrap's CVE-2017-5226).
pub const TTY_INJECT: &[u64] = &[libc::TIOCSTI, 0x541C /* TIOCLINUX */];

#[cfg(target_arch = "x86_64")]
const ARCH: (TargetArch, u32) = (TargetArch::x86_64, 0xC000_003E);
#[cfg(target_arch = "aarch64")]
const ARCH: (TargetArch, u32) = (TargetArch::aarch64, 0xC000_00B7);

fn masked(arg: u8, flag: u64) -> Result<SeccompRule> {
    Ok(SeccompRule::new(vec![Cond::new(
        arg,
        Len::Qword,
        Op::MaskedEq(flag),
        flag,
    )?])?)
}

/// Build the BPF program for this policy.
pub fn build(sec: &SecurityPolicy) -> Result<BpfProgram> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, _) in DENIED {
        rules.insert(*nr, Vec::new());
    }
    if !sec.allow_ptrace {
        for (nr, _) in PTRACE {
            rules.insert(*nr, Vec::new());
        }
    }
    rules.insert(
        libc::SYS_clone,
        NS_FLAGS
            .iter()
            .map(|f| masked(0, *f))
            .collect::<Result<_>>()?,
    );
    rules.insert(
        libc::SYS_unshare,
        NS_FLAGS
            .iter()
            .chain([&CLONE_NEWTIME])
            .map(|f| masked(0, *f))
            .collect::<Result<_>>()?,
    );
    rules.insert(
        libc::SYS_ioctl,
        TTY_INJECT
            .iter()
            .map(|req| {
                Ok(SeccompRule::new(vec![Cond::new(
                    1,
                    Len::Dword,
                    Op::Eq,
                    *req,
                )?])?)
            })
            .collect::<Result<_>>()?,
    );
    let action = match sec.seccomp_action {
        PolicyAction::Errno => SeccompAction::Errno(libc::EPERM as u32),
        PolicyAction::Kill => SeccompAction::KillProcess,
    };
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, action.clone(), ARCH.0)
        .context("cannot build the seccomp filter")?;
    let body: BpfProgram = filter
        .try_into()
        .context("cannot compile the seccomp filter")?;
    let mut prog = prefix(u32::from(action));
    prog.extend(body);
    Ok(prog)
}

/// Runs before seccompiler's program: deny x32 system calls (which carry bit 30 and would slip past
/// rules keyed by x86_64 numbers) and answer `clone3` with ENOSYS.
fn prefix(deny: u32) -> BpfProgram {
    use seccompiler::sock_filter as I;
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    let i = |code, jt, jf, k| I { code, jt, jf, k };
    vec![
        i(LD_W_ABS, 0, 0, 4),                            // 0: arch
        i(JEQ_K, 0, 5, ARCH.1), // 1: other arch -> 7 (seccompiler kills it)
        i(LD_W_ABS, 0, 0, 0),   // 2: nr
        i(JGE_K, 2, 0, 0x4000_0000), // 3: x32 -> 6
        i(JEQ_K, 0, 2, libc::SYS_clone3 as u32), // 4: clone3 -> 5, else -> 7
        i(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32), // 5
        i(RET_K, 0, 0, deny),   // 6
    ]
}

/// Install `prog` on this thread; needs `no_new_privs` (or CAP_SYS_ADMIN).
pub fn install(prog: &BpfProgram) -> Result<()> {
    seccompiler::apply_filter(prog).context("cannot install the seccomp filter (security.seccomp = \"default\"): the kernel needs CONFIG_SECCOMP_FILTER and the container runtime must allow seccomp(2); or set security.seccomp = \"none\" in the context")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_for_both_settings() {
        let mut sec = SecurityPolicy::default();
        let strict = build(&sec).unwrap();
        sec.allow_ptrace = true;
        let lax = build(&sec).unwrap();
        assert!(lax.len() < strict.len(), "allowing ptrace drops its rules");
    }

    #[test]
    fn prefix_jumps_land_inside_the_program() {
        let p = prefix(0);
        for (n, ins) in p.iter().enumerate() {
            if ins.code == 0x15 || ins.code == 0x35 {
                assert!(n + 1 + (ins.jt as usize) <= p.len());
                assert!(n + 1 + (ins.jf as usize) <= p.len());
            }
        }
        // Non-x86_64 arch jumps past the prefix, to seccompiler's own arch check.
        assert_eq!(1 + 1 + p[1].jf as usize, p.len());
    }
}
