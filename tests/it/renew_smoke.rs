//! The issuance path once per challenge type, against a real Pebble.

use crate::support::setup::{CertSpec, Challenge, Setup};

fn issue_with(challenge: Challenge) {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop").challenge(challenge)]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("summary: 1 renewed"), "{}", run.all());
    let check = setup.run(&["check", "--json"]);
    assert_eq!(check.code, 0, "{}", check.all());
}

#[test]
fn http01_listen_issues() {
    issue_with(Challenge::Listen);
}

#[test]
fn dns01_hook_issues() {
    issue_with(Challenge::Dns);
}

#[test]
fn tlsalpn01_issues() {
    issue_with(Challenge::TlsAlpn);
}
