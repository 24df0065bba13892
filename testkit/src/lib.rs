//! Helpers shared by the integration tests (tests/it, as `crate::support`) and the examples:
//! a real Pebble, the fault proxy, the ARI stand-in, TLS and webroot servers, certificate
//! minting, and the other real servers (BIND, etcd, nginx, acme2certifier).
//!
//! A dev-only crate (`publish = false`) that does not depend on evercert: the tests and
//! examples run the built binary, found by [`evercert_binary`].

// A broken fixture should stop the test right there, with the panic's message.
#![allow(clippy::unwrap_used)]
// `new()` on a fixture starts or creates something; a `Default` would hide that.
#![allow(clippy::new_without_default)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod a2c;
pub mod ari;
pub mod balancer;
pub mod bind;
pub mod certbot;
pub mod certs;
pub mod chaos;
pub mod etcd;
pub mod etcd35;
pub mod faultproxy;
pub mod hostile;
pub mod nginx;
pub mod pebble;
pub mod process;
pub mod serve;
pub mod setup;
pub mod tls;
pub mod webhook;
pub mod webroot;
pub mod webserver;

/// The built `evercert` binary.
///
/// Cargo names it to integration tests only at compile time (`CARGO_BIN_EXE_evercert`, which
/// this crate does not see) and to examples not at all; both run from the profile directory
/// that holds it (`target/<profile>/deps/it-…`, `target/<profile>/examples/demo`). Panics,
/// saying what to build, when it is missing.
pub fn evercert_binary() -> PathBuf {
    let binary = std::env::var_os("CARGO_BIN_EXE_evercert")
        .map_or_else(|| profile_dir().join("evercert"), PathBuf::from);
    assert!(
        binary.is_file(),
        "{} is missing: build it first (cargo build --bin evercert, with --release for a \
         release example)",
        binary.display()
    );
    binary
}

/// `target/<profile>`: the directory of the running test or example, or its parent when that
/// is `deps/` or `examples/`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    let dir = exe.parent().unwrap_or(Path::new("."));
    match dir.file_name().and_then(|name| name.to_str()) {
        Some("deps" | "examples") => dir.parent().unwrap_or(dir).to_owned(),
        _ => dir.to_owned(),
    }
}

/// `target/tmp`, what Cargo gives integration tests as `CARGO_TARGET_TMPDIR`.
pub fn target_tmpdir() -> PathBuf {
    let profile = profile_dir();
    profile.parent().unwrap_or(&profile).join("tmp")
}

/// Waits up to `limit` for `condition`, polling every 50 ms, then fails naming `what`.
pub fn wait_for(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    note_wait(what, started.elapsed(), limit);
}

/// With `TESTKIT_WAIT_LOG=FILE`, appends `ELAPSED_MS LIMIT_MS TEST: WHAT` to FILE: how
/// close each timed wait came to its limit, to find the bounds a slower machine would break
/// (docs/reliability.md, "Running it all"). One write per line: parallel tests do not
/// interleave.
pub fn note_wait(what: &str, elapsed: Duration, limit: Duration) {
    let Some(path) = std::env::var_os("TESTKIT_WAIT_LOG") else {
        return;
    };
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed thread)")
        .to_owned();
    let line = format!(
        "{} {} {test}: {what}\n",
        elapsed.as_millis(),
        limit.as_millis()
    );
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = std::io::Write::write_all(&mut file, line.as_bytes());
    }
}
