//! Checks that span several keys of a context, each a named rule, run after parsing.

use anyhow::{bail, Context as _, Result};
use std::path::Path;

use super::*;

impl Policy {
    /// Parse and validate policy text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Policy> {
        // `toml` gives up on keys nested a hundred deep with an error that names no place.
        if let Some((line, col)) = too_deep(text) {
            bail!(
                "invalid policy {origin}:{line}:{col}: keys nest more than {MAX_KEY_DEPTH} levels deep here \
                 (table headers, dotted keys, inline tables and arrays together), and no policy key is deeper than 6; \
                 check this line"
            );
        }
        let policy: Policy = toml::from_str(text).map_err(|e| {
            let at = match e.span() {
                Some(s) => {
                    let (line, col) = line_col(text, s.start);
                    format!(":{line}:{col}")
                }
                None => String::new(),
            };
            anyhow::anyhow!("invalid policy {origin}{at}: {}", e.message().trim_end())
        })?;
        // Every key was checked as written; now each context's `extends` is merged in.
        let policy = match policy.context.values().any(|c| c.extends.is_some()) {
            true => toml::Value::Table(super::extends::resolve(text, origin)?)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("invalid policy {origin}: {}", e.message().trim_end())
                })?,
            false => policy,
        };
        policy.validate(text, origin)?;
        Ok(policy)
    }

    /// Policy text from the bytes of a file: UTF-8, or an error naming the line and column of the
    /// first byte that is not (`toml` would only say the stream is not UTF-8).
    pub fn text_from(bytes: Vec<u8>, origin: &str) -> Result<String> {
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            let (line, col) = line_col(before, at);
            anyhow::anyhow!(
                "invalid policy {origin}:{line}:{col}: not UTF-8 (byte 0x{:02x} here); a policy is UTF-8 text: \
                 save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
                bytes[at]
            )
        })
    }

    /// Checks that involve several keys at once: every rule of [`RULES`] on every context; the
    /// first broken one is reported with the file and line of the context's table.
    fn validate(&self, text: &str, origin: &str) -> Result<()> {
        for (name, ctx) in &self.context {
            for rule in RULES {
                if let Err(why) = rule(ctx) {
                    let line = find_line(text, &format!("[context.{name}")).unwrap_or(0);
                    bail!("invalid policy {origin}:{line}: context \"{name}\": {why}");
                }
            }
            if let Err(why) = self.services_rules(ctx) {
                let line = find_line(text, &format!("[context.{name}")).unwrap_or(0);
                bail!("invalid policy {origin}:{line}: context \"{name}\": {why}");
            }
        }
        if let Err(why) = net::check_reserved(self) {
            let line = find_line(text, "publish").unwrap_or(0);
            bail!("invalid policy {origin}:{line}: {why}");
        }
        Ok(())
    }

    /// The named context, or an error listing the ones that exist.
    pub fn context(&self, name: &str) -> Result<&Context> {
        self.context
            .iter()
            .find(|(n, _)| n.0 == name)
            .map(|(_, c)| c)
            .with_context(|| {
                let known: Vec<&str> = self.context.keys().map(|k| k.0.as_str()).collect();
                format!(
                    "unknown context {name:?}; this policy defines: {}",
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            })
    }
}

/// A rule across keys of one context: `Err` says what is wrong and how to fix it.
type Rule = fn(&Context) -> std::result::Result<(), String>;

/// Every cross-key rule, in the order they are checked.
const RULES: &[Rule] = &[
    pid_needs_mount,
    fs_needs_mount,
    dev_rules,
    all_caps_alone,
    seccomp_needs_no_new_privs,
    confined_caps,
    supervise_rules,
    landlock_needs_no_new_privs,
    run_as_keeps_no_caps,
    no_port_zero,
    secret_files_rules,
    secrets_require_rules,
    bind_rules,
    ptrace_needs_seccomp,
    persist_rules,
    limits_rules,
    identity_rules,
    net::check_context,
];

/// Where persistent contexts keep their state; a persistent context must hide it.
pub const RUNTIME_DIR: &str = "/run/sbx";

/// Capabilities no confined context may keep: each one can undo the sandbox or read past it.
pub const NEVER_FOR_CONFINED: &[&str] = &[
    "CAP_SYS_ADMIN",
    "CAP_SYS_PTRACE",
    "CAP_DAC_READ_SEARCH",
    "CAP_NET_ADMIN",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_BPF",
    "CAP_PERFMON",
    "CAP_SYSLOG",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_SYS_BOOT",
    "CAP_SYS_TIME",
];

fn pid_needs_mount(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.has(Namespace::Pid) && !ctx.has(Namespace::Mount) {
        return Err("namespace \"pid\" needs \"mount\" too, so that a private /proc showing only the context's processes can be mounted; add \"mount\" to namespaces".into());
    }
    Ok(())
}

fn fs_needs_mount(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.fs.is_empty() && !ctx.has(Namespace::Mount) {
        return Err(
            "[fs] settings need the \"mount\" namespace; add \"mount\" to namespaces".into(),
        );
    }
    Ok(())
}

/// `fs.devices` go into the private /dev, below /dev, and not where the private /dev already
/// puts its own (its devpts and /dev/shm).
fn dev_rules(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.fs.devices.is_empty() {
        return Ok(());
    }
    if !ctx.private_dev() {
        return Err("fs.devices adds devices to the private /dev; set fs.dev = \"private\" (with the \"pid\" and \"mount\" namespaces it is the default)".into());
    }
    for d in &ctx.fs.devices {
        let p = d.as_path();
        let rel = p.strip_prefix("/dev").unwrap_or(Path::new(""));
        let first = rel.components().next().map(|c| c.as_os_str().to_owned());
        if rel.as_os_str().is_empty()
            || matches!(
                first.as_deref().and_then(|f| f.to_str()),
                Some("pts" | "shm")
            )
        {
            return Err(format!(
                "fs.devices: {} is not a device path the private /dev can add; give a node below /dev such as \"/dev/fuse\" or \"/dev/net/tun\" (not /dev/pts or /dev/shm, which it makes itself)",
                p.display()
            ));
        }
    }
    Ok(())
}

fn all_caps_alone(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.keeps_all_caps() && ctx.security.caps.len() > 1 {
        return Err("security.caps = [\"ALL\"] keeps every capability and cannot be combined with other names".into());
    }
    Ok(())
}

fn seccomp_needs_no_new_privs(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.seccomp == SeccompMode::Default && !ctx.security.no_new_privs {
        return Err("seccomp = \"default\" needs no_new_privs = true (the kernel installs filters only then)".into());
    }
    Ok(())
}

fn confined_caps(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.has(Namespace::Pid) {
        return Ok(());
    }
    if ctx.security.keeps_all_caps() {
        return Err("a context with its own pid namespace is confined and cannot keep all capabilities (caps = [\"ALL\"]); list the ones it needs".into());
    }
    match ctx.security.caps.iter().find(|c| {
        c.canonical()
            .is_some_and(|name| NEVER_FOR_CONFINED.contains(&name.as_str()))
    }) {
        Some(c) => Err(format!("a confined context (own pid namespace) cannot keep {c} because it can undo the sandbox; remove it from security.caps")),
        None => Ok(()),
    }
}

fn supervise_rules(ctx: &Context) -> std::result::Result<(), String> {
    let Some(sup) = &ctx.supervise else {
        return Ok(());
    };
    if !ctx.namespaces.is_empty() || ctx.net.own_namespace() {
        return Err("[supervise] (control mode) runs the control plane in the container's own namespaces, where it is not hidden from what it supervises; remove namespaces/net from this context".into());
    }
    if sup.ports.contains(&0) {
        return Err("supervise.ports cannot contain 0".into());
    }
    let mut seen = sup.ports.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != sup.ports.len() {
        return Err("supervise.ports lists a port twice".into());
    }
    Ok(())
}

fn landlock_needs_no_new_privs(ctx: &Context) -> std::result::Result<(), String> {
    let sec = &ctx.security;
    let landlock = !sec.deny_bind.is_empty()
        || !sec.deny_connect.is_empty()
        || sec.scope
        || !sec.exec_only_under.is_empty();
    if landlock && !sec.no_new_privs {
        return Err(
            "Landlock settings (deny_bind, deny_connect, scope, exec_only_under) need no_new_privs = true"
                .into(),
        );
    }
    Ok(())
}

fn run_as_keeps_no_caps(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.run_as.is_some() && !ctx.security.caps.is_empty() {
        return Err("security.run_as switches to a non-root user, which keeps no capabilities; remove security.caps".into());
    }
    Ok(())
}

fn no_port_zero(ctx: &Context) -> std::result::Result<(), String> {
    let sec = &ctx.security;
    if sec.deny_bind.contains(&0) || sec.deny_connect.contains(&0) {
        return Err("port 0 cannot be denied (it means \"any free port\"); list real ports".into());
    }
    if ctx.listen.contains(&0) {
        return Err(
            "listen cannot contain port 0; list the reserved ports this context may be handed"
                .into(),
        );
    }
    Ok(())
}

fn secret_files_rules(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.secrets.files.is_empty() && !ctx.has(Namespace::Mount) {
        return Err("secrets.files puts secrets on a private tmpfs, which needs the \"mount\" namespace; add \"mount\" to namespaces".into());
    }
    match ctx
        .secrets
        .files
        .iter()
        .find(|f| !ctx.secrets.allow.iter().any(|a| a.matches(&f.0)))
    {
        Some(f) => Err(format!("secrets.files lists {f}, which secrets.allow does not admit; add it to secrets.allow or remove it from files")),
        None => Ok(()),
    }
}

/// `secrets.require`: each a name `secrets.allow` admits (a call could never hand it otherwise),
/// listed once, and not one the injection filter refuses as a secret (unless it is a file).
fn secrets_require_rules(ctx: &Context) -> std::result::Result<(), String> {
    let s = &ctx.secrets;
    for (i, r) in s.require.iter().enumerate() {
        if !s.allow.iter().any(|a| a.matches(&r.0)) {
            return Err(format!("secrets.require lists {r}, which secrets.allow does not admit, so no call could hand it; add it to secrets.allow or remove it from require"));
        }
        if s.require[..i].contains(r) {
            return Err(format!(
                "secrets.require lists {r} twice; list each name once"
            ));
        }
        if env_names::is_denied(&r.0) && !s.files.contains(r) {
            return Err(format!("secrets.require lists {r}, which is refused as a secret (it makes programs load code from its value); deliver it as a file (secrets.files) or require another name"));
        }
    }
    Ok(())
}

/// Bound secrets: each entry well-formed, every name admitted by `secrets.allow`, none also a
/// file or bound twice, the mount namespace for the per-call CA's file, and the egress proxy of
/// `net = "private"` (a bound secret only works through it).
fn bind_rules(ctx: &Context) -> std::result::Result<(), String> {
    let binds = &ctx.secrets.bind;
    if !binds.is_empty() && !ctx.net.proxied() {
        return Err("secrets.bind works only through the egress proxy: set [context.NAME.net] mode = \"private\" with the bound hosts in net.allow".into());
    }
    if !binds.is_empty() && !ctx.has(Namespace::Mount) {
        return Err("secrets.bind installs a per-call CA certificate on a private tmpfs, which needs the \"mount\" namespace; add \"mount\" to namespaces".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    for b in binds {
        b.check()?;
        let names = b.names();
        // The session token is optional; the key pair and a value's name must be admitted.
        for n in names.iter().filter(|n| **n != bind::AWS_TOKEN) {
            if !ctx.secrets.allow.iter().any(|p| p.matches(n)) {
                return Err(format!("secrets.bind names {n}, which secrets.allow does not admit; add it to secrets.allow"));
            }
        }
        for n in names {
            if ctx.secrets.files.iter().any(|f| f.0 == n) {
                return Err(format!("{n} is both in secrets.files and secrets.bind; a bound secret never enters the sandbox, so remove it from files"));
            }
            if !seen.insert(n) {
                return Err(format!(
                    "{n} is bound twice in secrets.bind; list all its hosts in one entry"
                ));
            }
        }
    }
    Ok(())
}

fn ptrace_needs_seccomp(ctx: &Context) -> std::result::Result<(), String> {
    if ctx.security.seccomp == SeccompMode::None && ctx.security.allow_ptrace {
        return Err("security.allow_ptrace only has a meaning with seccomp = \"default\"".into());
    }
    Ok(())
}

/// `persist = true`: the keeper is pid 1 of a pid and mount namespace, its state is hidden, and
/// nothing that a later call must not inherit (secrets, a per-call Landlock scope) is allowed.
fn persist_rules(ctx: &Context) -> std::result::Result<(), String> {
    if !ctx.persist {
        return Ok(());
    }
    if ctx.supervise.is_some() {
        return Err("persist = true cannot be combined with [supervise] (control mode runs in the container's own namespaces); remove one of them".into());
    }
    if !(ctx.has(Namespace::Pid) && ctx.has(Namespace::Mount)) {
        return Err("persist = true needs the \"pid\" and \"mount\" namespaces (the keeper is pid 1 of them); add both to namespaces".into());
    }
    let hidden = ctx
        .fs
        .hide
        .iter()
        .any(|h| std::path::Path::new(RUNTIME_DIR).starts_with(h.as_path()) && h.0 != "/");
    if !hidden {
        return Err(format!(
            "persist = true needs fs.hide to include {RUNTIME_DIR} (the keepers' state must be invisible to the context's code, which outlives each call); add it to [fs] hide"
        ));
    }
    if !ctx.secrets.bind.is_empty() {
        return Err("persist = true cannot be combined with secrets.bind: bound secrets are values of one call (the proxy adds them \
                    for that call only), while a persistent context's network helper serves every call; use a one-shot context (like `agent`) for bound secrets".into());
    }
    if !ctx.secrets.allow.is_empty() {
        return Err("persist = true cannot be combined with secrets.allow: processes of a persistent context outlive the call, \
                    so a secret handed to one call would stay reachable by every later call's code; use a one-shot context for secrets".into());
    }
    if ctx.security.scope {
        return Err("persist = true cannot be combined with security.scope = true: Landlock scopes signals and abstract sockets to one call's own domain, \
                    so a later call could not signal (kill) what an earlier call started; the context's pid namespace already keeps its signals inside it; set scope = false".into());
    }
    Ok(())
}

fn limits_rules(ctx: &Context) -> std::result::Result<(), String> {
    let Some(l) = &ctx.limits else {
        return Ok(());
    };
    if l.memory_swap_max.is_some() && l.memory_max.is_none() {
        return Err("limits.memory_swap_max is swap beyond memory_max, so it needs limits.memory_max; add memory_max or remove memory_swap_max".into());
    }
    if l.pids_max == Some(0) {
        return Err("limits.pids_max must be at least 1".into());
    }
    Ok(())
}

/// `identity`: a non-empty range of host ids other than root's, for a confined context that runs
/// no control plane; `run_as` inside it.
fn identity_rules(ctx: &Context) -> std::result::Result<(), String> {
    let Some(ids) = ctx.identity else {
        return Ok(());
    };
    if ids.count == 0 {
        return Err("identity.count must be at least 1 (65536 maps every id a system uses)".into());
    }
    if ids.uid == 0 || ids.gid == 0 {
        return Err("identity maps the sandbox's root onto a host id, which must not be 0 (root outside); pick a range no account uses, e.g. identity = { uid = 100000, gid = 100000, count = 65536 }".into());
    }
    if ids.uid.checked_add(ids.count).is_none() || ids.gid.checked_add(ids.count).is_none() {
        return Err("identity: uid + count and gid + count must stay below 4294967296".into());
    }
    if !ctx.has(Namespace::Pid) {
        return Err("identity needs the \"pid\" namespace (its pid 1 maps the target's ids); add \"pid\" and \"mount\" to namespaces".into());
    }
    if ctx.supervise.is_some() {
        return Err("identity does not apply to a control-mode context ([supervise]): the control plane is trusted; remove identity".into());
    }
    if let Some(r) = ctx.security.run_as {
        if r.uid >= ids.count || r.gid >= ids.count {
            return Err("with identity, security.run_as names ids inside the sandbox, which must be below identity.count".into());
        }
    }
    Ok(())
}

/// The deepest a key may nest, counting table headers, dotted keys, inline tables and arrays
/// together. No policy key is deeper than 6 (`[[context.NAME.secrets.bind]]` and its keys);
/// `toml` itself gives up somewhere below a hundred, with an error that names no place.
pub const MAX_KEY_DEPTH: usize = 32;

/// The line and column of the first key (or array) nested deeper than [`MAX_KEY_DEPTH`], if any.
/// A small scanner of TOML's structure (strings, comments, headers, dotted keys, inline tables,
/// arrays) that never recurses deeper than that: on anything it does not understand it stops and
/// leaves the error to `toml`.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut s = Scan {
        b: text.as_bytes(),
        i: 0,
        line: 1,
        line_start: 0,
    };
    match s.document() {
        Err(Some(at)) => Some(at),
        _ => None,
    }
}

/// Why [`Scan`] stopped early: `Some((line, col))` nested too deep there, `None` not understood.
type Stop = Option<(usize, usize)>;

/// Where [`too_deep`] is in the text.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    line_start: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at(&self) -> (usize, usize) {
        (self.line, self.i - self.line_start + 1)
    }

    fn newline(&mut self) {
        self.i += 1;
        self.line += 1;
        self.line_start = self.i;
    }

    fn check(depth: usize, at: (usize, usize)) -> std::result::Result<(), Stop> {
        match depth > MAX_KEY_DEPTH {
            true => Err(Some(at)),
            false => Ok(()),
        }
    }

    fn expect(&mut self, c: u8) -> std::result::Result<(), Stop> {
        if self.peek() != Some(c) {
            return Err(None);
        }
        self.i += 1;
        Ok(())
    }

    fn blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// Blanks, newlines and comments (between lines, inside arrays and inline tables).
    fn space(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r') => self.i += 1,
                Some(b'\n') => self.newline(),
                Some(b'#') => self.comment(),
                _ => return,
            }
        }
    }

    fn comment(&mut self) {
        while !matches!(self.peek(), None | Some(b'\n')) {
            self.i += 1;
        }
    }

    /// The end of a line: blanks, a comment, then a newline or the end of the text.
    fn end_of_line(&mut self) -> std::result::Result<(), Stop> {
        self.blanks();
        match self.peek() {
            Some(b'#') => self.comment(),
            Some(b'\r') => self.i += 1,
            _ => {}
        }
        match self.peek() {
            None => Ok(()),
            Some(b'\n') => {
                self.newline();
                Ok(())
            }
            _ => Err(None),
        }
    }

    /// A basic or literal string, one-line or multi-line.
    fn string(&mut self) -> std::result::Result<(), Stop> {
        let q = self.peek().ok_or(None)?;
        let triple = self.b[self.i..].starts_with(&[q, q, q]);
        self.i += if triple { 3 } else { 1 };
        loop {
            match self.peek() {
                None => return Err(None),
                Some(b'\n') if triple => self.newline(),
                Some(b'\n') => return Err(None),
                Some(b'\\') if q == b'"' => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'\n') => self.newline(),
                        Some(_) => self.i += 1,
                        None => return Err(None),
                    }
                }
                Some(c) if c == q && !triple => {
                    self.i += 1;
                    return Ok(());
                }
                Some(c) if c == q && self.b[self.i..].starts_with(&[q, q, q]) => {
                    // Up to two more quotes belong to the content before the closing three.
                    self.i += 3;
                    while self.peek() == Some(q) {
                        self.i += 1;
                    }
                    return Ok(());
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// A dotted key; returns how many parts it has.
    fn key(&mut self) -> std::result::Result<usize, Stop> {
        let mut parts = 0;
        loop {
            self.blanks();
            match self.peek() {
                Some(b'"' | b'\'') => self.string()?,
                _ => {
                    let start = self.i;
                    while self.peek().is_some_and(|c| {
                        !matches!(
                            c,
                            b' ' | b'\t'
                                | b'\r'
                                | b'\n'
                                | b'.'
                                | b'='
                                | b'['
                                | b']'
                                | b'{'
                                | b'}'
                                | b','
                                | b'#'
                                | b'"'
                                | b'\''
                        )
                    }) {
                        self.i += 1;
                    }
                    if self.i == start {
                        return Err(None);
                    }
                }
            }
            parts += 1;
            self.blanks();
            if self.peek() != Some(b'.') {
                return Ok(parts);
            }
            self.i += 1;
        }
    }

    /// `KEY = VALUE` whose key starts `depth` levels deep; returns nothing, or where it is too
    /// deep.
    fn key_value(&mut self, depth: usize) -> std::result::Result<(), Stop> {
        let at = self.at();
        let depth = depth + self.key()?;
        Self::check(depth, at)?;
        self.expect(b'=')?;
        self.value(depth)
    }

    /// A value whose key sits `depth` levels deep.
    fn value(&mut self, depth: usize) -> std::result::Result<(), Stop> {
        self.blanks();
        let (open, close) = match self.peek() {
            Some(b'"' | b'\'') => return self.string(),
            Some(b'[') => (b'[', b']'),
            Some(b'{') => (b'{', b'}'),
            Some(_) => {
                // A number, boolean or date: up to the next delimiter.
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b'\n' | b'\r' | b'#')
                ) {
                    self.i += 1;
                }
                return Ok(());
            }
            None => return Err(None),
        };
        Self::check(depth + 1, self.at())?;
        self.i += 1;
        loop {
            self.space();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(());
            }
            match open {
                b'[' => self.value(depth + 1)?,
                _ => self.key_value(depth)?,
            }
            self.space();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err(None),
            }
        }
    }

    /// The whole text: table headers and `KEY = VALUE` lines.
    fn document(&mut self) -> std::result::Result<(), Stop> {
        let mut table = 0;
        loop {
            self.space();
            let at = self.at();
            match self.peek() {
                None => return Ok(()),
                Some(b'[') => {
                    self.i += 1;
                    let array = self.peek() == Some(b'[');
                    self.i += usize::from(array);
                    table = self.key()?;
                    Self::check(table, at)?;
                    self.expect(b']')?;
                    if array {
                        self.expect(b']')?;
                    }
                }
                Some(_) => self.key_value(table)?,
            }
            self.end_of_line()?;
        }
    }
}

/// 1-based line and column (in bytes) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

pub(super) fn find_line(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().starts_with(needle))
        .map(|i| i + 1)
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
