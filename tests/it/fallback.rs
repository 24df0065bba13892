//! Renewal windows and the fallback CA (issue 12, items 4 and 5), through the built binary
//! against real Pebbles.
//!
//! Windows: the binary has no fake clock, so the test writes a window relative to the real
//! one — a daily window that opens two hours from now is closed for the whole test. The pure
//! rules (every weekday, DST, critical_before capping the wait) are table-tested on
//! `decision::decide` and `window::Windows` with a fixed `now`.

use serde_json::Value;
use time::OffsetDateTime;

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
