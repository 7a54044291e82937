//! Why a policy is refused, and where: [`PolicyError`]. Its text names the file (`origin`), the
//! line (and column, where the place is known to the byte) and the fix.

use std::fmt;

use super::{Violation, MAX_KEY_DEPTH};
use crate::model::extends::Unresolved;

/// A policy that cannot be used, or a context it does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The file's bytes are not UTF-8: the place of the first byte that is not, and that byte.
    NotUtf8 {
        origin: String,
        line: usize,
        col: usize,
        byte: u8,
    },
    /// Keys nest deeper than [`MAX_KEY_DEPTH`] at this place.
    TooDeep {
        origin: String,
        line: usize,
        col: usize,
    },
    /// `toml` refused the text: bad syntax, an unknown key, a wrong type or value. Its message,
    /// and its place when `toml` gave one.
    Toml {
        origin: String,
        at: Option<(usize, usize)>,
        message: String,
    },
    /// A context's `extends` cannot be followed.
    Extends { origin: String, why: Unresolved },
    /// A rule across keys of one context (`line`: its table's header, 0 if not found).
    Context {
        origin: String,
        line: usize,
        context: String,
        violation: Violation,
    },
    /// A rule across contexts (`line`: where the first `publish` is, 0 if not found).
    Contexts {
        origin: String,
        line: usize,
        violation: Violation,
    },
    /// No context of this name; `known` lists those the policy has.
    UnknownContext { name: String, known: Vec<String> },
}

impl PolicyError {
    /// `toml`'s error for `text`, placed at the line and column of its span (if it has one).
    pub(super) fn toml(text: &str, origin: &str, e: &toml::de::Error) -> PolicyError {
        PolicyError::Toml {
            origin: origin.to_string(),
            at: e
                .span()
                .map(|s| crate::model::place::line_col(text, s.start)),
            message: e.message().trim_end().to_string(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::NotUtf8 { origin, line, col, byte } => write!(
                f,
                "invalid policy {origin}:{line}:{col}: not UTF-8 (byte 0x{byte:02x} here); a policy is UTF-8 text: \
                 save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
            ),
            PolicyError::TooDeep { origin, line, col } => write!(
                f,
                "invalid policy {origin}:{line}:{col}: keys nest more than {MAX_KEY_DEPTH} levels deep here \
                 (table headers, dotted keys, inline tables and arrays together), and no policy key is deeper than 6; \
                 check this line"
            ),
            PolicyError::Toml { origin, at, message } => match at {
                Some((line, col)) => write!(f, "invalid policy {origin}:{line}:{col}: {message}"),
                None => write!(f, "invalid policy {origin}: {message}"),
            },
            PolicyError::Extends { origin, why } => write!(
                f,
                "invalid policy {origin}:{}: context \"{}\": {}",
                why.line, why.context, why.why
            ),
            PolicyError::Context {
                origin,
                line,
                context,
                violation,
            } => write!(
                f,
                "invalid policy {origin}:{line}: context \"{context}\": {violation}"
            ),
            PolicyError::Contexts {
                origin,
                line,
                violation,
            } => write!(f, "invalid policy {origin}:{line}: {violation}"),
            PolicyError::UnknownContext { name, known } => write!(
                f,
                "unknown context {name:?}; this policy defines: {}",
                if known.is_empty() {
                    "(none)".to_string()
                } else {
                    known.join(", ")
                }
            ),
        }
    }
}

impl std::error::Error for PolicyError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::extends::BadExtends;
    use crate::model::{NetViolation, Policy, ServiceViolation};

    fn parse(text: &str) -> PolicyError {
        Policy::parse(text, "t.toml").unwrap_err()
    }

    #[test]
    fn each_kind_keeps_its_place_and_text() {
        let e = Policy::text_from(b"version = 1\n# \xc3\xa9\xff\n".to_vec(), "t.toml").unwrap_err();
        assert_eq!(
            e,
            PolicyError::NotUtf8 {
                origin: "t.toml".into(),
                line: 2,
                col: 5,
                byte: 0xff
            }
        );
        assert!(
            e.to_string()
                .starts_with("invalid policy t.toml:2:5: not UTF-8 (byte 0xff here);"),
            "{e}"
        );
        let deep = format!("version = 1\n{} = 1\n", vec!["a"; 40].join("."));
        assert_eq!(
            parse(&deep),
            PolicyError::TooDeep {
                origin: "t.toml".into(),
                line: 2,
                col: 1
            }
        );
        let PolicyError::Toml { at, message, .. } = parse("version = 1\n[context.c]\nbogus = 1\n")
        else {
            panic!("not a toml error");
        };
        assert_eq!(at, Some((3, 1)));
        assert!(message.contains("unknown field `bogus`"), "{message}");
        let e = parse("version = 1\n\n[context.c]\nnamespaces = [\"pid\"]\n");
        assert_eq!(
            e,
            PolicyError::Context {
                origin: "t.toml".into(),
                line: 3,
                context: "c".into(),
                violation: Violation::PidNeedsMount
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid policy t.toml:3: context \"c\": namespace \"pid\" needs \"mount\" too, so that a private /proc \
             showing only the context's processes can be mounted; add \"mount\" to namespaces"
        );
        // Through anyhow, as the launcher prints it: the same text, nothing added.
        assert_eq!(
            format!("{:#}", anyhow::Error::from(e.clone())),
            e.to_string()
        );
    }

    #[test]
    fn rules_of_other_modules_are_typed_too() {
        let e = parse("version = 1\n[context.c]\nnet = { mode = \"none\", allow = [\"a.com\"] }\n");
        let PolicyError::Context { violation, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            *violation,
            Violation::Net(NetViolation::NeedsPrivate {
                mode: crate::model::NetMode::None
            })
        );
        assert!(e.to_string().contains("(this context has \"none\")"), "{e}");
        let e = parse(
            "version = 1\n[context.a.supervise]\nports = [8080]\n[context.b.net]\nmode = \"private\"\npublish = [8080]\n",
        );
        assert_eq!(
            e,
            PolicyError::Contexts {
                origin: "t.toml".into(),
                line: 6,
                violation: Violation::Net(NetViolation::ReservedPublished {
                    context: "b".into(),
                    port: 8080,
                    owner: "a".into()
                })
            }
        );
        let e = parse(
            "version = 1\n[context.a.supervise]\nports = [8080]\n\
             [[context.a.supervise.services]]\nname = \"j\"\nctx = \"nope\"\ncmd = [\"/bin/true\"]\n",
        );
        let PolicyError::Context { violation, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            *violation,
            Violation::Service(ServiceViolation::UnknownContext {
                service: "j".into(),
                context: "nope".into()
            })
        );
        assert!(
            e.to_string()
                .ends_with("supervise.services \"j\": context \"nope\" is not in this policy"),
            "{e}"
        );
    }

    #[test]
    fn extends_and_unknown_contexts_say_which() {
        let e = parse("version = 1\n[context.a]\nextends = \"b\"\n[context.b]\nextends = \"a\"\n");
        let PolicyError::Extends { why, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(why.context, "a");
        assert_eq!(why.line, 2);
        assert_eq!(
            why.why,
            BadExtends::Circle {
                chain: vec!["a".into(), "b".into(), "a".into()]
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid policy t.toml:2: context \"a\": extends goes round in a circle (a -> b -> a)"
        );
        let e = parse("version = 1\n[context.a]\nextends = \"nope\"\n");
        assert!(
            e.to_string().starts_with(
                "invalid policy t.toml:2: context \"a\": extends = \"nope\": no such context in this file or the \
                 embedded default (control, "
            ),
            "{e}"
        );
        let p = Policy::parse("version = 1\n", "t.toml").unwrap();
        let e = p.context("x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown context \"x\"; this policy defines: (none)"
        );
        let p = Policy::parse(crate::model::EMBEDDED_DEFAULT, "d").unwrap();
        assert_eq!(
            p.context("x").unwrap_err().to_string(),
            "unknown context \"x\"; this policy defines: control, platform, user"
        );
    }
}
