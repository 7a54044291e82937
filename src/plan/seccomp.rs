//! The seccomp filter of confined contexts: built as data before any process is created
//! ([`build`], unit-tested), installed as the last step before exec ([`crate::run::apply::seccomp`]).
//!
//! It denies what untrusted code never needs and what could undo the sandbox: new namespaces
//! (user namespaces above all), mounts, `setns`, kernel keyrings, BPF, perf, module loading,
//! kexec, `open_by_handle_at`, `userfaultfd`, io_uring, `ptrace` (configurable), and the
//! `TIOCSTI`/`TIOCLINUX` ioctls that push keystrokes into a terminal. `clone3` answers `ENOSYS` so
//! libc falls back to `clone`, whose flags a filter can see. x32 system calls are denied.
//! `socket` and `socketpair` work only for the families in [`SOCKET_FAMILIES`] (unix, inet, inet6,
//! netlink); any other (vsock, packet, ALG, key...) answers `EAFNOSUPPORT`.
//!
//! The program is laid out as a binary search over segments of the system call numbers (runs of
//! denied numbers are one segment), so every system call runs through about 6 instructions.
//! Attaching a filter costs time in proportion to its length: the kernel emulates it once per
//! system call number to pre-compute which calls it always allows, then JITs it. seccompiler's
//! linear layout (353 instructions) cost ~0.35 ms per launch here; this one (61) ~0.15 ms.
//! A test checks that it decides exactly as the seccompiler-built filter did.

use anyhow::{Context as _, Result};
use seccompiler::{sock_filter, BpfProgram, SeccompAction};

use crate::model::{SeccompAction as PolicyAction, SecurityPolicy};

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

/// Socket families a confined context may create (`socket`, `socketpair`): unix, inet, inet6 and
/// netlink. Anything else (vsock: the VM-wide port space and the hypervisor past the private
/// network; packet, ALG, key, bluetooth...) fails with `EAFNOSUPPORT`, as for a family the kernel
/// lacks.
pub const SOCKET_FAMILIES: &[u64] = &[
    libc::AF_UNIX as u64,
    libc::AF_INET as u64,
    libc::AF_INET6 as u64,
    libc::AF_NETLINK as u64,
];

/// Terminal ioctls that inject input (bubblewrap's CVE-2017-5226).
pub const TTY_INJECT: &[u64] = &[libc::TIOCSTI, 0x541C /* TIOCLINUX */];

#[cfg(target_arch = "x86_64")]
const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

// Classic BPF opcodes (linux/bpf_common.h) and the offsets of `struct seccomp_data`.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const NR: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// Offset of the low 32 bits of argument `n` (little-endian).
const fn arg_low(n: u32) -> u32 {
    16 + 8 * n
}
#[cfg(not(target_endian = "little"))]
compile_error!("the seccomp filter reads argument words at little-endian offsets");

/// What the filter does with one system call number that has a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Always denied.
    Deny,
    /// Denied when the low 32 bits of argument `arg` have any bit of `mask` set.
    DenyAnyBit { arg: u32, mask: u32 },
    /// Denied when the low 32 bits of argument `arg` equal one of `values`.
    DenyEq { arg: u32, values: &'static [u64] },
    /// Allowed only when the low 32 bits of argument `arg` equal one of `values`; otherwise it
    /// fails with `EAFNOSUPPORT` (socket families).
    FamilyIn { arg: u32, values: &'static [u64] },
}

/// The rules of a policy, one per system call number, sorted by number.
fn rules(sec: &SecurityPolicy) -> Vec<(u32, Rule)> {
    let ns_mask = NS_FLAGS.iter().fold(0u64, |m, f| m | f) as u32;
    let mut rules: Vec<(u32, Rule)> = DENIED
        .iter()
        .map(|(nr, _)| (*nr as u32, Rule::Deny))
        .collect();
    if !sec.allow_ptrace {
        rules.extend(PTRACE.iter().map(|(nr, _)| (*nr as u32, Rule::Deny)));
    }
    rules.push((
        libc::SYS_clone as u32,
        Rule::DenyAnyBit {
            arg: 0,
            mask: ns_mask,
        },
    ));
    rules.push((
        libc::SYS_unshare as u32,
        Rule::DenyAnyBit {
            arg: 0,
            mask: ns_mask | CLONE_NEWTIME as u32,
        },
    ));
    rules.push((
        libc::SYS_ioctl as u32,
        Rule::DenyEq {
            arg: 1,
            values: TTY_INJECT,
        },
    ));
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        rules.push((
            nr as u32,
            Rule::FamilyIn {
                arg: 0,
                values: SOCKET_FAMILIES,
            },
        ));
    }
    rules.sort_by_key(|(nr, _)| *nr);
    rules.dedup_by_key(|(nr, _)| *nr);
    rules
}

/// Where a jump goes, resolved to an offset once the program is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    At(usize),
    /// The argument check of the `n`th conditional rule (placed after the search).
    Check(usize),
    Allow,
    Deny,
    Enosys,
    Eafnosupport,
    Kill,
}

struct Ins {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn stmt(code: u16, k: u32) -> Ins {
    Ins {
        code,
        k,
        jt: To::Next,
        jf: To::Next,
    }
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Ins {
    Ins { code, k, jt, jf }
}

/// Add the segment "from `lo` up to the next segment's start, go to `to`" after the others
/// (ascending), merging it with the previous one when both go to the same place.
fn push_segment(segs: &mut Vec<(u32, To)>, lo: u32, to: To) {
    if segs.last().is_some_and(|s| s.0 == lo) {
        segs.pop();
    }
    if !matches!(segs.last(), Some(s) if s.1 == to) {
        segs.push((lo, to));
    }
}

/// The number line of system calls cut into segments, each with one destination: runs of denied
/// numbers become one segment, x32 numbers one more.
fn segments(rules: &[(u32, Rule)]) -> Vec<(u32, To)> {
    let mut points: Vec<(u32, To)> = Vec::new();
    let mut checks = 0;
    for (nr, rule) in rules {
        let to = match rule {
            Rule::Deny => To::Deny,
            _ => {
                checks += 1;
                To::Check(checks - 1)
            }
        };
        points.push((*nr, to));
    }
    points.push((libc::SYS_clone3 as u32, To::Enosys));
    points.sort_by_key(|p| p.0);
    let mut segs = vec![(0, To::Allow)];
    for (nr, to) in points.into_iter().filter(|p| p.0 < X32) {
        push_segment(&mut segs, nr, to);
        push_segment(&mut segs, nr + 1, To::Allow);
    }
    push_segment(&mut segs, X32, To::Deny);
    segs
}

/// First x32 system call number: all of them are denied (they carry bit 30 and would slip past
/// rules keyed by x86_64 numbers).
const X32: u32 = 0x4000_0000;

/// A binary search over `segs` (sorted, not empty) on the system call number in A, with `jge`
/// at each inner node. Returns where the search starts: a segment's own destination when there
/// is only one, so no instruction is spent on leaves.
fn search(out: &mut Vec<Ins>, segs: &[(u32, To)]) -> To {
    if let [(_, to)] = segs {
        return *to;
    }
    let mid = segs.len() / 2;
    let node = out.len();
    out.push(jump(JGE_K, segs[mid].0, To::Next, To::Next));
    out[node].jf = search(out, &segs[..mid]);
    out[node].jt = search(out, &segs[mid..]);
    To::At(node)
}

/// Build the BPF program for this policy.
pub fn build(sec: &SecurityPolicy) -> Result<BpfProgram> {
    let deny = u32::from(match sec.seccomp_action {
        PolicyAction::Errno => SeccompAction::Errno(libc::EPERM as u32),
        PolicyAction::Kill => SeccompAction::KillProcess,
    });
    let rules = rules(sec);
    let mut out = vec![
        stmt(LD_W_ABS, ARCH_OFFSET),
        jump(JEQ_K, ARCH, To::Next, To::Kill), // another architecture: killed
        stmt(LD_W_ABS, NR),
    ];
    let start = out.len();
    let root = search(&mut out, &segments(&rules));
    if root != To::At(start) {
        out.insert(start, jump(JEQ_K, 0, root, root)); // a single segment: go there
    }
    let checks = push_checks(&mut out, &rules);
    let end = out.len();
    out.push(stmt(RET_K, u32::from(SeccompAction::Allow)));
    out.push(stmt(RET_K, deny));
    out.push(stmt(RET_K, 0x0005_0000 | libc::ENOSYS as u32)); // SECCOMP_RET_ERRNO
    out.push(stmt(RET_K, u32::from(SeccompAction::KillProcess)));
    out.push(stmt(RET_K, 0x0005_0000 | libc::EAFNOSUPPORT as u32));
    resolve(&out, &checks, end)
}

/// Append the argument check of each rule that has one, in the order of `rules`; where each
/// check starts (`To::Check(n)` is the n-th).
fn push_checks(out: &mut Vec<Ins>, rules: &[(u32, Rule)]) -> Vec<usize> {
    let mut checks = Vec::new();
    for (_, rule) in rules {
        match *rule {
            Rule::Deny => {}
            Rule::DenyAnyBit { arg, mask } => {
                checks.push(out.len());
                out.push(stmt(LD_W_ABS, arg_low(arg)));
                out.push(jump(JSET_K, mask, To::Deny, To::Allow));
            }
            Rule::DenyEq { arg, values } => {
                checks.push(out.len());
                out.push(stmt(LD_W_ABS, arg_low(arg)));
                for (i, v) in values.iter().enumerate() {
                    let miss = if i + 1 == values.len() {
                        To::Allow
                    } else {
                        To::Next
                    };
                    out.push(jump(JEQ_K, *v as u32, To::Deny, miss));
                }
            }
            Rule::FamilyIn { arg, values } => {
                checks.push(out.len());
                out.push(stmt(LD_W_ABS, arg_low(arg)));
                for (i, v) in values.iter().enumerate() {
                    let miss = if i + 1 == values.len() {
                        To::Eafnosupport
                    } else {
                        To::Next
                    };
                    out.push(jump(JEQ_K, *v as u32, To::Allow, miss));
                }
            }
        }
    }
    checks
}

/// The program `out`, its symbolic destinations turned into jump offsets: `checks` are where the
/// argument checks start, `end` where the five returns (allow, deny, ENOSYS, kill, EAFNOSUPPORT)
/// are.
fn resolve(out: &[Ins], checks: &[usize], end: usize) -> Result<BpfProgram> {
    let target = |to: To, pc: usize| -> Result<u8> {
        let at = match to {
            To::Next => pc + 1,
            To::At(i) => i,
            To::Check(n) => *checks.get(n).context("seccomp filter layout error")?,
            To::Allow => end,
            To::Deny => end + 1,
            To::Enosys => end + 2,
            To::Kill => end + 3,
            To::Eafnosupport => end + 4,
        };
        at.checked_sub(pc + 1)
            .and_then(|off| u8::try_from(off).ok())
            .context("seccomp filter jump out of range")
    };
    out.iter()
        .enumerate()
        .map(|(pc, i)| {
            Ok(sock_filter {
                code: i.code,
                jt: target(i.jt, pc)?,
                jf: target(i.jf, pc)?,
                k: i.k,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
