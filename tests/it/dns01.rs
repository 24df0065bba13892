//! dns-01 against a real BIND 9: evercert's RFC 2136 updater (TSIG), the propagation check
//! and CNAME delegation. Pebble's validator asks the same BIND (`-dnsserver`), so every
//! issuance here means the CA really resolved what evercert wrote.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::bind::{Bind, SECONDARY_NS_RECORDS, Secondary, Zone};
use crate::support::pebble::{PebbleOptions, unused_loopback_port};
use crate::support::setup::{CertSpec, Challenge, Setup};

/// BIND plus a Pebble whose validator resolves through it.
fn lab(zones: &[Zone]) -> (Bind, Setup) {
    let bind = Bind::start(zones);
    let setup = Setup::with(PebbleOptions {
        dns_server: Some(bind.addr()),
        ..PebbleOptions::default()
    });
    (bind, setup)
}

/// `[certificate.dns01]` with the built-in updater pointed at `bind`.
fn rfc2136(bind: &Bind, key_file: &Path, authoritative_port: u16) -> Challenge {
    rfc2136_bounded(bind, key_file, authoritative_port, "30s")
}

fn rfc2136_bounded(
    bind: &Bind,
    key_file: &Path,
    authoritative_port: u16,
    propagation_timeout: &str,
) -> Challenge {
    Challenge::Table(format!(
        "[certificate.dns01]\n\
         rfc2136 = {{ server = \"{addr}\", key_name = \"evercert.\", key_algorithm = \"hmac-sha256\", key_secret_file = \"{key}\" }}\n\
         resolvers = [\"{addr}\"]\n\
         authoritative_port = {authoritative_port}\n\
         propagation_timeout = \"{propagation_timeout}\"\n",
        addr = bind.addr(),
        key = key_file.display(),
    ))
}

fn key_file(bind: &Bind, setup: &Setup) -> PathBuf {
    bind.write_key_file(&setup.path().join("tsig.key"))
}

/// Journal entries left in `state_dir/dns01` (records not yet deleted).
fn journal_entries(setup: &Setup) -> Vec<PathBuf> {
    std::fs::read_dir(setup.state_dir().join("dns01"))
        .map(|dir| dir.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default()
}

fn issue(bind: &Bind, setup: &Setup, name: &str, domains: &[&str]) -> crate::support::setup::Run {
    let key = key_file(bind, setup);
    setup.write_config(&[CertSpec::new(name).domains(domains).challenge(rfc2136(
        bind,
        &key,
        bind.port(),
    ))]);
    setup.run(&["renew"])
}

#[test]
fn a_plain_name_is_issued_and_its_record_removed() {
    let (bind, setup) = lab(&[Zone::updatable("dns.test")]);
    let run = issue(&bind, &setup, "www", &["www.dns.test"]);
    assert_eq!(run.code, 0, "{run}\n{}", bind.log());
    assert!(run.stdout.contains("summary: 1 renewed"), "{run}");
    assert!(
        run.stdout
            .contains("dns-01 records served by every authoritative server"),
        "{run}"
    );
    assert!(setup.cert_path("www").exists());
    assert_eq!(
        bind.txt("_acme-challenge.www.dns.test"),
        Vec::<String>::new()
    );
    assert_eq!(journal_entries(&setup), Vec::<PathBuf>::new());
    assert!(
        !run.all().contains(bind.secret()),
        "the secret leaked: {run}"
    );
}

#[test]
fn a_wildcard_and_its_apex_share_one_record_name() {
    let (bind, setup) = lab(&[Zone::updatable("dns.test")]);
    let run = issue(&bind, &setup, "wild", &["dns.test", "*.dns.test"]);
    assert_eq!(run.code, 0, "{run}\n{}", bind.log());
    let pem = std::fs::read_to_string(setup.cert_path("wild")).unwrap();
    let der = crate::support::pebble::first_cert_der(&pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let mut names: Vec<String> = cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            _ => None,
        })
        .collect();
    names.sort();
    assert_eq!(names, ["*.dns.test", "dns.test"]);
    assert_eq!(bind.txt("_acme-challenge.dns.test"), Vec::<String>::new());
}

#[test]
fn a_cname_delegated_name_updates_the_target_zone() {
    // The real zone refuses updates; only the delegated zone takes them (acme-dns style).
    let (bind, setup) = lab(&[
        Zone::read_only("dns.test").record("_acme-challenge.shop CNAME shop.delegated.test."),
        Zone::updatable("delegated.test"),
    ]);
    let run = issue(&bind, &setup, "shop", &["shop.dns.test"]);
    assert_eq!(run.code, 0, "{run}\n{}", bind.log());
    assert!(run.stdout.contains("summary: 1 renewed"), "{run}");
    assert_eq!(bind.txt("shop.delegated.test"), Vec::<String>::new());
    assert!(
        bind.log().contains("updating zone 'delegated.test/IN'"),
        "BIND saw no update of the delegated zone:\n{}",
        bind.log()
    );
}

#[test]
fn a_wrong_tsig_key_says_so_and_nothing_is_issued() {
    let (bind, setup) = lab(&[Zone::updatable("dns.test")]);
    let key = setup.path().join("wrong.key");
    let wrong = "c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhISE=";
    std::fs::write(&key, format!("{wrong}\n")).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    setup.write_config(&[CertSpec::new("www")
        .domains(&["www.dns.test"])
        .challenge(rfc2136(&bind, &key, bind.port()))]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 1, "{run}");
    let all = run.all();
    assert!(all.contains("TSIG key evercert."), "{all}");
    assert!(
        all.contains("key_secret_file") || all.contains(&key.display().to_string()),
        "{all}"
    );
    assert!(
        !all.contains(wrong) && !all.contains(bind.secret()),
        "a secret leaked: {all}"
    );
    assert!(!setup.cert_path("www").exists());
    assert_eq!(
        bind.txt("_acme-challenge.www.dns.test"),
        Vec::<String>::new()
    );
}

#[test]
fn a_server_that_refuses_updates_is_named_with_the_fix() {
    let (bind, setup) = lab(&[Zone::read_only("dns.test")]);
    let run = issue(&bind, &setup, "www", &["www.dns.test"]);
    assert_eq!(run.code, 1, "{run}");
    let all = run.all().to_ascii_lowercase();
    assert!(all.contains("refused"), "{all}");
    assert!(all.contains("allow-update"), "{all}");
    assert!(!setup.cert_path("www").exists());
}

#[test]
fn records_are_removed_after_a_failed_order() {
    // The CA asks pebble-challtestsrv, not BIND: it cannot see the record, the order fails,
    // and what evercert added to BIND must still go.
    let bind = Bind::start(&[Zone::updatable("dns.test")]);
    let setup = Setup::new();
    let run = issue(&bind, &setup, "www", &["www.dns.test"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.all().contains("validation failed"), "{run}");
    assert!(
        bind.log().contains("adding an RR"),
        "no update reached BIND:\n{}",
        bind.log()
    );
    assert_eq!(
        bind.txt("_acme-challenge.www.dns.test"),
        Vec::<String>::new()
    );
    assert_eq!(journal_entries(&setup), Vec::<PathBuf>::new());
}

#[test]
fn a_killed_runs_record_is_removed_by_the_next_run() {
    let (bind, setup) = lab(&[Zone::updatable("dns.test")]);
    let key = key_file(&bind, &setup);
    // Nothing answers on this port: the propagation check waits, and the run is killed there,
    // after its record was added.
    let silent = unused_loopback_port();
    setup.write_config(&[CertSpec::new("www")
        .domains(&["www.dns.test"])
        .challenge(rfc2136(&bind, &key, silent))]);
    let mut child = setup
        .command(&["renew"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while bind.txt("_acme-challenge.www.dns.test").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the record never appeared\n{}",
            bind.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = bind.txt("_acme-challenge.www.dns.test");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(journal_entries(&setup).len(), 1);

    setup.write_config(&[CertSpec::new("www")
        .domains(&["www.dns.test"])
        .challenge(rfc2136(&bind, &key, bind.port()))]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 0, "{run}\n{}", bind.log());
    assert_eq!(
        bind.txt("_acme-challenge.www.dns.test"),
        Vec::<String>::new()
    );
    assert_eq!(journal_entries(&setup), Vec::<PathBuf>::new());
}

/// The milliseconds of "dns-01 records served by every authoritative server after N ms".
fn propagation_wait_ms(run: &crate::support::setup::Run) -> u64 {
    run.stdout
        .split("served by every authoritative server after ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no propagation line: {run}"))
}

/// A primary BIND for `dns.test` with a second authoritative server (`ns2`) that lags: it
/// took the zone at start and serves a new record only after `retransfer`. Pebble's
/// validator asks the lagging secondary, so a CA told to validate before the secondary has
/// the record fails the order.
fn lagging_lab() -> (Bind, Secondary, Setup) {
    let bind = Bind::start(&[Zone::updatable("dns.test")
        .record(SECONDARY_NS_RECORDS[0])
        .record(SECONDARY_NS_RECORDS[1])]);
    let secondary = Secondary::start(&bind, "dns.test");
    let setup = Setup::with(PebbleOptions {
        dns_server: Some(secondary.addr()),
        ..PebbleOptions::default()
    });
    (bind, secondary, setup)
}

#[test]
fn validation_waits_for_a_lagging_secondary() {
    let (bind, secondary, setup) = lagging_lab();
    setup.write_config(&[CertSpec::new("www").domains(&["www.dns.test"]).challenge(
        rfc2136_bounded(&bind, &key_file(&bind, &setup), bind.port(), "60s"),
    )]);
    let child = setup
        .command(&["renew"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let record = "_acme-challenge.www.dns.test";
    let deadline = Instant::now() + Duration::from_secs(60);
    while bind.txt(record).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the primary never served the record\n{}",
            bind.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The primary has it, the secondary not: evercert keeps waiting (if it had told the CA,
    // Pebble would have asked the secondary, found nothing and failed the order).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(secondary.txt(record), Vec::<String>::new());
    let mut child = child;
    assert!(
        child.try_wait().unwrap().is_none(),
        "evercert stopped before the secondary had the record"
    );
    secondary.retransfer();
    let run = crate::support::setup::Run::from_output(&child.wait_with_output().unwrap());
    assert_eq!(run.code, 0, "{run}\n{}\n{}", bind.log(), secondary.log());
    assert!(run.stdout.contains("summary: 1 renewed"), "{run}");
    let waited_ms = propagation_wait_ms(&run);
    assert!(waited_ms >= 1000, "{waited_ms} ms: {run}");
    assert!(setup.cert_path("www").exists());
}

#[test]
fn a_secondary_that_never_catches_up_is_named_after_propagation_timeout() {
    let (bind, secondary, setup) = lagging_lab();
    setup.write_config(&[CertSpec::new("www").domains(&["www.dns.test"]).challenge(
        rfc2136_bounded(&bind, &key_file(&bind, &setup), bind.port(), "2s"),
    )]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 1, "{run}");
    let all = run.all();
    assert!(
        all.contains("was not served by every authoritative server of dns.test"),
        "{all}"
    );
    // The lagging server is named with its address; the primary, which had it, is not.
    assert!(
        all.contains(&format!("ns2.dns.test. ({})", secondary.addr())),
        "{all}"
    );
    assert!(!all.contains("ns1.dns.test. ("), "{all}");
    assert!(all.contains("propagation_timeout"), "{all}");
    assert!(!setup.cert_path("www").exists());
    // The record was taken out again.
    assert_eq!(
        bind.txt("_acme-challenge.www.dns.test"),
        Vec::<String>::new()
    );
    assert_eq!(journal_entries(&setup), Vec::<PathBuf>::new());
}

/// A hook that returns at once and publishes the record `delay_secs` later through
/// nsupdate, like a DNS provider whose API queues changes.
fn slow_hook(bind: &Bind, setup: &Setup, delay_secs: f64) -> PathBuf {
    let path = setup.path().join("slow-hook.sh");
    let key = format!(
        "hmac-sha256:{}:{}",
        crate::support::bind::KEY_NAME,
        bind.secret()
    );
    let script = format!(
        r#"#!/usr/bin/env bash
# $1=present|cleanup $2=DOMAIN $3=RECORD_NAME $4=VALUE
set -euo pipefail
case "$1" in
  present) change="update add $3. 60 TXT \"$4\""; delay={delay_secs} ;;
  cleanup) change="update delete $3. TXT \"$4\""; delay=0 ;;
esac
( sleep "$delay"; printf 'server 127.0.0.1 {port}\n%s\nsend\n' "$change" | nsupdate -y '{key}' ) </dev/null >/dev/null 2>&1 &
"#,
        port = bind.port(),
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    path
}

#[test]
fn validation_starts_only_once_bind_serves_the_hooks_record() {
    let (bind, setup) = lab(&[Zone::updatable("dns.test")]);
    let hook = slow_hook(&bind, &setup, 2.0);
    // Without the check the CA is asked at once and finds nothing: the failure this prevents.
    setup.write_config(&[CertSpec::new("blind")
        .domains(&["blind.dns.test"])
        .challenge(Challenge::Table(format!(
            "[certificate.dns01]\nhook = \"{}\"\nwait = \"0s\"\n",
            hook.display()
        )))]);
    let blind = setup.run(&["renew"]);
    assert_eq!(blind.code, 1, "{blind}");

    setup.write_config(&[CertSpec::new("checked")
        .domains(&["checked.dns.test"])
        .challenge(Challenge::Table(format!(
            "[certificate.dns01]\nhook = \"{hook}\"\npropagation_timeout = \"30s\"\nresolvers = [\"{addr}\"]\nauthoritative_port = {port}\n",
            hook = hook.display(),
            addr = bind.addr(),
            port = bind.port(),
        )))]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 0, "{run}\n{}", bind.log());
    let waited_ms = propagation_wait_ms(&run);
    // The record appeared about 2 s after the hook returned; the CA was told only then.
    assert!(waited_ms >= 1500, "{waited_ms} ms: {run}");
}

#[test]
fn config_check_reports_rfc2136_mistakes_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("evercert.toml");
    std::fs::write(
        &config,
        "state_dir = \"state\"\n[acme]\ndirectory = \"https://127.0.0.1:1/dir\"\n\
         [[certificate]]\nname = \"www\"\ndomains = [\"www.dns.test\"]\ncert_path = \"c.pem\"\nkey_path = \"k.pem\"\n\
         [certificate.dns01]\nrfc2136 = { server = \"127.0.0.1:53\", key_name = \"evercert.\", key_algorithm = \"hmac-md5\", key_secret_file = \"k\", srever = \"x\" }\n\
         wait = \"10s\"\n",
    )
    .unwrap();
    let run = crate::support::setup::evercert_in(
        dir.path(),
        &["-c", config.to_str().unwrap(), "config", "check"],
    );
    assert_eq!(run.code, 2, "{run}");
    let all = run.all();
    assert!(all.contains("evercert.toml:10"), "{all}");
    assert!(all.contains("unknown key `srever`"), "{all}");
    assert!(
        all.contains("key_algorithm = \"hmac-md5\" is not supported"),
        "{all}"
    );
    assert!(
        all.contains("evercert.toml:11") && all.contains("`wait` is only used with `hook`"),
        "{all}"
    );
}
