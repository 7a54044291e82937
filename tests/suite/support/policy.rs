//! Test policies built from context templates instead of written out in each file: the confined
//! template ([`Policy::confined`], [`Policy::persistent`]), the shipped default policy
//! ([`Policy::shipped`], [`DEFAULT_TOML`]) with a context's table added to or replaced, and TOML
//! lines as they are for what no template covers.

use std::path::{Path, PathBuf};

/// The shipped default policy, which the embedded one is.
pub const DEFAULT_TOML: &str = include_str!("../../../policies/default.toml");

/// A policy's text, built up in order.
#[derive(Clone)]
pub struct Policy {
    text: String,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::new()
    }
}

impl Policy {
    /// `version = 1` and no context.
    pub fn new() -> Policy {
        Policy {
            text: "version = 1\n".into(),
        }
    }

    /// The shipped default policy ([`DEFAULT_TOML`]), to edit.
    pub fn shipped() -> Policy {
        Policy {
            text: DEFAULT_TOML.into(),
        }
    }

    /// The confined template, one-shot: a context `name` with its own pid, mount, ipc and uts
    /// namespaces, only PATH from the caller's environment, /run/sbx (persistent contexts'
    /// state) hidden, and the default seccomp filter.
    pub fn confined(self, name: &str) -> Policy {
        self.template(name, false)
    }

    /// The confined template, persistent (`persist = true`).
    pub fn persistent(self, name: &str) -> Policy {
        self.template(name, true)
    }

    fn template(self, name: &str, persist: bool) -> Policy {
        self.lines(&format!(
            "[context.{name}]\nnamespaces = [\"pid\", \"mount\", \"ipc\", \"uts\"]\npersist = {persist}\n\
             env.allow = [\"PATH\"]\nfs.hide = [\"/run/sbx\"]\nsecurity.seccomp = \"default\"\n"
        ))
    }

    /// `[context.NAME.limits]` with `toml`.
    pub fn limits(self, name: &str, toml: &str) -> Policy {
        self.lines(&format!("[context.{name}.limits]\n{toml}\n"))
    }

    /// TOML lines added at the end as they are (keys of the last table, or tables of their own).
    pub fn lines(mut self, toml: &str) -> Policy {
        self.text.push_str(toml);
        self
    }

    /// TOML lines added right after `version = 1` (top-level keys).
    pub fn top(mut self, toml: &str) -> Policy {
        self.text = self
            .text
            .replacen("version = 1\n", &format!("version = 1\n{toml}\n"), 1);
        self
    }

    /// `toml` added at the top of the existing table `[context.CTX]` (panics if there is none).
    pub fn in_context(mut self, ctx: &str, toml: &str) -> Policy {
        let header = format!("[context.{ctx}]\n");
        assert!(
            self.text.contains(&header),
            "context {ctx} not found in the policy"
        );
        self.text = self.text.replacen(&header, &format!("{header}{toml}"), 1);
        self
    }

    /// The existing table `[TABLE]`, from its header line up to the next table's, replaced by
    /// `body` (under a bare header).
    pub fn replace_table(mut self, table: &str, body: &str) -> Policy {
        let header = format!("[{table}]");
        let text = &self.text;
        let start = text
            .match_indices(&header)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || text[..i].ends_with('\n'))
            .unwrap_or_else(|| panic!("the policy has no {header}"));
        let line_end = text[start..]
            .find('\n')
            .map_or(text.len(), |i| start + i + 1);
        let end = text[line_end..]
            .find("\n[")
            .map_or(text.len(), |i| line_end + i + 1);
        self.text
            .replace_range(start..end, &format!("{header}\n{body}\n\n"));
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Written to `dir/policy.toml`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        write_policy(dir, &self.text)
    }
}

/// A copy of the default policy with `extra` lines added to `[context.NAME]`, written into `dir`.
pub fn default_with(dir: &Path, ctx: &str, extra: &str) -> PathBuf {
    Policy::shipped().in_context(ctx, extra).write(dir)
}

/// `text` written to `dir/policy.toml`.
pub fn write_policy(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("policy.toml");
    std::fs::write(&p, text).unwrap();
    p
}
