//! `extends = "NAME"`: a context that starts from another one and overrides keys. The base is a
//! context of the same file, or of the embedded default (`control`, `platform`, `user`) when the
//! file has none of that name (or the context extends its own name: `[context.user]` with
//! `extends = "user"` refines the shipped `user`). Tables are merged key by key, recursively;
//! any other value (a string, a number, an array) given by the context replaces the base's
//! whole. Chains are followed (at most [`MAX_DEPTH`] deep); a cycle or an unknown base is an
//! error naming the line.
//!
//! The file is first parsed as written (so every key and value is checked with its line and
//! column); the merge then only combines values that were each valid.

use std::fmt;

use toml::{Table, Value};

/// How many `extends` a context may go through.
pub const MAX_DEPTH: usize = 8;

/// A context whose `extends` cannot be followed: its name, the line of its table (0 if not
/// found) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub context: String,
    pub line: usize,
    pub why: BadExtends,
}

/// Why an `extends` cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadExtends {
    /// No context `base` in the file or the embedded default (`known`: the embedded ones).
    NoSuchBase { base: String, known: Vec<String> },
    /// The chain comes back to a context it went through: the contexts in order, the repeated
    /// one last.
    Circle { chain: Vec<String> },
    /// More than [`MAX_DEPTH`] levels.
    TooDeep,
}

impl fmt::Display for BadExtends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadExtends::NoSuchBase { base, known } => write!(
                f,
                "extends = \"{base}\": no such context in this file or the embedded default ({})",
                known.join(", ")
            ),
            BadExtends::Circle { chain } => {
                write!(f, "extends goes round in a circle ({})", chain.join(" -> "))
            }
            BadExtends::TooDeep => write!(f, "extends is more than {MAX_DEPTH} deep"),
        }
    }
}

/// The policy's tables (`top`, its text as TOML tables) with every `extends` resolved against
/// the same file and `shipped` (the embedded default's contexts, [`shipped`]); `text` for lines.
pub fn resolve(mut top: Table, shipped: &Table, text: &str) -> Result<Table, Unresolved> {
    let own = contexts(&top).clone();
    let mut merged = Table::new();
    for name in own.keys() {
        merged.insert(name.clone(), Value::Table(one(name, &own, shipped, text)?));
    }
    top.insert("context".into(), Value::Table(merged));
    Ok(top)
}

/// The `context` table of a policy's tables (empty if it has none).
fn contexts(top: &Table) -> &Table {
    static EMPTY: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    match top.get("context") {
        Some(Value::Table(t)) => t,
        _ => EMPTY.get_or_init(Table::new),
    }
}

/// The embedded default's contexts.
pub fn shipped() -> Result<Table, toml::de::Error> {
    let top: Table = toml::from_str(super::EMBEDDED_DEFAULT)?;
    Ok(contexts(&top).clone())
}

/// Context `name` of `own`, its bases merged under it.
fn one(name: &str, own: &Table, shipped: &Table, text: &str) -> Result<Table, Unresolved> {
    let unresolved = |why: BadExtends| Unresolved {
        context: name.to_string(),
        line: super::place::find_line(text, &format!("[context.{name}")).unwrap_or(0),
        why,
    };
    let mut chain: Vec<(String, bool)> = vec![(name.to_string(), false)];
    let mut layers: Vec<Table> = Vec::new();
    let mut current = table_of(own, name).cloned().unwrap_or_default();
    loop {
        let Some(Value::String(base)) = current.get("extends").cloned() else {
            layers.push(current);
            break;
        };
        let (last, in_shipped) = chain.last().cloned().unwrap_or_default();
        // Looked up in the same file first, unless it names itself or is already a shipped one.
        let from_own = !in_shipped && base != last && own.contains_key(&base);
        let next = match from_own {
            true => table_of(own, &base),
            false => table_of(shipped, &base),
        };
        let Some(next) = next else {
            let known = shipped.keys().cloned().collect();
            return Err(unresolved(BadExtends::NoSuchBase { base, known }));
        };
        if chain.iter().any(|(n, s)| *n == base && *s != from_own) {
            let mut names: Vec<String> = chain.into_iter().map(|(n, _)| n).collect();
            names.push(base);
            return Err(unresolved(BadExtends::Circle { chain: names }));
        }
        if chain.len() > MAX_DEPTH {
            return Err(unresolved(BadExtends::TooDeep));
        }
        let mut layer = current;
        layer.remove("extends");
        layers.push(layer);
        chain.push((base, !from_own));
        current = next.clone();
    }
    // The deepest base first, each context's own keys over it.
    let mut out = Table::new();
    for layer in layers.into_iter().rev() {
        merge(&mut out, layer);
    }
    // `extends` stays as the context wrote it (shown by `policy show`). `pool` is never
    // inherited: prepared sandboxes are a deployment's choice for the context named, and a
    // context built on `user` with `persist` or `net.publish` could not have them.
    for key in ["extends", "pool"] {
        match table_of(own, name).and_then(|t| t.get(key)) {
            Some(v) => out.insert(key.into(), v.clone()),
            None => out.remove(key),
        };
    }
    Ok(out)
}

fn table_of<'a>(t: &'a Table, name: &str) -> Option<&'a Table> {
    match t.get(name) {
        Some(Value::Table(c)) => Some(c),
        _ => None,
    }
}

/// `over` merged into `base`: tables key by key, any other value replacing the base's.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{NetMode, Policy, SeccompMode};

    fn parse(text: &str) -> Result<Policy, crate::model::PolicyError> {
        Policy::parse(text, "t.toml")
    }

    #[test]
    fn a_context_starts_from_the_shipped_user_and_overrides_keys() {
        let p = parse(
            "version = 1\n[context.job]\nextends = \"user\"\ntimeout = 60\n[context.job.fs]\nwritable = [\"/srv/work\"]\n",
        )
        .unwrap();
        let job = p.context("job").unwrap();
        assert_eq!(job.timeout, Some(60));
        // Tables merge: fs keeps user's read_only and tmpfs, writable is replaced.
        assert_eq!(job.fs.writable.len(), 1);
        assert!(job
            .fs
            .read_only
            .iter()
            .any(|r| r.as_path() == std::path::Path::new("/")));
        assert!(!job.fs.tmpfs.is_empty());
        assert_eq!(job.security.seccomp, SeccompMode::Default);
        assert_eq!(job.net.mode, NetMode::Private);
        assert!(job.identity.is_some());
        assert_eq!(job.extends.as_deref(), Some("user"));
    }

    #[test]
    fn pool_is_never_inherited() {
        let p = parse(
            "version = 1\n[context.job]\nextends = \"user\"\npersist = true\nsecurity.scope = false\n[context.mine]\nextends = \"user\"\npool = 4\n",
        )
        .unwrap();
        let shipped = Policy::parse(crate::model::load::EMBEDDED_DEFAULT, "default.toml").unwrap();
        assert!(
            shipped.context("user").unwrap().pool > 0,
            "the shipped user has one"
        );
        assert_eq!(p.context("job").unwrap().pool, 0);
        assert_eq!(p.context("mine").unwrap().pool, 4);
    }

    #[test]
    fn same_file_bases_chains_self_names_and_errors() {
        let p = parse(
            "version = 1\n[context.base]\nextends = \"user\"\ntimeout = 5\n[context.leaf]\nextends = \"base\"\ndescription = \"x\"\n[context.user]\nextends = \"user\"\ntimeout = 9\n",
        )
        .unwrap();
        let leaf = p.context("leaf").unwrap();
        assert_eq!(leaf.timeout, Some(5));
        assert!(
            leaf.identity.is_some(),
            "from the shipped user, two levels down"
        );
        // `user` extending "user" refines the shipped one.
        let user = p.context("user").unwrap();
        assert_eq!(user.timeout, Some(9));
        assert!(user.identity.is_some());
        let e = parse("version = 1\n\n[context.a]\nextends = \"nope\"\n").unwrap_err();
        assert!(
            e.to_string().contains("t.toml:3:") && e.to_string().contains("no such context"),
            "{e}"
        );
        let e = parse("version = 1\n[context.a]\nextends = \"b\"\n[context.b]\nextends = \"a\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("circle"), "{e}");
        // A bad value in the extending context is still reported with its line and column.
        let e =
            parse("version = 1\n[context.a]\nextends = \"user\"\ntimeout = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("t.toml:4:"), "{e}");
        // The merged context is validated like any other.
        let e = parse("version = 1\n[context.a]\nextends = \"user\"\nnamespaces = [\"mount\"]\n")
            .unwrap_err();
        assert!(e.to_string().contains("context \"a\""), "{e}");
    }
}
