//! Parsing and validation of policy text: `toml` checks every key and value as written (with its
//! line and column), [`depth`] refuses keys nested deeper than any policy key before `toml` sees
//! them, and the checks that span several keys of a context run after parsing, each a named rule
//! of [`rules`].

use super::*;

mod depth;
mod error;
mod rules;
mod violation;

use super::place::{find_line, line_col};
use depth::too_deep;
pub use depth::MAX_KEY_DEPTH;
pub use error::PolicyError;
use rules::RULES;
pub use rules::{NEVER_FOR_CONFINED, OPS_SOCKET, RUNTIME_DIR};
pub use violation::Violation;

impl Policy {
    /// Parse and validate policy text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        // `toml` gives up on keys nested a hundred deep with an error that names no place.
        if let Some((line, col)) = too_deep(text) {
            return Err(PolicyError::TooDeep {
                origin: origin.to_string(),
                line,
                col,
            });
        }
        let policy: Policy =
            toml::from_str(text).map_err(|e| PolicyError::toml(text, origin, &e))?;
        // Every key was checked as written; now each context's `extends` is merged in.
        let policy = match policy.context.values().any(|c| c.extends.is_some()) {
            true => toml::Value::Table(resolve_extends(text, origin)?)
                .try_into()
                .map_err(|e: toml::de::Error| PolicyError::Toml {
                    origin: origin.to_string(),
                    at: None,
                    message: e.message().trim_end().to_string(),
                })?,
            false => policy,
        };
        policy.validate(text, origin)?;
        Ok(policy)
    }

    /// Policy text from the bytes of a file: UTF-8, or an error naming the line and column of the
    /// first byte that is not (`toml` would only say the stream is not UTF-8).
    pub fn text_from(bytes: Vec<u8>, origin: &str) -> Result<String, PolicyError> {
        String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.as_bytes();
            let before = std::str::from_utf8(&bytes[..at]).unwrap_or_default();
            let (line, col) = line_col(before, at);
            PolicyError::NotUtf8 {
                origin: origin.to_string(),
                line,
                col,
                byte: bytes[at],
            }
        })
    }

    /// Checks that involve several keys at once: every rule of [`RULES`] on every context; the
    /// first broken one is reported with the file and line of the context's table.
    fn validate(&self, text: &str, origin: &str) -> Result<(), PolicyError> {
        for (name, ctx) in &self.context {
            let broken = RULES
                .iter()
                .find_map(|rule| rule(ctx).err())
                .or_else(|| self.services_rules(ctx).err().map(Violation::Service));
            if let Some(violation) = broken {
                return Err(PolicyError::Context {
                    origin: origin.to_string(),
                    line: find_line(text, &format!("[context.{name}")).unwrap_or(0),
                    context: name.to_string(),
                    violation,
                });
            }
        }
        if let Err(why) = net::check_reserved(self) {
            return Err(PolicyError::Contexts {
                origin: origin.to_string(),
                line: find_line(text, "publish").unwrap_or(0),
                violation: Violation::Net(why),
            });
        }
        Ok(())
    }

    /// The named context, or an error listing the ones that exist.
    pub fn context(&self, name: &str) -> Result<&Context, PolicyError> {
        self.context
            .iter()
            .find(|(n, _)| n.0 == name)
            .map(|(_, c)| c)
            .ok_or_else(|| PolicyError::UnknownContext {
                name: name.to_string(),
                known: self.context.keys().map(|k| k.0.clone()).collect(),
            })
    }
}

/// The policy's tables with every `extends` resolved ([`extends`]).
fn resolve_extends(text: &str, origin: &str) -> Result<toml::Table, PolicyError> {
    let top = toml::from_str(text).map_err(|e| PolicyError::toml(text, origin, &e))?;
    let shipped = extends::shipped()
        .map_err(|e| PolicyError::toml(EMBEDDED_DEFAULT, "embedded default policy", &e))?;
    extends::resolve(top, &shipped, text).map_err(|why| PolicyError::Extends {
        origin: origin.to_string(),
        why,
    })
}

#[cfg(test)]
mod tests;
