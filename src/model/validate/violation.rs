//! What a broken rule across keys says: one [`Violation`] per way a context's keys can disagree,
//! each with what is wrong and the key that fixes it. Rules of a facility with a module of its own
//! (`secrets.bind`, `net`, `supervise.services`) have their own enum there, wrapped here.

use std::fmt;
use std::path::PathBuf;

use super::RUNTIME_DIR;
use crate::model::bind::BindViolation;
use crate::model::net::NetViolation;
use crate::model::services::ServiceViolation;

/// A rule across keys of one context that a policy breaks (see [`super::rules`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    PidNeedsMount,
    FsNeedsMount,
    DevicesNeedPrivateDev,
    /// `fs.devices` names a path the private /dev cannot add.
    NotADevicePath {
        path: PathBuf,
    },
    AllCapsAlone,
    SeccompNeedsNoNewPrivs,
    ConfinedKeepsAllCaps,
    /// A confined context keeps a capability of [`super::NEVER_FOR_CONFINED`].
    ConfinedKeepsCap {
        cap: String,
    },
    SuperviseInNamespaces,
    SupervisePortZero,
    SupervisePortTwice,
    LandlockNeedsNoNewPrivs,
    RunAsKeepsNoCaps,
    DeniedPortZero,
    ListenPortZero,
    SecretFilesNeedMount,
    SecretFileNotAllowed {
        name: String,
    },
    RequiredNotAllowed {
        name: String,
    },
    RequiredTwice {
        name: String,
    },
    RequiredRefused {
        name: String,
    },
    BindNeedsProxy,
    BindNeedsMount,
    BoundNotAllowed {
        name: String,
    },
    BoundAndFile {
        name: String,
    },
    BoundTwice {
        name: String,
    },
    /// One `secrets.bind` entry is malformed.
    Bind(BindViolation),
    PtraceNeedsSeccomp,
    PersistWithSupervise,
    PersistNeedsPidMount,
    PersistMustHideState,
    PersistWithBind,
    PersistWithSecrets,
    PersistWithScope,
    PoolNeedsPidMount,
    PoolTooLarge,
    SwapNeedsMemory,
    PidsMaxZero,
    IdentityCountZero,
    IdentityRoot,
    IdentityOverflow,
    IdentityNeedsPid,
    IdentityWithSupervise,
    RunAsOutsideIdentity,
    /// `ops` lists a name twice.
    OpTwice {
        name: String,
    },
    OpsNeedProxy,
    OpsMustHideState,
    /// The context's `net`.
    Net(NetViolation),
    /// A control context's `supervise.services`.
    Service(ServiceViolation),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation as V;
        let text = match self {
            V::PidNeedsMount => "namespace \"pid\" needs \"mount\" too, so that a private /proc showing only the context's processes can be mounted; add \"mount\" to namespaces",
            V::FsNeedsMount => "[fs] settings need the \"mount\" namespace; add \"mount\" to namespaces",
            V::DevicesNeedPrivateDev => "fs.devices adds devices to the private /dev; set fs.dev = \"private\" (with the \"pid\" and \"mount\" namespaces it is the default)",
            V::NotADevicePath { path } => return write!(
                f,
                "fs.devices: {} is not a device path the private /dev can add; give a node below /dev such as \"/dev/fuse\" or \"/dev/net/tun\" (not /dev/pts or /dev/shm, which it makes itself)",
                path.display()
            ),
            V::AllCapsAlone => "security.caps = [\"ALL\"] keeps every capability and cannot be combined with other names",
            V::SeccompNeedsNoNewPrivs => "seccomp = \"default\" needs no_new_privs = true (the kernel installs filters only then)",
            V::ConfinedKeepsAllCaps => "a context with its own pid namespace is confined and cannot keep all capabilities (caps = [\"ALL\"]); list the ones it needs",
            V::ConfinedKeepsCap { cap } => return write!(f, "a confined context (own pid namespace) cannot keep {cap} because it can undo the sandbox; remove it from security.caps"),
            V::SuperviseInNamespaces => "[supervise] (control mode) runs the control plane in the container's own namespaces, where it is not hidden from what it supervises; remove namespaces/net from this context",
            V::SupervisePortZero => "supervise.ports cannot contain 0",
            V::SupervisePortTwice => "supervise.ports lists a port twice",
            V::LandlockNeedsNoNewPrivs => "Landlock settings (deny_bind, deny_connect, scope, exec_only_under) need no_new_privs = true",
            V::RunAsKeepsNoCaps => "security.run_as switches to a non-root user, which keeps no capabilities; remove security.caps",
            V::DeniedPortZero => "port 0 cannot be denied (it means \"any free port\"); list real ports",
            V::ListenPortZero => "listen cannot contain port 0; list the reserved ports this context may be handed",
            V::SecretFilesNeedMount => "secrets.files puts secrets on a private tmpfs, which needs the \"mount\" namespace; add \"mount\" to namespaces",
            V::SecretFileNotAllowed { name } => return write!(f, "secrets.files lists {name}, which secrets.allow does not admit; add it to secrets.allow or remove it from files"),
            V::RequiredNotAllowed { name } => return write!(f, "secrets.require lists {name}, which secrets.allow does not admit, so no call could hand it; add it to secrets.allow or remove it from require"),
            V::RequiredTwice { name } => return write!(f, "secrets.require lists {name} twice; list each name once"),
            V::RequiredRefused { name } => return write!(f, "secrets.require lists {name}, which is refused as a secret (it makes programs load code from its value); deliver it as a file (secrets.files) or require another name"),
            V::BindNeedsProxy => "secrets.bind works only through the egress proxy: set [context.NAME.net] mode = \"private\" with the bound hosts in net.allow",
            V::BindNeedsMount => "secrets.bind installs a per-call CA certificate on a private tmpfs, which needs the \"mount\" namespace; add \"mount\" to namespaces",
            V::BoundNotAllowed { name } => return write!(f, "secrets.bind names {name}, which secrets.allow does not admit; add it to secrets.allow"),
            V::BoundAndFile { name } => return write!(f, "{name} is both in secrets.files and secrets.bind; a bound secret never enters the sandbox, so remove it from files"),
            V::BoundTwice { name } => return write!(f, "{name} is bound twice in secrets.bind; list all its hosts in one entry"),
            V::Bind(v) => return v.fmt(f),
            V::PtraceNeedsSeccomp => "security.allow_ptrace only has a meaning with seccomp = \"default\"",
            V::PersistWithSupervise => "persist = true cannot be combined with [supervise] (control mode runs in the container's own namespaces); remove one of them",
            V::PersistNeedsPidMount => "persist = true needs the \"pid\" and \"mount\" namespaces (the keeper is pid 1 of them); add both to namespaces",
            V::PersistMustHideState => return write!(
                f,
                "persist = true needs fs.hide to include {RUNTIME_DIR} (the keepers' state must be invisible to the context's code, which outlives each call); add it to [fs] hide"
            ),
            V::PersistWithBind => "persist = true cannot be combined with secrets.bind: bound secrets are values of one call (the proxy adds them \
                    for that call only), while a persistent context's network helper serves every call; use a one-shot context (like `agent`) for bound secrets",
            V::PersistWithSecrets => "persist = true cannot be combined with secrets.allow: processes of a persistent context outlive the call, \
                    so a secret handed to one call would stay reachable by every later call's code; use a one-shot context for secrets",
            V::PersistWithScope => "persist = true cannot be combined with security.scope = true: Landlock scopes signals and abstract sockets to one call's own domain, \
                    so a later call could not signal (kill) what an earlier call started; the context's pid namespace already keeps its signals inside it; set scope = false",
            V::PoolNeedsPidMount => "pool = N needs the \"pid\" and \"mount\" namespaces (a prepared sandbox's pid 1 holds them, and its calls join them); add both to namespaces",
            V::PoolTooLarge => "pool must be at most 32 (each prepared sandbox holds its namespaces, mounts and a process ready for one call)",
            V::SwapNeedsMemory => "limits.memory_swap_max is swap beyond memory_max, so it needs limits.memory_max; add memory_max or remove memory_swap_max",
            V::PidsMaxZero => "limits.pids_max must be at least 1",
            V::IdentityCountZero => "identity.count must be at least 1 (65536 maps every id a system uses)",
            V::IdentityRoot => "identity maps the sandbox's root onto a host id, which must not be 0 (root outside); pick a range no account uses, e.g. identity = { uid = 100000, gid = 100000, count = 65536 }",
            V::IdentityOverflow => "identity: uid + count and gid + count must stay below 4294967296",
            V::IdentityNeedsPid => "identity needs the \"pid\" namespace (its pid 1 maps the target's ids); add \"pid\" and \"mount\" to namespaces",
            V::IdentityWithSupervise => "identity does not apply to a control-mode context ([supervise]): the control plane is trusted; remove identity",
            V::RunAsOutsideIdentity => "with identity, security.run_as names ids inside the sandbox, which must be below identity.count",
            V::OpTwice { name } => return write!(f, "ops lists {name:?} twice; list each operation once"),
            V::OpsNeedProxy => "ops are called through the egress gate: set [context.NAME.net] mode = \"private\" with a non-empty net.allow (or remove ops)",
            V::OpsMustHideState => return write!(
                f,
                "ops need fs.hide to include {RUNTIME_DIR} (the control plane's socket is there, and only the gate may reach it); add it to [fs] hide"
            ),
            V::Net(v) => return v.fmt(f),
            V::Service(v) => return v.fmt(f),
        };
        f.write_str(text)
    }
}
