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

#[test]
fn an_account_the_ca_forgot_is_registered_anew() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{}", first.all());
    // Make the stored account one the CA never heard of (as after a private CA's reset).
    let accounts = setup.state_dir().join("accounts");
    let dir = std::fs::read_dir(&accounts)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let credentials = dir.join("credentials.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&credentials).unwrap()).unwrap();
    let id = json["id"].as_str().unwrap().to_owned();
    json["id"] = serde_json::Value::String(format!("{id}0000forgotten"));
    std::fs::write(&credentials, serde_json::to_vec(&json).unwrap()).unwrap();

    let again = setup.run(&["renew", "--force"]);
    assert_eq!(again.code, 0, "{}", again.all());
    assert!(
        again.stdout.contains("summary: 1 renewed"),
        "{}",
        again.all()
    );
    let names: Vec<String> = std::fs::read_dir(&accounts)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|name| name.contains(".gone-")),
        "{names:?}"
    );
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_bundle_path_holds_the_key_and_the_chain() {
    let setup = Setup::new();
    let bundle = setup.path().join("tls/shop/haproxy.pem");
    setup.write_config(&[
        CertSpec::new("shop").extra(&format!("bundle_path = \"{}\"", bundle.display()))
    ]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let key = std::fs::read_to_string(setup.key_path("shop")).unwrap();
    let chain = std::fs::read_to_string(setup.cert_path("shop")).unwrap();
    let combined = std::fs::read_to_string(&bundle).unwrap();
    assert!(combined.starts_with(&key), "the bundle starts with the key");
    assert!(
        combined.ends_with(&chain),
        "the bundle ends with the full chain"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&bundle).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
