//! Files that are not what they should be: a FIFO, `/dev/zero`, a directory or a 2 GB file
//! where a certificate, a `[[monitor]]` path or the configuration should be; a symlink from
//! `cert_path` to a root-only secret; a read-only destination; a planted dry-run scratch
//! directory; a corrupt state file; and archive retention.
//!
//! Every command must finish promptly with an error naming the path, and the other
//! certificates must still be handled. Each command runs under `timeout -s KILL` so that a
//! hang (what a FIFO used to cause) fails the test instead of stalling the suite.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::certs::{self, KeyType, Leaf};
use crate::support::faultproxy::FaultProxy;
use crate::support::setup::{CertSpec, Challenge, Run, Setup};

/// Far beyond what any of these commands needs on a loaded machine (they take a second or
/// two); only a hang reaches it.
const HANG: &str = "120";

/// `evercert -c CONFIG ARGS`, killed if it hangs.
fn run_with_config(setup: &Setup, config: &Path, args: &[&str]) -> Run {
    let output = Command::new("timeout")
        .args(["-s", "KILL", HANG])
        .arg(env!("CARGO_BIN_EXE_evercert"))
        .arg("-c")
        .arg(config)
        .args(args)
        .current_dir(setup.path())
        .env_remove("EVERCERT_CONFIG")
        .env("EVERCERT_LOG", "warn")
        .output()
        .expect("run evercert under timeout");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(
        run.code != 137 && run.code != -1,
        "`evercert {}` hung and was killed after {HANG} s\n{}",
        args.join(" "),
        run.all()
    );
    run
}

fn evercert(setup: &Setup, args: &[&str]) -> Run {
    run_with_config(setup, &setup.config_path(), args)
}

/// The hostile things a path can be.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    Fifo,
    DevZero,
    Directory,
    Huge,
}

impl Hostile {
    const ALL: [Self; 4] = [Self::Fifo, Self::DevZero, Self::Directory, Self::Huge];

    /// Puts it at `path` (replacing whatever was there).
    fn plant(self, path: &Path) {
        remove(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        match self {
            Self::Fifo => rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap(),
            Self::DevZero => std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            Self::Directory => fs::create_dir(path).unwrap(),
            // Sparse: 2 GiB that take no disk.
            Self::Huge => fs::File::create(path).unwrap().set_len(2 << 30).unwrap(),
        }
    }

    /// What the error says it found.
    fn described(self) -> &'static str {
        match self {
            Self::Fifo => "a FIFO (named pipe)",
            Self::DevZero => "a character device",
            Self::Directory => "a directory",
            Self::Huge => "2048 MiB",
        }
    }
}

fn remove(path: &Path) {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).unwrap(),
        Ok(_) => fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

fn plant_pair(setup: &Setup, name: &str, days_left: i64) -> Leaf {
    let (not_before, not_after) = certs::days_left(days_left);
    let leaf = certs::leaf(
        &[&format!("{name}.example.test")],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    leaf.write_fullchain(&setup.cert_path(name));
    leaf.write_key(&setup.key_path(name));
    leaf
}

fn entries(run: &Run) -> Vec<Value> {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("not a JSON array ({err})\n{}", run.all()))
}

fn entry<'a>(entries: &'a [Value], name: &str) -> &'a Value {
    entries
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("no entry {name}: {entries:#?}"))
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// A FIFO, `/dev/zero`, a directory and a 2 GB file at a managed certificate's `cert_path`
/// and at a `[[monitor]]` path: `status`, `check` and `renew` finish, report each as an error
/// naming the path, and still handle the healthy certificate (renewed) and monitor (ok).
#[test]
fn hostile_files_at_cert_and_monitor_paths_are_errors_and_the_rest_goes_on() {
    let mut setup = Setup::new();
    let partner = setup.path().join("partner/bundle.pem");
    let fine = setup.path().join("fine/bundle.pem");
    let (not_before, not_after) = certs::days_left(60);
    certs::leaf(
        &["fine.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    )
    .write_fullchain(&fine);
    setup.tail = format!(
        "[[monitor]]\nname = \"partner\"\npath = \"{}\"\n\n[[monitor]]\nname = \"fine\"\npath = \"{}\"\n",
        partner.display(),
        fine.display()
    );
    setup.write_config(&[
        CertSpec::new("bad").domains(&["bad.example.test"]),
        CertSpec::new("good").domains(&["good.example.test"]),
    ]);
    plant_pair(&setup, "good", 5);
    let bad = setup.cert_path("bad");

    for hostile in Hostile::ALL {
        hostile.plant(&bad);
        hostile.plant(&partner);
        let found = hostile.described();

        let status = evercert(&setup, &["status", "--json"]);
        assert_eq!(status.code, 0, "{hostile:?}\n{}", status.all());
        let listed = entries(&status);
        for (name, path) in [("bad", &bad), ("partner", &partner)] {
            let entry = entry(&listed, name);
            assert_eq!(entry["state"], "error", "{hostile:?} {entry:#}");
            let error = entry["error"].as_str().unwrap_or_default();
            assert!(error.contains(&path_str(path)), "{hostile:?} {entry:#}");
            assert!(error.contains(found), "{hostile:?} {entry:#}");
        }
        assert_eq!(entry(&listed, "fine")["state"], "ok", "{}", status.all());
        assert!(
            entry(&listed, "good")["state"] != "error",
            "{}",
            status.all()
        );

        // check: CRITICAL (unreadable), naming both paths, from the config and as targets.
        let check = evercert(&setup, &["check"]);
        assert_eq!(check.code, 2, "{hostile:?}\n{}", check.all());
        for path in [&bad, &partner] {
            assert!(check.stdout.contains(&path_str(path)), "{}", check.all());
        }
        assert!(check.stdout.contains(found), "{}", check.all());
        let direct = Command::new("timeout")
            .args(["-s", "KILL", HANG])
            .arg(env!("CARGO_BIN_EXE_evercert"))
            .arg("check")
            .arg(&partner)
            .arg(&fine)
            .env_remove("EVERCERT_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&direct.stdout);
        assert_eq!(direct.status.code(), Some(2), "{hostile:?}\n{stdout}");
        assert!(stdout.contains(found), "{stdout}");

        // renew --force: the healthy certificate is renewed; the bad one fails before any
        // order, naming its path; exit 1.
        let renew = evercert(&setup, &["renew", "--force"]);
        assert_eq!(renew.code, 1, "{hostile:?}\n{}", renew.all());
        assert!(
            renew
                .stdout
                .contains("summary: 1 renewed, 0 not due, 1 failed"),
            "{hostile:?}\n{}",
            renew.all()
        );
        let failed = renew
            .stdout
            .lines()
            .find(|line| line.starts_with("bad: failed"))
            .unwrap_or_else(|| panic!("{}", renew.all()));
        assert!(failed.contains(&path_str(&bad)), "{failed}");
        assert!(failed.contains(found), "{failed}");
        // Not forced: "bad" cannot be read, a failure (exit 1), not a silent "not due".
        let renew = evercert(&setup, &["renew"]);
        assert_eq!(renew.code, 1, "{hostile:?}\n{}", renew.all());
        assert!(
            renew.stdout.contains("good: not due"),
            "{hostile:?}\n{}",
            renew.all()
        );
        println!("{hostile:?}: {failed}");
    }
    let archive = setup.state_dir().join("archive/bad");
    assert!(
        fs::read_dir(&archive).map_or(true, |mut dir| dir.next().is_none()),
        "something of `bad` was archived"
    );
}

/// The same four at `--config`: every command stops at once with the path and what it is
/// (`status`/`renew` exit 2 as for a bad configuration, `check` 3 UNKNOWN).
#[test]
fn hostile_files_at_the_config_path_are_a_clear_configuration_error() {
    let setup = Setup::new();
    let config = setup.path().join("evercert.toml");
    for hostile in Hostile::ALL {
        hostile.plant(&config);
        for (args, code) in [
            (&["status"][..], 2),
            (&["renew"][..], 2),
            (&["config", "check"][..], 2),
            (&["check"][..], 3),
        ] {
            let run = run_with_config(&setup, &config, args);
            assert_eq!(run.code, code, "{hostile:?} {args:?}\n{}", run.all());
            let said = format!("{}{}", run.stdout, run.stderr);
            assert!(said.contains(&path_str(&config)), "{}", run.all());
            assert!(said.contains(hostile.described()), "{}", run.all());
        }
    }
}

/// A symlink from `cert_path` to a root-only secret (like `/etc/shadow`): the first install
/// refuses it before anything is ordered, copies nothing into the archive, and leaves the
/// link. A genuine pair in plain files is imported with the key written 0600, even when the
/// operator's own key file was 0644.
#[test]
fn first_install_refuses_a_symlink_to_a_secret_and_imports_real_pairs_privately() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    setup.write_config(&[CertSpec::new("shop").domains(&["shop.example.test"])]);
    let leaf = plant_pair(&setup, "shop", 5);
    let secret = setup.path().join("shadow");
    fs::write(
        &secret,
        "root:$6$c2VjcmV0$not-for-publication:20000:0:99999:7:::\n",
    )
    .unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let cert_path = setup.cert_path("shop");
    fs::remove_file(&cert_path).unwrap();
    std::os::unix::fs::symlink(&secret, &cert_path).unwrap();

    let run = evercert(&setup, &["renew", "--force"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let failed = run
        .stdout
        .lines()
        .find(|line| line.starts_with("shop: failed at preflight"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(failed.contains(&path_str(&cert_path)), "{failed}");
    assert!(failed.contains("not a certificate chain"), "{failed}");
    println!("{failed}");
    assert_eq!(
        proxy.count(&proxy.resource_path("newOrder")),
        0,
        "ordered although nothing could be installed:\n{}",
        proxy.describe()
    );
    let archive = setup.state_dir().join("archive/shop");
    let archived: Vec<PathBuf> = fs::read_dir(&archive)
        .map(|dir| dir.map(|entry| entry.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(archived.is_empty(), "{archived:?}");
    assert_eq!(fs::read_link(&cert_path).unwrap(), secret);

    // The real pair back, its key world-readable by mistake: imported, the key 0600.
    fs::remove_file(&cert_path).unwrap();
    leaf.write_fullchain(&cert_path);
    fs::set_permissions(setup.key_path("shop"), fs::Permissions::from_mode(0o644)).unwrap();
    let run = evercert(&setup, &["renew", "--force"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let imported: Vec<PathBuf> = fs::read_dir(&archive)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with("-imported"))
        .collect();
    assert_eq!(imported.len(), 1, "{imported:?}");
    let mode = |file: &str| {
        fs::metadata(imported[0].join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("privkey.pem"), 0o600);
    assert_eq!(mode("bundle.pem"), 0o600);
    assert_eq!(mode("fullchain.pem"), 0o644);
    assert_eq!(
        fs::read_to_string(imported[0].join("privkey.pem")).unwrap(),
        leaf.key_pem
    );
}

/// `renew --dry-run` never touches the shared temp directory: with `TMPDIR` under a regular
/// file (so any use of it fails) and symlinks planted at the names the old code used
/// (`evercert-dry-run-NAME-PID`, for the next few thousand PIDs) into a directory an attacker
/// reads, the dry run succeeds, the attacker's directory stays empty, and no scratch
/// directory is left in `state_dir`.
#[test]
fn dry_run_scratch_is_private_under_state_dir_and_never_in_tmp() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop").domains(&["shop.example.test"])]);
    let attacker = setup.path().join("attacker");
    fs::create_dir(&attacker).unwrap();
    let tmp = setup.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let last_pid: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1);
    for pid in last_pid + 1..last_pid + 3000 {
        std::os::unix::fs::symlink(&attacker, tmp.join(format!("evercert-dry-run-shop-{pid}")))
            .unwrap();
    }
    let not_a_dir = setup.path().join("a-file");
    fs::write(&not_a_dir, "").unwrap();

    for tmpdir in [&tmp, &not_a_dir.join("tmp")] {
        let output = Command::new("timeout")
            .args(["-s", "KILL", HANG])
            .arg(env!("CARGO_BIN_EXE_evercert"))
            .arg("-c")
            .arg(setup.config_path())
            .args(["renew", "--dry-run"])
            .env("TMPDIR", tmpdir)
            .env_remove("EVERCERT_CONFIG")
            .env("EVERCERT_LOG", "warn")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "TMPDIR={}\n{said}",
            tmpdir.display()
        );
        assert!(said.contains("dry run: would write"), "{said}");
        let written: Vec<_> = fs::read_dir(&attacker).unwrap().collect();
        assert!(
            written.is_empty(),
            "the dry run wrote into a planted symlink: {written:?}"
        );
    }
    let left: Vec<String> = fs::read_dir(setup.state_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".dry-run"))
        .collect();
    assert!(left.is_empty(), "scratch directories left: {left:?}");
    assert!(
        !setup.cert_path("shop").exists(),
        "the dry run wrote cert_path"
    );
}

/// Runs `evercert -c CONFIG ARGS` in a private mount namespace where each of `read_only` is a
/// read-only bind mount of itself (as systemd's ProtectSystem=strict makes every path not in
/// ReadWritePaths=). Needs root, as CI runs.
fn run_with_read_only(setup: &Setup, read_only: &[&Path], args: &[&str]) -> Run {
    let mut script = String::new();
    for index in 0..read_only.len() {
        let n = index + 1;
        script.push_str(&format!(
            "mount --bind \"${n}\" \"${n}\" && mount -o remount,bind,ro \"${n}\" \"${n}\" || exit 97; "
        ));
    }
    script.push_str(&format!("shift {}; exec \"$@\"", read_only.len()));
    let output = Command::new("unshare")
        .arg("-m")
        .arg("sh")
        .arg("-c")
        .arg(&script)
        .arg("sh")
        .args(read_only)
        .arg("timeout")
        .args(["-s", "KILL", HANG])
        .arg(env!("CARGO_BIN_EXE_evercert"))
        .arg("-c")
        .arg(setup.config_path())
        .args(args)
        .env("EVERCERT_LOG", "warn")
        .env_remove("EVERCERT_CONFIG")
        .output()
        .expect("unshare (util-linux) runs");
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_ne!(
        run.code,
        97,
        "cannot bind-mount read-only here (needs root): {}",
        run.all()
    );
    run
}

/// The certificate directory (then the http-01 webroot) left out of ReadWritePaths=, i.e. a
/// read-only mount: `renew` fails before any order reaches the CA (no issuance wasted), and
/// the message says "read-only file system" and names ReadWritePaths=.
#[test]
fn a_read_only_destination_fails_before_any_order_and_names_read_write_paths() {
    let mut setup = Setup::new();
    let proxy = FaultProxy::start(&setup.pebble);
    setup.directory_override = Some(proxy.directory_url());
    let webroot = setup.path().join("www");
    fs::create_dir_all(&webroot).unwrap();
    setup.write_config(&[
        CertSpec::new("shop").domains(&["shop.example.test"]),
        CertSpec::new("blog")
            .domains(&["blog.example.test"])
            .challenge(Challenge::Webroot(webroot.clone())),
    ]);
    let leaf = plant_pair(&setup, "shop", 5);
    plant_pair(&setup, "blog", 60);
    // The account first (a dry run registers it and writes nothing live), so that requests
    // counted below are the renewal's.
    let account = evercert(&setup, &["renew", "--dry-run", "shop"]);
    assert_eq!(account.code, 0, "{}", account.all());
    let new_order = proxy.resource_path("newOrder");
    let orders_before = proxy.count(&new_order);

    let tls = setup.cert_path("shop").parent().unwrap().to_owned();
    let run = run_with_read_only(&setup, &[&tls], &["renew", "--force", "shop"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let failed = run
        .stdout
        .lines()
        .find(|line| line.starts_with("shop: failed at preflight"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    println!("{failed}");
    for needle in [
        path_str(&tls).as_str(),
        "read-only file system",
        "ReadWritePaths=",
    ] {
        assert!(failed.contains(needle), "no {needle:?} in: {failed}");
    }
    assert!(!failed.contains("stale temp"), "{failed}");
    assert_eq!(
        proxy.count(&new_order) - orders_before,
        0,
        "{}",
        proxy.describe()
    );
    assert_eq!(
        fs::read_to_string(setup.cert_path("shop")).unwrap(),
        leaf.fullchain_pem()
    );

    let run = run_with_read_only(&setup, &[&webroot], &["renew", "--force", "blog"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let failed = run
        .stdout
        .lines()
        .find(|line| line.starts_with("blog: failed at preflight"))
        .unwrap_or_else(|| panic!("{}", run.all()));
    assert!(failed.contains(&path_str(&webroot)), "{failed}");
    assert!(failed.contains("ReadWritePaths="), "{failed}");
    assert_eq!(
        proxy.count(&new_order) - orders_before,
        0,
        "{}",
        proxy.describe()
    );
}

/// `archive_keep = 3` and six forced renewals: three versions remain after each run beyond
/// the third — the newest, so the live one and its predecessor (the rollback target) — and
/// the removed versions' keys are gone with them.
#[test]
fn retention_keeps_archive_keep_versions_and_never_the_live_or_previous() {
    let mut setup = Setup::new();
    setup.tail = "[renewal]\narchive_keep = 3\n".to_owned();
    setup.write_config(&[CertSpec::new("shop").domains(&["shop.example.test"])]);
    let archive = setup.state_dir().join("archive/shop");
    let versions = || {
        let mut names: Vec<String> = fs::read_dir(&archive)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let live = || {
        fs::read_link(setup.state_dir().join("live/shop"))
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let mut issued = Vec::new();
    for round in 0..6 {
        let run = evercert(&setup, &["renew", "--force"]);
        assert_eq!(run.code, 0, "round {round}\n{}", run.all());
        issued.push(live());
        let kept = versions();
        assert_eq!(kept.len(), (round + 1).min(3), "round {round}: {kept:?}");
        assert!(kept.contains(&live()), "round {round}: {kept:?}");
        if round > 0 {
            assert!(
                kept.contains(&issued[round - 1]),
                "previous removed: {kept:?}"
            );
        }
        if round >= 3 {
            assert!(
                run.stdout
                    .contains("removed 1 old version from the archive"),
                "{}",
                run.all()
            );
        }
    }
    let mut newest = issued[3..].to_vec();
    newest.sort();
    assert_eq!(versions(), newest);
    for gone in &issued[..3] {
        assert!(
            !archive.join(gone).exists(),
            "{gone} (and its key) still there"
        );
    }
}

/// A corrupt `state/NAME.json` is moved aside with a timestamp and a warning, then a fresh
/// history is written; it is never silently overwritten.
#[test]
fn a_corrupt_state_file_is_moved_aside_and_logged() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop").domains(&["shop.example.test"])]);
    let state = setup.state_dir().join("state");
    fs::create_dir_all(&state).unwrap();
    let history = state.join("shop.json");
    fs::write(&history, "{\"failures\": 7, \"last_error\": \"trunc").unwrap();
    let run = evercert(&setup, &["renew"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let aside: Vec<PathBuf> = fs::read_dir(&state)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("shop.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}\n{}", run.all());
    assert_eq!(
        fs::read_to_string(&aside[0]).unwrap(),
        "{\"failures\": 7, \"last_error\": \"trunc"
    );
    assert!(run.stderr.contains(&path_str(&aside[0])), "{}", run.all());
    let fresh: Value = serde_json::from_slice(&fs::read(&history).unwrap()).unwrap();
    assert_eq!(fresh["renewals"], 1, "{fresh:#}");
}

/// The agent with a FIFO at a `[[monitor]]` path and at a managed certificate's `cert_path`:
/// it alerts an error for each, naming the path, still issues the healthy certificate, and
/// ends promptly on SIGTERM (before, it hung in the FIFO's open and ignored SIGTERM).
#[test]
fn the_agent_alerts_on_a_fifo_issues_the_rest_and_stops_on_sigterm() {
    use std::time::{Duration, Instant};

    use crate::support::process::{Capture, Running};

    let mut setup = Setup::new();
    let partner = setup.path().join("partner/bundle.pem");
    let alerts_log = setup.path().join("alerts.jsonl");
    // One write per alert: the two error alerts are delivered side by side, and two
    // `cat >> log; echo >> log` could interleave into lines that are not JSON.
    setup.tail = format!(
        "[alerts]\ncommand = \"printf '%s\\\\n' \\\"$(cat)\\\" >> {log}\"\n\n[[monitor]]\nname = \"partner\"\npath = \"{partner}\"\n",
        log = alerts_log.display(),
        partner = partner.display()
    );
    setup.write_config(&[
        CertSpec::new("bad").domains(&["bad.example.test"]),
        CertSpec::new("good").domains(&["good.example.test"]),
    ]);
    Hostile::Fifo.plant(&partner);
    Hostile::Fifo.plant(&setup.cert_path("bad"));

    let mut command = setup.command(&["run"]);
    command.env("EVERCERT_LOG", "info");
    let agent = Running::capture(command, Capture::Stderr);
    let log = agent.log.clone();
    let alerts = || fs::read_to_string(&alerts_log).unwrap_or_default();
    let error_alert = |name: &str| -> Option<Value> {
        alerts()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|alert| alert["name"] == name && alert["event"] == "error")
    };
    let started = Instant::now();
    while error_alert("partner").is_none()
        || error_alert("bad").is_none()
        || !fs::metadata(setup.cert_path("good")).is_ok_and(|meta| meta.is_file())
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no error alerts for both FIFOs, or `good` not issued\nalerts:\n{}\nagent log:\n{}",
            alerts(),
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "alerts for both FIFOs and `good` issued {:.1} s after start",
        started.elapsed().as_secs_f64()
    );
    for (name, path) in [
        ("partner", partner.clone()),
        ("bad", setup.cert_path("bad")),
    ] {
        let alert = error_alert(name).unwrap();
        let message = alert["message"].as_str().unwrap_or_default();
        assert!(message.contains(&path_str(&path)), "{alert:#}");
        assert!(message.contains("FIFO"), "{alert:#}");
    }

    let (code, stopping) = agent.stop();
    assert_eq!(code, 0, "{}", log.lock().unwrap());
    println!("stopped {:.2} s after SIGTERM", stopping.as_secs_f64());
}
