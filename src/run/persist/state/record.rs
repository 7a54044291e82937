//! The record of one keeper, as its state file holds it (one JSON object).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a context's keeper is in its life. A first call records `Starting` (with its cgroups,
/// then the keeper's identity) before it creates anything, under the context's lock, so a caller
/// killed at any instant leaves a record the next one finds; `ctx stop` records `Stopping` before
/// it signals, so calls arriving meanwhile are refused instead of starting a new keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Starting,
    #[default]
    Running,
    Stopping,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
        }
    }
}

/// What is recorded about a keeper. While `Starting`, `pid`, `start` and `pidns` may be 0 (no
/// keeper yet). Stored as one JSON object ([`StateFile`]), checked when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StateFile", into = "StateFile")]
pub struct State {
    pub phase: Phase,
    /// The keeper's pid, in sbx-exec's own pid namespace.
    pub pid: i32,
    /// Its start time (field 22 of /proc/PID/stat), against pid reuse.
    pub start: u64,
    /// The inode of its pid namespace.
    pub pidns: u64,
    /// When it was started (seconds since the epoch).
    pub created: u64,
    /// Fingerprint of the context's policy it was started with.
    pub policy: u64,
    /// Its cgroup directories (none without limits).
    pub cgroups: Vec<PathBuf>,
    /// The net helper (`net = "private"` with `allow` or `publish`): its pid in sbx-exec's pid
    /// namespace and start time; 0 and 0 without one (or before it is started).
    pub net_pid: i32,
    pub net_start: u64,
    /// The context's egress rules as its net helper enforces them (`net.allow` as written when
    /// the keeper started, then as `sbx-exec ctx net` changed them); a replacement net helper
    /// starts with these. `None`: no egress, or a keeper recorded by an older sbx-exec (its
    /// rules are the policy's).
    pub net_allow: Option<Vec<String>>,
}

/// A state file as written: `{"phase":"running","pid":4242,"start":..,"pidns":..,"created":..,
/// "policy":"00000000deadbeef","cgroups":[..],"net":{"pid":..,"start":..},"net_allow":[..]}` (`net`
/// only with a net helper, `net_allow` only with egress; `policy` in hex, so that tools reading
/// numbers as doubles see it whole). Every key is required but `net` and `net_allow`, and no
/// other is accepted; each `net_allow` entry must be a rule `net.allow` takes.
///
/// Keepers started by an sbx-exec older than this format recorded `key=value` lines instead. Such
/// a file is not read: it is a damaged record (an error, never a panic), which `ctx list` and
/// `ctx stop` handle by finding the keeper in /proc, and which a call refuses naming that
/// recovery.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    phase: Phase,
    pid: i32,
    start: u64,
    pidns: u64,
    created: u64,
    #[serde(with = "hex_u64")]
    policy: u64,
    cgroups: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    net: Option<NetHelper>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    net_allow: Option<Vec<String>>,
}

/// The net helper's pid and start time.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetHelper {
    pid: i32,
    start: u64,
}

impl TryFrom<StateFile> for State {
    type Error = String;

    /// The checks a record read back must pass: a keeper's pid above 1 (0 only while starting),
    /// cgroups below /sys/fs/cgroup with no `.` or `..` in them, a net helper's pid above 1, egress
    /// rules that parse.
    fn try_from(f: StateFile) -> std::result::Result<State, String> {
        if !(f.pid > 1 || (f.pid == 0 && f.phase == Phase::Starting)) {
            return Err(format!("bad pid {}", f.pid));
        }
        if let Some(c) = f.cgroups.iter().find(|c| !under_cgroup_fs(c)) {
            return Err(format!("bad cgroup {:?}", c.display().to_string()));
        }
        let (net_pid, net_start) = match f.net {
            None => (0, 0),
            Some(n) if n.pid > 1 => (n.pid, n.start),
            Some(n) => return Err(format!("bad net helper pid {}", n.pid)),
        };
        for rule in f.net_allow.iter().flatten() {
            rule.parse::<crate::model::egress::Allow>()
                .map_err(|e| format!("bad egress rule: {e}"))?;
        }
        Ok(State {
            phase: f.phase,
            pid: f.pid,
            start: f.start,
            pidns: f.pidns,
            created: f.created,
            policy: f.policy,
            cgroups: f.cgroups,
            net_pid,
            net_start,
            net_allow: f.net_allow,
        })
    }
}

impl From<State> for StateFile {
    fn from(s: State) -> StateFile {
        StateFile {
            phase: s.phase,
            pid: s.pid,
            start: s.start,
            pidns: s.pidns,
            created: s.created,
            policy: s.policy,
            cgroups: s.cgroups,
            net: (s.net_pid != 0).then_some(NetHelper {
                pid: s.net_pid,
                start: s.net_start,
            }),
            net_allow: s.net_allow,
        }
    }
}

/// A cgroup directory a keeper may have: an absolute path below /sys/fs/cgroup/, no `.` or `..`.
fn under_cgroup_fs(p: &Path) -> bool {
    let Some(v) = p.to_str() else { return false };
    v.starts_with("/sys/fs/cgroup/") && !v.split('/').any(|c| c == ".." || c == ".")
}

/// A `u64` as 16 hex digits.
mod hex_u64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{n:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        match s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom),
            false => Err(serde::de::Error::custom(format!(
                "bad policy fingerprint {s:?} (16 hex digits)"
            ))),
        }
    }
}

impl State {
    /// The state file's text: one JSON object and a newline.
    pub fn render(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a state always serializes");
        s.push('\n');
        s
    }

    /// Parse a state file: a [`StateFile`] whose values pass the checks of [`State::try_from`].
    /// Anything else (another format, a cut or changed file) is an error saying what and where.
    pub fn parse(text: &str) -> std::result::Result<State, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let s = State {
            phase: Phase::Running,
            pid: 4242,
            start: 123456,
            pidns: 4026532000,
            created: 1_700_000_000,
            policy: 0xdead_beef,
            cgroups: vec![PathBuf::from("/sys/fs/cgroup/pids/sbx-user-1")],
            net_pid: 4250,
            net_start: 123460,
            net_allow: None,
        };
        assert_eq!(State::parse(&s.render()), Ok(s.clone()));
        let none = State {
            cgroups: vec![],
            net_pid: 0,
            net_start: 0,
            ..s
        };
        assert_eq!(State::parse(&none.render()), Ok(none.clone()));
        let starting = State {
            phase: Phase::Starting,
            pid: 0,
            ..none
        };
        assert_eq!(State::parse(&starting.render()), Ok(starting.clone()));
        let live = State {
            net_allow: Some(vec!["pypi.org".into(), "[2001:db8::/32]:443".into()]),
            ..starting.clone()
        };
        assert_eq!(State::parse(&live.render()), Ok(live));
        // Every rule denied: an empty list, not none.
        let empty = State {
            net_allow: Some(vec![]),
            ..starting
        };
        assert_eq!(State::parse(&empty.render()), Ok(empty));
    }

    #[test]
    fn state_file_is_one_json_object_as_documented() {
        let s = State {
            phase: Phase::Running,
            pid: 4242,
            start: 123456,
            pidns: 4026532000,
            created: 1_700_000_000,
            policy: 0xdead_beef,
            cgroups: vec![PathBuf::from("/sys/fs/cgroup/pids/sbx-user-1")],
            net_pid: 4250,
            net_start: 123460,
            net_allow: None,
        };
        assert_eq!(
            s.render(),
            "{\"phase\":\"running\",\"pid\":4242,\"start\":123456,\"pidns\":4026532000,\"created\":1700000000,\
             \"policy\":\"00000000deadbeef\",\"cgroups\":[\"/sys/fs/cgroup/pids/sbx-user-1\"],\
             \"net\":{\"pid\":4250,\"start\":123460}}\n"
        );
        let alone = State {
            phase: Phase::Starting,
            pid: 0,
            cgroups: vec![],
            net_pid: 0,
            net_start: 0,
            ..s
        };
        assert_eq!(
            alone.render(),
            "{\"phase\":\"starting\",\"pid\":0,\"start\":123456,\"pidns\":4026532000,\"created\":1700000000,\
             \"policy\":\"00000000deadbeef\",\"cgroups\":[]}\n"
        );
        let live = State {
            net_allow: Some(vec!["192.0.2.10/32".into()]),
            ..s
        };
        assert!(
            live.render().ends_with(
                "\"net\":{\"pid\":4250,\"start\":123460},\"net_allow\":[\"192.0.2.10/32\"]}\n"
            ),
            "{}",
            live.render()
        );
    }

    #[test]
    fn bad_state_is_refused() {
        let ok = r#"{"phase":"running","pid":10,"start":1,"pidns":2,"created":3,"policy":"00000000000000ff","cgroups":[]}"#;
        assert!(State::parse(ok).is_ok());
        let rules = ok.replacen(
            r#""cgroups":[]"#,
            r#""cgroups":[],"net_allow":["pypi.org"]"#,
            1,
        );
        assert!(State::parse(&rules).is_ok(), "{rules}");
        let with = |from: &str, to: &str| {
            assert!(ok.contains(from), "{from}");
            ok.replacen(from, to, 1)
        };
        for bad in [
            with(r#","policy":"00000000000000ff""#, ""), // missing policy
            with(r#""phase":"running","#, ""),           // missing phase
            with(r#","cgroups":[]"#, ""),                // missing cgroups
            with(r#""pid":10"#, r#""pid":1"#),           // pid 1 is never a keeper here
            with(r#""pid":10"#, r#""pid":0"#),           // 0 only while starting
            with(r#""pid":10"#, r#""pid":-5"#),
            with(r#""pid":10"#, r#""pid":4294967296"#),
            with(r#""pid":10"#, r#""pid":"10""#),
            with(r#""pid":10"#, r#""pid":10,"pid":11"#),
            with(r#""phase":"running""#, r#""phase":"gone""#),
            with(r#""00000000000000ff""#, r#""ff""#),
            with(r#""00000000000000ff""#, r#""00000000000000fg""#),
            with(r#""00000000000000ff""#, "255"),
            with(r#""start":1"#, r#""start":-1"#),
            with(r#""cgroups":[]"#, r#""cgroups":[],"extra":1"#),
            with(r#""cgroups":[]"#, r#""cgroups":["relative"]"#),
            with(r#""cgroups":[]"#, r#""cgroups":["/etc"]"#),
            with(
                r#""cgroups":[]"#,
                r#""cgroups":["/sys/fs/cgroup/../../etc"]"#,
            ),
            with(r#""cgroups":[]"#, r#""cgroups":[],"net":{"pid":12}"#), // no start
            with(
                r#""cgroups":[]"#,
                r#""cgroups":[],"net":{"pid":1,"start":5}"#,
            ),
            with(
                r#""cgroups":[]"#,
                r#""cgroups":[],"net":{"pid":12,"start":5,"x":0}"#,
            ),
            with(
                r#""cgroups":[]"#,
                r#""cgroups":[],"net_allow":["10.0.0.0/33"]"#,
            ),
            with(r#""cgroups":[]"#, r#""cgroups":[],"net_allow":[""]"#),
            with(r#""cgroups":[]"#, r#""cgroups":[],"net_allow":"pypi.org""#),
            with(r#""cgroups":[]"#, r#""cgroups":[],"net_allow":[1]"#),
            ok[..ok.len() - 1].to_string(), // cut short
            format!("{ok}{ok}"),
            "garbage{\n".into(),
            String::new(),
            "null".into(),
            "[]".into(),
        ] {
            assert!(State::parse(&bad).is_err(), "{bad:?}");
        }
        // The key=value lines of keepers started by older binaries: an error (a damaged record).
        let old = "phase=running\npid=10\nstart=1\npidns=2\ncreated=3\npolicy=ff\n";
        let e = State::parse(old).unwrap_err();
        assert!(e.contains("line 1 column 1"), "{e}");
    }

    proptest::proptest! {
        /// Whatever a damaged file holds (a valid one cut or changed anywhere, or any text),
        /// reading it gives a state or an error, never a panic.
        #[test]
        fn damaged_state_is_an_error_never_a_panic(
            cut in 0usize..200,
            at in 0usize..200,
            byte in proptest::prelude::any::<u8>(),
            text in ".{0,64}",
        ) {
            let good = State {
                phase: Phase::Stopping,
                pid: 99,
                start: 7,
                pidns: 8,
                created: 9,
                policy: u64::MAX,
                cgroups: vec![PathBuf::from("/sys/fs/cgroup/sbx/sbx-a")],
                net_pid: 100,
                net_start: 11,
                net_allow: Some(vec!["pypi.org".into(), "192.0.2.0/24:443".into()]),
            }
            .render()
            .into_bytes();
            let cut = &good[..cut.min(good.len())];
            let _ = State::parse(&String::from_utf8_lossy(cut));
            let mut changed = good.clone();
            let i = at % changed.len();
            changed[i] = byte;
            let _ = State::parse(&String::from_utf8_lossy(&changed));
            let _ = State::parse(&text);
        }
    }
}
