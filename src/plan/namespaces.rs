//! Which namespaces a context gets (pure; [`crate::run::apply::namespaces`] creates them).

use crate::model::{Context, Namespace};

/// A namespace sbx-exec can create, with its clone flag and its name in the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub flag: libc::c_int,
    pub name: &'static str,
}

pub const PID: Kind = Kind {
    flag: libc::CLONE_NEWPID,
    name: "pid",
};
pub const MOUNT: Kind = Kind {
    flag: libc::CLONE_NEWNS,
    name: "mount",
};
pub const IPC: Kind = Kind {
    flag: libc::CLONE_NEWIPC,
    name: "ipc",
};
pub const UTS: Kind = Kind {
    flag: libc::CLONE_NEWUTS,
    name: "uts",
};
pub const NET: Kind = Kind {
    flag: libc::CLONE_NEWNET,
    name: "net",
};
/// A user namespace (rootless mode only; the policy cannot ask for it directly).
pub const USER: Kind = Kind {
    flag: libc::CLONE_NEWUSER,
    name: "user",
};

/// The namespaces a context asks for.
pub fn wanted(ctx: &Context) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = ctx
        .namespaces
        .iter()
        .map(|ns| match ns {
            Namespace::Pid => PID,
            Namespace::Mount => MOUNT,
            Namespace::Ipc => IPC,
            Namespace::Uts => UTS,
        })
        .collect();
    if ctx.net.own_namespace() {
        kinds.push(NET);
    }
    kinds
}

pub fn flags(kinds: &[Kind]) -> libc::c_int {
    kinds.iter().fold(0, |f, k| f | k.flag)
}
