//! Fuzzing of every parser, as property tests (stable Rust has no cargo-fuzz): the policy parser,
//! the secrets-fd parser, and the environment builder (including the `LISTEN_*` variables control
//! mode sets), with arbitrary bytes and with generators of near-valid input that get deep into the
//! parsers. Plus the checked-in corpus `fuzz/corpus/{policy,secrets}/` of interesting inputs, each
//! named `ok-*` or `err-*` for the outcome it must have.
//!
//! The case counts are small so `cargo test` stays quick; run longer with
//! `PROPTEST_CASES=200000 cargo test fuzz_` (the variable replaces every count here).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use proptest::prelude::*;

use sbx_exec::model::{EnvName, EnvPattern, EnvPolicy, EnvValue, Policy};
use sbx_exec::plan::env;
use sbx_exec::secrets;

/// `n` cases, or `PROPTEST_CASES` when set; failures are not written to files in the tree.
fn cases(n: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = n;
    }
    c.failure_persistence = None;
    c
}

/// The secret value every leak check looks for. It is never used as a name, so any occurrence in a
/// message is a leaked value.
const MARKER: &str = "Mk7-s3cr3t-VALUE";

/// A full error chain and its debug form, which is what a caller could ever see.
fn shown(e: &anyhow::Error) -> String {
    format!("{e:#}\n{e:?}")
}

// ---------------------------------------------------------------- policy

/// A TOML string literal holding an awkward string: empty, starting with a non-ASCII character,
/// arbitrary Unicode, path-like, or huge (what used to panic `check_abs_path`).
fn toml_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[^\0]{0,12}",
        "/[^\0]{0,12}",
        "[\u{80}-\u{10FFFF}][^\0]{0,8}",
        (1usize..3000).prop_map(|n| format!("/{}", "\u{e9}".repeat(n))),
        Just("x".repeat(70_000)),
    ]
    .prop_map(|s| toml::Value::String(s).to_string())
}

/// Keys of a context, with a value generator of the right or a wrong type.
fn policy_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("9223372036854775807".to_string()),
        Just("31536001".to_string()),
        toml_string(),
        prop::collection::vec(toml_string(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        (toml_string(), toml_string()).prop_map(|(a, b)| format!("{{ X = {a}, HOME = {b} }}")),
        (toml_string(), toml_string()).prop_map(|(k, v)| format!("{{ {k} = {v} }}")),
        Just("true".to_string()),
        Just("false".to_string()),
        (0u64..100_000).prop_map(|n| n.to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1.5".to_string()),
        prop::sample::select(vec![
            "\"pid\"",
            "\"mount\"",
            "\"none\"",
            "\"host\"",
            "\"default\"",
            "\"kill\"",
            "\"errno\"",
            "\"always\"",
            "\"never\"",
            "\"on-failure\"",
            "\"/\"",
            "\"/tmp\"",
            "\"/a/../b\"",
            "\"relative\"",
            "\"\"",
            "\"ALL\"",
            "\"CHOWN\"",
            "\"SYS_ADMIN\"",
            "\"LC_*\"",
            "\"*\"",
            "\"LD_PRELOAD\"",
            "\"a\\u0000b\"",
            "\"\u{e9}\u{1F600}\"",
        ])
        .prop_map(str::to_string),
        prop::collection::vec(
            prop::sample::select(vec![
                "\"pid\"",
                "\"mount\"",
                "\"ipc\"",
                "\"uts\"",
                "\"net\"",
                "\"/\"",
                "\"/usr\"",
                "\"/workspace\"",
                "\"PATH\"",
                "\"LC_*\"",
                "\"KILL\"",
                "\"SYS_PTRACE\"",
                "8080",
                "0",
                "65535",
                "70000",
                "\"x\"",
            ]),
            0..5
        )
        .prop_map(|v| format!("[{}]", v.join(", "))),
        Just("{ uid = 1000, gid = 1000 }".to_string()),
        Just("{ HOME = \"/root\", X = \"y\" }".to_string()),
        Just("{ uid = -1 }".to_string()),
        Just("{".to_string()),
        Just("\"unterminated".to_string()),
    ]
}

fn policy_key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "description",
        "namespaces",
        "net",
        "degrade",
        "timeout",
        "allow",
        "set",
        "hygiene",
        "verify_owner",
        "trusted",
        "deny_under",
        "read_only",
        "writable",
        "tmpfs",
        "hide",
        "caps",
        "no_new_privs",
        "seccomp",
        "seccomp_action",
        "allow_ptrace",
        "deny_bind",
        "deny_connect",
        "scope",
        "run_as",
        "ports",
        "restart",
        "max_restarts",
        "restart_window",
        "restart_delay_ms",
        "stop_timeout",
        "version",
        "unknown_key",
        "persist",
        "audit",
    ])
}

fn policy_table() -> impl Strategy<Value = String> {
    let ctx = prop::sample::select(vec![
        "user",
        "platform",
        "control",
        "x",
        "a-b_1",
        "UPPER",
        "",
        "\"quoted\"",
        "user.env",
    ]);
    let sub = prop::sample::select(vec![
        "",
        ".env",
        ".secrets",
        ".exec",
        ".fs",
        ".security",
        ".supervise",
        ".bogus",
        ".env.set",
        ".security.run_as",
    ]);
    (ctx, sub).prop_map(|(c, s)| format!("[context.{c}{s}]"))
}

/// Near-valid policy text: a version line, then tables with keys of right and wrong types.
fn near_valid_policy() -> impl Strategy<Value = String> {
    let version = prop::sample::select(vec![
        "version = 1\n",
        "version = 1\n",
        "version = 2\n",
        "",
        "version = \"1\"\n",
    ]);
    let table = (
        policy_table(),
        prop::collection::vec((policy_key(), policy_value()), 0..6),
    );
    (version, prop::collection::vec(table, 0..5)).prop_map(|(v, tables)| {
        let mut s = v.to_string();
        for (header, keys) in tables {
            s.push_str(&header);
            s.push('\n');
            for (k, val) in keys {
                s.push_str(&format!("{k} = {val}\n"));
            }
        }
        s
    })
}

/// Parsing never panics; an error always names the file (so the user knows which one); a policy
/// that parses survives being written back out and read again (`policy show --ctx` prints it).
fn check_policy_text(text: &str) -> Result<(), TestCaseError> {
    match Policy::parse(text, "fuzz.toml") {
        // As the launcher shows it: through anyhow (its Debug is the message, not the fields).
        Err(e) => prop_assert!(
            shown(&anyhow::Error::from(e.clone())).contains("fuzz.toml"),
            "{e:#}"
        ),
        Ok(p) => {
            let again = toml::to_string(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let reparsed = Policy::parse(&again, "again.toml");
            prop_assert!(reparsed.is_ok(), "{again}\n{:?}", reparsed.err());
            let reparsed = reparsed.unwrap();
            prop_assert_eq!(
                p.context.keys().collect::<Vec<_>>(),
                reparsed.context.keys().collect::<Vec<_>>()
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn fuzz_policy_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check_policy_text(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn fuzz_policy_near_valid(text in near_valid_policy()) {
        check_policy_text(&text)?;
    }

    #[test]
    fn fuzz_policy_default_with_one_line_changed(
        line in 0usize..200,
        replacement in (policy_key(), policy_value()).prop_map(|(k, v)| format!("{k} = {v}")),
    ) {
        let mut lines: Vec<&str> = sbx_exec::model::EMBEDDED_DEFAULT.lines().collect();
        let at = line % lines.len();
        lines[at] = &replacement;
        check_policy_text(&lines.join("\n"))?;
    }
}

// ---------------------------------------------------------------- secrets

fn secret_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_]{0,20}"
}

/// A value holding the marker, with arbitrary text around it (no NUL, no newline: usable in
/// both formats).
fn marked_value() -> impl Strategy<Value = String> {
    ("[^\n\r\0]{0,8}", "[^\n\r\0]{0,8}").prop_map(|(a, b)| format!("{a}{MARKER}{b}"))
}

/// Broken inputs whose values carry the marker: bad names, duplicates, NULs, invalid UTF-8, lines
/// without '=', truncated and mistyped JSON, arrays, nested objects, too many secrets.
fn malformed_secrets() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        (secret_name(), marked_value()).prop_map(|(n, v)| format!("{n}={v}").into_bytes()),
        marked_value().prop_map(|v| format!("1BAD={v}").into_bytes()),
        marked_value().prop_map(|v| format!("BAD NAME={v}").into_bytes()),
        marked_value().prop_map(|v| format!("={v}").into_bytes()),
        marked_value().prop_map(|v| v.into_bytes()),
        marked_value().prop_map(|v| format!("  {v} = x").into_bytes()),
        (secret_name(), marked_value()).prop_map(|(n, v)| format!("{n}={v}\0tail").into_bytes()),
        (secret_name(), marked_value()).prop_map(|(n, v)| {
            let mut b = format!("{n}={v}").into_bytes();
            b.extend_from_slice(&[0xff, 0xfe, b'x']);
            b
        }),
        marked_value().prop_map(|v| format!("# comment {v}").into_bytes()),
    ];
    let lines = prop::collection::vec(line, 1..6).prop_map(|ls| ls.join(&b'\n'));
    let duplicate = (secret_name(), marked_value(), marked_value())
        .prop_map(|(n, a, b)| format!("{n}={a}\n{n}={b}\n").into_bytes());
    let json_dup = (secret_name(), marked_value())
        .prop_map(|(n, v)| format!("{{\"{n}\": \"{v}\", \"{n}\": \"{v}\"}}").into_bytes());
    let json_bad = (secret_name(), marked_value(), 0usize..64).prop_map(|(n, v, cut)| {
        let full = format!("{{\"{n}\": \"{v}\", \"OTHER\": \"{v}\"}}");
        // Truncated anywhere (on a byte, possibly inside a multi-byte character).
        full.as_bytes()[..cut.min(full.len() - 1)].to_vec()
    });
    let json_types = (secret_name(), marked_value()).prop_flat_map(|(n, v)| {
        prop::sample::select(vec![
            format!("{{\"{n}\": [\"{v}\"]}}"),
            format!("{{\"{n}\": {{\"x\": \"{v}\"}}}}"),
            format!("{{\"{n}\": \"{v}\", \"1bad\": \"{v}\"}}"),
            format!("{{\"bad name\": \"{v}\"}}"),
            format!("{{\"{n}\": \"{v}\\u0000\"}}"),
            format!("{{\"{n}\": \"{v}\" \"x\": 1}}"),
            format!("{{\"{n}\": \"{v}\"}} trailing {v}"),
            format!("{{\"{n}\": \"\\ud800{v}\"}}"),
            format!("{{\"{n}\": {v}}}"),
            format!("{{\"{n}\": \"{v}\\q\"}}"),
            format!("{{\"{n}\": 12, \"X\": \"{v}\"}}"),
        ])
    });
    let json_invalid_utf8 = (secret_name(), marked_value()).prop_map(|(n, v)| {
        let mut b = format!("{{\"{n}\": \"{v}").into_bytes();
        b.extend_from_slice(&[0xc3, 0x28, b'"', b'}']);
        b
    });
    let too_many = marked_value().prop_map(|v| {
        (0..=secrets::MAX_COUNT)
            .map(|i| format!("S{i}={v}\n"))
            .collect::<String>()
            .into_bytes()
    });
    prop_oneof![
        4 => lines,
        1 => duplicate,
        1 => json_dup,
        2 => json_bad,
        2 => json_types.prop_map(String::into_bytes),
        1 => json_invalid_utf8,
        1 => too_many,
    ]
}

/// No error or debug output of the secrets parser contains a value.
fn check_no_value_shown(input: &[u8]) -> Result<(), TestCaseError> {
    match secrets::parse(input) {
        Err(e) => {
            let text = shown(&e);
            prop_assert!(!text.contains(MARKER), "value leaked in: {text}");
            prop_assert!(
                text.starts_with("secrets:") || text.contains("secrets"),
                "{text}"
            );
        }
        Ok(set) => {
            let text = format!("{set:?}");
            prop_assert!(!text.contains(MARKER), "value leaked in Debug: {text}");
        }
    }
    Ok(())
}

/// Valid, distinct secrets with values of any text but NUL.
fn valid_secrets(value: &'static str) -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::btree_map(secret_name(), value, 0..20).prop_map(|m| m.into_iter().collect())
}

fn parsed_pairs(input: &[u8]) -> Result<Vec<(String, String)>, TestCaseError> {
    let set = secrets::parse(input).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
    Ok(set
        .iter()
        .map(|s| (s.name.clone(), secrets::expose(s).to_string()))
        .collect())
}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn fuzz_secrets_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        // Never panics; an error never repeats the input (it may hold a value).
        if let Err(e) = secrets::parse(&bytes) {
            let text = shown(&e);
            prop_assert!(text.starts_with("secrets:"), "{text}");
        }
    }

    #[test]
    fn fuzz_secrets_values_never_in_errors(input in malformed_secrets()) {
        check_no_value_shown(&input)?;
    }

    #[test]
    fn fuzz_secrets_json_round_trip(pairs in valid_secrets("[^\0]{0,40}")) {
        let map: BTreeMap<&str, &str> =
            pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let json = serde_json::to_string(&map).unwrap();
        let mut got = parsed_pairs(json.as_bytes())?;
        got.sort();
        prop_assert_eq!(got, pairs);
    }

    #[test]
    fn fuzz_secrets_lines_round_trip(
        pairs in valid_secrets("([^\n\r\0]{0,40})?"),
        crlf in any::<bool>(),
        comments in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        for (n, v) in &pairs {
            if comments {
                text.push_str(&format!("# {n}{eol}{eol}"));
            }
            text.push_str(&format!("{n}={v}{eol}"));
        }
        // Given in sorted order, so the parsed order must be exactly the same.
        prop_assert_eq!(parsed_pairs(text.as_bytes())?, pairs);
    }
}

// ---------------------------------------------------------------- environment

/// Names an independent list says must never come from the caller (injection and config paths).
const MUST_DROP: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "BASH_ENV",
    "ENV",
    "NODE_OPTIONS",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PERL5OPT",
    "RUBYOPT",
    "GIT_SSH_COMMAND",
    "AWS_CONFIG_FILE",
    "PGPASSFILE",
    "GCONV_PATH",
    "MALLOC_CHECK_",
    "GIT_CONFIG_KEY_0",
    "PROMPT_COMMAND",
    "JAVA_TOOL_OPTIONS",
];

fn caller_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(MUST_DROP.to_vec()).prop_map(str::to_string),
        2 => prop::sample::select(vec![
            "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TZ", "USER", "SECRET_TOKEN",
            "AWS_SECRET_ACCESS_KEY", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "SBX_X",
        ]).prop_map(str::to_string),
        3 => "[A-Za-z_][A-Za-z0-9_]{0,12}",
        1 => "[^\0]{0,12}",
        1 => "[A-Z]{1,4}=[A-Z]{0,4}",
    ]
}

fn allow_pattern() -> impl Strategy<Value = EnvPattern> {
    prop::sample::select(vec![
        "*",
        "LC_*",
        "LD_*",
        "PATH",
        "HOME",
        "LANG",
        "TERM",
        "L*",
        "A*",
        "SECRET_TOKEN",
        "BASH_ENV",
        "NODE_OPTIONS",
        "LISTEN_*",
        "SBX_*",
        "P*",
    ])
    .prop_map(|p| EnvPattern::try_from(p.to_string()).unwrap())
}

fn env_policy() -> impl Strategy<Value = EnvPolicy> {
    (
        prop::collection::vec(allow_pattern(), 0..5),
        prop::collection::btree_map(
            prop::sample::select(vec!["HOME", "PATH", "LD_PRELOAD", "FIXED"]),
            "[^\0]{0,8}",
            0..3,
        ),
        prop_oneof![4 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(allow, set, hygiene)| EnvPolicy {
            allow,
            set: set
                .into_iter()
                .map(|(k, v)| {
                    (
                        EnvName::try_from(k.to_string()).unwrap(),
                        EnvValue::try_from(v).unwrap(),
                    )
                })
                .collect(),
            hygiene,
            caller: Vec::new(),
        })
}

fn caller_env() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((caller_name(), "[^\0]{0,16}"), 0..24)
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn fuzz_env_passes_only_what_the_allowlist_admits(
        caller in caller_env(),
        policy in env_policy(),
    ) {
        let os: Vec<(OsString, OsString)> =
            caller.iter().map(|(k, v)| (k.into(), v.into())).collect();
        let built = env::build(os, &policy);
        let names = built.names();
        let fixed = |n: &str| policy.set.keys().any(|k| k.0 == n);
        for n in &names {
            prop_assert!(!n.is_empty() && !n.contains('=') && !n.contains('\0'), "{n:?}");
            if fixed(n) {
                continue;
            }
            let admitted = |k: &str| {
                policy.allow.iter().any(|p| p.matches(k)) && !(policy.hygiene && env::is_denied(k))
            };
            if n == "PATH" && !caller.iter().any(|(k, _)| k == "PATH" && admitted(k)) {
                prop_assert_eq!(built.get("PATH").unwrap(), env::DEFAULT_PATH);
                continue;
            }
            // Anything else came from the caller: it must be admitted and not denied.
            prop_assert!(caller.iter().any(|(k, _)| k == n), "{n} came from nowhere");
            prop_assert!(policy.allow.iter().any(|p| p.matches(n)), "{n} not admitted");
            if policy.hygiene {
                prop_assert!(!env::is_denied(n), "{n} is denied");
                prop_assert!(!MUST_DROP.contains(&n.as_str()), "{n} must be dropped");
            }
            // The caller's last value for it.
            let want = &caller.iter().rev().find(|(k, _)| k == n).unwrap().1;
            prop_assert_eq!(built.get(n).unwrap(), want.as_str());
        }
        // And every admitted caller variable is there (the allowlist is not silently ignored).
        for (k, _) in &caller {
            let admitted = !k.is_empty()
                && !k.contains('=')
                && policy.allow.iter().any(|p| p.matches(k))
                && (!policy.hygiene || !env::is_denied(k));
            if admitted {
                prop_assert!(names.contains(k), "{k} admitted but missing");
            }
        }
        // Each name once.
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), names.len());
    }

    #[test]
    fn fuzz_env_listen_variables_are_sbx_execs_own(
        caller in caller_env(),
        hostile in "[^\0]{0,16}",
        count in 0usize..8,
        pid in 1u32..4_000_000,
        ports in prop::collection::vec(any::<u16>(), 0..4),
    ) {
        // What control mode does before exec: whatever the caller had, LISTEN_* are ours.
        let mut os: Vec<(OsString, OsString)> =
            caller.iter().map(|(k, v)| (k.into(), v.into())).collect();
        for n in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
            os.push((n.into(), hostile.clone().into()));
        }
        let policy = EnvPolicy {
            allow: vec![EnvPattern::try_from("*".to_string()).unwrap()],
            set: BTreeMap::new(),
            hygiene: true,
            caller: Vec::new(),
        };
        let mut built = env::build(os, &policy);
        let names: String = ports
            .iter()
            .flat_map(|p| [p.to_string(), format!("{p}v6")])
            .collect::<Vec<_>>()
            .join(":");
        built.set_var("LISTEN_FDS", &count.to_string());
        built.set_var("LISTEN_PID", &pid.to_string());
        built.set_var("LISTEN_FDNAMES", &names);
        let all = built.names();
        for (n, want) in [
            ("LISTEN_FDS", count.to_string()),
            ("LISTEN_PID", pid.to_string()),
            ("LISTEN_FDNAMES", names.clone()),
        ] {
            prop_assert_eq!(all.iter().filter(|x| *x == n).count(), 1);
            prop_assert_eq!(built.get(n).unwrap(), want.as_str());
        }
    }
}

// ---------------------------------------------------------------- corpus

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(kind);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 5, "corpus {kind} is nearly empty");
    files
}

/// The corpus's expected outcome: from the file name, `ok-*` parses, `err-*` is refused.
fn expect_ok(name: &str) -> bool {
    match name.split('-').next() {
        Some("ok") => true,
        Some("err") => false,
        _ => panic!("corpus file {name} must be named ok-* or err-*"),
    }
}

#[test]
fn fuzz_corpus_policy() {
    for (name, bytes) in corpus("policy") {
        // Like `policy::load`, which refuses a file that is not UTF-8 before parsing.
        let Ok(text) = std::str::from_utf8(&bytes) else {
            assert!(!expect_ok(&name), "{name} is not UTF-8");
            continue;
        };
        let r = Policy::parse(text, &name);
        assert_eq!(r.is_ok(), expect_ok(&name), "{name}: {:?}", r.err());
        if let Err(e) = r {
            let msg = format!("{e:#}");
            assert!(
                msg.contains(&name),
                "{name}: error does not name the file: {msg}"
            );
        }
    }
}

#[test]
fn fuzz_corpus_secrets() {
    // Every value in the secrets corpus contains "CORPUS-SECRET" so a leak is visible.
    for (name, bytes) in corpus("secrets") {
        assert!(
            bytes.windows(13).any(|w| w == b"CORPUS-SECRET"),
            "{name}: put CORPUS-SECRET in its values"
        );
        match secrets::parse(&bytes) {
            Ok(set) => {
                assert!(expect_ok(&name), "{name} parsed but should not");
                assert!(!format!("{set:?}").contains("CORPUS-SECRET"));
                assert!(set.iter().count() > 0, "{name}: no secrets parsed");
            }
            Err(e) => {
                assert!(!expect_ok(&name), "{name}: {e:#}");
                assert!(!shown(&e).contains("CORPUS-SECRET"), "{name}: {e:#}");
            }
        }
    }
}
