//! Tests of the destination policy: rule spellings, address classes, host spellings.

use super::*;

fn policy(rules: &[&str]) -> EgressPolicy {
    EgressPolicy::parse("user", rules, vec!["172.17.0.2".parse().unwrap()]).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn refused(p: &EgressPolicy, host: &str, port: u16) -> Refusal {
    p.check_name(host, port)
        .expect_err(&format!("{host}:{port} should be refused"))
}

#[test]
fn rules_parse_every_spelling() {
    let d = |p: DomainPattern, port| Allow::Domain { pattern: p, port };
    let n = |s: &str, len, port| Allow::Net {
        net: Cidr::new(ip(s), len).unwrap(),
        port,
    };
    let cases: &[(&str, Allow)] = &[
        ("pypi.org", d(DomainPattern::Exact("pypi.org".into()), None)),
        (
            "PyPI.org.",
            d(DomainPattern::Exact("pypi.org".into()), None),
        ),
        (
            "host:443",
            d(DomainPattern::Exact("host".into()), Some(443)),
        ),
        (
            "*.github.com:443",
            d(DomainPattern::Subdomains("github.com".into()), Some(443)),
        ),
        ("203.0.113.0/24", n("203.0.113.0", 24, None)),
        ("203.0.113.7", n("203.0.113.7", 32, None)),
        ("203.0.113.7:80", n("203.0.113.7", 32, Some(80))),
        ("2001:db8::/32", n("2001:db8::", 32, None)),
        ("2001:db8::1", n("2001:db8::1", 128, None)),
        ("[2001:db8::1]:8443", n("2001:db8::1", 128, Some(8443))),
        ("[2001:db8::/32]:443", n("2001:db8::", 32, Some(443))),
        ("10.0.0.0/8:5432", n("10.0.0.0", 8, Some(5432))),
        ("2001:db8::/32:443", n("2001:db8::", 32, Some(443))),
    ];
    for (s, want) in cases {
        assert_eq!(&s.parse::<Allow>().unwrap(), want, "{s}");
    }
}

#[test]
fn bad_rules_name_the_entry_and_the_fix() {
    let cases: &[(&str, &str)] = &[
        ("", "remove it"),
        ("pypi.org:0", "1-65535"),
        ("pypi.org:https", "1-65535"),
        ("10.0.0.1/8", "write the network: 10.0.0.0/8"),
        ("10.0.0.0/33", "0-32"),
        ("2001:db8::g:443", "needs brackets"),
        ("*", "*.example.com"),
        ("a.*.com", "*.example.com"),
        ("0x7f.1", "write it as 127.0.0.1"),
        ("localhost", "127.0.0.1/32"),
        ("exa mple.com", "DNS name"),
        ("[10.0.0.1]:5", "IPv4"),
        ("::ffff:10.0.0.0/104", "IPv4 address itself"),
        ("[2001:db8::1", "[2001:db8::1]:443"),
    ];
    for (s, fix) in cases {
        let e = s.parse::<Allow>().expect_err(s).to_string();
        assert!(e.contains(&format!("{s:?}")), "{e}");
        assert!(e.contains(fix), "{s}: {e}");
    }
}

#[test]
fn wildcard_matches_subdomains_not_the_apex() {
    let p = policy(&["*.pypi.org:443"]);
    assert!(p.check_name("files.pypi.org", 443).is_ok());
    assert!(p.check_name("A.B.PYPI.ORG.", 443).is_ok());
    assert_eq!(refused(&p, "pypi.org", 443).kind, RefusalKind::NotAllowed);
    assert_eq!(
        refused(&p, "evilpypi.org", 443).kind,
        RefusalKind::NotAllowed
    );
    assert_eq!(
        refused(&p, "files.pypi.org", 80).kind,
        RefusalKind::NotAllowed
    );
    let r = refused(&p, "example.com", 443);
    assert_eq!(
        r.reason,
        "not in net.allow: example.com:443 — add it to [context.user.net] allow"
    );
}

#[test]
fn empty_allow_is_no_egress() {
    let p = policy(&[]);
    for (h, port) in [("pypi.org", 443), ("203.0.113.1", 80), ("127.0.0.1", 80)] {
        let r = refused(&p, h, port);
        assert_eq!(r.kind, RefusalKind::NoEgress, "{h}");
        assert!(r.reason.contains("[context.user.net] allow"));
    }
}

#[test]
fn addresses_need_a_cidr_rule_and_the_port() {
    let p = policy(&["203.0.113.0/24:443", "2001:db8::/32"]);
    assert!(p.check_name("203.0.113.9", 443).is_ok());
    assert!(p.check_name("[::ffff:203.0.113.9]", 443).is_ok());
    assert_eq!(refused(&p, "203.0.113.9", 80).kind, RefusalKind::NotAllowed);
    assert_eq!(
        refused(&p, "198.51.100.1", 443).kind,
        RefusalKind::NotAllowed
    );
    assert!(p.check_name("[2001:db8::5]", 1).is_ok());
    assert!(p.check_name("2001:db8::5", 1).is_ok());
    // A name is let through to resolution when a CIDR rule could match its address.
    assert!(p.check_name("example.com", 443).is_ok());
    assert!(p
        .check_addr(Some("example.com"), ip("203.0.113.1"), 443)
        .is_ok());
    assert!(p
        .check_addr(Some("example.com"), ip("198.51.100.1"), 443)
        .is_err());
}

#[test]
fn every_spelling_of_loopback_is_loopback() {
    let p = policy(&["pypi.org"]);
    for h in [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0177.0.0.1",
        "0x7f.1",
        "0x7f000001",
        "0x7F.0.0.1",
        "127.0.0.1.",
        "017700000001",
        "127.0.1",
    ] {
        assert_eq!(parse_host(h), Ok(Host::Ip(ip("127.0.0.1"))), "{h}");
        let r = refused(&p, h, 80);
        assert_eq!(r.kind, RefusalKind::ForbiddenAddress, "{h}");
        assert!(r.reason.starts_with("127.0.0.1 is loopback"), "{h}: {r}");
    }
    for h in ["[::1]", "::1", "[0:0:0:0:0:0:0:1]"] {
        assert!(
            refused(&p, h, 80).reason.starts_with("::1 is loopback"),
            "{h}"
        );
    }
    let r = refused(&p, "[::ffff:127.0.0.1]", 80);
    assert_eq!(
        r.reason.split(';').next().unwrap(),
        "::ffff:127.0.0.1 is loopback (an IPv4-mapped IPv6 address)"
    );
    for h in ["localhost", "LOCALHOST.", "foo.localhost", "a.b.localhost."] {
        assert_eq!(refused(&p, h, 80).kind, RefusalKind::LocalName, "{h}");
    }
}

#[test]
fn bad_hosts_are_refused_not_resolved() {
    for h in [
        "256.0.0.1",
        "1.2.3.4.5",
        "08.0.0.1",
        "1..1",
        "127.0.0.1..",
        "[fe80::1%25eth0]",
        "[::1",
        "exa mple.com",
        "%31%32%37.0.0.1",
        "",
        "example.0x100000000",
        "\u{456}xample.com",
    ] {
        let r = parse_host(h).expect_err(h);
        assert_eq!(r.kind, RefusalKind::BadHost, "{h}");
    }
    assert_eq!(parse_host("0x"), Ok(Host::Ip(ip("0.0.0.0"))));
    assert_eq!(
        parse_host("Ex-a_mple.COM."),
        Ok(Host::Name("ex-a_mple.com".into()))
    );
    // A numeric label elsewhere than last is a name (e.g. 1.2.example).
    assert_eq!(
        parse_host("1.2.example"),
        Ok(Host::Name("1.2.example".into()))
    );
}

#[test]
fn forbidden_classes_are_named() {
    let p = policy(&["pypi.org", "0.0.0.0/0", "::/0"]);
    let cases: &[(&str, &str)] = &[
        (
            "169.254.169.254",
            "169.254.169.254 is the cloud metadata address (link-local); not allowed from a sandbox",
        ),
        ("[fd00:ec2::254]", "fd00:ec2::254 is the cloud metadata address"),
        ("169.254.1.1", "169.254.1.1 is link-local"),
        ("[fe80::1]", "fe80::1 is link-local"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("[fd12::1]", "private (unique local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.255", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("[ff02::1]", "multicast"),
        ("0.0.0.0", "0.0.0.0 is the unspecified address"),
        ("0", "0.0.0.0 is the unspecified address"),
        ("[::]", ":: is the unspecified address"),
        ("0.1.2.3", "this network"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("172.17.0.2", "this container's own address"),
        ("[::ffff:169.254.169.254]", "cloud metadata address"),
        ("[::ffff:10.0.0.1]", "private (RFC 1918) (an IPv4-mapped"),
        ("[64:ff9b::7f00:1]", "loopback (a NAT64 address)"),
        ("[64:ff9b::a9fe:a9fe]", "metadata address (link-local) (a NAT64"),
        ("[2002:7f00:1::]", "loopback (a 6to4 address)"),
        ("[2002:a00:1::5]", "private (RFC 1918) (a 6to4 address)"),
        ("[::127.0.0.1]", "loopback (an IPv4-compatible"),
        ("[64:ff9b:1::1]", "local-use NAT64"),
    ];
    for (h, want) in cases {
        let r = refused(&p, h, 80);
        assert_eq!(r.kind, RefusalKind::ForbiddenAddress, "{h}");
        assert!(r.reason.contains(want), "{h}: {r}");
    }
    // Public addresses pass, in every family and embedding.
    for h in [
        "203.0.113.1",
        "8.8.8.8",
        "[2001:db8::1]",
        "[::ffff:8.8.8.8]",
        "[64:ff9b::808:808]",
        "[2002:808:808::1]",
        "172.32.0.1",
        "100.128.0.1",
        "169.255.0.1",
    ] {
        assert!(p.check_name(h, 80).is_ok(), "{h}");
    }
    // The metadata reason does not suggest a rule; others do.
    assert!(!refused(&p, "169.254.169.254", 80).reason.contains("opens"));
    assert!(refused(&p, "10.0.0.1", 80)
        .reason
        .contains("\"10.0.0.1/32\" in [context.user.net] allow"));
}

#[test]
fn only_a_cidr_rule_inside_the_class_opens_it() {
    let p = policy(&[
        "127.0.0.1/32",
        "10.0.0.0/8:5432",
        "169.254.0.0/16",
        "fe80::/10",
    ]);
    assert!(p.check_name("127.0.0.1", 8080).is_ok());
    assert!(p.check_name("2130706433", 8080).is_ok());
    assert!(p.check_name("[::ffff:127.0.0.1]", 8080).is_ok());
    assert!(p.check_name("127.0.0.2", 8080).is_err());
    assert!(p.check_name("10.9.8.7", 5432).is_ok());
    assert!(p.check_name("10.9.8.7", 22).is_err());
    assert!(p.check_name("169.254.1.1", 80).is_ok());
    assert!(p.check_name("[fe80::1]", 80).is_ok());
    // The metadata address is its own class: only its /32 opens it.
    assert!(refused(&p, "169.254.169.254", 80)
        .reason
        .contains("metadata"));
    let meta = policy(&["169.254.169.254/32"]);
    assert!(meta.check_name("169.254.169.254", 80).is_ok());
    // NAT64/6to4 spellings are not opened by the IPv4 rule, only by a rule in their slice.
    assert!(p.check_name("[64:ff9b::7f00:1]", 80).is_err());
    let nat64 = policy(&["64:ff9b::7f00:1"]);
    assert!(nat64.check_name("[64:ff9b::7f00:1]", 80).is_ok());
    // A wide rule does not open what it merely covers.
    let wide = policy(&["0.0.0.0/0", "::/0", "126.0.0.0/7"]);
    assert!(wide.check_name("127.0.0.1", 80).is_err());
    assert!(wide.check_name("[::1]", 80).is_err());
    // The container's own address needs a rule for itself, not only its private range.
    let own = policy(&["172.16.0.0/12"]);
    assert!(own.check_name("172.17.0.3", 80).is_ok());
    assert!(own.check_name("172.17.0.2", 80).is_err());
    assert!(policy(&["172.17.0.2/32"])
        .check_name("172.17.0.2", 80)
        .is_ok());
}

#[test]
fn a_domain_rule_never_opens_an_internal_address() {
    let p = policy(&["internal.example", "*.example.org:443"]);
    let r = p
        .check_addr(Some("internal.example"), ip("127.0.0.1"), 80)
        .unwrap_err();
    assert_eq!(r.kind, RefusalKind::ForbiddenAddress);
    assert!(r
        .reason
        .starts_with("internal.example resolves to 127.0.0.1, which is loopback"));
    for bad in [
        "169.254.169.254",
        "10.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "172.17.0.2",
    ] {
        assert!(
            p.check_addr(Some("a.example.org"), ip(bad), 443).is_err(),
            "{bad}"
        );
    }
    assert!(p
        .check_addr(Some("internal.example"), ip("203.0.113.5"), 80)
        .is_ok());
    assert!(p
        .check_addr(Some("a.example.org"), ip("203.0.113.5"), 443)
        .is_ok());
    assert!(p
        .check_addr(Some("a.example.org"), ip("203.0.113.5"), 80)
        .is_err());
    assert!(p
        .check_addr(Some("other.example"), ip("203.0.113.5"), 80)
        .is_err());
    assert!(p.check_addr(None, ip("203.0.113.5"), 80).is_err());
}

#[test]
fn aton_matches_glibc() {
    let cases: &[(&str, Option<&str>)] = &[
        ("1", Some("0.0.0.1")),
        ("1.2", Some("1.0.0.2")),
        ("1.2.3", Some("1.2.0.3")),
        ("1.2.65535", Some("1.2.255.255")),
        ("1.2.65536", None),
        ("1.16777215", Some("1.255.255.255")),
        ("4294967295", Some("255.255.255.255")),
        ("4294967296", None),
        ("0xffffffff", Some("255.255.255.255")),
        ("037777777777", Some("255.255.255.255")),
        ("09", None),
        ("1.2.3.4.", None),
        ("a.b.c.d", None),
        ("-1", None),
        ("+1", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_ipv4_any(s), want.map(|w| w.parse().unwrap()), "{s}");
    }
}
