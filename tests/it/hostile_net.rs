//! Hostile peers: a CA that stalls in the middle of a body or streams one that never ends, a
//! CA that rate-limits its directory and nonce, a webhook that answers 200 and never finishes,
//! and `check` of more endpoints than there are file descriptors. Every network read must end
//! with a clear error naming the URL, within its deadline, in bounded memory.
//!
//! Pebble cannot stall or flood, so the CA here is a stand-in (testkit/src/hostile.rs) trusted
//! through the test's `ca_bundle`; `check` probes a real TLS server on loopback.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::certs::{self, KeyType, TlsServer};
use crate::support::hostile::{Answer, HostileServer};
use crate::support::process::{Capture, Running};
use crate::support::setup::{CertSpec, Setup};
use crate::support::wait_for;

/// Well above evercert's own footprint plus one capped body (4 MiB), far below what an
/// unbounded read reaches in a second (hundreds of MiB).
const RSS_LIMIT_KIB: u64 = 200 * 1024;

/// Output lines with the time they were printed, since the start.
type Lines = Arc<Mutex<Vec<(Duration, String)>>>;

/// One run of the binary, watched: killed past a time or memory limit.
struct Watched {
    code: Option<i32>,
    elapsed: Duration,
    /// VmHWM (peak resident set) of the child, as last seen alive, in KiB.
    peak_rss_kib: u64,
    lines: Vec<(Duration, String)>,
    killed: Option<String>,
}

impl Watched {
    fn text(&self) -> String {
        self.lines
            .iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// When a line containing every one of `words` was printed first.
    fn first(&self, words: &[&str]) -> Option<Duration> {
        self.lines
            .iter()
            .find(|(_, line)| words.iter().all(|word| line.contains(word)))
            .map(|(at, _)| *at)
    }

    fn all(&self) -> String {
        format!(
            "exit {:?} after {:.1} s, peak RSS {} KiB, killed: {:?}\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            self.peak_rss_kib,
            self.killed,
            self.text()
        )
    }
}

fn collect(reader: impl Read + Send + 'static, lines: &Lines, started: Instant) {
    let lines = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            lines.lock().unwrap().push((started.elapsed(), line));
        }
    });
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs `command` to its end, or kills it after `limit` or above [`RSS_LIMIT_KIB`].
fn watch(mut command: Command, limit: Duration) -> Watched {
    let started = Instant::now();
    let mut child: Child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Lines = Arc::default();
    collect(child.stdout.take().unwrap(), &lines, started);
    collect(child.stderr.take().unwrap(), &lines, started);
    let mut peak_rss_kib = 0;
    let mut killed = None;
    let code = loop {
        if let Some(peak) = vm_hwm_kib(child.id()) {
            peak_rss_kib = peak_rss_kib.max(peak);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if peak_rss_kib > RSS_LIMIT_KIB {
            killed = Some(format!("peak RSS {peak_rss_kib} KiB"));
        } else if started.elapsed() > limit {
            killed = Some(format!("still running after {limit:?}"));
        }
        if killed.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = started.elapsed();
    // The reader threads end with the pipes.
    std::thread::sleep(Duration::from_millis(100));
    let lines = lines.lock().unwrap().clone();
    Watched {
        code,
        elapsed,
        peak_rss_kib,
        lines,
        killed,
    }
}

/// A Setup whose CA is a hostile stand-in trusted like Pebble.
fn hostile_ca() -> (Setup, HostileServer) {
    let setup = Setup::new();
    let (cert, key) = setup.pebble.mint_https_leaf();
    let ca = HostileServer::https(&cert, &key);
    (setup, ca)
}

#[test]
fn a_ca_stalling_mid_body_ends_renew_with_a_timeout_naming_the_url() {
    let (mut setup, ca) = hostile_ca();
    ca.route("POST", "/new-acct", Answer::StallMidBody { status: 201 });
    setup.directory_override = Some(ca.acme());
    setup.acme_extra = "timeout = \"5s\"\n".to_owned();
    setup.write_config(&[CertSpec::new("shop")]);

    let run = watch(setup.command(&["renew"]), Duration::from_secs(120));
    assert!(run.killed.is_none(), "{}", run.all());
    assert!(run.code.is_some_and(|code| code != 0), "{}", run.all());
    let url = ca.url("/new-acct");
    let first = run
        .first(&[&url, "did not send the whole body", "[acme] timeout"])
        .unwrap_or_else(|| panic!("no error naming {url} and the timeout:\n{}", run.all()));
    // The stall starts after the headers: the first error comes one timeout (5 s) later.
    assert!(first >= Duration::from_secs(4), "{}", run.all());
    // One-shot renew tries a transient failure three times (waits 1 s and 3 s): 3 × 5 s + 4 s.
    assert!(run.elapsed < Duration::from_secs(60), "{}", run.all());
    eprintln!(
        "FIGURE mid-body stall, [acme] timeout = 5s: first clear error after {:.1} s, renew exited after {:.1} s ({} requests)",
        first.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        ca.seen().len()
    );
}

#[test]
fn an_endless_body_is_cut_at_the_cap_with_a_clear_error_in_bounded_memory() {
    // An endless directory (200), then an endless error answer (500) to newAccount.
    for (method, path, status) in [("GET", "/dir", 200), ("POST", "/new-acct", 500)] {
        let (mut setup, ca) = hostile_ca();
        ca.route(method, path, Answer::Endless { status });
        setup.directory_override = Some(ca.acme());
        setup.write_config(&[CertSpec::new("shop")]);

        let run = watch(setup.command(&["renew"]), Duration::from_secs(120));
        assert!(run.killed.is_none(), "{method} {path}: {}", run.all());
        assert!(run.code.is_some_and(|code| code != 0), "{}", run.all());
        let url = ca.url(path);
        assert!(
            run.first(&[&url, "larger than 4 MiB"]).is_some(),
            "no error naming {url} and the cap:\n{}",
            run.all()
        );
        assert!(run.peak_rss_kib > 0, "VmHWM was never read: {}", run.all());
        eprintln!(
            "FIGURE endless {status} body on {method} {path}: peak RSS {:.1} MiB, {:.1} MiB streamed, exited after {:.1} s",
            run.peak_rss_kib as f64 / 1024.0,
            ca.streamed() as f64 / (1024.0 * 1024.0),
            run.elapsed.as_secs_f64()
        );
    }
}

#[test]
fn a_429_on_the_directory_or_the_nonce_says_rate_limited_with_the_retry_time() {
    for (method, path) in [("GET", "/dir"), ("HEAD", "/nonce")] {
        let (mut setup, ca) = hostile_ca();
        // Added before the working directory and nonce, so it wins.
        ca.route(method, path, Answer::rate_limited(3600));
        setup.directory_override = Some(ca.acme());
        setup.write_config(&[CertSpec::new("shop")]);

        let started = OffsetDateTime::now_utc();
        let run = watch(setup.command(&["renew"]), Duration::from_secs(60));
        assert!(run.killed.is_none(), "{}", run.all());
        assert!(run.code.is_some_and(|code| code != 0), "{}", run.all());
        let text = run.text();
        assert!(text.contains("rate limited"), "{method} {path}: {text}");
        assert!(text.contains(&ca.url(path)), "{method} {path}: {text}");
        assert!(!text.contains("server error"), "{method} {path}: {text}");
        let when = text
            .split(|c: char| c.is_whitespace() || matches!(c, ';' | ',' | '(' | ')'))
            .find_map(|word| OffsetDateTime::parse(word, &Rfc3339).ok())
            .unwrap_or_else(|| panic!("no retry time in: {text}"));
        let expected = started + time::Duration::seconds(3600);
        assert!(
            (when - expected).abs() < time::Duration::seconds(60),
            "retry time {when} is not about {expected}: {text}"
        );
        // Told to wait an hour: asked once, not again in this run.
        let asked = ca
            .seen()
            .iter()
            .filter(|seen| **seen == format!("{method} {path}"))
            .count();
        assert_eq!(asked, 1, "{:?}", ca.seen());
    }
}

#[test]
fn a_webhook_stalling_its_body_does_not_stop_alert_delivery_and_its_secrets_stay_out_of_the_log() {
    let mut setup = Setup::new();
    let hook = HostileServer::http();
    // The first POST is answered 200 and its body never finishes; later ones fail with 503,
    // so the agent logs a failed delivery (which must not show the credentials).
    hook.route_times("POST", "/hooks", 1, Answer::StallMidBody { status: 200 });
    hook.route(
        "POST",
        "/hooks",
        Answer::json(503, &serde_json::json!({"detail": "down"})),
    );
    let alerts_log = setup.path().join("alerts.jsonl");
    let mut monitors = String::new();
    for name in ["first", "second"] {
        let path = setup.path().join(format!("{name}.pem"));
        let (not_before, not_after) = certs::days_left(1);
        certs::leaf(
            &[&format!("{name}.example.test")],
            not_before,
            not_after,
            KeyType::EcdsaP256,
        )
        .write_fullchain(&path);
        monitors.push_str(&format!(
            "[[monitor]]\nname = \"{name}\"\npath = \"{}\"\n\n",
            path.display()
        ));
    }
    setup.tail = format!(
        "[alerts]\ncommand = \"printf '%s\\\\n' \\\"$(cat)\\\" >> {log}\"\nwebhook = \"http://alice:hunter2@127.0.0.1:{port}/hooks?token=SECRET-TOKEN\"\ntimeout = \"1s\"\n\n{monitors}",
        log = alerts_log.display(),
        port = hook.port(),
    );
    setup.write_config(&[]);
    let mut command = setup.command(&["run"]);
    command.env("EVERCERT_LOG", "info");
    let agent = Running::capture(command, Capture::Stderr);
    let alerts = || std::fs::read_to_string(&alerts_log).unwrap_or_default();
    let delivered = |name: &str| {
        alerts()
            .lines()
            .any(|line| line.contains(&format!("\"name\":\"{name}\"")))
    };
    wait_for(Duration::from_secs(30), "both alerts", || {
        delivered("first") && delivered("second")
    });
    // The second alert reached the webhook too, after the first one's body stalled.
    wait_for(
        Duration::from_secs(30),
        "the failed webhook delivery",
        || agent.log().contains("alert webhook"),
    );
    let posts = hook
        .seen()
        .iter()
        .filter(|seen| *seen == "POST /hooks")
        .count();
    assert!(posts >= 2, "{:?}\n{}", hook.seen(), agent.log());
    let log = agent.log();
    for secret in ["hunter2", "SECRET-TOKEN", "alice"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn check_of_1200_endpoints_under_1024_open_files_has_no_false_critical() {
    const ENDPOINTS: usize = 1200;
    let (not_before, not_after) = certs::days_left(60);
    let leaf = certs::leaf(&["localhost"], not_before, not_after, KeyType::EcdsaP256);
    let server = TlsServer::start(&leaf);
    let targets = vec![server.endpoint(); ENDPOINTS];
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new("prlimit");
    command
        .current_dir(dir.path())
        .env_remove("EVERCERT_CONFIG")
        .env("EVERCERT_LOG", "warn")
        .args(["--nofile=1024:1024", "--"])
        .arg(env!("CARGO_BIN_EXE_evercert"))
        .arg("check")
        .args(&targets);
    let run = watch(command, Duration::from_secs(120));
    assert!(run.killed.is_none(), "{}", run.all());
    let text = run.text();
    let ok = run
        .lines
        .iter()
        // Not the plugin summary line, `OK - 1200 targets: …`.
        .filter(|(_, line)| line.starts_with("OK ") && !line.starts_with("OK - "))
        .count();
    let failed: Vec<&str> = run
        .lines
        .iter()
        .map(|(_, line)| line.as_str())
        .filter(|line| !line.starts_with("OK "))
        .take(5)
        .collect();
    assert_eq!(
        ok,
        ENDPOINTS,
        "not OK: {failed:#?}\n(of {} lines)",
        text.lines().count()
    );
    assert_eq!(run.code, Some(0), "{failed:#?}");
    eprintln!(
        "FIGURE check of {ENDPOINTS} endpoints under 1024 open files: {:.1} s",
        run.elapsed.as_secs_f64()
    );
}
