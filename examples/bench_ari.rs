//! What ARI (RFC 9773) costs the one-shot `renew`: wall time of the built
//! `target/release/evercert`, one process per sample, median of `RUNS`, against a local Pebble
//! behind the ARI stand-in of the tests (Debian's Pebble 2.4 has no `renewalInfo`; the
//! stand-in serves Pebble's directory plus a `renewalInfo` URL, everything else is Pebble).
//!
//!     cargo build --release --bin evercert --example bench_ari
//!     target/release/examples/bench_ari [RUNS]
//!
//! Prints a markdown table for docs/benchmarks.md.

// A broken fixture should stop here.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use evercert_testkit::{ari, certs, pebble};
use pebble::{Pebble, PebbleOptions};
use time::OffsetDateTime;

struct Bench {
    binary: PathBuf,
    work: PathBuf,
    directory: String,
    bundle: PathBuf,
    http_port: u16,
}

impl Bench {
    /// A config with certificates `names`, each planted with 80 of 90 days left when `plant`.
    fn config(&self, file: &str, names: &[String], ari: bool, plant: bool) -> PathBuf {
        let ca = certs::TestCa::new();
        let tls = self.work.join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let mut text = format!(
            "state_dir = \"{}\"\n\n[acme]\ndirectory = \"{}\"\nstaging_directory = \"{}\"\ncontact = [\"mailto:bench@example.test\"]\nca_bundle = \"{}\"\n\n[renewal]\nari = {ari}\n\n",
            self.work.join(format!("state-{file}")).display(),
            self.directory,
            self.directory,
            self.bundle.display(),
        );
        for name in names {
            let (cert, key) = if plant {
                let (not_before, not_after) = certs::days_left(80);
                let domain = format!("{name}.bench.test");
                let leaf = ca.leaf(&[&domain], not_before, not_after, certs::KeyType::EcdsaP256);
                leaf.write_pair(&tls, name)
            } else {
                (
                    tls.join(format!("{name}.pem")),
                    tls.join(format!("{name}.key")),
                )
            };
            text.push_str(&format!(
                "[[certificate]]\nname = \"{name}\"\ndomains = [\"{name}.bench.test\"]\ncert_path = \"{}\"\nkey_path = \"{}\"\n[certificate.http01]\nlisten = \"127.0.0.1:{}\"\n\n",
                cert.display(),
                key.display(),
                self.http_port,
            ));
        }
        let path = self.work.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn state_dir(&self, config: &Path) -> PathBuf {
        let file = config.file_name().unwrap().to_string_lossy().into_owned();
        self.work.join(format!("state-{file}"))
    }

    /// One `renew` (with `args`), timed; it must exit 0.
    fn renew(&self, config: &Path, args: &[&str]) -> Duration {
        let started = Instant::now();
        let output = Command::new(&self.binary)
            .arg("-c")
            .arg(config)
            .arg("renew")
            .args(args)
            .env("EVERCERT_LOG", "warn")
            .output()
            .unwrap();
        let wall = started.elapsed();
        assert!(
            output.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        wall
    }

    /// The median of `runs` samples; `before` runs ahead of each (not timed).
    fn median(
        &self,
        runs: usize,
        mut sample: impl FnMut() -> Duration,
    ) -> (Duration, Duration, Duration) {
        let mut walls: Vec<Duration> = (0..runs).map(|_| sample()).collect();
        walls.sort();
        (walls[runs / 2], walls[0], walls[runs - 1])
    }
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}{i:02}")).collect()
}

fn row(what: &str, (median, min, max): (Duration, Duration, Duration)) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {what} | {:.1} ms ({:.1}–{:.1} ms) |",
        ms(median),
        ms(min),
        ms(max)
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(11);
    let binary = evercert_testkit::evercert_binary();
    let work = tempfile::tempdir().unwrap();
    let pebble = Pebble::start_with(PebbleOptions {
        nonce_reject_percent: 0,
        authz_reuse: Some(0),
        ..PebbleOptions::default()
    });
    let now = OffsetDateTime::now_utc();
    // A window far ahead: asked about, followed by nobody.
    let stand_in = ari::AriServer::start(
        &pebble,
        work.path(),
        now + time::Duration::days(1000),
        now + time::Duration::days(1002),
    );
    let bench = Bench {
        binary,
        work: work.path().to_owned(),
        directory: stand_in.directory_url(),
        bundle: stand_in.ca_bundle().to_owned(),
        http_port: pebble.http_port(),
    };

    println!("| `renew`, median of {runs} (min–max) | wall |");
    println!("|---|---|");
    let without = bench.config("one-off.toml", &names("off", 1), false, false);
    bench.renew(&without, &["--force"]);
    row(
        "`renew --force`, 1 certificate, `ari = false`",
        bench.median(runs, || bench.renew(&without, &["--force"])),
    );
    let with = bench.config("one-on.toml", &names("on", 1), true, false);
    bench.renew(&with, &["--force"]);
    let hits = stand_in.hits();
    row(
        "`renew --force`, 1 certificate, `ari = true` (asks about the new certificate)",
        bench.median(runs, || bench.renew(&with, &["--force"])),
    );
    assert_eq!(stand_in.hits() - hits, runs, "one ARI request per run");

    // Not due, nothing cached: the run connects and asks the CA (directory, account, ARI).
    let idle_one = bench.config("idle-one.toml", &names("idle", 1), true, true);
    let cache = bench.state_dir(&idle_one).join("ari");
    bench.renew(&idle_one, &[]);
    row(
        "`renew`, 1 certificate not due, `ari = true`, empty cache (asks the CA)",
        bench.median(runs, || {
            let _ = std::fs::remove_dir_all(&cache);
            bench.renew(&idle_one, &[])
        }),
    );

    let fifty_off = bench.config("fifty-off.toml", &names("f", 50), false, true);
    row(
        "`renew`, 50 certificates not due, `ari = false` (no-op)",
        bench.median(runs, || bench.renew(&fifty_off, &[])),
    );
    let fifty = bench.config("fifty-on.toml", &names("w", 50), true, true);
    bench.renew(&fifty, &[]);
    let hits = stand_in.hits();
    row(
        "`renew`, 50 certificates not due, `ari = true`, warm cache (no network)",
        bench.median(runs, || bench.renew(&fifty, &[])),
    );
    assert_eq!(stand_in.hits(), hits, "a warm cache asks nothing");
    let _ = std::fs::remove_dir_all(bench.state_dir(&fifty).join("ari"));
    row(
        "`renew`, 50 certificates not due, `ari = true`, empty cache (50 ARI requests, 8 at once)",
        bench.median(runs, || {
            let _ = std::fs::remove_dir_all(bench.state_dir(&fifty).join("ari"));
            bench.renew(&fifty, &[])
        }),
    );
}
