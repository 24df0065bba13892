//! A verification that sticks, against a real nginx (Debian `nginx-light`) with a CPU kept
//! busy: after a graceful `nginx -s reload` (it returns once the signal is sent) old workers
//! keep accepting for a moment, so one connection that shows the new serial proves little.
//! `renew` counts the endpoint verified only after `verify_consecutive` (3) fresh connections
//! in a row, about a second, show the new serial; after every reported success, many more
//! fresh connections must never see the old one.
//!
//! The same promise against a stand-in whose behaviour is exact (testkit's `FileTlsServer` in
//! `Reload::Lingering` mode): nginx's lingering old workers cannot be forced
//! deterministically, so that server alternates the old and the new certificate on successive
//! connections once the files change, and settles on the new one after a chosen number of
//! connections, or never.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::nginx::Nginx;
use crate::support::setup::{CertSpec, Setup};
use crate::support::webserver::{FileTlsServer, Reload, Served};

const NAME: &str = "shop";
const ROUNDS: usize = 5;
/// Fresh connections after each reported success.
const AFTER: usize = 30;

/// Busy-loop threads that keep every core loaded until dropped.
struct CpuLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuLoad {
    fn start(threads: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn live_serial(setup: &Setup) -> String {
    evercert::inventory::read_cert_file(&setup.cert_path(NAME))
        .unwrap()
        .leaf
        .serial
}

/// The serials `endpoint` serves on `count` fresh connections, one after the other.
fn served_serials(endpoint: &str, count: usize) -> Vec<String> {
    let endpoint = evercert::config::Endpoint::parse(endpoint).unwrap();
    let roots = Arc::new(evercert::probe::system_roots(&[]));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut serials = Vec::with_capacity(count);
        for _ in 0..count {
            let served = evercert::probe::probe(
                &endpoint,
                "shop.example.test",
                roots.clone(),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|err| panic!("probe: {err}"));
            serials.push(served.file.leaf.serial);
        }
        serials
    })
}

#[test]
fn after_a_reported_success_nginx_never_serves_the_old_certificate_again() {
    let setup = Setup::new();
    setup.plant(NAME, 5);
    let nginx = Nginx::start(
        &setup.path().join("nginx"),
        &setup.cert_path(NAME),
        &setup.key_path(NAME),
        4,
    );
    setup.write_config(&[CertSpec::new(NAME)
        .reload(&nginx.reload_command())
        .verify(&nginx.endpoint())]);
    let _load = CpuLoad::start(3);

    let mut previous = live_serial(&setup);
    for round in 1..=ROUNDS {
        let run = setup.run(&["renew", "--force"]);
        assert_eq!(
            run.code,
            0,
            "round {round}: {}\nnginx error log:\n{}",
            run.all(),
            nginx.error_log()
        );
        let issued = live_serial(&setup);
        assert_ne!(issued, previous, "round {round}: {}", run.all());
        assert!(
            run.stdout.contains(&format!(
                "serves serial {issued} (3 fresh connections in a row)"
            )),
            "round {round}: {}",
            run.all()
        );
        let serials = served_serials(&nginx.endpoint(), AFTER);
        let old: Vec<&String> = serials.iter().filter(|serial| **serial != issued).collect();
        assert!(
            old.is_empty(),
            "round {round}: after `renew` reported the endpoint verified, {} of {AFTER} fresh connections still got another certificate ({old:?}, expected {issued})",
            old.len()
        );
        previous = issued;
    }
}

/// A server that keeps alternating old and new: each new serial is followed by the old one
/// again, so the count never reaches `verify_consecutive`. `renew` reports no success, says
/// the endpoint still serves the old serial, and restores the old pair.
#[test]
fn a_server_still_serving_the_old_certificate_between_new_ones_is_never_verified() {
    let setup = Setup::new();
    let leaf = setup.plant(NAME, 5);
    let server = FileTlsServer::start(
        &setup.cert_path(NAME),
        &setup.key_path(NAME),
        Reload::Lingering { settle_after: None },
    );
    // A short window: the alternation never ends, only the time does.
    setup.write_config(&[CertSpec::new(NAME)
        .verify(&server.endpoint())
        .extra("verify_timeout = \"4s\"")]);

    let run = setup.run(&["renew"]);

    assert_eq!(run.code, 1, "{}", run.all());
    assert!(!run.stdout.contains("verified:"), "{}", run.all());
    assert!(!run.stdout.contains("renewed:"), "{}", run.all());
    // Whichever connection the window ended on, the message names the old serial.
    let failure = run
        .stdout
        .lines()
        .find(|line| line.contains("failed at verify"))
        .unwrap_or_else(|| panic!("no verify failure:\n{}", run.all()));
    assert!(failure.contains(&server.endpoint()), "{failure}");
    assert!(failure.contains(&leaf.serial_hex), "{failure}");
    assert!(failure.contains("restored"), "{failure}");
    assert_eq!(live_serial(&setup), leaf.serial_hex, "{}", run.all());
    // The new certificate was seen, more than once, and each time the old one came back.
    let served = server.served_after_change();
    let new = served.iter().filter(|pair| **pair == Served::New).count();
    assert!(new >= 2, "{served:?}\n{}", run.all());
}

/// A server that alternates for six connections, then serves only the new certificate:
/// `renew` reports the endpoint verified, and only after three new serials in a row that
/// came after the last old one.
#[test]
fn verification_succeeds_once_the_server_settles_and_not_before() {
    let setup = Setup::new();
    let leaf = setup.plant(NAME, 5);
    let server = FileTlsServer::start(
        &setup.cert_path(NAME),
        &setup.key_path(NAME),
        Reload::Lingering {
            settle_after: Some(6),
        },
    );
    setup.write_config(&[CertSpec::new(NAME).verify(&server.endpoint())]);

    let run = setup.run(&["renew"]);

    assert_eq!(run.code, 0, "{}", run.all());
    let issued = live_serial(&setup);
    assert_ne!(issued, leaf.serial_hex, "{}", run.all());
    assert!(
        run.stdout.contains(&format!(
            "verified: {} serves serial {issued} (3 fresh connections in a row)",
            server.endpoint()
        )),
        "{}",
        run.all()
    );
    let served = server.served_after_change();
    let last_old = served
        .iter()
        .rposition(|pair| *pair == Served::Old)
        .unwrap_or_else(|| panic!("the old certificate was never served: {served:?}"));
    // The old certificate was still served at the fifth connection (connections 0, 2, 4),
    // and success came after three new ones in a row following it: no earlier, no later.
    assert_eq!(last_old, 4, "{served:?}");
    assert_eq!(served.len(), last_old + 1 + 3, "{served:?}\n{}", run.all());
}
