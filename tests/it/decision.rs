//! One renewal decision for `renew`, the agent and `status`: the CA's renewal window (ARI) in
//! the one-shot `renew`, cached between runs; ARI answers that would re-order a certificate
//! issued moments ago are distrusted; a version that was issued but never deployed is
//! deployed by the next attempt instead of ordering another.
//!
//! ARI comes from a stand-in (`support::ari::AriServer`), because Debian's Pebble 2.4 has no
//! `renewalInfo`: it serves Pebble's directory with a `renewalInfo` URL added and answers
//! with the window the test sets; every other ACME request goes to the real Pebble. Orders
//! are counted by the fault proxy (`support::faultproxy`), which passes everything through.

use std::fs;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::agent::{Running, wait_for};
use crate::support::ari::AriServer;
use crate::support::certs;
use crate::support::faultproxy::FaultProxy;
use crate::support::setup::{CertSpec, Run, Setup};

const NAME: &str = "shop";

fn live_serial(setup: &Setup) -> String {
    evercert::inventory::read_cert_file(&setup.cert_path(NAME))
        .unwrap()
        .leaf
        .serial
}

fn status(setup: &Setup) -> Value {
    let run = setup.run(&["status", "--json"]);
    let entries: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("status --json: {err}\n{}", run.all()));
    entries
        .as_array()
        .and_then(|entries| entries.iter().find(|entry| entry["name"] == NAME))
        .cloned()
        .unwrap_or_else(|| panic!("no {NAME} in {entries:#}"))
}

fn timestamp(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().unwrap_or_default(), &Rfc3339)
        .unwrap_or_else(|err| panic!("{value}: {err}"))
}

fn history(setup: &Setup) -> Value {
    let path = setup.state_dir().join("state").join(format!("{NAME}.json"));
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

/// Moves the last failure back by `hours`, as if the next timer run came that much later:
/// the backoff after a failed reload (30–60 min) is then over.
fn age_the_failure(setup: &Setup, hours: i64) {
    let path = setup.state_dir().join("state").join(format!("{NAME}.json"));
    let mut history = history(setup);
    let at = timestamp(&history["last_failure"]) - TimeDuration::hours(hours);
    history["last_failure"] = Value::String(at.format(&Rfc3339).unwrap());
    fs::write(&path, serde_json::to_vec(&history).unwrap()).unwrap();
}

fn assert_code(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{}", run.all());
}

/// Drops the cached ARI answer, as if the CA's Retry-After (an hour here) had passed.
fn forget_ari(setup: &Setup) {
    fs::remove_file(setup.state_dir().join("ari").join(format!("{NAME}.json"))).unwrap();
}

#[test]
fn renew_follows_the_cas_window_caches_it_and_distrusts_renew_now_for_a_new_certificate() {
    let mut setup = Setup::new();
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let (start, end) = (now + TimeDuration::days(10), now + TimeDuration::days(12));
    let ari = AriServer::start(&setup.pebble, setup.path(), start, end);
    setup.directory_override = Some(ari.directory_url());
    setup.ca_bundle_override = Some(ari.ca_bundle().to_owned());
    setup.write_config(&[CertSpec::new(NAME)]);
    // 30 days old, 60 left: the lifetime rule says in 30 days.
    let planted = setup.plant(NAME, 60);

    // A window in the future: not due, but the window decides when.
    let run = setup.run(&["renew"]);
    assert_code(&run, 0);
    assert!(
        run.stdout.contains("not due") && run.stdout.contains("renewal window (ARI)"),
        "{}",
        run.all()
    );
    assert_eq!(ari.hits(), 1);
    assert_eq!(live_serial(&setup), planted.serial_hex);
    let entry = status(&setup);
    assert_eq!(entry["renew_reason"], "ari_window", "{entry:#}");
    assert_eq!(timestamp(&entry["ari_window"]["start"]), start, "{entry:#}");
    assert_eq!(timestamp(&entry["ari_window"]["end"]), end, "{entry:#}");
    let renew_at = timestamp(&entry["renew_at"]);
    assert!(renew_at >= start && renew_at <= end, "{entry:#}");
    assert!(entry["pending"].is_null(), "{entry:#}");
    let table = setup.run(&["status"]);
    assert!(
        table.stdout.contains("the CA's renewal window (ARI)"),
        "{}",
        table.all()
    );

    // A warm cache: the next run (a timer every 12 h) asks nothing, within the Retry-After.
    let run = setup.run(&["renew"]);
    assert_code(&run, 0);
    assert_eq!(
        ari.hits(),
        1,
        "the CA was asked again within its Retry-After"
    );

    // The CA moves the window into the past (as before a revocation): renewed at once,
    // though the lifetime rule says 30 days.
    ari.set_window(now - TimeDuration::days(2), now - TimeDuration::days(1));
    forget_ari(&setup);
    let run = setup.run(&["renew"]);
    assert_code(&run, 0);
    // Asked once about the old certificate, once about the new one (so the next timer run
    // has its answer cached).
    assert_eq!(ari.hits(), 3);
    let renewed = live_serial(&setup);
    assert_ne!(renewed, planted.serial_hex, "{}", run.all());
    assert_eq!(history(&setup)["renewed_for"], "ari_window");

    // A CA that keeps answering "renew now" about the certificate just issued: a window that
    // has ended, after the issuance. Distrusted: this certificate was itself ordered on an
    // ARI signal minutes ago, so the lifetime rule decides and nothing is ordered.
    let issued = evercert::inventory::read_cert_file(&setup.cert_path(NAME))
        .unwrap()
        .leaf
        .not_before;
    while OffsetDateTime::now_utc() < issued + TimeDuration::seconds(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    ari.set_window(
        issued - TimeDuration::days(1),
        issued + TimeDuration::SECOND,
    );
    for _ in 0..3 {
        forget_ari(&setup);
        let run = setup.run(&["renew"]);
        assert_code(&run, 0);
        assert_eq!(live_serial(&setup), renewed, "{}", run.all());
    }
    assert_eq!(ari.hits(), 6);
    let entry = status(&setup);
    assert_eq!(entry["renew_reason"], "lifetime", "{entry:#}");
    assert!(entry["ari_window"].is_object(), "{entry:#}");
}

/// Certificates the CA issued: Pebble logs "Issued certificate serial S for order O" for
/// each. Not the requests seen: a retried newOrder (Pebble's 5 % badNonce) or a finalize the
/// CA rejected issued nothing.
fn issued(setup: &Setup) -> usize {
    setup
        .pebble
        .pebble_log()
        .lines()
        .filter(|line| line.contains("Issued certificate serial"))
        .count()
}

/// A reload hook that fails while `flag` exists, like nginx with a broken config.
fn reload_failing_while(flag: &Path, log: &Path) -> String {
    format!(
        "echo \"$EVERCERT_SERIAL\" >> {log}; if [ -e {flag} ]; then echo 'nginx: [emerg] broken config' >&2; exit 3; fi",
        log = log.display(),
        flag = flag.display()
    )
}

/// Runs a `renew` whose reload fails: the issued version is rolled back and left pending.
/// Returns the pending serial and the fault proxy.
fn leave_a_pending_version(setup: &mut Setup) -> (String, FaultProxy) {
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    let flag = setup.path().join("nginx-broken");
    let log = setup.path().join("reload.log");
    setup.write_config(&[CertSpec::new(NAME).reload(&reload_failing_while(&flag, &log))]);
    let planted = setup.plant(NAME, 5);
    certs::write(&flag, "");

    let run = setup.run(&["renew"]);
    assert_code(&run, 1);
    assert!(run.stdout.contains("reload hook failed"), "{}", run.all());
    assert!(
        run.stdout
            .contains("stays in the archive; the next attempt deploys it"),
        "{}",
        run.all()
    );
    assert_eq!(live_serial(setup), planted.serial_hex);
    let entry = status(setup);
    let pending = entry["pending"]["serial"]
        .as_str()
        .unwrap_or_else(|| panic!("no pending version: {entry:#}"))
        .to_owned();
    assert_ne!(pending, planted.serial_hex);
    assert!(entry["pending"]["version"].is_string(), "{entry:#}");
    assert!(
        setup
            .run(&["status"])
            .stdout
            .contains("was issued but not deployed"),
        "{entry:#}"
    );
    assert_eq!(issued(setup), 1, "{}", proxy.describe());
    fs::remove_file(&flag).unwrap();
    (pending, proxy)
}

#[test]
fn renew_deploys_the_version_whose_reload_failed_instead_of_ordering_again() {
    let mut setup = Setup::new();
    let (pending, proxy) = leave_a_pending_version(&mut setup);

    // Right after the failure the backoff holds: nothing is tried, and the run says so
    // (exit 1: the certificate is failing).
    let run = setup.run(&["renew"]);
    assert_code(&run, 1);
    assert!(run.stdout.contains("waiting to retry"), "{}", run.all());

    // The next timer run, after the backoff: the pending version goes live, nothing ordered.
    age_the_failure(&setup, 3);
    let run = setup.run(&["renew"]);
    assert_code(&run, 0);
    assert!(
        run.stdout.contains("never deployed; nothing is ordered"),
        "{}",
        run.all()
    );
    assert_eq!(live_serial(&setup), pending);
    assert_eq!(issued(&setup), 1, "{}", proxy.describe());
    assert!(status(&setup)["pending"].is_null());
    assert_eq!(history(&setup)["failures"], 0);

    // --force still orders a new one.
    let run = setup.run(&["renew", "--force"]);
    assert_code(&run, 0);
    assert_ne!(live_serial(&setup), pending);
    assert_eq!(issued(&setup), 2, "{}", proxy.describe());
}

/// A pending version that can no longer be made live (plain files were put back at the
/// paths by hand) is set aside and a new certificate ordered in the same run: a stuck pending
/// version must not hold back renewal until the live certificate expires.
#[test]
fn a_pending_version_that_cannot_be_deployed_is_set_aside_and_a_new_one_ordered() {
    let mut setup = Setup::new();
    let (pending, proxy) = leave_a_pending_version(&mut setup);
    fs::remove_file(setup.cert_path(NAME)).unwrap();
    fs::remove_file(setup.key_path(NAME)).unwrap();
    let planted = setup.plant(NAME, 5);
    age_the_failure(&setup, 3);

    let run = setup.run(&["renew"]);
    assert_code(&run, 0);
    assert!(
        run.stdout
            .contains("the pending version cannot be deployed"),
        "{}",
        run.all()
    );
    let live = live_serial(&setup);
    assert_ne!(live, pending, "{}", run.all());
    assert_ne!(live, planted.serial_hex, "{}", run.all());
    assert_eq!(issued(&setup), 2, "{}", proxy.describe());
    assert!(status(&setup)["pending"].is_null());
}

#[test]
fn the_agent_deploys_the_version_whose_reload_failed_instead_of_ordering_again() {
    let mut setup = Setup::new();
    let (pending, proxy) = leave_a_pending_version(&mut setup);
    age_the_failure(&setup, 3);

    let agent = Running::start(&setup);
    wait_for(Duration::from_secs(30), "the pending version live", || {
        live_serial(&setup) == pending
    });
    // The agent's own record, after the run that deployed it.
    wait_for(Duration::from_secs(10), "the success recorded", || {
        history(&setup)["failures"] == 0
    });
    assert_eq!(issued(&setup), 1, "{}\n{}", proxy.describe(), agent.log());
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
    assert!(status(&setup)["pending"].is_null());
}
