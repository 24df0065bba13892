//! Renewal windows and the fallback CA (issue 12, items 4 and 5), through the built binary
//! against real Pebbles.
//!
//! Fallback: two real Pebbles, each its own CA with its own account at evercert; the
//! fallback validates http-01 on the primary's port, where evercert's responder listens. The
//! primary is down (nothing listens at its URL), refuses the identifier (Pebble's
//! `domainBlocklist`), or answers 429 with a Retry-After of an hour (the fault proxy in front
//! of it: Pebble itself never rate-limits). `fallback_after = "0s"` makes the fallback the
//! next attempt at once, so one `renew` run shows the whole turn.
//!
//! Windows: the binary has no fake clock, so the test writes a window relative to the real
//! one — a daily window that opens two hours from now is closed for the whole test. The pure
//! rules (every weekday, DST, critical_before capping the wait) are table-tested on
//! `decision::decide` and `window::Windows` with a fixed `now`.

use serde_json::Value;
use time::OffsetDateTime;

use crate::support::faultproxy::{Fault, FaultProxy};
use crate::support::pebble::{Pebble, PebbleOptions, unused_loopback_port};
use crate::support::setup::{CertSpec, Run, Setup};

fn assert_code(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{}", run.all());
}

fn live_serial(setup: &Setup, name: &str) -> String {
    evercert::inventory::read_cert_file(&setup.cert_path(name))
        .unwrap()
        .leaf
        .serial
}

fn status_of(setup: &Setup, name: &str) -> Value {
    let run = setup.run(&["status", "--json"]);
    let entries: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("status --json: {err}\n{}", run.all()));
    entries
        .as_array()
        .and_then(|entries| entries.iter().find(|entry| entry["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {entries:#}"))
}

/// `daily HH:MM-HH:MM UTC`, opening `from_hours` after now (before, when negative) and
/// lasting `hours`.
fn daily_window(from_hours: i64, hours: i64) -> String {
    let opens = OffsetDateTime::now_utc() + time::Duration::hours(from_hours);
    let closes = opens + time::Duration::hours(hours);
    format!(
        "daily {:02}:{:02}-{:02}:{:02} UTC",
        opens.hour(),
        opens.minute(),
        closes.hour(),
        closes.minute()
    )
}

#[test]
fn renew_outside_a_window_waits_and_critical_before_renews_anyway() {
    let mut setup = Setup::new();
    let closed = daily_window(2, 1);
    // The test configuration has no [renewal] table: the lines after [acme] start one.
    setup.acme_extra = format!("\n[renewal]\nwindows = [\"{closed}\"]\n");
    setup.write_config(&[CertSpec::new("due"), CertSpec::new("critical")]);
    // 20 of 90 days left: past renew_before (a third), not yet critical (7 days).
    setup.plant("due", 20);
    let due = live_serial(&setup, "due");
    // 3 days left: inside critical_before.
    setup.plant("critical", 3);
    let critical = live_serial(&setup, "critical");

    let run = setup.run(&["renew"]);
    assert_code(&run, 0);
    assert!(
        run.stdout.contains("outside the renewal windows"),
        "{}",
        run.all()
    );
    assert_eq!(live_serial(&setup, "due"), due, "{}", run.all());
    assert_ne!(
        live_serial(&setup, "critical"),
        critical,
        "critical_before wins over the window\n{}",
        run.all()
    );

    let status = status_of(&setup, "due");
    assert_eq!(status["renew_reason"], "renewal_window", "{status:#}");
    assert_eq!(status["renew_at"], status["next_window"], "{status:#}");
    let opens = OffsetDateTime::parse(
        status["next_window"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let wait = opens - OffsetDateTime::now_utc();
    assert!(
        wait > time::Duration::minutes(100) && wait <= time::Duration::hours(2),
        "the window opens in about two hours: {status:#}"
    );
    let table = setup.run(&["status"]);
    assert!(
        table.stdout.contains("waiting for the next renewal window"),
        "{}",
        table.all()
    );

    // The same certificate inside an open window (opened an hour ago, for three) renews.
    let open_now = daily_window(-1, 3);
    setup.acme_extra = format!("\n[renewal]\nwindows = [\"{closed}\", \"{open_now}\"]\n");
    setup.write_config(&[CertSpec::new("due"), CertSpec::new("critical")]);
    let run = setup.run(&["renew", "due"]);
    assert_code(&run, 0);
    assert_ne!(live_serial(&setup, "due"), due, "{}", run.all());
}

/// A second Pebble whose validator uses the primary's http-01 port, and the
/// `[[acme.fallback]]` lines for it.
fn second_ca(setup: &Setup) -> (Pebble, String) {
    let second = Pebble::start_with(PebbleOptions {
        http_port: Some(setup.pebble.http_port()),
        ..PebbleOptions::default()
    });
    let lines = format!(
        "\n[[acme.fallback]]\ndirectory = \"{}\"\nca_bundle = \"{}\"\nfallback_after = \"0s\"\n",
        second.directory_url(),
        second.ca_bundle_path().display()
    );
    (second, lines)
}

fn ca_of(setup: &Setup, name: &str) -> String {
    status_of(setup, name)["ca"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The issuing intermediate of the live certificate is the one `pebble` made this run.
fn issued_by(setup: &Setup, name: &str, pebble: &Pebble) -> bool {
    let chain = std::fs::read_to_string(setup.cert_path(name)).unwrap();
    let intermediate = pebble.issuance_intermediate_pem();
    let first = |pem: &str| crate::support::pebble::first_cert_der(pem).to_vec();
    // fullchain: leaf, then the intermediate.
    let certs: Vec<Vec<u8>> = {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(chain.as_bytes())
            .map(|der| der.unwrap().to_vec())
            .collect()
    };
    certs.get(1) == Some(&first(&intermediate))
}

#[test]
fn primary_refusing_or_rate_limiting_falls_back_then_the_next_renewal_goes_to_the_primary() {
    let mut setup = Setup::with(PebbleOptions {
        domain_blocklist: vec!["refused.example.test".into()],
        ..PebbleOptions::default()
    });
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    let (second, lines) = second_ca(&setup);
    setup.acme_extra = lines;
    setup.write_config(&[CertSpec::new("refused"), CertSpec::new("limited")]);

    // The primary refuses the name: the certificate comes from the second CA.
    let run = setup.run(&["renew", "refused"]);
    assert_code(&run, 0);
    assert!(
        run.stdout.contains("ordering from the fallback CA"),
        "{}",
        run.all()
    );
    assert_eq!(
        ca_of(&setup, "refused"),
        second.directory_url(),
        "{}",
        run.all()
    );
    assert!(issued_by(&setup, "refused", &second), "{}", run.all());

    // The primary answers every new order with 429 and an hour's Retry-After.
    proxy.set_fault_on(
        &proxy.resource_path("newOrder"),
        Fault::RateLimited {
            retry_after_secs: 3600,
        },
    );
    let run = setup.run(&["renew", "limited"]);
    assert_code(&run, 0);
    assert_eq!(
        ca_of(&setup, "limited"),
        second.directory_url(),
        "{}",
        run.all()
    );
    assert!(issued_by(&setup, "limited", &second), "{}", run.all());
    assert!(proxy.count(&proxy.resource_path("newOrder")) >= 1);

    // The primary is well again: the next renewal goes to it.
    proxy.clear_faults();
    let run = setup.run(&["renew", "--force", "limited"]);
    assert_code(&run, 0);
    assert_eq!(
        ca_of(&setup, "limited"),
        proxy.directory_url(),
        "{}",
        run.all()
    );
    assert!(issued_by(&setup, "limited", &setup.pebble), "{}", run.all());
    // Each CA has its own account.
    let accounts = std::fs::read_dir(setup.state_dir().join("accounts"))
        .unwrap()
        .count();
    assert_eq!(accounts, 2, "one account per CA");
}

#[test]
fn primary_down_falls_back() {
    let mut setup = Setup::new();
    setup.directory_override = Some(format!("https://127.0.0.1:{}/dir", unused_loopback_port()));
    let (second, lines) = second_ca(&setup);
    setup.acme_extra = lines;
    setup.write_config(&[CertSpec::new("shop")]);
    let run = setup.run(&["renew"]);
    assert_code(&run, 0);
    assert_eq!(
        ca_of(&setup, "shop"),
        second.directory_url(),
        "{}",
        run.all()
    );
    assert!(issued_by(&setup, "shop", &second), "{}", run.all());
    let table = setup.run(&["status"]);
    assert_code(&table, 0);
}

/// The subject of the CA certificate that issues `pebble`'s leaves, as `status` prints an
/// issuer.
fn intermediate_subject(pebble: &Pebble) -> String {
    let der = crate::support::pebble::first_cert_der(&pebble.issuance_intermediate_pem());
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.subject().to_string()
}

#[test]
fn the_agent_falls_back_when_the_primary_fails_alerts_and_status_shows_the_issuer() {
    let mut setup = Setup::new();
    // The primary answers every new order with 503 (through the fault proxy: Pebble itself
    // never fails). `fallback_after = "0s"`: the fallback takes over right after the
    // primary's failure, in the same attempt. (A longer one waits for the agent's backoff,
    // 5 min after a first failure, as `decision::decide` schedules it: tested there with a
    // fixed `now`, and in `fallback::choose`'s table.)
    let proxy = FaultProxy::start(&setup.pebble);
    proxy.set_fault_on(&proxy.resource_path("newOrder"), Fault::Status(503));
    setup.directory_override = Some(proxy.directory_url());
    let (second, lines) = second_ca(&setup);
    // Due (20 of 90 days left is past the third) but not in the warning period, which would
    // send it to the fallback at once: only fallback_after moves it.
    setup.acme_extra =
        format!("{lines}\n[renewal]\nwarn_before = \"10d\"\ncritical_before = \"3d\"\n");
    let alerts_log = setup.path().join("alerts.jsonl");
    // One write per alert, so two alerts at once cannot interleave.
    setup.tail = format!(
        "[alerts]\ncommand = \"printf '%s\\\\n' \\\"$(cat)\\\" >> {}\"\n",
        alerts_log.display()
    );
    setup.write_config(&[CertSpec::new("shop")]);
    let planted = crate::agent::plant(&setup, "shop", 20);

    let started = std::time::Instant::now();
    let agent = crate::agent::Running::start(&setup);
    let deadline = started + std::time::Duration::from_secs(90);
    while crate::agent::serial_of(&setup.cert_path("shop")).is_none_or(|serial| serial == planted) {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent did not renew shop from the fallback CA:\n{}",
            agent.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = agent.log();
    assert!(issued_by(&setup, "shop", &second), "{log}");
    // The primary was tried first and failed; then the fallback.
    assert!(proxy.count(&proxy.resource_path("newOrder")) >= 1, "{log}");
    let failed = log.find("503 Service Unavailable");
    let fell_back = log.find("ordering from the fallback CA");
    assert!(
        failed.is_some() && fell_back.is_some() && failed < fell_back,
        "{log}"
    );

    crate::agent::wait_for(
        std::time::Duration::from_secs(30),
        "the fallback_used alert",
        || std::fs::read_to_string(&alerts_log).is_ok_and(|text| text.contains("fallback_used")),
    );
    let alerts = std::fs::read_to_string(&alerts_log).unwrap();
    let fallback: Value = alerts
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|alert| alert["event"] == "fallback_used")
        .unwrap_or_else(|| panic!("no fallback_used alert in {alerts}"));
    let message = fallback["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "renewed from the fallback CA {}",
            second.directory_url()
        )),
        "{fallback:#}"
    );
    // It says why the primary was left: the primary's own error.
    assert!(message.contains("503"), "{fallback:#}");
    assert_eq!(fallback["name"], "shop", "{fallback:#}");

    let status = status_of(&setup, "shop");
    assert_eq!(status["ca"], second.directory_url().as_str(), "{status:#}");
    assert_eq!(
        status["issuer"].as_str(),
        Some(intermediate_subject(&second).as_str()),
        "{status:#}"
    );
    assert_eq!(status["state"], "ok", "{status:#}");
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}
