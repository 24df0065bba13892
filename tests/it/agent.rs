//! `evercert run`: the agent against a real Pebble — renews what is due on its own, alerts,
//! serves metrics, notices files changed on disk, reloads its config on SIGHUP, and stops
//! cleanly on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use time::Duration as TimeDuration;

use crate::support::certs::{self, KeyType};
use crate::support::setup::{CertSpec, Setup};
use crate::support::webhook::WebhookSink;

/// The support crate's agent guard, re-exported for the modules that import it from here.
pub(crate) use crate::support::process::Running;

/// The support crate's, re-exported for the modules that import it from here.
pub(crate) use crate::support::wait_for;

pub(crate) fn serial_of(path: &Path) -> Option<String> {
    let pem = std::fs::read(path).ok()?;
    let der = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(
        evercert::inventory::hex(cert.raw_serial())
            .trim_start_matches("00")
            .to_owned(),
    )
}

use rustls_pki_types::pem::PemObject as _;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over plain HTTP; empty when nothing listens yet.
pub(crate) fn http_get(port: u16, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

/// Plants a 90-day certificate with `days` left at the configured paths (plain files).
pub(crate) fn plant(setup: &Setup, name: &str, days: i64) -> String {
    let (not_before, not_after) = certs::validity(TimeDuration::days(90), TimeDuration::days(days));
    let leaf = certs::TestCa::new().leaf(
        &[&format!("{name}.example.test")],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    std::fs::create_dir_all(setup.cert_path(name).parent().unwrap()).unwrap();
    leaf.write_fullchain(&setup.cert_path(name));
    leaf.write_key(&setup.key_path(name));
    leaf.serial_hex.clone()
}

#[test]
fn agent_renews_a_due_certificate_alerts_serves_metrics_and_stops_on_sigterm() {
    let mut setup = Setup::new();
    let metrics_port = free_port();
    let alerts_log = setup.path().join("alerts.jsonl");
    setup.tail = format!(
        "[alerts]\ncommand = \"printf '%s\\\\n' \\\"$(cat)\\\" >> {log}\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        log = alerts_log.display()
    );
    setup.write_config(&[CertSpec::new("shop"), CertSpec::new("fresh")]);
    let planted = plant(&setup, "shop", 5);
    let fresh = plant(&setup, "fresh", 80);

    let agent = Running::start(&setup);
    wait_for(Duration::from_secs(20), "the agent to renew shop", || {
        serial_of(&setup.cert_path("shop")).is_some_and(|serial| serial != planted)
    });
    // The fresh one is not touched.
    assert_eq!(
        serial_of(&setup.cert_path("fresh")).as_deref(),
        Some(fresh.as_str())
    );

    wait_for(Duration::from_secs(10), "metrics to show shop ok", || {
        http_get(metrics_port, "/metrics").contains(&format!(
            "evercert_certificate_state{{name=\"shop\",path=\"{}\",state=\"ok\"}} 1",
            setup.cert_path("shop").display()
        ))
    });
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains("evercert_renewals_total{name=\"shop\",result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(http_get(metrics_port, "/healthz").contains("ok"));

    // Renewed at once on start, so nothing was worth a page.
    assert!(
        std::fs::read_to_string(&alerts_log)
            .unwrap_or_default()
            .trim()
            .is_empty(),
        "{}",
        std::fs::read_to_string(&alerts_log).unwrap_or_default()
    );

    // Its own reads and writes do not make it loop: give it a few coalescing periods and
    // count the rescans that file events caused (the first issuance's writes: at most two).
    std::thread::sleep(Duration::from_secs(5));
    let rescans = agent.log().matches("changed on disk").count();
    assert!(
        rescans <= 2,
        "{rescans} event-driven rescans:\n{}",
        agent.log()
    );
    let log = agent.log.clone();
    let (code, took) = agent.stop();
    assert_eq!(code, 0);
    assert!(
        took < Duration::from_secs(10),
        "stopping took {took:?}; agent log:\n{}",
        log.lock().unwrap()
    );
}

#[test]
fn agent_reissues_a_deleted_certificate_and_keeps_its_config_on_a_bad_sighup() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    let agent = Running::start(&setup);
    wait_for(Duration::from_secs(20), "the first issuance", || {
        serial_of(&setup.cert_path("shop")).is_some()
    });
    let first = serial_of(&setup.cert_path("shop")).unwrap();

    // An invalid config and SIGHUP: reported, the old one kept, the agent goes on.
    let good = std::fs::read_to_string(setup.config_path()).unwrap();
    std::fs::write(setup.config_path(), format!("{good}\nbogus_key = 1\n")).unwrap();
    agent.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the invalid-config report", || {
        agent
            .log()
            .contains("the new configuration is invalid; keeping the old one")
    });
    assert!(
        agent.log().contains("unknown key `bogus_key`"),
        "{}",
        agent.log()
    );
    std::fs::write(setup.config_path(), good).unwrap();

    // Someone deletes the certificate: the agent notices and issues a new one.
    std::fs::remove_file(setup.cert_path("shop")).unwrap();
    let started = Instant::now();
    while serial_of(&setup.cert_path("shop")).is_none_or(|serial| serial == first) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no re-issuance after deletion; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

#[test]
fn agent_alerts_once_for_a_monitored_certificate_and_sees_it_replaced() {
    let mut setup = Setup::new();
    let alerts_log = setup.path().join("alerts.jsonl");
    let partner = setup.path().join("partner/bundle.pem");
    std::fs::create_dir_all(partner.parent().unwrap()).unwrap();
    let (not_before, not_after) = certs::days_left(5);
    certs::leaf(
        &["partner.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&partner);
    setup.tail = format!(
        "[alerts]\ncommand = \"printf '%s\\\\n' \\\"$(cat)\\\" >> {log}\"\n\n[[monitor]]\nname = \"partner\"\npath = \"{partner}\"\n",
        log = alerts_log.display(),
        partner = partner.display()
    );
    setup.write_config(&[]);
    let agent = Running::start(&setup);
    let alerts = || std::fs::read_to_string(&alerts_log).unwrap_or_default();
    wait_for(Duration::from_secs(10), "the critical alert", || {
        alerts().contains("\"event\":\"critical\"")
    });

    // Replaced on disk (renamed over, as a careful operator does): noticed without a
    // rescan, and the recovery is alerted.
    let (not_before, not_after) = certs::days_left(80);
    let fresh = setup.path().join("partner/.new.pem");
    certs::leaf(
        &["partner.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&fresh);
    std::fs::rename(&fresh, &partner).unwrap();
    wait_for(Duration::from_secs(10), "the recovered alert", || {
        alerts().contains("\"event\":\"recovered\"")
    });
    let events: Vec<serde_json::Value> = alerts()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["critical", "recovered"], "{}", alerts());
    assert_eq!(events[0]["name"], "partner");
    assert_eq!(events[0]["kind"], "monitored");
    assert!(events[0]["days_left"].as_f64().unwrap() <= 5.0);
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

#[test]
fn agent_speaks_the_systemd_notify_protocol() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    let socket_path = setup.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = setup
        .command(&["run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "400000")
        .env("WATCHDOG_PID", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    let started = Instant::now();
    // READY with a STATUS line once the configuration and inventory are loaded; after the
    // first issuance a STATUS with the next renewal; WATCHDOG=1 every 200 ms.
    let renewed =
        |messages: &[String]| messages.iter().any(|m| m.contains("next: shop renewal in"));
    while started.elapsed() < Duration::from_secs(20) {
        let Ok(len) = socket.recv(&mut buffer) else {
            break;
        };
        messages.push(String::from_utf8_lossy(&buffer[..len]).into_owned());
        let ready = messages.iter().any(|m| m.contains("READY=1"));
        if ready
            && renewed(&messages)
            && messages.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2
        {
            break;
        }
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let ready = messages
        .iter()
        .find(|m| m.contains("READY=1"))
        .unwrap_or_else(|| panic!("{messages:?}"));
    assert!(ready.contains("STATUS=1 certificate"), "{ready}");
    assert!(renewed(&messages), "{messages:?}");
    assert!(
        messages.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "{messages:?}"
    );
}

#[test]
fn agent_alerts_on_garbage_and_a_dead_endpoint_and_survives_a_hanging_alert_command() {
    let mut setup = Setup::new();
    let alerts_log = setup.path().join("alerts.jsonl");
    // An endpoint that answers at first and then goes away.
    let (not_before, not_after) = certs::days_left(60);
    let served = certs::leaf(
        &["api.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    let endpoint_server = certs::TlsServer::start(&served);
    let endpoint = endpoint_server.endpoint();
    // The alert command records the alert, then hangs far beyond its 1 s timeout.
    setup.tail = format!(
        "[alerts]\ncommand = \"printf '%s\\\\n' \\\"$(cat)\\\" >> {log}; sleep 60\"\ntimeout = \"1s\"\n\n[[monitor]]\nname = \"api\"\nendpoint = \"{endpoint}\"\n",
        log = alerts_log.display()
    );
    setup.write_config(&[CertSpec::new("shop"), CertSpec::new("other")]);
    let agent = Running::start(&setup);
    let alerts = || std::fs::read_to_string(&alerts_log).unwrap_or_default();
    wait_for(Duration::from_secs(20), "both certificates issued", || {
        serial_of(&setup.cert_path("shop")).is_some()
            && serial_of(&setup.cert_path("other")).is_some()
    });
    let other = serial_of(&setup.cert_path("other")).unwrap();

    // Garbage replaces the live certificate (through the symlink's target): alerted as an
    // error and re-issued; the other certificate is left alone.
    let live = std::fs::canonicalize(setup.cert_path("shop")).unwrap();
    let garbage = live.with_file_name(".garbage");
    std::fs::write(&garbage, b"this is not a certificate").unwrap();
    std::fs::remove_file(setup.cert_path("shop")).unwrap();
    std::fs::rename(&garbage, setup.cert_path("shop")).unwrap();
    let started = Instant::now();
    while !alerts().contains("\"event\":\"error\"") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no error alert; alerts:\n{}\nagent log:\n{}",
            alerts(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_for(Duration::from_secs(20), "shop re-issued", || {
        serial_of(&setup.cert_path("shop")).is_some()
    });
    assert_eq!(
        serial_of(&setup.cert_path("other")).as_deref(),
        Some(other.as_str())
    );
    // The hung alert command is given up on after its timeout, off the loop.
    wait_for(
        Duration::from_secs(10),
        "the alert command's timeout",
        || {
            agent.log().contains("alert command failed")
                && agent.log().contains("did not finish within 1 s")
        },
    );

    // The endpoint stops answering: noticed at the next scan (the file change above caused
    // some; SIGHUP forces one more), alerted as an error naming the endpoint.
    drop(endpoint_server);
    agent.signal(rustix::process::Signal::HUP);
    wait_for(
        Duration::from_secs(20),
        "the endpoint's error alert",
        || {
            alerts().lines().any(|line| {
                line.contains("\"name\":\"api\"") && line.contains("\"event\":\"error\"")
            })
        },
    );
    assert!(alerts().contains("cannot connect"), "{}", alerts());
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

/// ARI (RFC 9773) against a stand-in renewalInfo endpoint: Debian's Pebble 2.4 has none.
#[test]
fn agent_follows_the_cas_renewal_window() {
    use crate::support::ari::AriServer;
    let mut setup = Setup::new();
    let now = time::OffsetDateTime::now_utc();
    let ari = AriServer::start(
        &setup.pebble,
        setup.path(),
        now + TimeDuration::days(100),
        now + TimeDuration::days(102),
    );
    setup.directory_override = Some(ari.directory_url());
    setup.ca_bundle_override = Some(ari.ca_bundle().to_owned());
    let metrics_port = free_port();
    setup.tail = format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n");
    setup.write_config(&[CertSpec::new("shop")]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{}", first.all());
    let issued = serial_of(&setup.cert_path("shop")).unwrap();

    // A window in the future: the agent asks, publishes it, and waits.
    let agent = Running::start(&setup);
    wait_for(
        Duration::from_secs(20),
        "the ARI window in the metrics",
        || {
            http_get(metrics_port, "/metrics")
                .contains("evercert_ari_window_start_seconds{name=\"shop\"}")
        },
    );
    let metrics = http_get(metrics_port, "/metrics");
    let start = (now + TimeDuration::days(100)).unix_timestamp();
    assert!(
        metrics.contains(&format!(
            "evercert_ari_window_start_seconds{{name=\"shop\"}} {start}"
        )),
        "{metrics}"
    );
    assert!(ari.hits() >= 1);
    assert_eq!(
        serial_of(&setup.cert_path("shop")).as_deref(),
        Some(issued.as_str())
    );
    drop(agent);

    // The CA moves the window into the past (as after a revocation): renewed at once, though
    // the lifetime rule says years. The cached answer is dropped first, as if the CA's
    // Retry-After (an hour here) had passed: until then the agent does not ask again.
    // The window ends after the certificate was issued: a window that ended before would not
    // be about it, and is distrusted (`decision`).
    let not_before = evercert::inventory::read_cert_file(&setup.cert_path("shop"))
        .unwrap()
        .leaf
        .not_before;
    ari.set_window(
        not_before - TimeDuration::days(2),
        not_before + TimeDuration::SECOND,
    );
    while time::OffsetDateTime::now_utc() < not_before + TimeDuration::seconds(2) {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_file(setup.state_dir().join("ari").join("shop.json")).unwrap();
    let agent = Running::start(&setup);
    let started = Instant::now();
    while serial_of(&setup.cert_path("shop")).is_none_or(|serial| serial == issued) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not renewed; agent log:\n{}",
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        agent.log().contains("renewal window is in the past"),
        "{}",
        agent.log()
    );
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

#[test]
fn alerts_are_posted_to_the_webhook() {
    let mut setup = Setup::new();
    let webhook = WebhookSink::start();
    let partner = setup.path().join("partner.pem");
    let (not_before, not_after) = certs::days_left(20);
    certs::leaf(
        &["partner.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&partner);
    setup.tail = format!(
        "[alerts]\nwebhook = \"{}\"\n\n[[monitor]]\nname = \"partner\"\npath = \"{}\"\n",
        webhook.url("/hooks/secret-token"),
        partner.display()
    );
    setup.write_config(&[]);
    let agent = Running::start(&setup);
    wait_for(Duration::from_secs(15), "the webhook POST", || {
        !webhook.requests().is_empty()
    });
    let request = webhook.requests()[0].clone();
    assert!(
        request.starts_with("POST /hooks/secret-token HTTP/1.1"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{request}"
    );
    let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
    let alert: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(alert["event"], "warning");
    assert_eq!(alert["name"], "partner");
    assert_eq!(alert["kind"], "monitored");
    assert!(alert["host"].as_str().is_some_and(|host| !host.is_empty()));
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
    // Once per change: a single alert for the one state.
    assert_eq!(webhook.requests().len(), 1);
}
