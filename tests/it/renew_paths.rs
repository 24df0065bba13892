//! `evercert renew` along every path that should succeed (and the usage errors beside them),
//! driving the built binary against a real Pebble with its default 5% badNonce rejection on:
//! challenge kinds, key types, identifiers, the chain against Pebble's per-run root, the files
//! and archive left behind, reload hooks, verify, dry runs, accounts, EAB and concurrency.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::extensions::GeneralName;
use x509_parser::public_key::PublicKey;

use crate::support::certs::{self, KeyType};
use crate::support::pebble::{PebbleOptions, first_cert_der};
use crate::support::setup::{CertSpec, Challenge, Run, Setup};
use crate::support::webroot::WebrootServer;
use crate::support::webserver::{FileTlsServer, Reload};

// ---------------------------------------------------------------------------------------------
// Helpers

fn run_ok(setup: &Setup, args: &[&str]) -> Run {
    let run = setup.run(args);
    assert_eq!(run.code, 0, "evercert {args:?}\n{}", run.all());
    run
}

fn chain_at(path: &Path) -> Vec<CertificateDer<'static>> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|err| panic!("{}: {err:?}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!chain.is_empty(), "{} holds no certificate", path.display());
    chain
}

/// Facts of the leaf at `path` that the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LeafInfo {
    /// evercert's format: lower-case hex, leading zero bytes dropped.
    serial: String,
    issuer: String,
    /// DNS names and IP addresses, as text.
    names: BTreeSet<String>,
    /// `ecdsa-p256`, `rsa2048`, … from the public key itself.
    key_kind: String,
    spki: Vec<u8>,
    not_after: OffsetDateTime,
}

fn leaf_info(path: &Path) -> LeafInfo {
    let chain = chain_at(path);
    let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let serial: String = cert
        .raw_serial()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut names = BTreeSet::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => {
                    names.insert((*dns).to_owned());
                }
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                        _ => std::net::IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
                    };
                    names.insert(ip.to_string());
                }
                _ => {}
            }
        }
    }
    let key_kind = match cert.public_key().parsed().unwrap() {
        PublicKey::EC(ec) => format!("ecdsa-p{}", ec.key_size()),
        PublicKey::RSA(rsa) => format!("rsa{}", rsa.key_size()),
        other => format!("{other:?}"),
    };
    LeafInfo {
        serial: serial.trim_start_matches("00").to_owned(),
        issuer: cert.issuer().to_string(),
        names,
        key_kind,
        spki: cert.public_key().raw.to_vec(),
        not_after: OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .unwrap(),
    }
}

/// The key at `key_path` belongs to the leaf at `cert_path` (rustls compares the public
/// keys; `Unknown` would make this vacuous, so only a definite match passes).
fn assert_pair_matches(cert_path: &Path, key_path: &Path) {
    let key = PrivateKeyDer::from_pem_file(key_path)
        .unwrap_or_else(|err| panic!("{}: {err:?}", key_path.display()));
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    let certified = rustls::sign::CertifiedKey::new(chain_at(cert_path), signing_key);
    assert_eq!(
        certified.keys_match(),
        Ok(()),
        "{} does not belong to {}",
        key_path.display(),
        cert_path.display()
    );
}

/// Verifies the chain at `cert_path` (leaf + intermediates from the file) for `name` against
/// the single trust anchor `root_pem`, with webpki through rustls.
fn verify_chain(root_pem: &str, cert_path: &Path, name: &str) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(first_cert_der(root_pem)).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let chain = chain_at(cert_path);
    let server_name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
        .map(drop)
}

fn assert_chain_verifies(setup: &Setup, name: &str, server_names: &[&str]) {
    let root = setup.pebble.issuance_root_pem();
    for server_name in server_names {
        if let Err(err) = verify_chain(&root, &setup.cert_path(name), server_name) {
            panic!("{name}: chain does not verify for {server_name} against Pebble's root: {err}");
        }
    }
}

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn is_symlink(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink())
}

fn archive_dir(setup: &Setup, name: &str) -> PathBuf {
    setup.state_dir().join("archive").join(name)
}

/// Complete versions in `archive/NAME`, oldest first.
fn versions(setup: &Setup, name: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(archive_dir(setup, name)) else {
        return Vec::new();
    };
    let mut versions: Vec<String> = entries
        .map(|entry| entry.unwrap())
        .filter(|entry| entry.file_type().unwrap().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|version| !version.starts_with('.'))
        .collect();
    versions.sort();
    versions
}

/// The version `live/NAME` points at.
fn live_version(setup: &Setup, name: &str) -> String {
    let link = fs::read_link(setup.state_dir().join("live").join(name)).unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// A directory URL on a loopback port where nothing listens.
fn closed_directory() -> String {
    format!("https://{}/dir", certs::closed_endpoint())
}

/// Replaces the value of the `[acme]` line `key = …` in the written config.
fn set_acme(setup: &Setup, key: &str, value: &str) {
    let path = setup.config_path();
    let text = fs::read_to_string(&path).unwrap();
    let prefix = format!("{key} = ");
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.starts_with(&prefix) && !found {
                found = true;
                format!("{key} = \"{value}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(found, "no `{key}` line in\n{text}");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn status_entry(setup: &Setup, name: &str) -> Value {
    let run = run_ok(setup, &["status", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    entries
        .into_iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no status entry {name}:\n{}", run.all()))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// Plants a 90-day certificate with 5 days left as plain files at the configured paths.
fn plant_expiring(setup: &Setup, name: &str, domains: &[&str]) -> certs::Leaf {
    let (not_before, not_after) = certs::days_left(5);
    let leaf = certs::leaf(domains, not_before, not_after, KeyType::EcdsaP256);
    leaf.write_fullchain(&setup.cert_path(name));
    leaf.write_key(&setup.key_path(name));
    leaf
}

fn account_line(run: &Run) -> String {
    run.stdout
        .lines()
        .find_map(|line| line.strip_prefix("account:"))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no account line:\n{}", run.all()))
}

fn account_dirs(setup: &Setup) -> Vec<String> {
    let mut dirs: Vec<String> = fs::read_dir(setup.state_dir().join("accounts"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}

// ---------------------------------------------------------------------------------------------
// http-01 webroot

#[test]
fn webroot_token_is_served_then_removed() {
    let setup = Setup::new();
    let webroot = setup.path().join("www");
    fs::create_dir_all(&webroot).unwrap();
    let server = WebrootServer::start(&webroot, setup.pebble.http_port());
    setup.write_config(&[CertSpec::new("shop").challenge(Challenge::Webroot(webroot.clone()))]);

    let run = run_ok(&setup, &["renew"]);
    assert!(run.stdout.contains("summary: 1 renewed"), "{}", run.all());

    // The validator fetched the token through our server and got the key authorization.
    let served = server.served();
    let tokens: Vec<_> = served
        .iter()
        .filter(|req| req.path.starts_with("/.well-known/acme-challenge/"))
        .collect();
    assert!(!tokens.is_empty(), "the CA fetched no token: {served:?}");
    for token in &tokens {
        assert_eq!(token.status, 200, "{served:?}");
        let name = token.path.rsplit('/').next().unwrap();
        assert!(
            token.body.starts_with(&format!("{name}.")),
            "body is not a key authorization for {name}: {:?}",
            token.body
        );
    }
    let challenge_dir = webroot.join(".well-known").join("acme-challenge");
    let left: Vec<_> = fs::read_dir(&challenge_dir).unwrap().collect();
    assert!(left.is_empty(), "token files left behind: {left:?}");
    assert_pair_matches(&setup.cert_path("shop"), &setup.key_path("shop"));
}

#[test]
fn webroot_not_served_fails_and_still_removes_token() {
    let setup = Setup::new();
    let webroot = setup.path().join("www");
    fs::create_dir_all(&webroot).unwrap();
    // Served, but not where the CA looks (not on Pebble's http port).
    let server = WebrootServer::start(&webroot, 0);
    assert_ne!(server.addr().port(), setup.pebble.http_port());
    setup.write_config(&[CertSpec::new("shop").challenge(Challenge::Webroot(webroot.clone()))]);

    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let text = run.all();
    assert!(
        text.contains("summary: 0 renewed, 0 not due, 1 failed"),
        "{text}"
    );
    // The token was written (its directory exists) and removed again.
    let challenge_dir = webroot.join(".well-known").join("acme-challenge");
    let left: Vec<_> = fs::read_dir(&challenge_dir).unwrap().collect();
    assert!(left.is_empty(), "token files left behind: {left:?}");
    assert!(!setup.cert_path("shop").exists());
    assert!(server.served().is_empty());
    // The CA's detail, plus the hint that names the webroot (issue 3: "is port 80
    // reachable, is the webroot served?").
    assert!(text.contains("connection refused"), "{text}");
    assert!(text.contains("http-01 validation failed"), "{text}");
    assert!(text.contains(&webroot.display().to_string()), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Key types

fn issues_key_type(key_type: &str) {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop").key_type(key_type)]);
    run_ok(&setup, &["renew"]);
    let leaf = leaf_info(&setup.cert_path("shop"));
    assert_eq!(leaf.key_kind, key_type, "{leaf:?}");
    assert_pair_matches(&setup.cert_path("shop"), &setup.key_path("shop"));
    assert_chain_verifies(&setup, "shop", &["shop.example.test"]);
    // evercert's own reading of the file agrees.
    let check = run_ok(&setup, &["check", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&check.stdout).unwrap();
    assert_eq!(
        entries[0]["serial"],
        leaf.serial.as_str(),
        "{}",
        check.all()
    );
}

#[test]
fn key_type_ecdsa_p256() {
    issues_key_type("ecdsa-p256");
}

#[test]
fn key_type_ecdsa_p384() {
    issues_key_type("ecdsa-p384");
}

#[test]
fn key_type_rsa2048() {
    issues_key_type("rsa2048");
}

#[test]
fn key_type_rsa3072() {
    issues_key_type("rsa3072");
}

#[test]
fn key_type_rsa4096() {
    issues_key_type("rsa4096");
}

// ---------------------------------------------------------------------------------------------
// Identifiers

#[test]
fn three_names_in_one_order() {
    let setup = Setup::new();
    let names = ["a.example.test", "b.example.test", "c.example.test"];
    setup.write_config(&[CertSpec::new("multi").domains(&names)]);
    let run = run_ok(&setup, &["renew"]);
    assert!(run.stdout.contains("3 names"), "{}", run.all());
    let leaf = leaf_info(&setup.cert_path("multi"));
    let expected: BTreeSet<String> = names.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(leaf.names, expected);
    assert_chain_verifies(&setup, "multi", &names);
}

/// Pebble 2.4 accepts IP identifiers (RFC 8738) and validates them over http-01 by
/// connecting to the address itself.
#[test]
fn ip_identifier_over_http01() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("ip").domains(&["ip.example.test", "127.0.0.1"])]);
    run_ok(&setup, &["renew"]);
    let leaf = leaf_info(&setup.cert_path("ip"));
    let expected: BTreeSet<String> = ["ip.example.test", "127.0.0.1"]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    assert_eq!(leaf.names, expected);
    assert_chain_verifies(&setup, "ip", &["127.0.0.1", "ip.example.test"]);
}

#[test]
fn wildcard_and_apex_over_dns01() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("wild")
        .domains(&["*.example.test", "example.test"])
        .challenge(Challenge::Dns)]);
    run_ok(&setup, &["renew"]);
    let leaf = leaf_info(&setup.cert_path("wild"));
    let expected: BTreeSet<String> = ["*.example.test", "example.test"]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    assert_eq!(leaf.names, expected);
    assert_chain_verifies(&setup, "wild", &["example.test", "www.example.test"]);
    // Both authorizations use the same record name; every present is cleaned up.
    let log = fs::read_to_string(setup.path().join("dns-hook.log")).unwrap();
    let count = |action: &str| {
        log.lines()
            .filter(|line| {
                line.starts_with(&format!(
                    "{action} example.test _acme-challenge.example.test "
                ))
            })
            .count()
    };
    assert_eq!(count("present"), 2, "{log}");
    assert_eq!(count("cleanup"), 2, "{log}");
}

// ---------------------------------------------------------------------------------------------
// The chain

#[test]
fn issued_chain_verifies_against_pebbles_root() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    let cert_path = setup.cert_path("shop");
    let chain = chain_at(&cert_path);
    assert!(chain.len() >= 2, "the file holds no intermediate");
    let root = setup.pebble.issuance_root_pem();
    verify_chain(&root, &cert_path, "shop.example.test").unwrap();
    // Not vacuous: the wrong name and the wrong root are refused.
    assert!(verify_chain(&root, &cert_path, "other.example.test").is_err());
    let https_root = fs::read_to_string(setup.pebble.ca_bundle_path()).unwrap();
    assert!(verify_chain(&https_root, &cert_path, "shop.example.test").is_err());
    // The file's intermediate is this run's intermediate.
    let intermediate = first_cert_der(&setup.pebble.issuance_intermediate_pem());
    assert_eq!(chain[1], intermediate);
    let leaf = leaf_info(&cert_path);
    assert!(leaf.issuer.contains("Pebble Intermediate"), "{leaf:?}");
}

// ---------------------------------------------------------------------------------------------
// Files, modes and the archive

#[test]
fn files_modes_and_archive_after_renew() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    let (cert_path, key_path) = (setup.cert_path("shop"), setup.key_path("shop"));
    assert!(is_symlink(&cert_path) && is_symlink(&key_path));
    let live = setup.state_dir().join("live").join("shop");
    assert_eq!(
        fs::read_link(&cert_path).unwrap(),
        live.join("fullchain.pem")
    );
    assert_eq!(fs::read_link(&key_path).unwrap(), live.join("privkey.pem"));
    assert_pair_matches(&cert_path, &key_path);
    assert_eq!(mode_of(&key_path), 0o600);
    assert_eq!(mode_of(&cert_path), 0o644);

    let serial = leaf_info(&cert_path).serial;
    let versions = versions(&setup, "shop");
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(
        versions[0].contains(&serial[..8]),
        "{versions:?} vs {serial}"
    );
    assert_eq!(live_version(&setup, "shop"), versions[0]);
    let version_dir = archive_dir(&setup, "shop").join(&versions[0]);
    assert_eq!(
        fs::canonicalize(&cert_path).unwrap(),
        fs::canonicalize(version_dir.join("fullchain.pem")).unwrap()
    );
    let meta: Value =
        serde_json::from_slice(&fs::read(version_dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["serial"], serial.as_str());
    assert_eq!(meta["imported"], false);
    // No temp files left anywhere in the layout.
    for dir in [archive_dir(&setup, "shop"), setup.state_dir().join("live")] {
        for entry in fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().file_name();
            assert!(
                !file.to_string_lossy().starts_with('.'),
                "{file:?} in {}",
                dir.display()
            );
        }
    }
}

#[test]
fn key_mode_0640_is_applied() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop").extra("key_mode = 0o640")]);
    run_ok(&setup, &["renew"]);
    assert_eq!(mode_of(&setup.key_path("shop")), 0o640);
    assert_eq!(mode_of(&setup.cert_path("shop")), 0o644);
    assert_pair_matches(&setup.cert_path("shop"), &setup.key_path("shop"));
}

#[test]
fn second_renew_is_not_due_and_touches_no_network() {
    let mut setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    let before = fs::read(setup.cert_path("shop")).unwrap();

    // The CA is now unreachable: a run that is not due must not notice.
    setup.directory_override = Some(closed_directory());
    setup.write_config(&[CertSpec::new("shop")]);
    let run = run_ok(&setup, &["renew"]);
    assert!(
        run.stdout.contains("shop: not due (renews at "),
        "{}",
        run.all()
    );
    assert!(
        run.stdout
            .contains("summary: 0 renewed, 1 not due, 0 failed"),
        "{}",
        run.all()
    );
    assert_eq!(fs::read(setup.cert_path("shop")).unwrap(), before);
    assert_eq!(versions(&setup, "shop").len(), 1);

    // Proof that this configuration would have failed had it ordered anything.
    let forced = setup.run(&["renew", "--force"]);
    assert_eq!(forced.code, 1, "{}", forced.all());
    let url = setup.directory_override.clone().unwrap();
    assert!(forced.all().contains(&url), "{}", forced.all());
}

#[test]
fn force_renews_again_and_keeps_previous_version() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    let first = leaf_info(&setup.cert_path("shop"));
    let first_version = versions(&setup, "shop");
    assert_eq!(first_version.len(), 1);
    let first_dir = archive_dir(&setup, "shop").join(&first_version[0]);
    let first_chain = fs::read(first_dir.join("fullchain.pem")).unwrap();
    let first_key = fs::read(first_dir.join("privkey.pem")).unwrap();

    let run = run_ok(&setup, &["renew", "--force"]);
    assert!(run.stdout.contains("summary: 1 renewed"), "{}", run.all());
    let second = leaf_info(&setup.cert_path("shop"));
    assert_ne!(second.serial, first.serial);
    assert_ne!(
        second.spki, first.spki,
        "a new key is generated without reuse_key"
    );
    assert_pair_matches(&setup.cert_path("shop"), &setup.key_path("shop"));

    let all = versions(&setup, "shop");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.contains(&first_version[0]));
    let newest = live_version(&setup, "shop");
    assert_ne!(newest, first_version[0]);
    assert!(
        newest.contains(&second.serial[..8]),
        "{newest} vs {second:?}"
    );
    // The previous version is intact, for rollback.
    assert_eq!(
        fs::read(first_dir.join("fullchain.pem")).unwrap(),
        first_chain
    );
    assert_eq!(fs::read(first_dir.join("privkey.pem")).unwrap(), first_key);
    assert_eq!(
        leaf_info(&first_dir.join("fullchain.pem")).serial,
        first.serial
    );
    assert_pair_matches(
        &first_dir.join("fullchain.pem"),
        &first_dir.join("privkey.pem"),
    );
}

#[test]
fn reuse_key_keeps_the_public_key_across_force() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop").extra("reuse_key = true")]);
    run_ok(&setup, &["renew"]);
    let first = leaf_info(&setup.cert_path("shop"));
    run_ok(&setup, &["renew", "--force"]);
    let second = leaf_info(&setup.cert_path("shop"));
    assert_ne!(second.serial, first.serial);
    assert_eq!(second.spki, first.spki);
    assert_pair_matches(&setup.cert_path("shop"), &setup.key_path("shop"));
    assert_eq!(versions(&setup, "shop").len(), 2);
}

#[test]
fn planted_expiring_certificate_is_replaced_and_archived() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    let planted = plant_expiring(&setup, "shop", &["shop.example.test"]);
    assert_eq!(status_entry(&setup, "shop")["state"], "critical");

    let run = run_ok(&setup, &["renew"]);
    assert!(run.stdout.contains("summary: 1 renewed"), "{}", run.all());
    let (cert_path, key_path) = (setup.cert_path("shop"), setup.key_path("shop"));
    assert!(is_symlink(&cert_path) && is_symlink(&key_path));
    let leaf = leaf_info(&cert_path);
    assert_ne!(leaf.serial, planted.serial_hex);
    assert!(leaf.issuer.contains("Pebble"), "{leaf:?}");
    assert_pair_matches(&cert_path, &key_path);

    let all = versions(&setup, "shop");
    assert_eq!(all.len(), 2, "{all:?}");
    let imported: Vec<_> = all.iter().filter(|v| v.ends_with("-imported")).collect();
    assert_eq!(imported.len(), 1, "{all:?}");
    assert_eq!(&all[0], imported[0], "the imported pair sorts first");
    let dir = archive_dir(&setup, "shop").join(imported[0]);
    assert_eq!(
        fs::read_to_string(dir.join("fullchain.pem")).unwrap(),
        planted.fullchain_pem()
    );
    assert_eq!(
        fs::read_to_string(dir.join("privkey.pem")).unwrap(),
        planted.key_pem
    );
    assert_eq!(mode_of(&dir.join("privkey.pem")), 0o600);
    let meta: Value = serde_json::from_slice(&fs::read(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["imported"], true);
    assert_eq!(meta["serial"], planted.serial_hex.as_str());
    assert_eq!(live_version(&setup, "shop"), all[1]);
}

// ---------------------------------------------------------------------------------------------
// Reload and verify

#[test]
fn reload_hook_runs_once_per_command_with_env() {
    let setup = Setup::new();
    let shared_log = setup.path().join("shared.log");
    let single_log = setup.path().join("single.log");
    let single_env = setup.path().join("single.env");
    let shared = format!(
        "echo \"names=$EVERCERT_NAMES name=${{EVERCERT_NAME-unset}}\" >> '{}'",
        shared_log.display()
    );
    let single = format!(
        "echo ran >> '{}'; env | grep '^EVERCERT_' | sort > '{}'",
        single_log.display(),
        single_env.display()
    );
    setup.write_config(&[
        CertSpec::new("a").reload(&shared),
        CertSpec::new("b").reload(&shared),
        CertSpec::new("c").reload(&shared),
        CertSpec::new("d")
            .domains(&["d.example.test", "www.d.example.test"])
            .reload(&single),
    ]);
    let run = run_ok(&setup, &["renew"]);
    assert!(run.stdout.contains("summary: 4 renewed"), "{}", run.all());

    let shared_lines: Vec<String> = fs::read_to_string(&shared_log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(shared_lines.len(), 1, "{shared_lines:?}");
    let line = &shared_lines[0];
    let (names, name) = line
        .strip_prefix("names=")
        .and_then(|rest| rest.split_once(" name="))
        .unwrap_or_else(|| panic!("{line}"));
    let names: BTreeSet<&str> = names.split(' ').collect();
    assert_eq!(names, BTreeSet::from(["a", "b", "c"]));
    assert_eq!(
        name, "unset",
        "EVERCERT_NAME is ambiguous for three certificates"
    );

    assert_eq!(fs::read_to_string(&single_log).unwrap(), "ran\n");
    let leaf = leaf_info(&setup.cert_path("d"));
    let env: BTreeSet<String> = fs::read_to_string(&single_env)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("EVERCERT_LOG="))
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = [
        "EVERCERT_NAME=d".to_owned(),
        "EVERCERT_NAMES=d".to_owned(),
        "EVERCERT_DOMAINS=d.example.test www.d.example.test".to_owned(),
        format!("EVERCERT_CERT_PATH={}", setup.cert_path("d").display()),
        format!("EVERCERT_KEY_PATH={}", setup.key_path("d").display()),
        format!("EVERCERT_SERIAL={}", leaf.serial),
        format!("EVERCERT_NOT_AFTER={}", rfc3339(leaf.not_after)),
    ]
    .into();
    assert_eq!(env, expected);
}

#[test]
fn verify_sees_the_new_serial() {
    let setup = Setup::new();
    let planted = plant_expiring(&setup, "shop", &["shop.example.test"]);
    let server = FileTlsServer::start(
        &setup.cert_path("shop"),
        &setup.key_path("shop"),
        Reload::OnEveryHandshake,
    );
    setup.write_config(&[CertSpec::new("shop")
        .reload("true")
        .verify(&server.endpoint())]);
    let run = run_ok(&setup, &["renew"]);
    let leaf = leaf_info(&setup.cert_path("shop"));
    assert_ne!(leaf.serial, planted.serial_hex);
    let expected = format!(
        "shop: verified: {} serves serial {}",
        server.endpoint(),
        leaf.serial
    );
    assert!(run.stdout.contains(&expected), "{expected}\n{}", run.all());
    assert!(run.stdout.contains("summary: 1 renewed"), "{}", run.all());
}

// ---------------------------------------------------------------------------------------------
// Dry run

#[test]
fn dry_run_uses_staging_and_writes_nothing_live() {
    let setup = Setup::new();
    let marker = setup.path().join("reloaded");
    let spec = CertSpec::new("shop").reload(&format!("touch '{}'", marker.display()));
    setup.write_config(std::slice::from_ref(&spec));
    let acme_port = setup.pebble.ports().acme;
    // Production is unreachable; staging is the same Pebble under another URL.
    let production = closed_directory();
    let staging = format!("https://localhost:{acme_port}/dir");
    set_acme(&setup, "directory", &production);
    set_acme(&setup, "staging_directory", &staging);
    plant_expiring(&setup, "shop", &["shop.example.test"]);
    let cert_before = fs::read(setup.cert_path("shop")).unwrap();
    let key_before = fs::read(setup.key_path("shop")).unwrap();
    let tmp = setup.path().join("tmp");
    fs::create_dir_all(&tmp).unwrap();

    let output = setup
        .command(&["renew", "--dry-run"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let text = format!(
        "exit {:?}\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!("dry run against {staging}")),
        "{text}"
    );
    assert!(text.contains("shop: dry run: would write"), "{text}");
    assert!(text.contains("then run `touch "), "{text}");
    assert!(
        text.contains("dry run: 1 would be renewed, 0 not due, 0 failed"),
        "{text}"
    );
    assert!(!text.contains(&production), "{text}");

    // Nothing live changed: same bytes, still plain files, no hook, no archive.
    for (path, before) in [
        (setup.cert_path("shop"), &cert_before),
        (setup.key_path("shop"), &key_before),
    ] {
        assert!(!is_symlink(&path), "{} became a symlink", path.display());
        assert_eq!(&fs::read(&path).unwrap(), before, "{}", path.display());
    }
    assert!(!marker.exists(), "the reload hook ran in a dry run");
    assert!(!setup.state_dir().join("live").join("shop").exists());
    assert!(versions(&setup, "shop").is_empty());
    let scratch: Vec<_> = fs::read_dir(&tmp).unwrap().collect();
    assert!(
        scratch.is_empty(),
        "dry-run scratch left behind: {scratch:?}"
    );
    // The staging account is its own.
    let accounts = account_dirs(&setup);
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert!(accounts[0].starts_with("localhost_"), "{accounts:?}");

    // A real run against production makes a second, separate account.
    set_acme(&setup, "directory", &setup.pebble.directory_url());
    run_ok(&setup, &["renew"]);
    let accounts = account_dirs(&setup);
    assert_eq!(accounts.len(), 2, "{accounts:?}");
    assert!(
        accounts.iter().any(|dir| dir.starts_with("127.0.0.1_")),
        "{accounts:?}"
    );
    assert!(marker.exists(), "the real run reloads");
}

// ---------------------------------------------------------------------------------------------
// Selecting certificates

#[test]
fn renew_named_renews_only_that_one() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("alpha"), CertSpec::new("beta")]);
    let run = run_ok(&setup, &["renew", "alpha"]);
    assert!(
        run.stdout
            .contains("summary: 1 renewed, 0 not due, 0 failed"),
        "{}",
        run.all()
    );
    assert!(!run.stdout.contains("beta"), "{}", run.all());
    assert_pair_matches(&setup.cert_path("alpha"), &setup.key_path("alpha"));
    assert!(!setup.cert_path("beta").exists());
    assert!(versions(&setup, "beta").is_empty());
}

#[test]
fn renew_unknown_name_is_a_usage_error() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("alpha"), CertSpec::new("beta")]);
    let run = setup.run(&["renew", "gamma"]);
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("no certificate named gamma"),
        "{}",
        run.all()
    );
    assert!(
        run.stderr.contains("configured: alpha, beta"),
        "{}",
        run.all()
    );
    assert!(!setup.cert_path("alpha").exists());
    assert!(
        !setup.state_dir().join("accounts").exists(),
        "no account for a usage error"
    );
}

// ---------------------------------------------------------------------------------------------
// Accounts and revocation

#[test]
fn account_show_rollover_and_deactivate() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);

    let shown = run_ok(&setup, &["account", "show"]);
    let account = account_line(&shown);
    let acme_base = format!("https://127.0.0.1:{}/", setup.pebble.ports().acme);
    assert!(account.starts_with(&acme_base), "{}", shown.all());
    assert!(
        shown.stdout.contains("mailto:ops@example.test"),
        "{}",
        shown.all()
    );

    let accounts = account_dirs(&setup);
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    let credentials = setup
        .state_dir()
        .join("accounts")
        .join(&accounts[0])
        .join("credentials.json");
    assert_eq!(mode_of(&credentials), 0o600);
    let before = fs::read(&credentials).unwrap();
    let rolled = run_ok(&setup, &["account", "rollover"]);
    assert!(
        rolled.stdout.contains("account key replaced"),
        "{}",
        rolled.all()
    );
    assert_ne!(
        fs::read(&credentials).unwrap(),
        before,
        "new credentials saved"
    );
    assert_eq!(mode_of(&credentials), 0o600);
    // The new key is the one the CA knows: the same account still orders.
    assert_eq!(account_line(&run_ok(&setup, &["account", "show"])), account);
    run_ok(&setup, &["renew", "--force"]);

    let deactivated = run_ok(&setup, &["account", "deactivate"]);
    assert!(
        deactivated.stdout.contains("is deactivated"),
        "{}",
        deactivated.all()
    );
    assert!(
        !credentials.exists(),
        "the deactivated account's files were moved aside"
    );
    run_ok(&setup, &["renew", "--force"]);
    let new_account = account_line(&run_ok(&setup, &["account", "show"]));
    assert!(new_account.starts_with(&acme_base));
    assert_ne!(new_account, account, "a new account after deactivation");
    assert_eq!(versions(&setup, "shop").len(), 3);
}

#[test]
fn revoke_with_a_reason_and_a_bad_reason() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    let serial = leaf_info(&setup.cert_path("shop")).serial;
    // Pebble reads the serial as a number: no leading zero digits.
    let status_url = format!(
        "{}/cert-status-by-serial/{}",
        setup.pebble.management_url(),
        serial.trim_start_matches('0')
    );
    let before = setup.pebble.get(&status_url);
    assert_eq!(before.status, 200, "{}", before.text());
    assert_eq!(before.json()["Status"], "Valid", "{}", before.text());

    let bad = setup.run(&["revoke", "shop", "--reason", "sleepy"]);
    assert_eq!(bad.code, 2, "{}", bad.all());
    assert!(bad.stderr.contains("keyCompromise"), "{}", bad.all());
    assert_eq!(setup.pebble.get(&status_url).json()["Status"], "Valid");

    let revoked = run_ok(&setup, &["revoke", "shop", "--reason", "keyCompromise"]);
    assert!(
        revoked.stdout.contains("shop: revoked"),
        "{}",
        revoked.all()
    );
    let after = setup.pebble.get(&status_url);
    assert_eq!(after.json()["Status"], "Revoked", "{}", after.text());
    assert_eq!(
        after.json()["Reason"],
        1,
        "keyCompromise is reason 1: {}",
        after.text()
    );
}

// ---------------------------------------------------------------------------------------------
// External account binding

fn eab_setup() -> (Setup, String) {
    let hmac_key = URL_SAFE_NO_PAD.encode(b"evercert-test-eab-hmac-key-32byt");
    let options = PebbleOptions {
        eab_required: true,
        eab_keys: vec![("kid-evercert".to_owned(), hmac_key.clone())],
        ..PebbleOptions::default()
    };
    (Setup::with(options), hmac_key)
}

#[test]
fn eab_required_without_binding_fails() {
    let (setup, _) = eab_setup();
    setup.write_config(&[CertSpec::new("shop")]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.all().contains("eab"), "{}", run.all());
    assert!(
        run.all().contains("externalAccountRequired"),
        "{}",
        run.all()
    );
    assert!(!setup.cert_path("shop").exists());
}

#[test]
fn eab_required_with_binding_succeeds() {
    let (mut setup, hmac_key) = eab_setup();
    setup.acme_extra = format!("eab = {{ kid = \"kid-evercert\", hmac_key = \"{hmac_key}\" }}\n");
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    assert_pair_matches(&setup.cert_path("shop"), &setup.key_path("shop"));
}

// ---------------------------------------------------------------------------------------------
// Concurrency

#[test]
fn twenty_certificates_in_one_run() {
    let setup = Setup::new();
    let specs: Vec<CertSpec> = (0..20)
        .map(|i| CertSpec::new(&format!("c{i:02}")))
        .collect();
    setup.write_config(&specs);
    let started = Instant::now();
    let run = run_ok(&setup, &["renew"]);
    let elapsed = started.elapsed();
    assert!(
        run.stdout
            .contains("summary: 20 renewed, 0 not due, 0 failed"),
        "{}",
        run.all()
    );
    let mut serials = BTreeSet::new();
    for spec in &specs {
        let (cert_path, key_path) = (setup.cert_path(&spec.name), setup.key_path(&spec.name));
        assert_pair_matches(&cert_path, &key_path);
        let leaf = leaf_info(&cert_path);
        assert_eq!(leaf.names, BTreeSet::from([spec.domains[0].clone()]));
        serials.insert(leaf.serial);
    }
    assert_eq!(serials.len(), 20);
    eprintln!("20 certificates in one run: {elapsed:?}");
}

#[test]
fn two_forced_renewals_at_once_leave_a_matching_pair() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    let initial = leaf_info(&setup.cert_path("shop")).serial;

    // Both started before either is waited for.
    let spawned: Vec<_> = (0..2)
        .map(|_| {
            setup
                .command(&["renew", "--force"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut renewed = BTreeSet::new();
    for child in spawned {
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(0), "{text}");
        let serial = stdout
            .lines()
            .find_map(|line| line.strip_prefix("shop: renewed: serial "))
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no renewed line:\n{text}"));
        renewed.insert(serial.to_owned());
    }
    assert_eq!(renewed.len(), 2, "{renewed:?}");
    assert!(!renewed.contains(&initial));
    assert_pair_matches(&setup.cert_path("shop"), &setup.key_path("shop"));
    let live = leaf_info(&setup.cert_path("shop")).serial;
    assert!(renewed.contains(&live), "{live} not in {renewed:?}");
    // The initial version and one per forced run, none torn.
    let all = versions(&setup, "shop");
    assert_eq!(all.len(), 3, "{all:?}");
    for version in &all {
        let dir = archive_dir(&setup, "shop").join(version);
        assert_pair_matches(&dir.join("fullchain.pem"), &dir.join("privkey.pem"));
    }
}

// ---------------------------------------------------------------------------------------------
// Status

#[test]
fn status_json_after_renew_is_ok() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    run_ok(&setup, &["renew"]);
    let entry = status_entry(&setup, "shop");
    let leaf = leaf_info(&setup.cert_path("shop"));
    assert_eq!(entry["state"], "ok", "{entry}");
    assert_eq!(entry["serial"], leaf.serial.as_str(), "{entry}");
    assert_eq!(entry["issuer"], leaf.issuer.as_str(), "{entry}");
    assert_eq!(
        entry["not_after"],
        rfc3339(leaf.not_after).as_str(),
        "{entry}"
    );
    assert_eq!(
        entry["domains"],
        serde_json::json!(["shop.example.test"]),
        "{entry}"
    );
    let renew_at = OffsetDateTime::parse(entry["renew_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(renew_at > now, "{entry}");
    assert!(renew_at < leaf.not_after, "{entry}");
    assert!(entry["days_left"].as_f64().unwrap() > 365.0, "{entry}");
}
