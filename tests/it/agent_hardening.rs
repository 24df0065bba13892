//! The agent never waits on one slow thing: a CA that stalls holds neither READY=1, nor the
//! alert for an expired monitored certificate, nor SIGTERM; an alert command that hangs does
//! not delay the other alerts; a SIGHUP'd configuration that fails the permission checks is
//! refused like an invalid one.
//!
//! The stalling CA is the fault proxy in front of Pebble (`support::faultproxy`): Pebble
//! itself always answers.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::agent::{Running, plant, serial_of, wait_for};
use crate::support::certs::{self, KeyType};
use crate::support::faultproxy::{Fault, FaultProxy};
use crate::support::setup::{CertSpec, Setup, toml_string};

/// Messages on a NOTIFY_SOCKET, with the instant each arrived.
pub(crate) struct NotifySocket {
    pub(crate) messages: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    pub(crate) fn bind(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::downgrade(&messages);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            // Ends when the test drops the socket's owner.
            while let Some(sink) = sink.upgrade() {
                if let Ok(len) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
                    sink.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        Self { messages }
    }

    /// When the first message containing `needle` arrived.
    pub(crate) fn first(&self, needle: &str) -> Option<Instant> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .find(|(_, text)| text.contains(needle))
            .map(|(at, _)| *at)
    }
}

fn plant_monitor(path: &Path, days_left: i64) {
    let (not_before, not_after) = certs::days_left(days_left);
    certs::leaf(
        &["partner.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(path);
}

/// The alert command used below: appends each alert's JSON as one line to `log`.
fn appending_command(log: &Path) -> String {
    // One write per alert: `cat >> log; echo >> log` interleaves when two alerts go out at once.
    format!("printf '%s\\n' \"$(cat)\" >> {log}", log = log.display())
}

#[test]
fn a_stalled_ca_delays_neither_ready_nor_an_expired_monitor_alert_nor_sigterm() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    // Every request to the CA is accepted and never answered.
    proxy.set_fault(Fault::Stall);
    setup.directory_override = Some(proxy.directory_url());
    let alerts_log = setup.path().join("alerts.jsonl");
    let partner = setup.path().join("partner.pem");
    plant_monitor(&partner, -2);
    setup.tail = format!(
        "[alerts]\ncommand = {}\n\n[[monitor]]\nname = \"partner\"\npath = \"{}\"\n",
        toml_string(&appending_command(&alerts_log)),
        partner.display()
    );
    setup.write_config(&[CertSpec::new("shop")]);
    let planted = plant(&setup, "shop", 5);
    let socket_path = setup.path().join("notify.sock");
    let notify = NotifySocket::bind(&socket_path);

    let mut command = setup.command(&["run"]);
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000")
        .env("WATCHDOG_PID", "");
    let started = Instant::now();
    let agent = Running::spawn(command);
    let alerts = || std::fs::read_to_string(&alerts_log).unwrap_or_default();
    wait_for(Duration::from_secs(30), "the expired alert", || {
        alerts().contains("\"event\":\"expired\"")
    });
    let alerted = started.elapsed();
    let ready = notify
        .first("READY=1")
        .map(|at| at - started)
        .unwrap_or_else(|| panic!("no READY=1; agent log:\n{}", agent.log()));
    // The CA was asked (the renewal is under way) and has not answered.
    wait_for(Duration::from_secs(10), "the agent to reach the CA", || {
        proxy.count("") >= 1
    });
    assert!(agent.log().contains("renewing shop"), "{}", agent.log());
    assert_eq!(
        serial_of(&setup.cert_path("shop")).as_deref(),
        Some(planted.as_str())
    );
    // Fed while the renewal hangs: a few seconds of WATCHDOG=1 after READY.
    std::thread::sleep(Duration::from_secs(3));
    let pets = notify
        .messages
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, text)| text.contains("WATCHDOG=1"))
        .count();
    assert!(pets >= 2, "{pets} WATCHDOG=1 in 3 s");

    let log = agent.log.clone();
    let (code, took) = agent.stop();
    eprintln!(
        "stalled CA: READY=1 after {ready:?}, expired-monitor alert after {alerted:?}, SIGTERM mid-renewal took {took:?}"
    );
    // Generous bounds for a loaded machine; the figures are in docs/reliability.md.
    assert!(
        ready < Duration::from_secs(10),
        "READY=1 after {ready:?}; {}",
        log.lock().unwrap()
    );
    assert!(
        alerted < Duration::from_secs(20),
        "alerted after {alerted:?}; {}",
        log.lock().unwrap()
    );
    assert_eq!(code, 0);
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?}; {}",
        log.lock().unwrap()
    );
}

#[test]
fn a_hung_alert_command_does_not_delay_the_other_alerts() {
    let mut setup = Setup::new();
    let alerts_log = setup.path().join("alerts.jsonl");
    let (slow, fast) = (setup.path().join("slow.pem"), setup.path().join("fast.pem"));
    plant_monitor(&slow, -1);
    plant_monitor(&fast, -1);
    // The alert for `slow` hangs (well within the command's timeout); the others are written
    // at once. `slow` comes first in the configuration, so it is decided first.
    let command = format!(
        "json=$(cat); case \"$json\" in *'\"name\":\"slow\"'*) sleep 60;; esac; printf '%s\\n' \"$json\" >> {}",
        alerts_log.display()
    );
    setup.tail = format!(
        "[alerts]\ncommand = {}\ntimeout = \"2m\"\n\n[[monitor]]\nname = \"slow\"\npath = \"{}\"\n\n[[monitor]]\nname = \"fast\"\npath = \"{}\"\n",
        toml_string(&command),
        slow.display(),
        fast.display()
    );
    setup.write_config(&[]);
    let started = Instant::now();
    let agent = Running::start(&setup);
    let alerts = || std::fs::read_to_string(&alerts_log).unwrap_or_default();
    wait_for(Duration::from_secs(20), "the alert for fast", || {
        alerts().contains("\"name\":\"fast\"")
    });
    let took = started.elapsed();
    eprintln!("the other alert arrived {took:?} after start, beside a hung one");
    assert!(!alerts().contains("\"name\":\"slow\""), "{}", alerts());
    assert!(took < Duration::from_secs(20));
    let (code, stopped) = agent.stop();
    assert_eq!(code, 0);
    // The hung delivery does not hold SIGTERM either.
    assert!(stopped < Duration::from_secs(5), "{stopped:?}");
}

#[test]
fn sighup_refuses_a_configuration_that_fails_the_permission_checks() {
    let mut setup = Setup::new();
    let partner = setup.path().join("partner.pem");
    plant_monitor(&partner, 20);
    setup.tail = format!(
        "[[monitor]]\nname = \"partner\"\npath = \"{}\"\n",
        partner.display()
    );
    setup.write_config(&[]);
    let agent = Running::start(&setup);
    // The warning for the monitored certificate: the first scan is done, SIGHUP handled.
    wait_for(Duration::from_secs(10), "the first scan", || {
        agent.log().contains("partner.pem expires")
    });
    // Anyone may now write the configuration (and so choose the hooks evercert runs as root).
    std::fs::set_permissions(setup.config_path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    agent.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the refusal", || {
        agent
            .log()
            .contains("the new configuration fails the permission checks; keeping the old one")
    });
    assert!(
        agent
            .log()
            .contains(&format!("chmod go-w {}", setup.config_path().display())),
        "{}",
        agent.log()
    );
    assert!(
        !agent.log().contains("configuration reloaded"),
        "{}",
        agent.log()
    );
    // Fixed: the next SIGHUP is accepted.
    std::fs::set_permissions(setup.config_path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    agent.signal(rustix::process::Signal::HUP);
    wait_for(Duration::from_secs(10), "the reload", || {
        agent.log().contains("configuration reloaded")
    });
    let (code, _) = agent.stop();
    assert_eq!(code, 0);
}

/// Processes whose command line is exactly `words` (space-separated).
fn processes_running(words: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                String::from_utf8_lossy(&cmdline).replace('\0', " ").trim() == words
            })
        })
        .collect()
}

#[test]
fn sigterm_during_a_hung_reload_hook_ends_the_agent_and_the_hook() {
    let setup = Setup::new();
    let marker = setup.path().join("hook-started");
    // A duration no other process uses, to find the hook's child afterwards.
    let sleeper = "sleep 7013";
    let reload = format!("touch {}; {sleeper}", marker.display());
    setup.write_config(&[CertSpec::new("shop")
        .reload(&reload)
        .extra("reload_timeout = \"30m\"")]);
    plant(&setup, "shop", 5);
    let agent = Running::start(&setup);
    wait_for(Duration::from_secs(30), "the reload hook to start", || {
        marker.exists()
    });
    // The shell touches the marker before it starts `sleep`: wait for the child as well.
    wait_for(
        Duration::from_secs(10),
        "the reload hook's child to start",
        || !processes_running(sleeper).is_empty(),
    );
    let log = agent.log.clone();
    let (code, took) = agent.stop();
    eprintln!("SIGTERM during a hung reload hook took {took:?}");
    assert_eq!(code, 0);
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM took {took:?}; {}",
        log.lock().unwrap()
    );
    // The hook's whole process group went with it.
    wait_for(
        Duration::from_secs(5),
        "the hook's child to be gone",
        || processes_running(sleeper).is_empty(),
    );
}
