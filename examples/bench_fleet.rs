//! Fleet benchmark (issue 11): three hosts × N due certificates through one etcd.
//!
//! Starts a real 3-member etcd and Pebble (5 % badNonce on, behind a pass-through proxy that
//! counts finalized orders) on loopback, plants the same N certificates with 20 days left on
//! three hosts (own state_dir and certificate directory each), starts the three agents
//! (`evercert run`, the release binary) at the same instant and measures:
//! - orders the CA finalized (must be exactly N);
//! - the time until every host has reported every new certificate installed and reloaded at
//!   `P/applied/NAME/HOST` (`ok: true`), and until the last order was finalized;
//! - after that, on disk: every host has the same new serial for each certificate;
//! - etcd keys and bytes (keys + values) under the fleet's prefix, and the members' database
//!   size;
//! - each agent's peak RSS (VmHWM) and CPU time (utime + stime) from /proc.
//!
//! No `verify` endpoints: 300 stand-in TLS servers would cost the 2-core machine more than
//! the agents; the fleet demo (`scripts/fleet-demo.sh`) shows verification on every host.
//!
//! `cargo build --release --bin evercert --example bench_fleet && target/release/examples/bench_fleet [N]`
//! (or the fleet section of `scripts/bench.sh`). Prints a markdown table; figures in
//! docs/benchmarks.md.

#![allow(clippy::unwrap_used)]

// Shared with the fleet demo; each uses part of it.
#[allow(dead_code, unreachable_pub)]
#[path = "common/fleet_bed.rs"]
mod fleet_bed;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::{Child, ExitCode};
use std::time::{Duration, Instant};

use evercert_testkit::certs;
use evercert_testkit::evercert_binary;
use fleet_bed::{FleetBed, HostCert, serial_of};

const HOSTS: [&str; 3] = ["web-1", "web-2", "web-3"];
/// The whole run must end within this; a stuck fleet fails the benchmark, it does not hang.
const DEADLINE: Duration = Duration::from_secs(900);
const POLL: Duration = Duration::from_millis(250);

/// Peak resident set (VmHWM, KiB) and CPU seconds (utime + stime) of a live process.
fn usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let peak = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name (in parentheses): utime is the 14th field, stime the 15th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux (the kernel ABI for /proc tick counts).
    Some((peak, ticks / 100.0))
}

/// The members' database size in bytes, from `etcdctl endpoint status` (largest member).
fn db_size(bed: &FleetBed) -> u64 {
    let json = bed
        .etcd
        .etcdctl(&["endpoint", "status", "--write-out=json"]);
    let statuses: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    statuses
        .as_array()
        .map(|members| {
            members
                .iter()
                .filter_map(|member| member["Status"]["dbSize"].as_u64())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn stop(agents: &mut [Child]) {
    for agent in agents.iter() {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(agent.id() as i32).unwrap(),
            rustix::process::Signal::TERM,
        );
    }
    for agent in agents.iter_mut() {
        let _ = agent.wait();
    }
}

fn main() -> ExitCode {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let binary = evercert_binary();
    let mut bed = FleetBed::start(&binary);
    // Due (20 days left of 90, under the 1/3 rule), not yet worth an alert: a fleet's usual
    // renewal, without 300 alert commands in the figures.
    bed.extra = "[renewal]\nwarn_before = \"10d\"\ncritical_before = \"3d\"\n\n".into();
    eprintln!(
        "fleet bench: {} hosts × {count} certificates in {}",
        HOSTS.len(),
        bed.path().display()
    );

    let names: Vec<String> = (0..count).map(|index| format!("site{index:03}")).collect();
    let old_ca = certs::TestCa::new();
    let mut planted: BTreeMap<(String, String), String> = BTreeMap::new();
    for host in HOSTS {
        let certs: Vec<HostCert> = names
            .iter()
            .map(|name| HostCert {
                name: name.clone(),
                verify: None,
                reload: "true".into(),
            })
            .collect();
        bed.write_config(host, &certs);
        for name in &names {
            let serial = bed.plant(&old_ca, host, name, 20);
            planted.insert((host.to_owned(), name.clone()), serial);
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let started = Instant::now();
    let mut agents: Vec<Child> = HOSTS.iter().map(|host| bed.spawn_agent(host)).collect();
    let expected = count * HOSTS.len();
    let mut all_ordered: Option<Duration> = None;
    let mut peaks = vec![(0u64, 0.0f64); HOSTS.len()];
    let outcome = loop {
        for (index, agent) in agents.iter().enumerate() {
            if let Some(now) = usage(agent.id()) {
                peaks[index] = now;
            }
        }
        let orders = bed.orders();
        if orders >= count && all_ordered.is_none() {
            all_ordered = Some(started.elapsed());
        }
        let applied = bed.applied();
        let done = applied
            .iter()
            .filter(|(_, _, generation, ok)| *ok && *generation >= 1)
            .count();
        if done >= expected {
            break Ok(started.elapsed());
        }
        if let Some(position) = agents
            .iter_mut()
            .position(|agent| agent.try_wait().ok().flatten().is_some())
        {
            break Err(format!("the agent of {} exited", HOSTS[position]));
        }
        if started.elapsed() > DEADLINE {
            break Err(format!(
                "after {DEADLINE:?}: {done} of {expected} applied, {orders} orders"
            ));
        }
        std::thread::sleep(POLL);
    };
    // Late duplicate orders would show up here: wait a moment before counting.
    std::thread::sleep(Duration::from_secs(2));
    for (index, agent) in agents.iter().enumerate() {
        if let Some(now) = usage(agent.id()) {
            peaks[index] = now;
        }
    }
    let orders = bed.orders();
    let (keys, bytes) = bed.etcd_usage();
    let db = db_size(&bed);
    stop(&mut agents);

    let mut failures = Vec::new();
    let elapsed = match outcome {
        Ok(elapsed) => elapsed,
        Err(why) => {
            failures.push(why);
            started.elapsed()
        }
    };
    if orders != count {
        failures.push(format!("{orders} orders for {count} certificates"));
    }
    // Every host holds the same new certificate for each name, and no two names share one.
    let mut serials = BTreeSet::new();
    for name in &names {
        let on_hosts: Vec<String> = HOSTS
            .iter()
            .map(|host| serial_of(&bed.cert_path(host, name)))
            .collect();
        if on_hosts.iter().any(|serial| *serial != on_hosts[0]) {
            failures.push(format!("{name}: the hosts differ: {on_hosts:?}"));
        }
        for host in HOSTS {
            if planted[&(host.to_owned(), name.clone())] == on_hosts[0] {
                failures.push(format!("{name}: not renewed on {host}"));
            }
        }
        serials.insert(on_hosts[0].clone());
    }
    if serials.len() != count {
        failures.push(format!(
            "{} distinct serials for {count} names",
            serials.len()
        ));
    }
    let published: Vec<usize> = HOSTS
        .iter()
        .map(|host| {
            std::fs::read_to_string(bed.host_dir(host).join("agent.log"))
                .unwrap_or_default()
                .matches("published generation")
                .count()
        })
        .collect();

    let mut report = String::new();
    let _ = writeln!(
        report,
        "### Fleet: {} hosts × {count} due certificates through a 3-member etcd\n",
        HOSTS.len()
    );
    let _ = writeln!(
        report,
        "| what | figure |\n|---|---|\n| orders finalized by the CA (counted at the proxy) | {orders} (expected {count}) |"
    );
    if let Some(ordered) = all_ordered {
        let _ = writeln!(
            report,
            "| agents started → the last order finalized | {:.1} s |",
            ordered.as_secs_f64()
        );
    }
    let _ = writeln!(
        report,
        "| agents started → every host reported every new certificate installed and reloaded | {:.1} s |",
        elapsed.as_secs_f64()
    );
    let _ = writeln!(
        report,
        "| orders placed per host (who held the lock) | {} |",
        HOSTS
            .iter()
            .zip(&published)
            .map(|(host, count)| format!("{host} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        report,
        "| etcd keys under the prefix | {keys} |\n| etcd bytes under the prefix (keys + values) | {:.1} KiB |\n| etcd database size (largest member, with history) | {:.1} MiB |",
        bytes as f64 / 1024.0,
        db as f64 / (1024.0 * 1024.0)
    );
    for (host, (peak, cpu)) in HOSTS.iter().zip(&peaks) {
        let _ = writeln!(
            report,
            "| {host}: agent peak RSS (VmHWM), CPU (user+sys) | {:.1} MiB, {cpu:.2} s |",
            *peak as f64 / 1024.0
        );
    }
    let _ = writeln!(
        report,
        "\nLoad average at the start: {}; {} CPUs.",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    print!("{report}");
    if std::env::var_os("EVERCERT_BENCH_KEEP").is_some() {
        eprintln!("kept {}", bed.keep().display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("fleet bench FAILED: {}", failures.join("; "));
        ExitCode::FAILURE
    }
}
