//! A running persistent context's egress rules changed live (`sbx-exec ctx net`), as data (pure;
//! [`crate::run::persist::live`] carries it out): the new rule list from the live one and a
//! change, in the order reset, deny, allow. Rules are compared as parsed (`PyPI.org` is
//! `pypi.org`), and kept as written (trimmed), in order: the live list first, added ones at the
//! end.

use crate::model::egress::{Allow, AllowError};

/// What `ctx net` asks for.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Change {
    /// `--reset`: start from the policy's rules instead of the live ones.
    pub reset: bool,
    /// `--deny RULE`: remove these; each must be in the list (after the reset).
    pub deny: Vec<String>,
    /// `--allow RULE`: add these (one already in the list is kept once).
    pub allow: Vec<String>,
}

impl Change {
    /// Does it ask for anything (else it only shows the live rules)?
    pub fn is_empty(&self) -> bool {
        !self.reset && self.deny.is_empty() && self.allow.is_empty()
    }
}

/// The rules after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The new live list.
    pub rules: Vec<String>,
    /// Rules in the new list and not in the old one, and the other way round.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Added rules naming a port that was not captured when the context started (`port`): a
    /// client reaches it through the proxy variables only.
    pub uncaptured: Vec<(String, u16)>,
}

impl Outcome {
    /// Does the change leave the rules as they were (the same rules, maybe in another order)?
    pub fn unchanged(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// A rule that does not parse (the policy parser's message: the entry and the fix).
    #[error("{0}")]
    Rule(AllowError),
    /// `--deny` of a rule that is not live.
    #[error("--deny {rule:?}: no live rule is {rule:?}; the live rules are {}; deny one of them as it is listed (`sbx-exec ctx net {context} --show`)", listed(.live))]
    NotLive {
        context: String,
        rule: String,
        live: Vec<String>,
    },
}

fn listed(rules: &[String]) -> String {
    match rules.is_empty() {
        true => "none (every destination is refused)".to_string(),
        false => rules
            .iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// One rule, parsed; its text trimmed.
fn parse(text: &str) -> Result<(String, Allow), ChangeError> {
    let rule = text.parse::<Allow>().map_err(ChangeError::Rule)?;
    Ok((text.trim().to_string(), rule))
}

/// The rules of context `context` after `change`: from `live` (or `policy` with `reset`), less
/// `deny`, plus `allow`. `capture`: the ports captured when the context started.
pub fn apply(
    context: &str,
    live: &[String],
    policy: &[String],
    capture: &[u16],
    change: &Change,
) -> Result<Outcome, ChangeError> {
    let parse_all = |v: &[String]| v.iter().map(|t| parse(t)).collect::<Result<Vec<_>, _>>();
    let before = parse_all(live)?;
    let mut rules = match change.reset {
        true => parse_all(policy)?,
        false => before.clone(),
    };
    for text in &change.deny {
        let (written, deny) = parse(text)?;
        let at = rules.iter().position(|(_, r)| *r == deny);
        match at {
            Some(i) => {
                rules.remove(i);
            }
            None => {
                return Err(ChangeError::NotLive {
                    context: context.to_string(),
                    rule: written,
                    live: rules.into_iter().map(|(t, _)| t).collect(),
                })
            }
        }
    }
    for text in &change.allow {
        let (written, allow) = parse(text)?;
        if !rules.iter().any(|(_, r)| *r == allow) {
            rules.push((written, allow));
        }
    }
    let missing = |from: &[(String, Allow)], of: &[(String, Allow)]| -> Vec<(String, Allow)> {
        from.iter()
            .filter(|(_, r)| !of.iter().any(|(_, o)| o == r))
            .cloned()
            .collect()
    };
    let added = missing(&rules, &before);
    let removed = missing(&before, &rules);
    let uncaptured = added
        .iter()
        .filter_map(|(t, r)| match r {
            Allow::Domain { port, .. } | Allow::Net { port, .. } => port
                .filter(|p| !capture.contains(p))
                .map(|p| (t.clone(), p)),
        })
        .collect();
    let names = |v: Vec<(String, Allow)>| v.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
    let unchanged = added.is_empty() && removed.is_empty();
    Ok(Outcome {
        // The same rules in another order: the live list as it was.
        rules: match unchanged {
            true => names(before),
            false => names(rules),
        },
        added: names(added),
        removed: names(removed),
        uncaptured,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn change(reset: bool, deny: &[&str], allow: &[&str]) -> Change {
        Change {
            reset,
            deny: v(deny),
            allow: v(allow),
        }
    }

    const CAPTURE: &[u16] = &[80, 443, 5432];

    #[test]
    fn allow_adds_at_the_end_once() {
        let live = v(&["pypi.org", "192.0.2.20/32"]);
        let o = apply(
            "u",
            &live,
            &live,
            CAPTURE,
            &change(
                false,
                &[],
                &["registry.npmjs.org", " PyPI.org ", "registry.npmjs.org"],
            ),
        )
        .unwrap();
        assert_eq!(
            o.rules,
            v(&["pypi.org", "192.0.2.20/32", "registry.npmjs.org"])
        );
        assert_eq!(o.added, v(&["registry.npmjs.org"]));
        assert!(o.removed.is_empty() && o.uncaptured.is_empty() && !o.unchanged());
    }

    #[test]
    fn deny_removes_a_live_rule_as_parsed() {
        let live = v(&["pypi.org", "*.github.com:443", "192.0.2.10/32"]);
        let o = apply(
            "u",
            &live,
            &[],
            CAPTURE,
            &change(false, &["PYPI.ORG."], &[]),
        )
        .unwrap();
        assert_eq!(o.rules, v(&["*.github.com:443", "192.0.2.10/32"]));
        assert_eq!(o.removed, v(&["pypi.org"]));
        assert!(o.added.is_empty());
        // Every rule denied: an empty list (the gate refuses everything).
        let o = apply(
            "u",
            &live,
            &[],
            CAPTURE,
            &change(
                false,
                &["192.0.2.10/32", "*.github.com:443", "pypi.org"],
                &[],
            ),
        )
        .unwrap();
        assert!(o.rules.is_empty());
        assert_eq!(o.removed.len(), 3);
    }

    #[test]
    fn deny_of_a_rule_not_live_names_the_live_rules() {
        let live = v(&["pypi.org", "192.0.2.10/32"]);
        let e = apply(
            "u",
            &live,
            &[],
            CAPTURE,
            &change(false, &["192.0.2.0/24"], &[]),
        );
        // Not the same network, though it overlaps: refused.
        let Err(e @ ChangeError::NotLive { .. }) = e else {
            panic!("{e:?}")
        };
        let msg = e.to_string();
        assert!(
            msg.contains("\"192.0.2.0/24\"")
                && msg.contains("\"pypi.org\", \"192.0.2.10/32\"")
                && msg.contains("ctx net u --show"),
            "{msg}"
        );
        // A subdomain pattern is not its domain.
        assert!(apply(
            "u",
            &live,
            &[],
            CAPTURE,
            &change(false, &["*.pypi.org"], &[])
        )
        .is_err());
        // Nothing left to deny.
        let e = apply("u", &[], &[], CAPTURE, &change(false, &["pypi.org"], &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none (every destination is refused)"), "{e}");
        // Denied twice: the second is not live any more.
        assert!(apply(
            "u",
            &live,
            &[],
            CAPTURE,
            &change(false, &["pypi.org", "pypi.org"], &[])
        )
        .is_err());
    }

    #[test]
    fn a_bad_rule_gets_the_policy_parsers_message() {
        for bad in [
            "",
            "10.0.0.0/33",
            "pypi.org:0",
            "2001:db8::/129",
            "http://pypi.org",
        ] {
            for c in [change(false, &[], &[bad]), change(false, &[bad], &[])] {
                let e = apply("u", &[], &[], CAPTURE, &c).unwrap_err();
                let ChangeError::Rule(a) = &e else {
                    panic!("{bad:?}: {e:?}")
                };
                assert_eq!(*a, bad.parse::<Allow>().unwrap_err());
                assert!(e.to_string().starts_with("net.allow entry"), "{e}");
            }
        }
    }

    #[test]
    fn reset_deny_allow_apply_in_that_order() {
        let policy = v(&["pypi.org", "192.0.2.20/32"]);
        let live = v(&["pypi.org", "192.0.2.10/32", "registry.npmjs.org"]);
        // Reset alone: back to the policy's.
        let o = apply("u", &live, &policy, CAPTURE, &change(true, &[], &[])).unwrap();
        assert_eq!(o.rules, policy);
        assert_eq!(o.removed, v(&["192.0.2.10/32", "registry.npmjs.org"]));
        assert_eq!(o.added, v(&["192.0.2.20/32"]));
        // The deny applies to the reset list: a rule only live is not there any more.
        assert!(apply(
            "u",
            &live,
            &policy,
            CAPTURE,
            &change(true, &["registry.npmjs.org"], &[])
        )
        .is_err());
        let o = apply(
            "u",
            &live,
            &policy,
            CAPTURE,
            &change(true, &["192.0.2.20/32"], &["crates.io"]),
        )
        .unwrap();
        assert_eq!(o.rules, v(&["pypi.org", "crates.io"]));
        // Denied then allowed again: nothing changes, and the order is kept.
        let o = apply(
            "u",
            &live,
            &policy,
            CAPTURE,
            &change(false, &["pypi.org"], &["pypi.org"]),
        )
        .unwrap();
        assert!(o.unchanged());
        assert_eq!(o.rules, live);
        // Reset of a list that is the policy's: unchanged.
        assert!(
            apply("u", &policy, &policy, CAPTURE, &change(true, &[], &[]))
                .unwrap()
                .unchanged()
        );
        assert!(Change::default().is_empty() && !change(true, &[], &[]).is_empty());
    }

    #[test]
    fn an_added_rule_on_a_port_not_captured_is_named() {
        let o = apply(
            "u",
            &[],
            &[],
            CAPTURE,
            &change(
                false,
                &[],
                &[
                    "db.example.com:5432",
                    "203.0.113.7/32:22",
                    "[2001:db8::1]:8443",
                    "pypi.org",
                    "x.example:443",
                ],
            ),
        )
        .unwrap();
        assert_eq!(
            o.uncaptured,
            vec![
                ("203.0.113.7/32:22".to_string(), 22),
                ("[2001:db8::1]:8443".to_string(), 8443)
            ]
        );
        // A rule already live is not added, so not named.
        let live = v(&["203.0.113.7/32:22"]);
        let o = apply(
            "u",
            &live,
            &[],
            CAPTURE,
            &change(false, &[], &["203.0.113.7/32:22"]),
        )
        .unwrap();
        assert!(o.uncaptured.is_empty() && o.unchanged());
    }
}
