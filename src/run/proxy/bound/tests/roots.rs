//! The upstream roots are parsed when the first intercepted connection needs them, once.

use super::super::{has_certificate_block, parse_roots, Interceptor, Roots};
use super::TestCa;
use std::sync::Arc;

fn interceptor(roots: Roots) -> Interceptor {
    let bound = crate::plan::bound::test_bound(super::SECRETS, super::BINDS);
    Interceptor::new(bound, roots).unwrap()
}

#[test]
fn a_pem_bundle_is_parsed_on_first_use_and_only_once() {
    let ca = TestCa::new();
    let ic = interceptor(Roots::Pem(Arc::new(ca.pem().into_bytes())));
    // Not parsed yet: no configuration made.
    assert!(ic.upstream.get().is_none());
    let first = ic.upstream().unwrap();
    // Made now; the second use gets the very same configuration, not a second parse.
    assert!(ic.upstream.get().is_some());
    assert!(Arc::ptr_eq(&first, &ic.upstream().unwrap()));
}

#[test]
fn a_bundle_without_a_usable_certificate_fails_every_use_alike() {
    let junk =
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    assert!(parse_roots(junk).is_err());
    let ic = interceptor(Roots::Pem(Arc::new(junk.to_vec())));
    let e = ic.upstream().unwrap_err();
    assert!(e.contains("no usable CA certificate"), "{e}");
    assert_eq!(ic.upstream().unwrap_err(), e);
    // Control: the test CA's PEM parses.
    assert!(parse_roots(TestCa::new().pem().as_bytes()).is_ok());
}

#[test]
fn a_bundle_without_any_certificate_block_is_refused_before_the_launch() {
    assert!(!has_certificate_block(b""));
    assert!(!has_certificate_block(b"# no certificates here\n"));
    assert!(has_certificate_block(TestCa::new().pem().as_bytes()));
}
