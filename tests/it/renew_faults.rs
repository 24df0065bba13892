//! `evercert renew` when things go wrong: the CA unreachable, untrusted, refusing, failing
//! validation, rate limiting, failing, stalling or rejecting nonces; the reload hook failing
//! or hanging; the server keeping the old certificate; the destination not writable.
//!
//! In every case the run exits 1 with a message that says what failed and what to do, and
//! the live files are unchanged (or restored). CA faults Pebble 2.4 cannot produce (429 with
//! Retry-After, 5xx, stalls) come from [`FaultProxy`] between evercert and the real Pebble.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::certs::{self, KeyType, Leaf};
use crate::support::faultproxy::{Fault, FaultProxy};
use crate::support::pebble::{PebbleOptions, unused_loopback_port};
use crate::support::setup::{CertSpec, Challenge, Run, Setup};
use crate::support::webserver::{FileTlsServer, Reload};

const NAME: &str = "shop";

/// Plants a working pair that is due (5 of 90 days left) where `NAME` is configured.
fn plant(setup: &Setup, domains: &[&str]) -> Leaf {
    let (not_before, not_after) = certs::days_left(5);
    let leaf = certs::leaf(domains, not_before, not_after, KeyType::EcdsaP256);
    leaf.write_fullchain(&setup.cert_path(NAME));
    leaf.write_key(&setup.key_path(NAME));
    leaf
}

/// What the web server reads through `cert_path` and `key_path` is exactly `leaf`.
fn assert_serves(setup: &Setup, leaf: &Leaf, run: &Run) {
    let cert = fs::read_to_string(setup.cert_path(NAME)).unwrap();
    let key = fs::read_to_string(setup.key_path(NAME)).unwrap();
    assert_eq!(
        cert,
        leaf.fullchain_pem(),
        "cert_path changed\n{}",
        run.all()
    );
    assert_eq!(key, leaf.key_pem, "key_path changed\n{}", run.all());
}

/// The planted files are still plain files: nothing was migrated or flipped.
fn assert_untouched(setup: &Setup, leaf: &Leaf, run: &Run) {
    assert_serves(setup, leaf, run);
    for path in [setup.cert_path(NAME), setup.key_path(NAME)] {
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.is_file(),
            "{} is no longer a plain file\n{}",
            path.display(),
            run.all()
        );
    }
    let entries: Vec<String> = fs::read_dir(setup.cert_path(NAME).parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "stray files beside the pair: {entries:?}\n{}",
        run.all()
    );
}

/// The `NAME: failed …` progress line.
fn failure(run: &Run) -> String {
    let prefix = format!("{NAME}: failed");
    run.stdout
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line\n{}", run.all()))
        .to_owned()
}

fn assert_failed(run: &Run) -> String {
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stdout
            .contains("summary: 0 renewed, 0 not due, 1 failed"),
        "{}",
        run.all()
    );
    let message = failure(run);
    // Shown with --nocapture: what an operator would read.
    println!("{message}");
    message
}

fn assert_mentions(message: &str, needle: &str, run: &Run) {
    assert!(
        message.contains(needle),
        "the message does not mention {needle:?}: {message}\n{}",
        run.all()
    );
}

/// `STATE_DIR/state/NAME.json`.
fn history(setup: &Setup) -> Value {
    let path = setup.state_dir().join("state").join(format!("{NAME}.json"));
    let bytes = fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    serde_json::from_slice(&bytes).unwrap()
}

fn parse_time(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|err| panic!("{text:?}: {err}"))
}

/// Removes the `ca_bundle = …` line `Setup` writes.
fn drop_ca_bundle(config: &Path) {
    let text = fs::read_to_string(config).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|line| !line.starts_with("ca_bundle"))
        .collect();
    assert_eq!(kept.len() + 1, text.lines().count(), "{text}");
    fs::write(config, kept.join("\n")).unwrap();
}

/// Serial (hex) of the certificate `cert_path` leads to.
fn live_serial(setup: &Setup) -> String {
    let pem = fs::read(setup.cert_path(NAME)).unwrap();
    let der = CertificateDer::pem_slice_iter(&pem)
        .next()
        .unwrap()
        .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    cert.raw_serial()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Lines a reload hook appended to its log.
fn hook_runs(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The proxy itself

/// The harness first: with no fault set, a whole issuance goes through the proxy, every
/// request of it (not just the directory) passes the proxy, and the counts see them.
#[test]
fn the_fault_proxy_carries_a_whole_issuance() {
    // Exact counts of POSTs: without Pebble's badNonce, which makes the client send a POST
    // again (one newAccount in twenty would be counted twice). The harness is what is tested
    // here; evercert's badNonce handling is tested with it on, everywhere else.
    let mut setup = Setup::with(PebbleOptions {
        nonce_reject_percent: 0,
        ..PebbleOptions::default()
    });
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new(NAME)]);
    let run = setup.run(&["renew"]);
    assert_eq!(run.code, 0, "{}\n{}", run.all(), proxy.describe());
    let seen = proxy.describe();
    assert_eq!(proxy.count(proxy.directory_path()), 1, "{seen}");
    assert_eq!(proxy.count(&proxy.resource_path("newAccount")), 1, "{seen}");
    assert!(proxy.count(&proxy.resource_path("newOrder")) >= 1, "{seen}");
    // Order, authorization, challenge, finalize and certificate URLs came from Pebble's
    // answers: they point at the proxy too.
    assert!(proxy.count("") >= 7, "{seen}");
    assert!(
        proxy
            .seen()
            .iter()
            .any(|seen| seen.path.contains("finalize")),
        "{seen}"
    );
    assert!(
        proxy.seen().iter().all(|seen| seen.fault.is_none()),
        "{seen}"
    );

    // Faults switch at run time; FailFirst lets the request after the budget through.
    proxy.set_fault_on(
        proxy.directory_path(),
        Fault::fail_first(1, Fault::Status(503)),
    );
    let directory = proxy.directory_url();
    assert_eq!(setup.pebble.get(&directory).status, 503);
    let answer = setup.pebble.get(&directory);
    assert_eq!(answer.status, 200);
    let new_order = answer.json()["newOrder"].as_str().unwrap().to_owned();
    assert!(
        new_order.starts_with(directory.trim_end_matches(proxy.directory_path())),
        "the directory still names Pebble: {new_order}"
    );
    proxy.set_fault(Fault::RateLimited {
        retry_after_secs: 77,
    });
    let limited = setup.pebble.get(&directory);
    assert_eq!(limited.status, 429);
    assert!(limited.text().contains("rateLimited"), "{}", limited.text());
    proxy.set_fault(Fault::Reset);
    assert!(setup.pebble.try_get(&directory).is_err());
    proxy.set_fault(Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(setup.pebble.get(&directory).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    proxy.clear_faults();
    assert_eq!(setup.pebble.get(&directory).status, 200);
    let faults: Vec<Option<Fault>> = proxy
        .seen()
        .iter()
        .rev()
        .take(3)
        .map(|seen| seen.fault.clone())
        .collect();
    assert_eq!(
        faults,
        [
            None,
            Some(Fault::Delay(Duration::from_millis(300))),
            Some(Fault::Reset)
        ],
        "{}",
        proxy.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// The CA cannot be used

/// Case 1: Nothing listens at the directory URL.
#[test]
fn unreachable_ca_names_the_directory_url() {
    let mut setup = Setup::new();
    let directory = format!("https://127.0.0.1:{}/dir", unused_loopback_port());
    setup.directory_override = Some(directory.clone());
    setup.write_config(&[CertSpec::new(NAME)]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, &directory, &run);
    assert_mentions(&message, "is the CA reachable", &run);
    assert_untouched(&setup, &leaf, &run);
    assert_eq!(
        history(&setup)["failure_kind"],
        "transient",
        "{}",
        run.all()
    );
}

/// Case 2: The CA's TLS certificate is signed by a root evercert was not told about.
#[test]
fn untrusted_ca_certificate_points_at_ca_bundle() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new(NAME)]);
    drop_ca_bundle(&setup.config_path());
    let leaf = plant(&setup, &["shop.example.test"]);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, &setup.pebble.directory_url(), &run);
    assert_mentions(&message, "ca_bundle", &run);
    assert_untouched(&setup, &leaf, &run);
}

// ---------------------------------------------------------------------------------------------
// The CA refuses

/// Case 3: Pebble's `domainBlocklist` refuses one of the names at newOrder.
#[test]
fn identifier_the_ca_refuses_says_remove_it_from_domains() {
    let setup = Setup::with(PebbleOptions {
        domain_blocklist: vec!["blocked.example.test".to_owned()],
        ..PebbleOptions::default()
    });
    let domains = ["shop.example.test", "www.blocked.example.test"];
    setup.write_config(&[CertSpec::new(NAME).domains(&domains)]);
    let leaf = plant(&setup, &domains);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, "www.blocked.example.test", &run);
    assert_mentions(&message, "rejectedIdentifier", &run);
    assert_mentions(&message, "remove it from `domains`", &run);
    assert_untouched(&setup, &leaf, &run);
    assert_eq!(
        history(&setup)["failure_kind"],
        "permanent",
        "{}",
        run.all()
    );
}

/// Case 4a: evercert's responder listens where the CA does not connect.
#[test]
fn http01_responder_the_ca_cannot_reach_gives_the_cas_detail_and_a_hint() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new(NAME)]);
    let config = fs::read_to_string(setup.config_path()).unwrap();
    let expected = format!("listen = \"127.0.0.1:{}\"", setup.pebble.http_port());
    let elsewhere = format!("127.0.0.1:{}", unused_loopback_port());
    assert!(config.contains(&expected), "{config}");
    fs::write(
        setup.config_path(),
        config.replace(&expected, &format!("listen = \"{elsewhere}\"")),
    )
    .unwrap();
    let leaf = plant(&setup, &["shop.example.test"]);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, "http-01 validation failed", &run);
    // Pebble's own words: where it tried to connect.
    assert_mentions(&message, "shop.example.test", &run);
    assert_mentions(&message, "connect", &run);
    assert_mentions(&message, "is port 80 of every name reachable", &run);
    assert_mentions(&message, &elsewhere, &run);
    assert_untouched(&setup, &leaf, &run);
}

/// Case 4b: The token is written to a webroot that no web server serves.
#[test]
fn webroot_not_served_gives_the_cas_detail_and_a_hint() {
    let setup = Setup::new();
    let webroot = setup.path().join("webroot");
    fs::create_dir_all(&webroot).unwrap();
    setup.write_config(&[CertSpec::new(NAME).challenge(Challenge::Webroot(webroot.clone()))]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, "http-01 validation failed", &run);
    assert_mentions(&message, "shop.example.test", &run);
    assert_mentions(&message, "connect", &run);
    assert_mentions(&message, "does the web server serve", &run);
    assert_mentions(&message, &webroot.display().to_string(), &run);
    assert_untouched(&setup, &leaf, &run);
    // The token was removed again, even though the order failed.
    let tokens = webroot.join(".well-known/acme-challenge");
    let left: Vec<_> = fs::read_dir(&tokens)
        .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "tokens left behind: {left:?}");
}

// ---------------------------------------------------------------------------------------------
// CA faults through the proxy

/// Case 5: newOrder answers 429 with `Retry-After: 3600`.
#[test]
fn rate_limited_order_reports_and_records_the_retry_time() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    let new_order = proxy.resource_path("newOrder");
    proxy.set_fault_on(
        &new_order,
        Fault::RateLimited {
            retry_after_secs: 3600,
        },
    );
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new(NAME)]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let started = OffsetDateTime::now_utc();
    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, "rateLimited", &run);
    assert_mentions(&message, &proxy.directory_url(), &run);
    // The retry time, as an RFC 3339 timestamp somewhere in the message.
    let when = message
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '(' | ')'))
        .find_map(|word| OffsetDateTime::parse(word, &Rfc3339).ok())
        .unwrap_or_else(|| panic!("no retry time in: {message}"));
    let expected = started + time::Duration::seconds(3600);
    assert!(
        (when - expected).abs() < time::Duration::seconds(60),
        "retry time {when} is not about {expected}: {message}"
    );
    assert_untouched(&setup, &leaf, &run);

    let history = history(&setup);
    assert_eq!(history["failure_kind"], "rate_limited", "{history}");
    let recorded = parse_time(history["retry_after"].as_str().unwrap());
    assert!(
        (recorded - expected).abs() < time::Duration::seconds(60),
        "{history}"
    );
    // Asked once, told to wait an hour: not asked again in this run.
    assert_eq!(proxy.count(&new_order), 1, "{}", proxy.describe());
}

/// Case 6a: Every request answers 503: the run gives up quickly instead of spinning.
#[test]
fn ca_answering_503_everywhere_fails_fast_without_a_hot_loop() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    proxy.set_fault(Fault::Status(503));
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new(NAME)]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let started = Instant::now();
    let run = setup.run(&["renew"]);
    let elapsed = started.elapsed();
    let message = assert_failed(&run);
    assert_mentions(&message, &proxy.directory_url(), &run);
    assert_mentions(&message, "503", &run);
    assert_untouched(&setup, &leaf, &run);
    assert_eq!(
        history(&setup)["failure_kind"],
        "transient",
        "{}",
        run.all()
    );
    assert!(
        proxy.count("") <= 10,
        "{} requests to a failing CA:\n{}",
        proxy.count(""),
        proxy.describe()
    );
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
}

/// Case 6b: The account exists; newOrder answers 503 with a serverInternal problem.
#[test]
fn ca_answering_503_on_new_order_is_transient_and_bounded() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new(NAME)]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let serial = live_serial(&setup);

    let new_order = proxy.resource_path("newOrder");
    proxy.set_fault_on(&new_order, Fault::Status(503));
    let before = proxy.count(&new_order);
    let run = setup.run(&["renew", "--force"]);
    let message = assert_failed(&run);
    assert_mentions(&message, "serverInternal", &run);
    assert_mentions(&message, &proxy.directory_url(), &run);
    assert_eq!(live_serial(&setup), serial, "{}", run.all());
    assert_eq!(
        history(&setup)["failure_kind"],
        "transient",
        "{}",
        run.all()
    );
    // Bounded means: orders placed, each answered 503 by the proxy (so never a badNonce from
    // Pebble), are the first and the policy's two retries. The other requests (nonces, the
    // account) are not counted: Pebble's 5% badNonce adds retried POSTs to them at random.
    let orders = proxy.count(&new_order) - before;
    assert_eq!(
        orders,
        3,
        "{orders} orders placed with a failing CA:\n{}",
        proxy.describe()
    );
    let waits = run.stdout.matches("trying again in").count();
    assert_eq!(waits, 2, "{}", run.all());
}

/// Case 7: newOrder is accepted and never answered: the request timeout ends the run with a
/// message naming the URL. `[acme] timeout` keeps the test short (the default is 30 s).
#[test]
fn stalled_ca_times_out_with_a_clear_message() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    let new_order = proxy.resource_path("newOrder");
    proxy.set_fault_on(&new_order, Fault::Stall);
    setup.directory_override = Some(proxy.directory_url());
    setup.acme_extra = "timeout = \"2s\"\n".to_owned();
    setup.write_config(&[CertSpec::new(NAME)]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let started = Instant::now();
    let run = setup.run(&["renew"]);
    let elapsed = started.elapsed();
    let message = assert_failed(&run);
    assert_mentions(&message, "no answer from", &run);
    assert_mentions(&message, &new_order, &run);
    assert_mentions(&message, "within 2 s", &run);
    // Three tries of 2 s each with 1 s and 3 s between them: 10 s by design, 10-11 s measured
    // here at load 1-20. Unbounded would mean the timeout did not work (the stall never ends).
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(40),
        "took {elapsed:?}\n{}",
        run.all()
    );
    assert_untouched(&setup, &leaf, &run);
    assert_eq!(
        history(&setup)["failure_kind"],
        "transient",
        "{}",
        run.all()
    );
    assert!(proxy.count(&new_order) <= 3, "{}", proxy.describe());
}

/// Case 12: Pebble rejects 20% of good nonces: renewing five certificates still succeeds, three
/// runs in a row.
#[test]
fn renew_survives_pebble_rejecting_a_fifth_of_nonces() {
    let setup = Setup::with(PebbleOptions {
        nonce_reject_percent: 20,
        ..PebbleOptions::default()
    });
    let specs: Vec<CertSpec> = (1..=5)
        .map(|n| CertSpec::new(&format!("site{n}")))
        .collect();
    setup.write_config(&specs);
    for attempt in 1..=3 {
        let run = setup.run(&["renew", "--force"]);
        assert_eq!(run.code, 0, "run {attempt}: {}", run.all());
        assert!(
            run.stdout
                .contains("summary: 5 renewed, 0 not due, 0 failed"),
            "run {attempt}: {}",
            run.all()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// After issuance: reload, verify, store

/// A reload hook that logs `NAME|SERIAL|CERT_PATH` of its environment to `log`; on its first
/// run it prints an nginx-like error to stderr and exits 3, afterwards it succeeds.
fn failing_once_hook(log: &Path) -> String {
    format!(
        "echo \"$EVERCERT_NAME|$EVERCERT_SERIAL|$EVERCERT_CERT_PATH\" >> {log}; \
         if [ $(wc -l < {log}) -eq 1 ]; then \
         echo 'nginx: [emerg] cannot load certificate' >&2; exit 3; fi",
        log = log.display()
    )
}

/// Case 8: The reload hook fails: the previous pair is restored and reloaded, and the message
/// carries the hook's stderr.
#[test]
fn failing_reload_restores_the_previous_pair_and_reloads_again() {
    let setup = Setup::new();
    let log = setup.path().join("reload.log");
    setup.write_config(&[CertSpec::new(NAME).reload(&failing_once_hook(&log))]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, "reload hook failed", &run);
    assert_mentions(&message, "exit status: 3", &run);
    assert_mentions(&message, "nginx: [emerg] cannot load certificate", &run);
    assert_mentions(&message, "restored and reloaded", &run);
    assert_serves(&setup, &leaf, &run);
    assert_eq!(live_serial(&setup), leaf.serial_hex);
    assert_eq!(
        hook_runs(&log).len(),
        2,
        "{:?}\n{}",
        hook_runs(&log),
        run.all()
    );
    assert_eq!(
        history(&setup)["failure_kind"],
        "permanent",
        "{}",
        run.all()
    );
}

/// Case 8a: The reload hook fails after the first issuance (nothing planted): there is no
/// older pair, so the message says the new files stay and must not claim a restore.
#[test]
fn failing_reload_after_the_first_issuance_says_nothing_was_restored() {
    let setup = Setup::new();
    let log = setup.path().join("reload.log");
    setup.write_config(&[CertSpec::new(NAME).reload(&format!(
        "echo run >> {}; echo 'nginx: [emerg] cannot load certificate' >&2; exit 3",
        log.display()
    ))]);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, "reload hook failed", &run);
    assert_mentions(&message, "nothing older to restore", &run);
    assert!(
        !message.contains("was restored"),
        "the message claims a restore that did not happen: {message}"
    );
    // Nothing was restored, so the hook is not run a second time for the same files.
    assert_eq!(hook_runs(&log).len(), 1, "{}", run.all());
    assert!(setup.cert_path(NAME).exists(), "{}", run.all());
}

/// Case 8b: The reload after a rollback describes what is live again, not the rejected version:
/// a hook that copies `$EVERCERT_CERT_PATH` or logs `$EVERCERT_SERIAL` must see the
/// restored certificate.
#[test]
fn restoring_reload_gets_the_restored_certificate_in_its_environment() {
    let setup = Setup::new();
    let log = setup.path().join("reload.log");
    setup.write_config(&[CertSpec::new(NAME).reload(&failing_once_hook(&log))]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let run = setup.run(&["renew"]);
    assert_failed(&run);
    let runs = hook_runs(&log);
    assert_eq!(runs.len(), 2, "{runs:?}\n{}", run.all());
    let cert_path = setup.cert_path(NAME).display().to_string();
    let first: Vec<&str> = runs[0].split('|').collect();
    assert_eq!(first[0], NAME, "{runs:?}");
    assert_ne!(first[1], leaf.serial_hex, "{runs:?}");
    assert_eq!(
        runs[1],
        format!("{NAME}|{}|{cert_path}", leaf.serial_hex),
        "the restoring reload saw the wrong certificate: {runs:?}"
    );
}

/// Case 9: The reload hook hangs: it is killed after `reload_timeout`, and the previous pair is
/// restored.
#[test]
fn hanging_reload_is_killed_and_the_previous_pair_restored() {
    let setup = Setup::new();
    let log = setup.path().join("reload.log");
    setup.write_config(&[CertSpec::new(NAME)
        .reload(&format!("echo run >> {}; sleep 60", log.display()))
        .extra("reload_timeout = \"1s\"")]);
    let leaf = plant(&setup, &["shop.example.test"]);

    let started = Instant::now();
    let run = setup.run(&["renew"]);
    let elapsed = started.elapsed();
    let message = assert_failed(&run);
    assert_mentions(&message, "did not finish within 1 s and was killed", &run);
    assert_serves(&setup, &leaf, &run);
    assert_eq!(live_serial(&setup), leaf.serial_hex);
    // Once for the new pair, once for the restored one; each killed after 1 s (a hook not
    // killed would take 60 s). 3-6 s measured at load 1-20, the whole test.
    assert_eq!(hook_runs(&log).len(), 2, "{}", run.all());
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

/// Case 10: The server keeps serving the planted certificate after the reload: verification fails
/// with the serial it still serves, and the planted pair is live again. `verify_timeout`
/// keeps it short (the default window is 15 s).
#[test]
fn verify_endpoint_serving_the_old_certificate_rolls_back() {
    let setup = Setup::new();
    let leaf = plant(&setup, &["shop.example.test"]);
    let server = FileTlsServer::start(&setup.cert_path(NAME), &setup.key_path(NAME), Reload::Never);
    let log = setup.path().join("reload.log");
    setup.write_config(&[CertSpec::new(NAME)
        .reload(&format!(
            "echo \"$EVERCERT_NAME|$EVERCERT_SERIAL|$EVERCERT_CERT_PATH\" >> {}",
            log.display()
        ))
        .verify(&server.endpoint())
        .extra("verify_timeout = \"2s\"")]);

    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(
        &message,
        &format!(
            "{} still serves serial {}",
            server.endpoint(),
            leaf.serial_hex
        ),
        &run,
    );
    assert_mentions(&message, "restored", &run);
    assert_serves(&setup, &leaf, &run);
    let runs = hook_runs(&log);
    assert_eq!(runs.len(), 2, "{runs:?}\n{}", run.all());
    assert_eq!(
        runs[1],
        format!(
            "{NAME}|{}|{}",
            leaf.serial_hex,
            setup.cert_path(NAME).display()
        ),
        "the restoring reload saw the wrong certificate: {runs:?}"
    );
}

/// Case 11: The directory of cert_path is a regular file: nothing can be read or written
/// there. Forced or not, the run fails before ordering (no certificate wasted), names the path
/// and says what to do; nothing changes.
#[test]
fn destination_that_cannot_be_written_fails_before_ordering() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new(NAME)]);
    let in_the_way = setup.cert_path(NAME).parent().unwrap().to_owned();
    certs::write(&in_the_way, "not a directory\n");
    let nothing_changed = |run: &Run| {
        assert_eq!(
            fs::read_to_string(&in_the_way).unwrap(),
            "not a directory\n",
            "{}",
            run.all()
        );
        let live = setup.state_dir().join("live").join(NAME);
        assert!(
            fs::symlink_metadata(&live).is_err(),
            "{} exists",
            live.display()
        );
        let archive = setup.state_dir().join("archive").join(NAME);
        let versions: Vec<_> = fs::read_dir(&archive)
            .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(versions.is_empty(), "{versions:?}");
        assert_eq!(
            proxy.count(&proxy.resource_path("newOrder")),
            0,
            "a certificate was ordered that could never be written:\n{}",
            proxy.describe()
        );
    };

    // Forced: the store finds the problem before anything is ordered.
    let forced = setup.run(&["renew", "--force"]);
    let message = assert_failed(&forced);
    assert_mentions(&message, &in_the_way.display().to_string(), &forced);
    assert_mentions(&message, "is a file, not a directory", &forced);
    assert_mentions(&message, "fix the path in the configuration", &forced);
    nothing_changed(&forced);

    // Not forced: the certificate cannot even be read. That is a failure (exit 1), not
    // "not due" with exit 0, which would hide it from cron and deploy pipelines.
    let run = setup.run(&["renew"]);
    let message = assert_failed(&run);
    assert_mentions(&message, &setup.cert_path(NAME).display().to_string(), &run);
    assert_mentions(&message, "Not a directory", &run);
    nothing_changed(&run);
}

/// A one-shot `renew` tries a transient failure again a bounded number of times: two 503s on
/// newOrder, then the CA recovers and the certificate is issued in the same run.
#[test]
fn one_shot_renew_retries_transient_failures_a_bounded_number_of_times() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new(NAME)]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let serial = live_serial(&setup);

    let new_order = proxy.resource_path("newOrder");
    proxy.set_fault_on(&new_order, Fault::fail_first(2, Fault::Status(503)));
    let seen_before = proxy.seen().len();
    let started = Instant::now();
    let run = setup.run(&["renew", "--force"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("trying again in"), "{}", run.all());
    assert_ne!(live_serial(&setup), serial, "{}", run.all());
    // Three attempts: two answered 503, then one that went through. Counted as retries and
    // faults rather than as POSTs: Pebble's 5 % badNonce makes the client send an order POST
    // again within one attempt (4 POSTs for 3 attempts, once at load 2x).
    let new_orders: Vec<_> = proxy.seen()[seen_before..]
        .iter()
        .filter(|seen| seen.path.starts_with(&new_order))
        .map(|seen| seen.fault.is_some())
        .collect();
    let faulted = new_orders.iter().filter(|faulted| **faulted).count();
    assert_eq!(faulted, 2, "{}", proxy.describe());
    assert!(new_orders.len() > faulted, "{}", proxy.describe());
    assert_eq!(
        run.stdout.matches("trying again in").count(),
        2,
        "{}",
        run.all()
    );
    // 1 s and 3 s of waiting, and no more (the three attempts are counted above); the whole
    // test took 9.3-9.6 s at load 1-20.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "took {took:?}\n{}",
        run.all()
    );

    // A CA that stays down: three attempts, then the failure is reported.
    proxy.set_fault_on(&new_order, Fault::Status(503));
    let before = proxy.count(&new_order);
    let run = setup.run(&["renew", "--force"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(proxy.count(&new_order) - before, 3, "{}", proxy.describe());
}

/// A full disk: `state_dir/archive` on a tiny tmpfs, filled, in a private mount namespace
/// (needs root, as CI runs). The new version cannot be written, so nothing goes live: the
/// planted pair stays byte for byte, and the message says what to do.
#[test]
fn a_full_disk_fails_before_anything_goes_live() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new(NAME)]);
    let leaf = plant(&setup, &["shop.example.test"]);
    let cert_before = fs::read(setup.cert_path(NAME)).unwrap();
    let key_before = fs::read(setup.key_path(NAME)).unwrap();
    // The account is registered first (a dry run orders from the same Pebble and writes
    // nothing live), so the run gets as far as writing the certificate.
    let account = setup.run(&["renew", "--dry-run"]);
    assert_eq!(account.code, 0, "{}", account.all());
    let archive = setup.state_dir().join("archive");
    fs::create_dir_all(&archive).unwrap();

    let output = std::process::Command::new("unshare")
        .arg("-m")
        .arg("sh")
        .arg("-c")
        .arg(
            "mount -t tmpfs -o size=16k,mode=0755 tmpfs \"$1\" || exit 97; \
             head -c 1048576 /dev/zero > \"$1/fill\" 2>/dev/null; \
             shift; exec \"$@\"",
        )
        .arg("sh")
        .arg(&archive)
        .arg(env!("CARGO_BIN_EXE_evercert"))
        .arg("-c")
        .arg(setup.config_path())
        .arg("renew")
        .env("EVERCERT_LOG", "warn")
        .env_remove("EVERCERT_CONFIG")
        .output()
        .expect("unshare (util-linux) runs");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_ne!(
        run.code,
        97,
        "cannot mount a tmpfs here (needs root): {}",
        run.all()
    );
    let message = assert_failed(&run);
    assert_mentions(&message, "No space left on device", &run);
    assert_mentions(&message, "disk space", &run);
    assert_eq!(fs::read(setup.cert_path(NAME)).unwrap(), cert_before);
    assert_eq!(fs::read(setup.key_path(NAME)).unwrap(), key_before);
    assert!(
        !fs::symlink_metadata(setup.cert_path(NAME))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(live_serial(&setup), leaf.serial_hex);
}
