//! Tests of policy parsing and of every cross-key rule: errors name the file, line and column and
//! the fix.

use super::*;

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::parse(text, "test.toml")
}

#[test]
fn embedded_default_parses_and_has_the_three_contexts() {
    let p = parse(EMBEDDED_DEFAULT).unwrap();
    for name in ["control", "platform", "user"] {
        p.context(name).unwrap();
    }
    let user = p.context("user").unwrap();
    assert!(user.secrets.allow.is_empty(), "user must take no secrets");
    assert!(user.has(Namespace::Pid) && user.has(Namespace::Mount));
}

#[test]
fn private_dev_is_the_default_for_confined_contexts_and_devices_are_checked() {
    let p = parse(EMBEDDED_DEFAULT).unwrap();
    assert!(p.context("user").unwrap().private_dev());
    assert!(p.context("platform").unwrap().private_dev());
    assert!(!p.context("control").unwrap().private_dev());
    let ctx = |ns: &str, fs: &str| {
        format!("version = 1\n[context.c]\nnamespaces = [{ns}]\n[context.c.fs]\n{fs}\n")
    };
    let confined = "\"pid\", \"mount\"";
    let c = parse(&ctx(confined, "")).unwrap();
    assert!(c.context("c").unwrap().private_dev());
    let c = parse(&ctx("\"mount\"", "")).unwrap();
    assert!(!c.context("c").unwrap().private_dev());
    let c = parse(&ctx(confined, "dev = \"host\"")).unwrap();
    assert!(!c.context("c").unwrap().private_dev());
    // fs.sys: the host's unless asked for; "private" needs the mount namespace.
    assert!(!parse(&ctx(confined, ""))
        .unwrap()
        .context("c")
        .unwrap()
        .private_sys());
    let c = parse(&ctx(confined, "sys = \"private\"")).unwrap();
    assert!(c.context("c").unwrap().private_sys());
    parse(&ctx(
        confined,
        "devices = [\"/dev/fuse\", \"/dev/net/tun\"]",
    ))
    .unwrap();
    for (ns, fs, want) in [
        ("", "dev = \"private\"", "\"mount\""),
        ("", "sys = \"private\"", "\"mount\""),
        (confined, "sys = \"none\"", "unknown variant"),
        (confined, "dev = \"shared\"", "unknown variant"),
        (
            confined,
            "dev = \"host\"\ndevices = [\"/dev/fuse\"]",
            "fs.dev",
        ),
        (confined, "devices = [\"/dev\"]", "below /dev"),
        (confined, "devices = [\"/devx/fuse\"]", "below /dev"),
        (confined, "devices = [\"/dev/pts/0\"]", "not /dev/pts"),
        (confined, "devices = [\"/dev/shm\"]", "not /dev/pts"),
    ] {
        let err = parse(&ctx(ns, fs)).unwrap_err().to_string();
        assert!(err.contains(want), "{fs}: {err}");
    }
}

#[test]
fn secrets_files_redact_and_audit_are_validated() {
    let ok = "version = 1\naudit = \"/var/log/sbx/audit.jsonl\"\n[context.p]\nnamespaces = [\"mount\"]\n[context.p.secrets]\nallow = [\"PG*\"]\nfiles = [\"PGPASSFILE\"]\nredact = true\n";
    let p = parse(ok).unwrap();
    assert_eq!(
        p.audit,
        Some(AuditTarget::File("/var/log/sbx/audit.jsonl".into()))
    );
    let c = p.context("p").unwrap();
    assert!(c.secrets.redact && c.secrets.files[0].0 == "PGPASSFILE");
    for a in ["stderr", "syslog"] {
        parse(&format!("version = 1\naudit = \"{a}\"\n")).unwrap();
    }
    let err = parse("version = 1\naudit = \"relative.log\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:2:") && err.contains("absolute"),
        "{err}"
    );
    let err = parse(&ok.replace("namespaces = [\"mount\"]", "namespaces = []"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"mount\" namespace"), "{err}");
    let err = parse(&ok.replace("allow = [\"PG*\"]", "allow = [\"AWS_*\"]"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PGPASSFILE") && err.contains("secrets.allow"),
        "{err}"
    );
}

#[test]
fn unknown_key_names_line_and_column() {
    let err = parse("version = 1\n[context.x]\nnamespacez = []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.toml:3:1"), "{err}");
    assert!(err.contains("unknown field `namespacez`"), "{err}");
    assert!(
        err.contains("namespaces"),
        "should list what is allowed: {err}"
    );
}

#[test]
fn wrong_type_and_bad_values_are_refused_with_position() {
    let err = parse("version = 1\n[context.x]\ndegrade = \"yes\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("test.toml:3:"), "{err}");
    let err = parse("version = 1\n[context.x]\nnamespaces = [\"pid\", \"time\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:3:") && err.contains("time"),
        "{err}"
    );
    let err = parse("version = 1\n[context.x]\nnamespaces = [\"mount\"]\n[context.x.fs]\nread_only = [\"usr\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:5:") && err.contains("absolute"),
        "{err}"
    );
    let err = parse("version = 1\n[context.x.security]\ncaps = [\"SYS_WIZARD\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown capability"), "{err}");
    let err = parse("version = 2\n").unwrap_err().to_string();
    assert!(err.contains("version"), "{err}");
    let err = parse("version = 1\n[context.Bad]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("context name"), "{err}");
}

#[test]
fn cross_key_rules() {
    let err = parse("version = 1\n[context.x]\nnamespaces = [\"pid\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:2") && err.contains("\"mount\""),
        "{err}"
    );
    let err = parse("version = 1\n[context.x.fs]\ntmpfs = [\"/tmp\"]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mount"), "{err}");
}

#[test]
fn identity_rules() {
    let ctx = |extra: &str| {
        format!("version = 1\n[context.x]\nnamespaces = [\"pid\", \"mount\"]\n{extra}\n")
    };
    let ok = parse(&ctx(
        "identity = { uid = 100000, gid = 100000, count = 65536 }",
    ))
    .unwrap();
    assert_eq!(ok.context("x").unwrap().identity.unwrap().count, 65536);
    for (bad, says) in [
        (
            "identity = { uid = 0, gid = 100000, count = 10 }",
            "must not be 0",
        ),
        ("identity = { uid = 1, gid = 1, count = 0 }", "at least 1"),
        (
            "identity = { uid = 4294967295, gid = 1, count = 2 }",
            "below",
        ),
        ("identity = { uid = 1, gid = 1 }", "count"),
        (
            "identity = { uid = 9, gid = 9, count = 5 }\nsecurity.run_as = { uid = 5, gid = 1 }",
            "run_as",
        ),
    ] {
        let err = parse(&ctx(bad)).unwrap_err().to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
    let err = parse("version = 1\n[context.x]\nidentity = { uid = 9, gid = 9, count = 5 }\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"pid\""), "{err}");
}

#[test]
fn unknown_context_lists_known_ones() {
    let p = parse(EMBEDDED_DEFAULT).unwrap();
    let err = p.context("nope").unwrap_err().to_string();
    assert!(err.contains("control") && err.contains("user"), "{err}");
}

#[test]
fn persist_rules() {
    let parse = |t: &str| crate::model::Policy::parse(t, "t.toml");
    let base = "version = 1\n[context.x]\n";
    let e = parse(&format!(
        "{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("fs.hide"), "{e}");
    let base = "version = 1\n[context.x]\nfs.hide = [\"/run/sbx\"]\n";
    let e = parse(&format!("{base}persist = true\nnamespaces = [\"mount\"]\n")).unwrap_err();
    assert!(e.to_string().contains("\"pid\" and \"mount\""), "{e}");
    let e = parse(
        "version = 1\n[context.x]\npersist = true\nnamespaces = []\n[context.x.supervise]\nports = [1]\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("[supervise]"), "{e}");
    let e = parse(&format!("{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n[context.x.security]\nscope = true\n")).unwrap_err();
    assert!(e.to_string().contains("scope"), "{e}");
    let one_shot = parse(&format!(
        "{base}namespaces = [\"pid\", \"mount\"]\n[context.x.limits]\npids_max = 3\n"
    ))
    .unwrap();
    assert!(one_shot.context("x").unwrap().limits.is_some());
    let e = parse(&format!(
        "{base}namespaces = [\"pid\", \"mount\"]\n[context.x.limits]\nmemory_swap_max = \"1G\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("needs limits.memory_max"), "{e}");
    let ok = parse(&format!(
        "{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n[context.x.limits]\npids_max = 3\nmemory_max = \"64M\"\n"
    ))
    .unwrap();
    assert!(ok.context("x").unwrap().persist);
    // The keeper's net helper runs the proxy and the forwarders for the context's life.
    let net = parse(&format!(
        "{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\nnet = {{ allow = [\"0.0.0.0/0\"], publish = [3000, \"5173-5180\"] }}\n"
    ))
    .unwrap();
    assert_eq!(net.context("x").unwrap().net.published_ports().len(), 9);
    // Bound secrets are one call's values: one-shot only.
    let e = parse(&format!(
        "{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\nnet = {{ allow = [\"api.example.com\"] }}\n\
         [context.x.secrets]\nallow = [\"K\"]\n[[context.x.secrets.bind]]\nname = \"K\"\nhosts = [\"api.example.com\"]\nheader = \"x-api-key\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("secrets.bind"), "{e}");
    let e = parse(&format!("{base}persist = true\nnamespaces = [\"pid\", \"mount\"]\n[context.x.limits]\nmemory_max = \"lots\"\n")).unwrap_err();
    assert!(e.to_string().contains("t.toml:"), "{e}");
}

#[test]
fn text_that_is_not_utf8_names_the_line_and_column_of_the_first_bad_byte() {
    let bytes = b"version = 1\n[context.x]\ndescription = \"caf\xe9\"\n".to_vec();
    let err = Policy::text_from(bytes, "test.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.toml:3:19:") && err.contains("not UTF-8") && err.contains("0xe9"),
        "{err}"
    );
    // On the first line, and after multi-byte characters (the column counts bytes, as toml's).
    let err = Policy::text_from(b"\xff".to_vec(), "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("t:1:1:"), "{err}");
    let err = Policy::text_from("# é\n\u{1F511}x".bytes().chain([0x80]).collect(), "t")
        .unwrap_err()
        .to_string();
    assert!(err.contains("t:2:6:"), "{err}");
    let ok = Policy::text_from(b"version = 1\n# \xc3\xa9\n".to_vec(), "t").unwrap();
    parse(&ok).unwrap();
}

#[test]
fn keys_nested_too_deep_are_refused_with_their_line() {
    let deep = |n: usize| vec!["a"; n].join(".");
    // 20,000 levels of a dotted key, of a table header, of inline tables and of arrays: toml's
    // own error for the first two names no place (0:0 before).
    for (what, text, line) in [
        (
            "dotted key",
            format!("version = 1\n\n{} = 1\n", deep(20_000)),
            3,
        ),
        (
            "table header",
            format!("version = 1\n[{}]\n", deep(20_000)),
            2,
        ),
        (
            "array of tables",
            format!("version = 1\n[[{}]]\n", deep(40)),
            2,
        ),
        (
            "header and key",
            format!("version = 1\n[{}]\nx = 1\n{} = 2\n", deep(20), deep(20)),
            4,
        ),
        (
            "inline tables",
            format!(
                "version = 1\nx = {}1{}\n",
                "{a=".repeat(20_000),
                "}".repeat(20_000)
            ),
            2,
        ),
        (
            "arrays",
            format!(
                "version = 1\n\"q.q\" = '''\n\n'''\nx = {}{}\n",
                "[".repeat(20_000),
                "]".repeat(20_000)
            ),
            5,
        ),
    ] {
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("invalid policy test.toml:{line}:"))
                && err.contains("levels deep"),
            "{what}: {}",
            &err[..err.len().min(300)]
        );
    }
    // Deep enough for every real key, and dots in strings, quoted keys and values count nothing.
    let ok = format!(
        "version = 1\n[context.x]\ndescription = \"{}\"\n\"{}\" = 1\nnet.limits.per_call = 4\n",
        deep(100),
        deep(100)
    );
    let err = parse(&ok).unwrap_err().to_string();
    assert!(
        err.contains("unknown field") && err.contains("test.toml:4:"),
        "{err}"
    );
    parse(EMBEDDED_DEFAULT).unwrap();
    for f in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")).unwrap() {
        let p = f.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        // The scanner follows every shipped policy to its end (it gives up on nothing in them).
        assert_eq!(super::depth::scan_whole(&text), Ok(()), "{}", p.display());
    }
}

#[test]
fn required_secrets_must_be_admitted_plain_names() {
    let ctx = |secrets: &str| {
        format!(
            "version = 1\n[context.p]\nnamespaces = [\"mount\"]\n[context.p.secrets]\n{secrets}\n"
        )
    };
    let ok = parse(&ctx(
        "allow = [\"PG*\", \"TOKEN\"]\nrequire = [\"PGPASSWORD\", \"TOKEN\"]",
    ))
    .unwrap();
    let names: Vec<&str> = ok
        .context("p")
        .unwrap()
        .secrets
        .require
        .iter()
        .map(|n| n.0.as_str())
        .collect();
    assert_eq!(names, ["PGPASSWORD", "TOKEN"]);
    for (bad, says) in [
        (
            "allow = [\"PG*\"]\nrequire = [\"TOKEN\"]",
            "secrets.require lists TOKEN, which secrets.allow does not admit",
        ),
        ("require = [\"TOKEN\"]", "secrets.allow does not admit"),
        ("allow = [\"PG*\"]\nrequire = [\"PG*\"]", "test.toml:6:"),
        ("allow = [\"PG*\"]\nrequire = [\"1PG\"]", "test.toml:6:"),
        ("allow = [\"PG*\"]\nrequire = [\"PGA\", \"PGA\"]", "twice"),
        (
            "allow = [\"LD_*\"]\nrequire = [\"LD_PRELOAD\"]",
            "refused as a secret",
        ),
    ] {
        let err = parse(&ctx(bad)).unwrap_err().to_string();
        assert!(err.contains(says), "{bad}: {err}");
    }
    // Delivered as a file, an injection name is sbx-exec's path: it may be required.
    parse(&ctx(
        "allow = [\"PGPASSFILE\"]\nfiles = [\"PGPASSFILE\"]\nrequire = [\"PGPASSFILE\"]",
    ))
    .unwrap();
    // `policy show` prints it only where it is set.
    let shown = toml::to_string(&ok.context("p").unwrap().secrets).unwrap();
    assert!(shown.contains("require"), "{shown}");
    let none = parse(&ctx("allow = [\"PG*\"]")).unwrap();
    let shown = toml::to_string(&none.context("p").unwrap().secrets).unwrap();
    assert!(!shown.contains("require"), "{shown}");
}

/// `ops`: checked names, each once, only with the egress gate and /run/sbx hidden; the control
/// (all of that) parses and keeps the names in order.
#[test]
fn ops_rules() {
    let ctx = |ops: &str, net: &str, hide: &str| {
        format!(
            "version = 1\n[context.c]\nnamespaces = [\"pid\", \"mount\"]\nops = {ops}\nnet = {net}\n[context.c.fs]\nhide = [{hide}]\n"
        )
    };
    let gate = "{ mode = \"private\", allow = [\"example.com\"] }";
    let ok = parse(&ctx("[\"deploy\", \"db-migrate_2\"]", gate, "\"/run/sbx\"")).unwrap();
    let names: Vec<&str> = ok
        .context("c")
        .unwrap()
        .ops
        .iter()
        .map(|o| o.0.as_str())
        .collect();
    assert_eq!(names, ["deploy", "db-migrate_2"]);
    // `policy show` writes them back as they were read.
    let c = ok.context("c").unwrap();
    let shown = toml::to_string(&toml::Value::try_from(c).unwrap()).unwrap();
    let back: Context = toml::from_str(&shown).unwrap();
    assert_eq!(back.ops, c.ops);
    let err =
        |ops: &str, net: &str, hide: &str| parse(&ctx(ops, net, hide)).unwrap_err().to_string();
    let e = err("[\"deploy\", \"deploy\"]", gate, "\"/run/sbx\"");
    assert!(e.contains("ops lists \"deploy\" twice"), "{e}");
    for net in [
        "{ mode = \"private\" }",
        "{ mode = \"none\" }",
        "{ mode = \"host\" }",
    ] {
        let e = err("[\"deploy\"]", net, "\"/run/sbx\"");
        assert!(
            e.contains("ops are called through the egress gate") && e.contains("net.allow"),
            "{e}"
        );
    }
    let e = err("[\"deploy\"]", gate, "");
    assert!(e.contains("ops need fs.hide to include /run/sbx"), "{e}");
    for bad in ["Deploy", "1deploy", "de ploy", "", "de.ploy"] {
        let e = err(&format!("[{bad:?}]"), gate, "\"/run/sbx\"");
        assert!(e.contains("invalid operation name"), "{bad}: {e}");
    }
    let long = format!("[\"{}\"]", "a".repeat(64));
    assert!(err(&long, gate, "\"/run/sbx\"").contains("invalid operation name"));
    assert!(parse(&ctx(
        &format!("[\"{}\"]", "a".repeat(63)),
        gate,
        "\"/run/sbx\""
    ))
    .is_ok());
    // No ops: nothing is required of the network.
    assert!(parse(&ctx("[]", "{ mode = \"none\" }", "")).is_ok());
}

#[test]
fn pool_rules() {
    let base = "version = 1\n[context.x]\n";
    let ok = parse(&format!(
        "{base}pool = 3\nnamespaces = [\"pid\", \"mount\"]\n"
    ))
    .unwrap();
    assert_eq!(ok.context("x").unwrap().pool, 3);
    for (extra, says) in [
        (
            "pool = 1\nnamespaces = [\"mount\"]\n",
            "\"pid\" and \"mount\"",
        ),
        (
            "pool = 33\nnamespaces = [\"pid\", \"mount\"]\n",
            "at most 32",
        ),
    ] {
        let e = parse(&format!("{base}{extra}")).unwrap_err().to_string();
        assert!(e.contains(says), "{extra}: {e}");
    }
    // No effect (and no error) where no one-shot call could use it: the server skips it.
    for extra in [
        "persist = true\nfs.hide = [\"/run/sbx\"]\n",
        "net = { allow = [], publish = [3000] }\n",
    ] {
        let p = parse(&format!(
            "{base}pool = 2\nnamespaces = [\"pid\", \"mount\"]\n{extra}"
        ));
        assert!(p.is_ok(), "{extra}: {p:?}");
    }
}
