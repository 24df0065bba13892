//! Fleet mode in one command: three web hosts share one certificate through etcd.
//!
//! Starts a real 3-member etcd cluster and Pebble on loopback, and three hosts (web-1, web-2,
//! web-3), each with its own state_dir, certificate directory, configuration and a stand-in
//! web server serving its files. Every host has the same expiring certificate (5 days left,
//! from a throwaway "old CA"). The three agents (`evercert run`, the real binary) start at
//! once: one takes the fleet's lock and orders, the others install its version from etcd.
//! The demo waits until every web server serves the same new serial, shows `cluster status`,
//! and counts the orders the CA finalized (exactly one). Everything is removed at the end.
//! Run it with `bash scripts/fleet-demo.sh`.

#![allow(clippy::unwrap_used)]

// Shared with the fleet benchmark; each uses part of it.
#[allow(dead_code, unreachable_pub)]
#[path = "common/fleet_bed.rs"]
mod fleet_bed;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use evercert_testkit::evercert_binary;
use evercert_testkit::{certs, webserver};
use fleet_bed::{FleetBed, HostCert, served_serial};

const HOSTS: [&str; 3] = ["web-1", "web-2", "web-3"];
/// Generous for a loaded 2-core machine; on a quiet one it takes a few seconds.
const DEADLINE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let binary = evercert_binary();
    println!("== evercert fleet demo: three hosts, one etcd, one certificate, one order ==");
    let bed = FleetBed::start(&binary);
    println!("working in {}", bed.path().display());
    println!("etcd (3 members): {}", bed.etcd.endpoints().join(", "));
    println!(
        "Pebble: {} (behind a proxy that counts orders)",
        bed.pebble.directory_url()
    );

    let old_ca = certs::TestCa::new();
    let mut servers = Vec::new();
    let mut planted = Vec::new();
    for host in HOSTS {
        std::fs::create_dir_all(bed.host_dir(host)).unwrap();
        planted.push(bed.plant(&old_ca, host, "shop", 5));
        let server = webserver::FileTlsServer::start(
            &bed.cert_path(host, "shop"),
            &bed.key_path(host, "shop"),
            webserver::Reload::OnEveryHandshake,
        );
        bed.write_config(
            host,
            &[HostCert {
                name: "shop".into(),
                verify: Some(server.endpoint()),
                reload: format!("echo '{host}: (reload hook) the web server would reload now'"),
            }],
        );
        println!(
            "{host}: serves shop.example.test on {} (serial {}, 5 days left); config {}",
            server.endpoint(),
            planted.last().unwrap(),
            bed.config_path(host).display()
        );
        servers.push(server);
    }

    println!("\n$ evercert config check   (web-1)");
    let check = bed.command("web-1", &["config", "check"]).status().unwrap();
    if !check.success() {
        eprintln!("demo FAILED: config check");
        return ExitCode::FAILURE;
    }

    println!("\nstarting the three agents at once (evercert run; logs in HOST/agent.log) ...");
    let started = Instant::now();
    let mut agents: Vec<_> = HOSTS.iter().map(|host| bed.spawn_agent(host)).collect();

    let endpoints: Vec<String> = servers
        .iter()
        .map(webserver::FileTlsServer::endpoint)
        .collect();
    let mut served: Vec<Option<String>> = vec![None; HOSTS.len()];
    let converged = loop {
        for (index, endpoint) in endpoints.iter().enumerate() {
            served[index] = served_serial(&binary, endpoint);
        }
        let first = served[0].clone();
        if first
            .as_ref()
            .is_some_and(|serial| !planted.contains(serial))
            && served.iter().all(|serial| *serial == first)
        {
            break true;
        }
        if started.elapsed() > DEADLINE {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed();
    let mut failures = Vec::new();
    if converged {
        println!(
            "\nevery host serves the new certificate {:.1} s after the agents started:",
            elapsed.as_secs_f64()
        );
    } else {
        failures.push(format!(
            "the hosts did not all serve one new serial within {DEADLINE:?}"
        ));
        println!("\nafter {DEADLINE:?}:");
    }
    for ((host, endpoint), serial) in HOSTS.iter().zip(&endpoints).zip(&served) {
        println!(
            "  {host} ({endpoint}): serial {}",
            serial.as_deref().unwrap_or("(no answer)")
        );
    }

    // Give the other hosts' reports a moment to reach etcd (they are written after verify).
    let report_deadline = Instant::now() + Duration::from_secs(30);
    while bed.applied().iter().filter(|(_, _, _, ok)| *ok).count() < HOSTS.len()
        && Instant::now() < report_deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\n$ evercert cluster status   (web-2)");
    let _ = bed.command("web-2", &["cluster", "status"]).status();

    let orders = bed.orders();
    println!("\norders the CA finalized: {orders}");
    if orders != 1 {
        failures.push(format!(
            "expected exactly one order, the CA finalized {orders}"
        ));
    }
    for host in HOSTS {
        let log = std::fs::read_to_string(bed.host_dir(host).join("agent.log")).unwrap_or_default();
        if log.contains("published generation") {
            println!("{host} held the lock, ordered and published the new version");
        }
    }

    for agent in &mut agents {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(agent.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
    }
    for agent in &mut agents {
        let _ = agent.wait();
    }
    drop(servers);
    if !failures.is_empty() {
        for host in HOSTS {
            let log =
                std::fs::read_to_string(bed.host_dir(host).join("agent.log")).unwrap_or_default();
            eprintln!("--- {host}/agent.log (last lines)");
            for line in log
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                eprintln!("{line}");
            }
        }
    }
    // EVERCERT_DEMO_KEEP=1 keeps the hosts' configurations, logs and alerts to look at.
    if std::env::var_os("EVERCERT_DEMO_KEEP").is_some() {
        println!("kept {}", bed.keep().display());
    }
    if !failures.is_empty() {
        eprintln!("\nfleet demo FAILED: {}", failures.join("; "));
        return ExitCode::FAILURE;
    }
    println!(
        "\nfleet demo finished: one order, every host installed, reloaded, verified and serves the same new certificate"
    );
    ExitCode::SUCCESS
}
