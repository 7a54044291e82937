//! Parsing and validation of policy text: `toml` checks every key and value as written (with its
//! line and column), [`depth`] refuses keys nested deeper than any policy key before `toml` sees
//! them, and the checks that span several keys of a context run after parsing, each a named rule
//! of [`rules`].

use anyhow::{bail, Context as _, Result};

use super::*;

mod depth;
mod rules;

use super::place::{find_line, line_col};
use depth::too_deep;
pub use depth::MAX_KEY_DEPTH;
use rules::RULES;
pub use rules::{NEVER_FOR_CONFINED, RUNTIME_DIR};

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

#[cfg(test)]
mod tests;
