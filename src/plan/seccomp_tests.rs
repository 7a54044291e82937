//! Tests of the seccomp program: its layout, and that it decides exactly as the seccompiler-built
//! filter did (checked with a small BPF interpreter).

use super::*;
use std::collections::BTreeMap;

use seccompiler::{
    SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter,
    SeccompRule, TargetArch,
};

/// A classic BPF interpreter for the instructions seccomp filters use here.
fn run(prog: &[sock_filter], data: &[u8; 64]) -> u32 {
    let (mut a, mut pc) = (0u32, 0usize);
    for _ in 0..10_000 {
        let i = &prog[pc];
        let word =
            |k: u32| u32::from_le_bytes(data[k as usize..k as usize + 4].try_into().unwrap());
        let jmp = |cond: bool| pc + 1 + if cond { i.jt } else { i.jf } as usize;
        pc = match i.code {
            0x20 => {
                a = word(i.k);
                pc + 1
            }
            0x54 => {
                a &= i.k;
                pc + 1
            }
            0x05 => pc + 1 + i.k as usize,
            0x15 => jmp(a == i.k),
            0x25 => jmp(a > i.k),
            0x35 => jmp(a >= i.k),
            0x45 => jmp(a & i.k != 0),
            0x06 => return i.k,
            other => panic!("opcode {other:#x} not interpreted"),
        };
    }
    panic!("no return within 10000 steps")
}

fn data(arch: u32, nr: u32, args: [u64; 6]) -> [u8; 64] {
    let mut d = [0u8; 64];
    d[0..4].copy_from_slice(&nr.to_le_bytes());
    d[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        d[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    d
}

/// The filter as sbx-exec built it with seccompiler (linear layout): the reference.
fn reference(sec: &SecurityPolicy) -> BpfProgram {
    fn masked(arg: u8, flag: u64) -> SeccompRule {
        SeccompRule::new(vec![
            Cond::new(arg, Len::Qword, Op::MaskedEq(flag), flag).unwrap()
        ])
        .unwrap()
    }
    #[cfg(target_arch = "x86_64")]
    let arch = TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    let arch = TargetArch::aarch64;
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
        NS_FLAGS.iter().map(|f| masked(0, *f)).collect(),
    );
    rules.insert(
        libc::SYS_unshare,
        NS_FLAGS
            .iter()
            .chain([&CLONE_NEWTIME])
            .map(|f| masked(0, *f))
            .collect(),
    );
    rules.insert(
        libc::SYS_ioctl,
        TTY_INJECT
            .iter()
            .map(|req| {
                SeccompRule::new(vec![Cond::new(1, Len::Dword, Op::Eq, *req).unwrap()]).unwrap()
            })
            .collect(),
    );
    let action = match sec.seccomp_action {
        PolicyAction::Errno => SeccompAction::Errno(libc::EPERM as u32),
        PolicyAction::Kill => SeccompAction::KillProcess,
    };
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, action.clone(), arch).unwrap();
    let body: BpfProgram = filter.try_into().unwrap();
    let deny = u32::from(action);
    let i = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    // Hand-written before seccompiler's body: the architecture, x32, clone3, and the socket
    // families (a check the reference builder has no action for: EAFNOSUPPORT).
    let eafnosupport = 0x0005_0000 | libc::EAFNOSUPPORT as u32;
    let mut prog = vec![
        i(0x20, 0, 0, 4),
        i(0x15, 0, 14, ARCH), // -> kill
        i(0x20, 0, 0, 0),
        i(0x35, 11, 0, 0x4000_0000), // x32 -> deny
        i(0x15, 0, 1, libc::SYS_clone3 as u32),
        i(0x06, 0, 0, 0x0005_0000 | libc::ENOSYS as u32),
        i(0x15, 1, 0, libc::SYS_socket as u32),
        i(0x15, 0, 6, libc::SYS_socketpair as u32), // -> body
        i(0x20, 0, 0, 16),
        i(0x15, 4, 0, SOCKET_FAMILIES[0] as u32),
        i(0x15, 3, 0, SOCKET_FAMILIES[1] as u32),
        i(0x15, 2, 0, SOCKET_FAMILIES[2] as u32),
        i(0x15, 1, 0, SOCKET_FAMILIES[3] as u32),
        i(0x06, 0, 0, eafnosupport),
        i(0x05, 0, 0, 2), // -> body (allowed family)
        i(0x06, 0, 0, deny),
        i(0x06, 0, 0, u32::from(SeccompAction::KillProcess)),
    ];
    prog.extend(body);
    prog
}

fn policies() -> Vec<SecurityPolicy> {
    let mut out = Vec::new();
    for allow_ptrace in [false, true] {
        for action in [PolicyAction::Errno, PolicyAction::Kill] {
            out.push(SecurityPolicy {
                allow_ptrace,
                seccomp_action: action,
                ..SecurityPolicy::default()
            });
        }
    }
    out
}

#[test]
fn decides_exactly_as_the_reference_filter() {
    let ns = NS_FLAGS.iter().copied().chain([CLONE_NEWTIME]);
    let mut arg0: Vec<u64> = ns.collect();
    arg0.extend([
        0,
        (libc::CLONE_VM | libc::CLONE_FS | libc::SIGCHLD) as u64,
        0xffff_ffff,
        1 << 32,
        (1 << 40) | libc::CLONE_FILES as u64,
        u64::MAX,
    ]);
    let arg1 = [
        0,
        libc::TIOCSTI,
        0x541C,
        libc::TIOCSTI | (1 << 32),
        0x5413,
        u64::MAX,
    ];
    arg0.extend([
        libc::AF_UNIX as u64,
        libc::AF_INET6 as u64,
        libc::AF_NETLINK as u64,
        libc::AF_VSOCK as u64,
        libc::AF_PACKET as u64,
        libc::AF_ALG as u64,
        (1 << 32) | libc::AF_INET as u64,
    ]);
    let special = [
        libc::SYS_clone,
        libc::SYS_unshare,
        libc::SYS_ioctl,
        libc::SYS_socket,
        libc::SYS_socketpair,
    ]
    .map(|n| n as u32);
    for sec in policies() {
        let (ours, theirs) = (build(&sec).unwrap(), reference(&sec));
        assert!(
            ours.len() * 3 < theirs.len(),
            "{} vs {}",
            ours.len(),
            theirs.len()
        );
        let mut nrs: Vec<u32> = (0..=600).collect();
        nrs.extend([
            0x4000_0000,
            0x4000_0001,
            0x4000_0000 + 56,
            0x4000_01b3,
            u32::MAX,
        ]);
        let mut denied = 0;
        for arch in [ARCH, 0x4000_0003 /* i386 */, 0] {
            for &nr in &nrs {
                let combos: Vec<[u64; 6]> = if special.contains(&nr) {
                    arg0.iter()
                        .flat_map(|&a| arg1.iter().map(move |&b| [a, b, 0, 0, 0, 0]))
                        .collect()
                } else {
                    vec![[0; 6], [u64::MAX; 6]]
                };
                for args in combos {
                    let d = data(arch, nr, args);
                    let (a, b) = (run(&ours, &d), run(&theirs, &d));
                    assert_eq!(a, b, "arch {arch:#x} nr {nr} args {args:x?}");
                    denied += usize::from(a != u32::from(SeccompAction::Allow));
                }
            }
        }
        assert!(denied > 1000, "the filter denies something: {denied}");
    }
}

#[test]
fn denies_what_it_should_and_allows_the_rest() {
    let sec = SecurityPolicy::default();
    let p = build(&sec).unwrap();
    let allow = u32::from(SeccompAction::Allow);
    let at = |nr: i64, a0: u64, a1: u64| run(&p, &data(ARCH, nr as u32, [a0, a1, 0, 0, 0, 0]));
    assert_eq!(at(libc::SYS_read, 0, 0), allow);
    assert_ne!(at(libc::SYS_mount, 0, 0), allow);
    assert_ne!(at(libc::SYS_ptrace, 0, 0), allow);
    assert_ne!(at(libc::SYS_unshare, libc::CLONE_NEWUSER as u64, 0), allow);
    assert_eq!(at(libc::SYS_clone, libc::SIGCHLD as u64, 0), allow);
    assert_ne!(at(libc::SYS_ioctl, 0, libc::TIOCSTI), allow);
    assert_eq!(at(libc::SYS_ioctl, 0, libc::TIOCGWINSZ), allow);
    assert_eq!(
        at(libc::SYS_clone3, 0, 0),
        0x0005_0000 | libc::ENOSYS as u32
    );
    let eafnosupport = 0x0005_0000 | libc::EAFNOSUPPORT as u32;
    for family in [
        libc::AF_UNIX,
        libc::AF_INET,
        libc::AF_INET6,
        libc::AF_NETLINK,
    ] {
        assert_eq!(at(libc::SYS_socket, family as u64, 0), allow);
        assert_eq!(at(libc::SYS_socketpair, family as u64, 0), allow);
    }
    for family in [
        libc::AF_VSOCK,
        libc::AF_ALG,
        libc::AF_PACKET,
        libc::AF_KEY,
        libc::AF_BLUETOOTH,
    ] {
        assert_eq!(at(libc::SYS_socket, family as u64, 0), eafnosupport);
        assert_eq!(at(libc::SYS_socketpair, family as u64, 0), eafnosupport);
    }
}

#[test]
fn builds_for_both_settings() {
    let mut sec = SecurityPolicy::default();
    let strict = build(&sec).unwrap();
    sec.allow_ptrace = true;
    let lax = build(&sec).unwrap();
    assert!(lax.len() < strict.len(), "allowing ptrace drops its rules");
    assert!(strict.len() < 120, "compact: {} instructions", strict.len());
}
