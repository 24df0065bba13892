//! Interop: evercert against a second real ACME server, acme2certifier 0.46 (PyPI, openssl CA
//! handler, ARI forced open), and the error paths that no healthy server produces, through
//! the fault proxy in front of Pebble.
//!
//! acme2certifier differs from Pebble where it matters: it offers ARI, does not echo
//! `replaces` in the order, and leaves an order `pending` after a failed challenge. Each test
//! starts its own instance (testkit/src/a2c.rs); the virtualenv is built once per machine.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::a2c::A2c;
use crate::support::faultproxy::{Fault, FaultProxy};
use crate::support::pebble::PebbleOptions;
use crate::support::setup::{CertSpec, Run, Setup};

/// How a certificate proves its names to acme2certifier.
#[derive(Clone, Copy)]
enum Proof {
    /// evercert's built-in http-01 responder, on port 80 of the address names resolve to.
    Http,
    /// dns-01 through a hook that publishes in acme2certifier's DNS (pebble-challtestsrv).
    Dns,
    /// http-01 on a port nobody forwards to: the challenge fails.
    HttpUnreachable,
}

struct Interop {
    a2c: A2c,
    dir: TempDir,
}

impl Interop {
    fn start() -> Self {
        Self {
            a2c: A2c::start(),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("evercert.toml")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("tls").join(name).join("fullchain.pem")
    }

    fn write_config(&self, certs: &[(&str, Proof)], acme_extra: &str) {
        let mut toml = format!(
            "state_dir = \"{state}\"\n\n[acme]\ndirectory = \"{dir}\"\nstaging_directory = \"{dir}\"\ncontact = [\"mailto:ops@example.test\"]\nca_bundle = \"{bundle}\"\n{acme_extra}\n",
            state = self.state_dir().display(),
            dir = self.a2c.directory_url(),
            bundle = self.a2c.ca_bundle_path().display(),
        );
        for (name, proof) in certs {
            toml.push_str(&format!(
                "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.a2c.test\"]\ncert_path = \"{cert}\"\nkey_path = \"{key}\"\n",
                cert = self.cert_path(name).display(),
                key = self.dir.path().join("tls").join(name).join("privkey.pem").display(),
            ));
            match proof {
                Proof::Http => toml.push_str(&format!(
                    "[certificate.http01]\nlisten = \"{}\"\n\n",
                    self.a2c.http01_listen()
                )),
                Proof::HttpUnreachable => toml.push_str(&format!(
                    "[certificate.http01]\nlisten = \"127.0.0.1:{}\"\n\n",
                    crate::support::pebble::unused_loopback_port()
                )),
                Proof::Dns => toml.push_str(&format!(
                    "[certificate.dns01]\nhook = \"{}\"\nwait = \"0s\"\n\n",
                    self.a2c.dns_hook(self.dir.path()).display()
                )),
            }
        }
        fs::write(self.config_path(), toml).expect("write config");
    }

    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_evercert"))
            .current_dir(self.dir.path())
            .env_remove("EVERCERT_CONFIG")
            .env("EVERCERT_LOG", "warn")
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .output()
            .expect("run evercert");
        Run::from_output(&output)
    }

    fn run_ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code,
            0,
            "evercert {args:?} failed:\n{run}\n{}",
            self.a2c.logs()
        );
        run
    }

    /// New orders acme2certifier answered (from its request log).
    /// Orders the CA created (201). A request it refused does not count: under load its
    /// SQLite store once failed to keep a nonce ("database is locked"), answered badNonce,
    /// and evercert's retry of that same order made a raw request count of 4 for 3 orders.
    fn orders(&self) -> usize {
        self.a2c
            .count_requests("\"POST /acme/neworders HTTP/1.1\" 201")
    }

    fn serial(&self, name: &str) -> String {
        let pem = fs::read(self.cert_path(name)).expect("read the certificate");
        let der = crate::support::pebble::first_cert_der(&String::from_utf8_lossy(&pem));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse the leaf");
        cert.raw_serial_as_string()
    }

    fn issuer(&self, name: &str) -> String {
        let pem = fs::read(self.cert_path(name)).expect("read the certificate");
        let der = crate::support::pebble::first_cert_der(&String::from_utf8_lossy(&pem));
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse the leaf");
        cert.issuer().to_string()
    }

    fn status(&self) -> Vec<Value> {
        let run = self.run(&["status", "--json"]);
        serde_json::from_str::<Value>(&run.stdout)
            .unwrap_or_else(|err| panic!("status --json is not JSON ({err}):\n{run}"))
            .as_array()
            .cloned()
            .expect("a JSON array")
    }

    fn account_dirs(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.state_dir().join("accounts")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn entry<'a>(status: &'a [Value], name: &str) -> &'a Value {
    status
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {status:?}"))
}

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a time string"), &Rfc3339)
        .unwrap_or_else(|err| panic!("{value} is not RFC 3339: {err}"))
}

/// Issuance over http-01 and dns-01; the CA's ARI window ("renew now", forced open) is
/// fetched and shown but does not re-order certificates minutes old; a forced renewal sends
/// `replaces`, which acme2certifier accepts without echoing it, and places exactly one order.
#[test]
fn issues_over_http01_and_dns01_and_renews_with_replaces_in_one_order() {
    let interop = Interop::start();
    interop.write_config(&[("web", Proof::Http), ("dns", Proof::Dns)], "");

    let started = Instant::now();
    let first = interop.run_ok(&["renew"]);
    eprintln!(
        "FIGURE acme2certifier: two certificates (http-01, dns-01) issued in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(interop.orders(), 2, "{first}\n{}", interop.a2c.log());
    for name in ["web", "dns"] {
        assert!(
            interop
                .issuer(name)
                .contains("evercert a2c test intermediate"),
            "{name}: {}",
            interop.issuer(name)
        );
    }

    // A second run asks the CA for ARI. acme2certifier's forced window says "renew now", but
    // for a certificate issued moments ago that is distrusted: nothing is ordered.
    let again = interop.run_ok(&["renew"]);
    assert_eq!(interop.orders(), 2, "re-ordered:\n{again}");
    assert!(
        interop.a2c.count_requests("GET /acme/renewal-info/") >= 2,
        "ARI was not asked:\n{}",
        interop.a2c.log()
    );
    // On a loaded machine one of the two concurrent ARI requests once came back without a
    // window (seen in a full CI run). evercert then waits an hour before asking again, by
    // design; the test clears that certificate's cached answer and asks again, so what it
    // checks is the window acme2certifier gives, not the luck of one request.
    let mut status = interop.status();
    for _ in 0..3 {
        let missing: Vec<&str> = ["web", "dns"]
            .into_iter()
            .filter(|name| !entry(&status, name)["ari_window"].is_object())
            .collect();
        if missing.is_empty() {
            break;
        }
        for name in missing {
            let cached = interop.state_dir().join("ari").join(format!("{name}.json"));
            let _ = fs::remove_file(cached);
        }
        std::thread::sleep(Duration::from_secs(1));
        let again = interop.run_ok(&["renew"]);
        assert_eq!(interop.orders(), 2, "re-ordered:\n{again}");
        status = interop.status();
    }
    let now = OffsetDateTime::now_utc();
    for name in ["web", "dns"] {
        let window = &entry(&status, name)["ari_window"];
        assert!(window.is_object(), "{name}: no ARI window in {status:?}");
        let (start, end) = (time_of(&window["start"]), time_of(&window["end"]));
        assert!(start < now - time::Duration::days(300), "{name}: {window}");
        assert!(
            end > now && end < now + time::Duration::days(2),
            "{name}: {window}"
        );
        assert_eq!(entry(&status, name)["state"], "ok", "{status:?}");
    }

    // A forced renewal of one certificate: `replaces` goes out (the CA offers ARI), the CA
    // does not echo it, and the order is used, not placed a second time.
    let before = interop.serial("web");
    let renewed = interop.run_ok(&["renew", "web", "--force"]);
    assert_ne!(interop.serial("web"), before, "{renewed}");
    assert_eq!(
        interop.orders(),
        3,
        "one order for one renewal:\n{renewed}\n{}",
        interop.a2c.log()
    );
    assert!(
        !renewed.all().contains("replaces"),
        "a warning about `replaces`:\n{renewed}"
    );
}

/// A certificate revoked with `evercert revoke` shows as revoked in `status` and is
/// replaced by the next `renew`, without `--force`.
#[test]
fn a_revoked_certificate_is_marked_and_replaced_without_force() {
    let interop = Interop::start();
    interop.write_config(&[("web", Proof::Http)], "");
    interop.run_ok(&["renew"]);
    let revoked = interop.serial("web");

    let run = interop.run_ok(&["revoke", "web", "--reason", "keyCompromise"]);
    assert!(run.stdout.contains("marked revoked"), "{run}");
    // Revocations the CA accepted (200), as `orders` counts: a request its SQLite store
    // answered with badNonce under load is retried and would count twice.
    assert!(
        interop
            .a2c
            .count_requests("\"POST /acme/revokecert HTTP/1.1\" 200")
            == 1,
        "{}",
        interop.a2c.log()
    );
    let status = interop.status();
    let web = entry(&status, "web");
    assert_eq!(web["renew_reason"], "revoked", "{web}");
    assert_eq!(web["state"], "due", "{web}");
    assert!(
        web["reason"].as_str().unwrap_or("").contains("revoked"),
        "{web}"
    );

    let renewed = interop.run_ok(&["renew"]);
    assert_ne!(interop.serial("web"), revoked, "{renewed}");
    assert_eq!(interop.orders(), 2, "{renewed}");
    // Replaced: the new certificate is not due, and a further run orders nothing.
    let status = interop.status();
    assert_eq!(entry(&status, "web")["state"], "ok", "{status:?}");
    interop.run_ok(&["renew"]);
    assert_eq!(interop.orders(), 2);
}

/// Account show asks the CA; rollover and deactivation are checked with the CA.
#[test]
fn account_show_rollover_and_deactivate_against_acme2certifier() {
    let interop = Interop::start();
    interop.write_config(&[("web", Proof::Http)], "");

    // No account yet: `account show` says so and registers nothing.
    let none = interop.run(&["account", "show"]);
    assert_eq!(none.code, 1, "{none}");
    assert!(none.stderr.contains("no account is stored"), "{none}");
    assert!(
        interop.account_dirs().is_empty(),
        "{:?}",
        interop.account_dirs()
    );

    interop.run_ok(&["renew"]);
    let shown = interop.run_ok(&["account", "show"]);
    assert!(shown.stdout.contains("status:     valid"), "{shown}");

    let rolled = interop.run_ok(&["account", "rollover"]);
    assert!(rolled.stdout.contains("account key replaced"), "{rolled}");
    let shown = interop.run_ok(&["account", "show"]);
    assert!(shown.stdout.contains("status:     valid"), "{shown}");
    interop.run_ok(&["renew", "--force"]);

    let deactivated = interop.run_ok(&["account", "deactivate"]);
    assert!(
        deactivated.stdout.contains("is deactivated"),
        "{deactivated}"
    );
    let dirs = interop.account_dirs();
    assert!(
        dirs.iter().all(|dir| dir.contains(".deactivated-")),
        "{dirs:?}"
    );
    // The next renewal registers a new account.
    interop.run_ok(&["renew", "--force"]);
    let shown = interop.run_ok(&["account", "show"]);
    assert!(shown.stdout.contains("status:     valid"), "{shown}");
}

/// acme2certifier leaves the order `pending` after a failed challenge: the failure is
/// reported promptly with the CA's own words and the http-01 hint, not after the order
/// timeout as "did not finish in time".
#[test]
fn a_failed_challenge_is_reported_at_once_with_the_cas_words() {
    let interop = Interop::start();
    interop.write_config(&[("web", Proof::HttpUnreachable)], "");
    let started = Instant::now();
    let run = interop.run(&["renew"]);
    let took = started.elapsed();
    eprintln!(
        "FIGURE acme2certifier: failed http-01 challenge reported in {:.2} s",
        took.as_secs_f64()
    );
    assert_eq!(run.code, 1, "{run}");
    let text = run.all();
    assert!(text.contains("http-01 validation failed"), "{text}");
    assert!(text.contains("web.a2c.test"), "{text}");
    assert!(
        text.contains("the CA marked the challenge invalid without giving a reason"),
        "{text}"
    );
    assert!(
        text.contains("is port 80 of every name reachable"),
        "{text}"
    );
    assert!(!text.contains("did not finish"), "{text}");
    // Generous for a loaded machine, far below the 120 s order timeout.
    assert!(took < Duration::from_secs(60), "{took:?}: {text}");
    assert_eq!(interop.orders(), 1, "{text}");
}

/// A configured profile the CA does not offer is an error at the first order.
#[test]
fn a_profile_the_ca_does_not_offer_is_an_error() {
    let interop = Interop::start();
    interop.write_config(&[("web", Proof::Http)], "profile = \"shortlived\"");
    let run = interop.run(&["renew"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.all()
            .contains("profile = \"shortlived\" is set, but the CA at"),
        "{run}"
    );
    assert!(run.all().contains("offers no profiles"), "{run}");
    assert_eq!(interop.orders(), 0, "{run}");
}

// ---------------------------------------------------------------------------------------------
// Error paths a healthy CA does not produce: the fault proxy in front of Pebble.

fn pebble_behind_proxy() -> (Setup, FaultProxy) {
    let mut setup = Setup::with(PebbleOptions::default());
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new("shop")]);
    (setup, proxy)
}

fn account_files(setup: &Setup) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(setup.state_dir().join("accounts"))
        .map(|entries| {
            entries
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A 503 to the deactivation: the command fails, names the status, moves nothing, and the
/// account still works.
#[test]
fn a_503_on_deactivate_moves_nothing_and_exits_non_zero() {
    let (setup, proxy) = pebble_behind_proxy();
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{first}");
    let before = account_files(&setup);

    proxy.set_fault_on("/my-account/", Fault::Status(503));
    let run = setup.run(&["account", "deactivate"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("503 Service Unavailable"), "{run}");
    assert!(run.stderr.contains("nothing was moved"), "{run}");
    assert!(!run.stdout.contains("is deactivated"), "{run}");
    assert_eq!(account_files(&setup), before);

    proxy.clear_faults();
    let shown = setup.run(&["account", "show"]);
    assert_eq!(shown.code, 0, "{shown}");
    assert!(shown.stdout.contains("status:     valid"), "{shown}");
    let renewed = setup.run(&["renew", "--force"]);
    assert_eq!(renewed.code, 0, "{renewed}");
}

/// A 500 with `{}` (step-ca 0.19's answer after losing its database): the message names the
/// HTTP status, the failure is transient, and a lookup that finds the account valid keeps it.
#[test]
fn a_500_with_an_empty_body_names_the_status_and_keeps_a_valid_account() {
    let (setup, proxy) = pebble_behind_proxy();
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{first}");
    let before = account_files(&setup);

    proxy.set_fault_on("/order-plz", Fault::Body(500, "{}"));
    let run = setup.run(&["renew", "--force"]);
    assert_eq!(run.code, 1, "{run}");
    let text = run.all();
    assert!(text.contains("500 Internal Server Error"), "{text}");
    assert!(text.contains("no problem detail"), "{text}");
    assert!(!text.contains("(no problem type)"), "{text}");
    assert_eq!(account_files(&setup), before, "{text}");
    // Transient: recorded so, for a retry with backoff (not days of a permanent failure).
    let history: Value = serde_json::from_slice(
        &fs::read(setup.state_dir().join("state").join("shop.json")).expect("history"),
    )
    .expect("history JSON");
    assert_eq!(history["failure_kind"], "transient", "{history}");
}

/// Deactivates the account of `setup` "elsewhere": a second state dir with a copy of its
/// credentials runs `account deactivate`, so the first evercert does not know.
fn deactivate_elsewhere(setup: &Setup) {
    let accounts = setup.state_dir().join("accounts");
    let account = account_files(setup).pop().expect("an account");

    // Elsewhere: a second state dir with a copy of the credentials deactivates the account.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let copy = elsewhere.path().join("accounts").join(&account);
    fs::create_dir_all(&copy).expect("create the copy");
    for file in ["credentials.json", "account.json"] {
        fs::copy(accounts.join(&account).join(file), copy.join(file)).expect("copy");
    }
    let config = fs::read_to_string(setup.config_path()).expect("config");
    let other_config = elsewhere.path().join("evercert.toml");
    fs::write(
        &other_config,
        config.replace(
            &setup.state_dir().display().to_string(),
            &elsewhere.path().display().to_string(),
        ),
    )
    .expect("write the other config");
    let output = Command::new(env!("CARGO_BIN_EXE_evercert"))
        .env_remove("EVERCERT_CONFIG")
        .arg("-c")
        .arg(&other_config)
        .args(["account", "deactivate"])
        .output()
        .expect("run evercert");
    let elsewhere_run = Run::from_output(&output);
    assert_eq!(elsewhere_run.code, 0, "{elsewhere_run}");
}

/// An account deactivated elsewhere, with `evercert run`: the agent registers a new
/// account once, renews, and sends an `account_registered` alert naming the CA, the old
/// account and where its credentials went.
#[test]
fn the_agent_alerts_when_it_registers_a_new_account() {
    let (mut setup, proxy) = pebble_behind_proxy();
    let alerts_log = setup.path().join("alerts.jsonl");
    setup.tail = format!(
        "[alerts]\ncommand = \"printf '%s\\\\n' \\\"$(cat)\\\" >> {}\"\n",
        alerts_log.display()
    );
    setup.write_config(&[CertSpec::new("shop")]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{first}");
    let old_account = account_files(&setup).pop().expect("an account");
    deactivate_elsewhere(&setup);
    let planted = setup.plant("shop", 20).serial_hex;

    let agent = crate::agent::Running::start(&setup);
    // The first attempt must succeed: after a failed one the agent waits its backoff (5 min
    // at least). 0.7-4 s here, 14 s at load 20.
    let limit = Duration::from_secs(60);
    let started = Instant::now();
    loop {
        let alerts = fs::read_to_string(&alerts_log).unwrap_or_default();
        let renewed = crate::agent::serial_of(&setup.cert_path("shop"))
            .is_some_and(|serial| serial != planted);
        if renewed && alerts.contains("account_registered") {
            crate::support::note_wait("renewal with a new account", started.elapsed(), limit);
            break;
        }
        assert!(
            started.elapsed() < limit,
            "no renewal with a new account and its alert:\n{alerts}\n{}\n{}",
            agent.log(),
            proxy.describe()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let alerts = fs::read_to_string(&alerts_log).unwrap_or_default();
    let registered: Vec<Value> = alerts
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|alert| alert["event"] == "account_registered")
        .collect();
    assert_eq!(registered.len(), 1, "{alerts}");
    let message = registered[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!(
            "the CA at {} no longer knew the account",
            proxy.directory_url()
        )),
        "{message}"
    );
    assert!(message.contains(".gone-"), "{message}");
    // One host: the new account is the one in use from now on (a fleet says who registered
    // it and that the other hosts take it at their next run: fleet.rs).
    assert!(
        message.contains("evercert uses the new account from now on"),
        "{message}"
    );
    assert_eq!(registered[0]["name"], "shop");
    let dirs = account_files(&setup);
    assert_eq!(dirs.len(), 2, "one new account: {dirs:?}");
    assert!(
        dirs.iter()
            .any(|dir| dir.starts_with(&old_account) && dir.contains(".gone-")),
        "{dirs:?}"
    );
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

/// An account deactivated elsewhere (with a copy of its key), and a CA that then answers the
/// order with 500 `{}`: the lookup finds the account gone, evercert registers a new one once,
/// and the renewal succeeds.
#[test]
fn an_account_deactivated_elsewhere_is_registered_again() {
    let (setup, proxy) = pebble_behind_proxy();
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{first}");
    deactivate_elsewhere(&setup);

    let shown = setup.run(&["account", "show"]);
    assert_eq!(shown.code, 1, "{shown}");
    assert!(!shown.stdout.contains("status:     valid"), "{shown}");

    proxy.set_fault_on("/order-plz", Fault::fail_first(1, Fault::Body(500, "{}")));
    let run = setup.run(&["renew", "--force"]);
    assert_eq!(run.code, 0, "{run}");
    let dirs = account_files(&setup);
    assert_eq!(dirs.len(), 2, "one new account: {dirs:?}\n{run}");
    assert!(dirs.iter().any(|dir| dir.contains(".gone-")), "{dirs:?}");
    let shown = setup.run(&["account", "show"]);
    assert_eq!(shown.code, 0, "{shown}");
}

/// The agent replaces a certificate `evercert revoke` revoked, without `--force`: status
/// says it is due (reason `revoked`), never `ok`, until the replacement is live.
#[test]
fn the_agent_replaces_a_certificate_evercert_revoked() {
    let setup = Setup::with(PebbleOptions::default());
    setup.write_config(&[CertSpec::new("shop")]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{first}");
    let revoked = crate::agent::serial_of(&setup.cert_path("shop")).expect("a serial");

    let run = setup.run(&["revoke", "shop", "--reason", "keyCompromise"]);
    assert_eq!(run.code, 0, "{run}");
    let status = setup.run(&["status", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&status.stdout).expect("status --json");
    let shop = entry(&entries, "shop");
    assert_eq!(shop["state"], "due", "{shop}");
    assert_eq!(shop["renew_reason"], "revoked", "{shop}");

    let agent = crate::agent::Running::start(&setup);
    let deadline = Instant::now() + Duration::from_secs(60);
    while crate::agent::serial_of(&setup.cert_path("shop")).is_none_or(|serial| serial == revoked) {
        assert!(
            Instant::now() < deadline,
            "the agent did not replace the revoked certificate:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = setup.run(&["status", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&status.stdout).expect("status --json");
    let shop = entry(&entries, "shop");
    assert_eq!(shop["state"], "ok", "{shop}");
    assert_ne!(shop["renew_reason"], "revoked", "{shop}");
    // Replaced once: the agent does not keep ordering for the old revocation.
    let replacement = crate::agent::serial_of(&setup.cert_path("shop"));
    std::thread::sleep(Duration::from_secs(2));
    let log = agent.log();
    assert_eq!(log.matches("shop: ordering").count(), 1, "{log}");
    assert_eq!(
        crate::agent::serial_of(&setup.cert_path("shop")),
        replacement
    );
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

/// `config check` asks the CA about a configured `profile` (and about nothing else): Pebble
/// 2.4 offers no profiles, so it warns with the CA's URL and the fix; exit 0, the
/// configuration itself is valid. A CA it cannot reach is a warning too.
#[test]
fn config_check_warns_when_the_ca_does_not_offer_the_profile() {
    let (mut setup, proxy) = pebble_behind_proxy();
    let quiet = setup.run(&["config", "check"]);
    assert_eq!(quiet.code, 0, "{quiet}");
    assert_eq!(
        proxy.count(proxy.directory_path()),
        0,
        "{}",
        proxy.describe()
    );

    setup.acme_extra = "profile = \"shortlived\"\n".into();
    setup.write_config(&[CertSpec::new("shop")]);
    let run = setup.run(&["config", "check"]);
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "[acme] profile = \"shortlived\" is set, but the CA at {} offers no profiles; remove `profile` or set one the CA offers",
            proxy.directory_url()
        )),
        "{run}"
    );
    assert!(
        run.stderr
            .contains(&setup.config_path().display().to_string()),
        "{run}"
    );
    assert_eq!(
        proxy.count(proxy.directory_path()),
        1,
        "{}",
        proxy.describe()
    );

    proxy.set_fault_on(proxy.directory_path(), Fault::Status(503));
    let down = setup.run(&["config", "check"]);
    assert_eq!(down.code, 0, "{down}");
    assert!(
        down.stderr.contains(&format!(
            "cannot ask the CA at {} whether it offers [acme] profile = \"shortlived\"",
            proxy.directory_url()
        )) && down.stderr.contains("503"),
        "{down}"
    );
}
