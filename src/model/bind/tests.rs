//! Bound secrets as the policy gives them: host patterns, ports, names and the cross-key rules.

use super::*;

fn host(s: &str) -> Result<HostPattern, String> {
    HostPattern::try_from(s.to_string())
}

#[test]
fn host_patterns_follow_the_egress_spelling() {
    assert_eq!(
        host("API.Anthropic.com.").unwrap(),
        HostPattern::Exact("api.anthropic.com".into())
    );
    let aws = host("*.amazonaws.com").unwrap();
    assert!(aws.matches("s3.us-east-1.amazonaws.com"));
    assert!(!aws.matches("amazonaws.com"));
    assert!(!aws.matches("evilamazonaws.com"));
    for bad in [
        "",
        "*",
        "*.com.",
        "localhost",
        "1.2.3.4",
        "a..b",
        "-a.b",
        "a b.c",
        "*.*.x.y",
    ] {
        assert!(host(bad).is_err(), "{bad}");
    }
}

#[test]
fn bound_hosts_pin_the_port() {
    let h = |s: &str| BoundHost::try_from(s.to_string());
    let plain = h("api.example.com").unwrap();
    assert!(plain.matches("api.example.com", 443) && !plain.matches("api.example.com", 8443));
    let other = h("api.example.com:8443").unwrap();
    assert!(other.matches("api.example.com", 8443) && !other.matches("api.example.com", 443));
    assert_eq!(String::from(other), "api.example.com:8443");
    assert_eq!(String::from(plain), "api.example.com");
    for bad in [
        "a.example:0",
        "a.example:+1",
        "a.example:99999",
        "a.example:",
        "a.example: 1",
    ] {
        assert!(h(bad).is_err(), "{bad}");
    }
}

#[test]
fn entries_need_one_slot_and_hosts() {
    let b = |toml: &str| toml::from_str::<Bind>(toml).map_err(|e| e.to_string());
    let ok = b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x-api-key\"").unwrap();
    assert!(ok.check().is_ok());
    assert_eq!(ok.names(), ["K"]);
    assert!(b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"Host\"").is_err());
    assert!(b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"a:b\"").is_err());
    let two = b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x\"\nquery = \"k\"").unwrap();
    let e = two.check().unwrap_err();
    assert!(matches!(e, BindViolation::NotOneSlot { .. }));
    assert!(e.to_string().contains("exactly one"), "{e}");
    let none = b("name = \"K\"\nhosts = [\"a.b\"]").unwrap();
    assert!(none.check().is_err());
    let aws =
        b("kind = \"aws-sigv4\"\nhosts = [\"s3.us-east-1.amazonaws.com\"]\nservices = [\"s3\"]")
            .unwrap();
    assert!(aws.check().is_ok());
    assert_eq!(aws.names(), [AWS_KEY_ID, AWS_SECRET, AWS_TOKEN]);
    // Services are required, never an issuer of credentials, and only for aws-sigv4.
    let no_svc = b("kind = \"aws-sigv4\"\nhosts = [\"s3.us-east-1.amazonaws.com\"]").unwrap();
    let e = no_svc.check().unwrap_err();
    assert_eq!(e, BindViolation::NoServices);
    assert!(e.to_string().contains("services"), "{e}");
    for issuer in ["sts", "iam", "sso", "cognito-identity"] {
        let e = b(&format!(
            "kind = \"aws-sigv4\"\nhosts = [\"{issuer}.amazonaws.com\"]\nservices = [\"{issuer}\"]"
        ))
        .unwrap()
        .check()
        .unwrap_err();
        assert_eq!(
            e,
            BindViolation::IssuerService {
                service: issuer.into()
            }
        );
        assert!(e.to_string().contains("never re-signed"), "{e}");
    }
    let minting = b("kind = \"aws-sigv4\"\nhosts = [\"api.ecr.us-east-1.amazonaws.com\"]\nservices = [\"ecr\"]\nactions = [\"GetAuthorizationToken\"]").unwrap();
    let e = minting.check().unwrap_err();
    assert!(matches!(e, BindViolation::IssuerAction { .. }));
    assert!(e.to_string().contains("never re-signed"), "{e}");
    let value_svc =
        b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x\"\nservices = [\"s3\"]").unwrap();
    let e = value_svc.check().unwrap_err();
    assert!(matches!(e, BindViolation::AwsKeysOnValue { .. }));
    assert!(e.to_string().contains("aws-sigv4"), "{e}");
    // A wildcard over a shared suffix is refused; over one owner's domain it is fine.
    for shared in [
        "*.amazonaws.com",
        "*.execute-api.us-east-1.amazonaws.com",
        "*.workers.dev",
        "*.herokuapp.com",
        "*.cloudfront.net",
    ] {
        let e = b(&format!(
            "name = \"K\"\nhosts = [\"{shared}\"]\nheader = \"x\""
        ))
        .unwrap()
        .check()
        .unwrap_err();
        assert!(matches!(e, BindViolation::SharedSuffix { .. }));
        assert!(
            e.to_string().contains("Public Suffix List"),
            "{shared}: {e}"
        );
    }
    assert!(
        b("name = \"K\"\nhosts = [\"*.anthropic.com\"]\nheader = \"x\"")
            .unwrap()
            .check()
            .is_ok()
    );
    let aws_named =
        b("kind = \"aws-sigv4\"\nname = \"K\"\nhosts = [\"a.b\"]\nservices = [\"s3\"]").unwrap();
    assert!(aws_named.check().is_err());
    let empty = b("name = \"K\"\nhosts = []\nheader = \"x\"").unwrap();
    assert!(empty.check().is_err());
    assert!(b("name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x\"\ncolor = 1").is_err());
}

#[test]
fn policy_rules_for_bound_secrets() {
    let policy = |ns: &str, allow: &str, extra: &str, bind: &str| {
        let text = format!("version = 1\n[context.a]\nnamespaces = [{ns}]\nnet = {{ mode = \"private\", allow = [\"api.anthropic.com\"] }}\n[context.a.secrets]\nallow = [{allow}]\n{extra}\n{bind}");
        crate::model::Policy::parse(&text, "t.toml").map_err(|e| e.to_string())
    };
    let key = "[[context.a.secrets.bind]]\nname = \"ANTHROPIC_API_KEY\"\nhosts = [\"api.anthropic.com\"]\nheader = \"x-api-key\"\n";
    let aws =
        "[[context.a.secrets.bind]]\nkind = \"aws-sigv4\"\nhosts = [\"s3.us-east-1.amazonaws.com\"]\nservices = [\"s3\"]\n";
    let both = format!("{key}{aws}");
    let p = policy("\"mount\"", "\"ANTHROPIC_*\", \"AWS_*\"", "", &both).unwrap();
    assert_eq!(p.context.values().next().unwrap().secrets.bind.len(), 2);
    let err = policy("", "\"ANTHROPIC_*\"", "", key).unwrap_err();
    assert!(err.contains("\"mount\""), "{err}");
    let err = policy("\"mount\"", "\"OTHER\"", "", key).unwrap_err();
    assert!(
        err.contains("ANTHROPIC_API_KEY, which secrets.allow does not admit"),
        "{err}"
    );
    let err = policy("\"mount\"", "\"AWS_ACCESS_KEY_ID\"", "", aws).unwrap_err();
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    let err = policy(
        "\"mount\"",
        "\"ANTHROPIC_*\"",
        "files = [\"ANTHROPIC_API_KEY\"]",
        key,
    )
    .unwrap_err();
    assert!(err.contains("both in secrets.files"), "{err}");
    let err = policy("\"mount\"", "\"ANTHROPIC_*\"", "", &format!("{key}{key}")).unwrap_err();
    assert!(err.contains("bound twice"), "{err}");
    // Without the egress proxy a bound secret could not work: refused.
    let text = format!("version = 1\n[context.a]\nnamespaces = [\"mount\"]\n[context.a.secrets]\nallow = [\"ANTHROPIC_*\"]\n{key}");
    let err = crate::model::Policy::parse(&text, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("egress proxy"), "{err}");
}

/// `methods` and `paths`: optional on either kind (absent: every request, as before they
/// existed), never empty, each item once; a bad value is an error naming the file, line and key.
#[test]
fn methods_and_paths_narrow_an_entry() {
    let b = |toml: &str| toml::from_str::<Bind>(toml).map_err(|e| e.to_string());
    let value = "name = \"K\"\nhosts = [\"a.b\"]\nheader = \"x\"\n";
    let plain = b(value).unwrap();
    assert_eq!(plain.requests(), Requests::default());
    let limited = b(&format!(
        "{value}methods = [\"POST\"]\npaths = [\"/v1/messages\", \"/v1/files\"]"
    ))
    .unwrap();
    assert!(limited.check().is_ok());
    let r = limited.requests();
    assert!(r.admits("POST", "/v1/files/f1", &[]).is_ok());
    assert_eq!(r.admits("GET", "/v1/files/f1", &[]), Err(Outside::Method));
    let aws = b("kind = \"aws-sigv4\"\nhosts = [\"s3.us-east-1.amazonaws.com\"]\nservices = [\"s3\"]\nmethods = [\"GET\", \"HEAD\"]\npaths = [\"/reports\"]").unwrap();
    assert!(aws.check().is_ok());
    for (extra, want) in [
        ("methods = []", BindViolation::EmptyLimit { key: "methods" }),
        ("paths = []", BindViolation::EmptyLimit { key: "paths" }),
        (
            "methods = [\"GET\", \"POST\", \"GET\"]",
            BindViolation::RepeatedLimit {
                key: "methods",
                item: "GET".into(),
            },
        ),
        (
            "paths = [\"/a\", \"/a\"]",
            BindViolation::RepeatedLimit {
                key: "paths",
                item: "/a".into(),
            },
        ),
    ] {
        let e = b(&format!("{value}{extra}")).unwrap().check().unwrap_err();
        assert_eq!(e, want, "{extra}");
    }
    assert_eq!(
        BindViolation::EmptyLimit { key: "methods" }.to_string(),
        "secrets.bind: methods = [] admits no request, so the secret would never be used; remove methods to admit every one, or list some, e.g. methods = [\"POST\"]"
    );
    assert_eq!(
        BindViolation::RepeatedLimit {
            key: "paths",
            item: "/a".into()
        }
        .to_string(),
        "secrets.bind: \"/a\" is listed twice in paths; list it once"
    );
    // A bad value, in a whole policy: the file, line and column, the key and the fix.
    let policy = |extra: &str| {
        let text = format!("version = 1\n[context.a]\nnamespaces = [\"mount\"]\nnet = {{ mode = \"private\", allow = [\"a.example\"] }}\n[context.a.secrets]\nallow = [\"K\"]\n[[context.a.secrets.bind]]\nname = \"K\"\nhosts = [\"a.example\"]\nheader = \"x-api-key\"\n{extra}\n");
        crate::model::Policy::parse(&text, "t.toml").map_err(|e| e.to_string())
    };
    assert!(policy("methods = [\"POST\"]\npaths = [\"/v1/messages\"]").is_ok());
    let e = policy("methods = [\"post\"]").unwrap_err();
    assert!(e.contains("t.toml:11:"), "{e}");
    assert!(
        e.contains("secrets.bind methods: \"post\" is not in capitals; write \"POST\""),
        "{e}"
    );
    let e = policy("paths = [\"/v1/../admin\"]").unwrap_err();
    assert!(e.contains("t.toml:11:"), "{e}");
    assert!(
        e.contains("secrets.bind paths: \"/v1/../admin\" has an empty, '.' or '..' segment"),
        "{e}"
    );
    let e = policy("paths = []").unwrap_err();
    assert!(e.contains("paths = [] admits no request"), "{e}");
    let e = policy("verbs = [\"POST\"]").unwrap_err();
    assert!(e.contains("verbs"), "{e}");
}
