//! dns-01 from order to issued against a real BIND 9 (issue 12): the propagation check next
//! to the fixed `wait` it replaces, for one name and for a wildcard pair (`dns.test` +
//! `*.dns.test` in one order: two TXT values on one name).
//!
//! The built `target/release/evercert`, one `renew --force` process per sample (the account
//! is registered by a warm-up run first), against a local Pebble whose validator resolves
//! through the same BIND (`-dnsserver`), so every sample is a real validation of what
//! evercert wrote. Pebble with no `badNonce` and no authorization reuse: every order
//! validates afresh, and the figures are not bimodal.
//!
//!     cargo build --release --bin evercert --example bench_dns01
//!     target/release/examples/bench_dns01 [RUNS] [FIXED_WAIT_SECS]
//!
//! RUNS defaults to 7, FIXED_WAIT_SECS to 10. Prints a markdown table for docs/benchmarks.md.

// A broken fixture should stop here.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use evercert_testkit::bind::{Bind, KEY_NAME, Zone};
use evercert_testkit::pebble::PebbleOptions;
use evercert_testkit::setup::{CertSpec, Challenge, Setup};

/// How the TXT records get there and how long evercert waits before telling the CA.
#[derive(Clone, Copy)]
enum Mode {
    /// The built-in RFC 2136 updater, then the propagation check.
    Rfc2136,
    /// A hook that runs `nsupdate`, then the propagation check.
    HookChecked,
    /// A hook that runs `nsupdate`, then a fixed `wait` (what the check replaces).
    HookFixedWait(u64),
}

impl Mode {
    fn describe(self) -> String {
        match self {
            Self::Rfc2136 => "built-in RFC 2136 + TSIG, propagation check".into(),
            Self::HookChecked => "hook (`nsupdate`), propagation check".into(),
            Self::HookFixedWait(secs) => format!("hook (`nsupdate`), fixed `wait = \"{secs}s\"`"),
        }
    }

    fn table(self, bind: &Bind, key: &Path, hook: &Path) -> String {
        let check = format!(
            "propagation_timeout = \"60s\"\nresolvers = [\"{addr}\"]\nauthoritative_port = {port}\n",
            addr = bind.addr(),
            port = bind.port()
        );
        match self {
            Self::Rfc2136 => format!(
                "[certificate.dns01]\nrfc2136 = {{ server = \"{}\", key_name = \"{KEY_NAME}\", key_algorithm = \"hmac-sha256\", key_secret_file = \"{}\" }}\n{check}",
                bind.addr(),
                key.display()
            ),
            Self::HookChecked => format!(
                "[certificate.dns01]\nhook = \"{}\"\n{check}",
                hook.display()
            ),
            Self::HookFixedWait(secs) => format!(
                "[certificate.dns01]\nhook = \"{}\"\nwait = \"{secs}s\"\n",
                hook.display()
            ),
        }
    }
}

/// A dns-01 hook that adds or deletes the value through `nsupdate` with the TSIG key, and
/// returns once BIND has acknowledged the update (as a DNS provider's API call would).
fn write_hook(dir: &Path, bind: &Bind) -> PathBuf {
    let path = dir.join("nsupdate-hook.sh");
    let script = format!(
        r#"#!/usr/bin/env bash
# $1=present|cleanup $2=DOMAIN $3=RECORD_NAME $4=VALUE
set -euo pipefail
case "$1" in
  present) change="update add $3. 60 TXT \"$4\"" ;;
  cleanup) change="update delete $3. TXT \"$4\"" ;;
  *) exit 0 ;;
esac
printf 'server 127.0.0.1 {port}\n%s\nsend\n' "$change" | nsupdate -y 'hmac-sha256:{KEY_NAME}:{secret}'
"#,
        port = bind.port(),
        secret = bind.secret(),
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    path
}

/// One scenario's samples.
struct Row {
    what: String,
    names: &'static str,
    walls: Vec<Duration>,
    /// From the line "dns-01 records served by every authoritative server after N ms".
    checks: Vec<u64>,
}

fn median<T: Copy + Ord>(values: &[T]) -> T {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(7, |arg| arg.parse().unwrap());
    let fixed_wait: u64 = args.next().map_or(10, |arg| arg.parse().unwrap());
    assert!(runs >= 1, "RUNS must be at least 1");

    let bind = Bind::start(&[Zone::updatable("dns.test")]);
    let setup = Setup::with(PebbleOptions {
        dns_server: Some(bind.addr()),
        nonce_reject_percent: 0,
        authz_reuse: Some(0),
        ..PebbleOptions::default()
    });
    let key = bind.write_key_file(&setup.path().join("tsig.key"));
    let hook = write_hook(setup.path(), &bind);

    let scenarios: [(Mode, &'static str, &[&str]); 6] = [
        (Mode::Rfc2136, "www.dns.test", &["www.dns.test"]),
        (
            Mode::Rfc2136,
            "dns.test + *.dns.test",
            &["dns.test", "*.dns.test"],
        ),
        (Mode::HookChecked, "www.dns.test", &["www.dns.test"]),
        (
            Mode::HookChecked,
            "dns.test + *.dns.test",
            &["dns.test", "*.dns.test"],
        ),
        (
            Mode::HookFixedWait(fixed_wait),
            "www.dns.test",
            &["www.dns.test"],
        ),
        (
            Mode::HookFixedWait(fixed_wait),
            "dns.test + *.dns.test",
            &["dns.test", "*.dns.test"],
        ),
    ];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rows = Vec::new();
    for (mode, names, domains) in scenarios {
        setup.write_config(&[CertSpec::new("bench")
            .domains(domains)
            .challenge(Challenge::Table(mode.table(&bind, &key, &hook)))]);
        // Warm-up: the account (first scenario only) and the page cache.
        let warm = setup.run(&["renew", "--force", "bench"]);
        assert_eq!(warm.code, 0, "{warm}\n{}", bind.log());
        let mut row = Row {
            what: mode.describe(),
            names,
            walls: Vec::new(),
            checks: Vec::new(),
        };
        for _ in 0..runs {
            let started = Instant::now();
            let run = setup.run(&["renew", "--force", "bench"]);
            let wall = started.elapsed();
            assert_eq!(run.code, 0, "{run}\n{}", bind.log());
            assert!(run.stdout.contains("summary: 1 renewed"), "{run}");
            row.walls.push(wall);
            if let Some(check) = run
                .stdout
                .split("served by every authoritative server after ")
                .nth(1)
                .and_then(|rest| rest.split(" ms").next())
                .and_then(|ms| ms.parse().ok())
            {
                row.checks.push(check);
            }
        }
        // Every record was removed again.
        assert!(
            bind.txt("_acme-challenge.www.dns.test").is_empty()
                && bind.txt("_acme-challenge.dns.test").is_empty(),
            "records left in the zone"
        );
        rows.push(row);
    }

    println!(
        "### dns-01 against BIND: order to issued, `renew --force`, median of {runs} (min–max)\n"
    );
    println!(
        "{} CPUs, load average at the start {}; BIND {}, Pebble 2.4 (no badNonce, no authorization reuse) resolving through it.\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        bind_version(),
    );
    println!(
        "| how the record gets there, and the wait | names | wall, median (min–max) | of which the propagation check, median |"
    );
    println!("|---|---|---|---|");
    for row in &rows {
        let min = row.walls.iter().min().copied().unwrap_or_default();
        let max = row.walls.iter().max().copied().unwrap_or_default();
        let check = if row.checks.is_empty() {
            "– (fixed wait)".to_owned()
        } else {
            format!("{} ms", median(&row.checks))
        };
        println!(
            "| {} | {} | {} ({}–{}) | {check} |",
            row.what,
            row.names,
            ms(median(&row.walls)),
            ms(min),
            ms(max)
        );
    }
}

fn bind_version() -> String {
    std::process::Command::new("named")
        .arg("-v")
        .output()
        .ok()
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
