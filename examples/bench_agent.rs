//! Benchmark of `evercert run` with many managed certificates (issue 4): time to READY,
//! idle memory and CPU, and how long a change on disk takes to start a renewal.
//!
//! `cargo build --release --bin evercert --example bench_agent && target/release/examples/bench_agent [N] [IDLE_SECONDS]`
//! Prints a markdown table; docs/benchmarks.md has the figures.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evercert_testkit::{certs, evercert_binary, pebble};

/// (resident KiB, CPU seconds) of a process, from /proc.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is 14th, stime 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux (the kernel ABI for /proc tick counts).
    let hz = 100.0;
    (rss, ticks / hz)
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let idle_seconds: u64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(60);
    pebble::require_pebble();
    let pebble = pebble::Pebble::start_with(pebble::PebbleOptions {
        nonce_reject_percent: 0,
        ..pebble::PebbleOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let ca = certs::TestCa::new();
    let (not_before, not_after) = certs::days_left(80);
    let mut config = format!(
        "state_dir = \"{}/state\"\n[acme]\ndirectory = \"{}\"\nca_bundle = \"{}\"\n",
        work.path().display(),
        pebble.directory_url(),
        pebble.ca_bundle_path().display()
    );
    let started = Instant::now();
    for index in 0..count {
        let name = format!("site{index}");
        let domain = format!("{name}.example.test");
        let dir = work.path().join("tls").join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let leaf = ca.leaf(&[&domain], not_before, not_after, certs::KeyType::EcdsaP256);
        leaf.write_fullchain(&dir.join("fullchain.pem"));
        leaf.write_key(&dir.join("privkey.pem"));
        let _ = write!(
            config,
            "[[certificate]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\ncert_path = \"{dir}/fullchain.pem\"\nkey_path = \"{dir}/privkey.pem\"\n[certificate.http01]\nlisten = \"127.0.0.1:{port}\"\n",
            dir = dir.display(),
            port = pebble.http_port()
        );
    }
    let config_path = work.path().join("evercert.toml");
    std::fs::write(&config_path, config).unwrap();
    eprintln!(
        "minted {count} certificates in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let socket_path = work.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let launched = Instant::now();
    let mut child = Command::new(evercert_binary())
        .args(["-c", config_path.to_str().unwrap(), "run"])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("EVERCERT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push((Instant::now(), line));
        }
    });
    let mut buffer = [0u8; 4096];
    let ready = loop {
        let len = socket.recv(&mut buffer).unwrap();
        if String::from_utf8_lossy(&buffer[..len]).contains("READY=1") {
            break launched.elapsed();
        }
    };
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(3));
    let (rss_before, cpu_before) = usage(pid);
    std::thread::sleep(Duration::from_secs(idle_seconds));
    let (rss_after, cpu_after) = usage(pid);

    // A change on disk: delete one certificate, then replace another with garbage.
    let mut latencies = Vec::new();
    for (round, name) in ["site7", "site42", "site99"].into_iter().enumerate() {
        let path = work.path().join("tls").join(name).join("fullchain.pem");
        let changed = Instant::now();
        if round == 1 {
            std::fs::write(&path, b"garbage").unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
        let needle = format!("renewing {name}");
        let started = loop {
            if let Some((at, _)) = log
                .lock()
                .unwrap()
                .iter()
                .find(|(at, line)| *at >= changed && line.contains(&needle))
            {
                break *at;
            }
            assert!(
                changed.elapsed() < Duration::from_secs(60),
                "no renewal of {name}"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        latencies.push(started - changed);
        std::thread::sleep(Duration::from_secs(3));
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "| `evercert run`, {count} managed certificates | figure |\n|---|---|"
    );
    let _ = writeln!(
        out,
        "| start to READY=1 (first inventory, {count} files + keys) | {:.0} ms |",
        ready.as_secs_f64() * 1000.0
    );
    let _ = writeln!(
        out,
        "| idle RSS | {:.1} MiB (after {idle_seconds} s: {:.1} MiB) |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "| CPU over {idle_seconds} s idle | {:.3} s |",
        cpu_after - cpu_before
    );
    for (label, latency) in ["deleted", "replaced by garbage", "deleted"]
        .iter()
        .zip(&latencies)
    {
        let _ = writeln!(
            out,
            "| file {label} → renewal starts | {:.2} s |",
            latency.as_secs_f64()
        );
    }
    print!("{out}");
}
