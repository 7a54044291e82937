//! Checks that the policy documentation covers every key the parser accepts: each field of the
//! serde structs in `src/model/{mod,context,inputs,confinement,limits,supervise,net}.rs` and
//! `src/model/bind/` must be documented in `man/sbx-exec-policy.5` (as a `.B key` item under the
//! `.SS` heading of its table, e.g. `[context.NAME.env]`) and appear in the overview of every key
//! in `docs/policy.md` ("Every key at a glance"). The keys are read from the source text, so fields
//! added by any branch are found without touching this file; a failure lists exactly what is
//! undocumented.

use std::collections::BTreeMap;

const POLICY_RS: &str = concat!(
    include_str!("../../src/model/mod.rs"),
    include_str!("../../src/model/context.rs"),
    include_str!("../../src/model/inputs.rs"),
    include_str!("../../src/model/confinement.rs"),
    include_str!("../../src/model/limits.rs"),
    include_str!("../../src/model/supervise.rs"),
    include_str!("../../src/model/net.rs"),
    include_str!("../../src/model/bind/mod.rs"),
    include_str!("../../src/model/bind/hosts.rs"),
    include_str!("../../src/model/bind/names.rs")
);
const POLICY_MAN: &str = include_str!("../../man/sbx-exec-policy.5");
const GUIDE: &str = include_str!("../../docs/policy.md");

/// A deserializable struct of policy.rs: its fields, each with its type as written.
type Structs = BTreeMap<String, Vec<(String, String)>>;

/// Every `#[derive(.. Deserialize ..)] pub struct X { pub field: Type, .. }` of the source, minus
/// fields marked `#[serde(skip)]` (and with `#[serde(rename = "..")]` applied). A struct read
/// from another type (`#[serde(try_from = "String")]`, such as a bound host written
/// `"api.example.com:8443"`) is a value, not a table: it is left out.
fn serde_structs(src: &str) -> Structs {
    let mut out = Structs::new();
    let mut derive_seen = false;
    let mut converted = false;
    let mut current: Option<String> = None;
    let mut attrs = String::new();
    for line in src.lines() {
        let t = line.trim();
        if current.is_none() {
            if t.starts_with("#[derive(") && t.contains("Deserialize") {
                derive_seen = true;
            } else if t.starts_with("#[serde(") && t.contains("try_from") {
                converted = true;
            } else if let Some(rest) = t.strip_prefix("pub struct ") {
                if derive_seen && !converted && rest.ends_with('{') {
                    let name = rest.trim_end_matches('{').trim();
                    current = Some(name.to_string());
                    out.insert(name.to_string(), Vec::new());
                }
                derive_seen = false;
                converted = false;
            } else if !t.starts_with("#[") && !t.starts_with("///") && !t.is_empty() {
                derive_seen = false;
                converted = false;
            }
            continue;
        }
        if t == "}" {
            current = None;
            continue;
        }
        if t.starts_with("#[") {
            attrs.push_str(t);
            continue;
        }
        if let Some(rest) = t.strip_prefix("pub ") {
            if let Some((field, ty)) = rest.split_once(':') {
                let mut key = field.trim().to_string();
                if let Some(r) = attrs.split("rename = \"").nth(1) {
                    key = r.split('"').next().unwrap_or(&key).to_string();
                }
                if !attrs.contains("skip)") && !attrs.contains("skip,") {
                    let ty = ty.trim().trim_end_matches(',').to_string();
                    out.get_mut(current.as_ref().unwrap())
                        .unwrap()
                        .push((key, ty));
                }
            }
        }
        if !t.starts_with("///") {
            attrs.clear();
        }
    }
    out
}

/// The innermost struct named in a field type (`Option<Supervise>` → `Supervise`,
/// `BTreeMap<ContextName, Context>` → `Context`), if it is one of `structs`.
fn struct_in(ty: &str, structs: &Structs) -> Option<String> {
    ty.split(|c: char| !c.is_alphanumeric() && c != '_')
        .rev()
        .find(|w| structs.contains_key(*w))
        .map(str::to_string)
}

/// Each table of the format (`Top level`, `[context.NAME]`, `[context.NAME.env]`, ...) with its
/// keys, walking from `Policy` through the fields whose type is another struct.
fn tables(structs: &Structs) -> Vec<(String, Vec<String>)> {
    fn walk(
        name: &str,
        heading: String,
        path: &str,
        structs: &Structs,
        out: &mut Vec<(String, Vec<String>)>,
    ) {
        let fields = &structs[name];
        out.push((heading, fields.iter().map(|(k, _)| k.clone()).collect()));
        for (key, ty) in fields {
            if let Some(sub) = struct_in(ty, structs) {
                // The contexts map is keyed by name: `[context.NAME]`.
                let path = if ty.contains("BTreeMap<ContextName") || ty.contains("HashMap<Context")
                {
                    format!("{path}{key}.NAME")
                } else {
                    format!("{path}{key}")
                };
                walk(&sub, format!("[{path}]"), &format!("{path}."), structs, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("Policy", "Top level".into(), "", structs, &mut out);
    out
}

/// The `.B key` items under `.SS "heading"` in the man page.
fn man_items(heading: &str) -> Option<Vec<String>> {
    let start = POLICY_MAN
        .lines()
        .position(|l| l.trim() == format!(".SS \"{heading}\""))?;
    Some(
        POLICY_MAN
            .lines()
            .skip(start + 1)
            .take_while(|l| !l.starts_with(".SS") && !l.starts_with(".SH"))
            .filter_map(|l| l.strip_prefix(".B "))
            .map(|k| k.trim().to_string())
            .collect(),
    )
}

/// The guide's overview of every key: from its "## Every key at a glance" heading to the next
/// `## ` heading.
fn guide_key_section() -> &'static str {
    let start = GUIDE
        .find("\n## Every key at a glance")
        .expect("docs/policy.md has a '## Every key at a glance' section");
    let rest = &GUIDE[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

#[test]
fn policy_struct_parser_finds_the_known_keys() {
    // Guards the text parser itself: if it silently found nothing, the other tests would pass.
    let structs = serde_structs(POLICY_RS);
    let t = tables(&structs);
    let find = |h: &str| t.iter().find(|(n, _)| n == h).map(|(_, k)| k.clone());
    let top = find("Top level").unwrap();
    for k in ["version", "context"] {
        assert!(top.contains(&k.to_string()), "{top:?}");
    }
    let ctx = find("[context.NAME]").unwrap();
    for k in [
        "namespaces",
        "net",
        "env",
        "secrets",
        "supervise",
        "workdir",
        "extends",
        "identity",
    ] {
        assert!(ctx.contains(&k.to_string()), "{ctx:?}");
    }
    assert!(find("[context.NAME.env]")
        .unwrap()
        .contains(&"hygiene".into()));
    assert!(find("[context.NAME.security.run_as]").unwrap() == ["uid", "gid"]);
    assert!(find("[context.NAME.supervise]")
        .unwrap()
        .contains(&"stop_timeout".into()));
    // A struct read from a string is a value, not a table of its own.
    let converted = serde_structs(
        "#[derive(Deserialize)]\n#[serde(try_from = \"String\")]\npub struct Host {\n    pub name: String,\n}\n#[derive(Deserialize)]\npub struct T {\n    pub hosts: Vec<Host>,\n}\n",
    );
    assert_eq!(converted.keys().collect::<Vec<_>>(), ["T"]);
}

#[test]
fn every_policy_key_is_in_the_man_page_under_its_table() {
    let mut missing = Vec::new();
    for (heading, keys) in tables(&serde_structs(POLICY_RS)) {
        let Some(items) = man_items(&heading) else {
            missing.push(format!("section .SS \"{heading}\""));
            continue;
        };
        for k in keys {
            if !items.contains(&k) {
                missing.push(format!("{heading} {k}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "policy keys not documented in man/sbx-exec-policy.5 (add a `.TP` / `.B key` item with \
         type, default and meaning under the table's `.SS` heading): {missing:?}"
    );
}

#[test]
fn every_policy_key_is_in_the_guide() {
    let section = guide_key_section();
    let mut missing = Vec::new();
    for (heading, keys) in tables(&serde_structs(POLICY_RS)) {
        // A sub-table is shown as a header, or inline (`run_as = { uid = 1000, gid = 1000 }`).
        let last = heading
            .trim_end_matches(']')
            .rsplit('.')
            .next()
            .unwrap_or("");
        if heading != "Top level"
            && !section.contains(&heading)
            && !section.contains(&format!("{last} = {{"))
        {
            missing.push(heading.clone());
        }
        for k in keys {
            let as_key = |l: &str| {
                let l = l.trim_start().trim_start_matches('#').trim_start();
                l.starts_with(&format!("{k} ="))
                    || l.contains(&format!(".{k} ="))
                    || l.contains(&format!("{{ {k} ="))
                    || l.contains(&format!(", {k} ="))
            };
            let as_table =
                section.contains(&format!(".{k}]")) || section.contains(&format!("[{k}."));
            if !section.lines().any(as_key) && !as_table {
                missing.push(format!("{heading} {k}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "policy keys missing from docs/policy.md, \"Every key at a glance\" (add `key = example  # meaning`): {missing:?}"
    );
}
