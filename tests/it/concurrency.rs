//! One renewal per certificate at a time: `renew` run while the agent is renewing the same
//! certificate waits for it (and says so) instead of ordering alongside, and a lock left by a
//! killed process never blocks the next run.
//!
//! `EVERCERT_TEST_STORE_DELAY_MS` makes the holder's install slow, so the lock is provably held
//! while the second run starts. Assertions rest on lower bounds the delays guarantee, never on
//! how fast the machine is.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::certs::{self, KeyType};
use crate::support::process::{Capture, Running};
use crate::support::setup::{CertSpec, Setup};
use crate::support::wait_for;

const WAITING: &str = "shop: another evercert is renewing this certificate; waiting";

fn staging_dirs(setup: &Setup) -> Vec<PathBuf> {
    fs::read_dir(setup.state_dir().join("archive/shop"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with(".tmp-")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Issued (not imported) versions of `shop`: (directory, `issued_at` from meta.json), oldest
/// first.
fn issued_versions(setup: &Setup) -> Vec<(PathBuf, OffsetDateTime)> {
    let mut versions: Vec<_> = fs::read_dir(setup.state_dir().join("archive/shop"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| !path.file_name().unwrap().to_string_lossy().starts_with('.'))
        .filter_map(|path| {
            let meta: serde_json::Value =
                serde_json::from_slice(&fs::read(path.join("meta.json")).unwrap()).unwrap();
            if meta["imported"].as_bool() == Some(true) {
                return None;
            }
            let issued_at = OffsetDateTime::parse(meta["issued_at"].as_str()?, &Rfc3339).ok()?;
            Some((path, issued_at))
        })
        .collect();
    versions.sort_by_key(|(_, issued_at)| *issued_at);
    versions
}

fn assert_pair_matches(dir: &Path) {
    let file = evercert::inventory::read_cert_file(&dir.join("fullchain.pem")).unwrap();
    let key = fs::read(dir.join("privkey.pem")).unwrap();
    assert_eq!(
        evercert::inventory::public_key_of_pem(&key),
        Some(file.leaf.public_key),
        "{dir:?}: key and certificate do not match"
    );
}

/// Plants a 90-day certificate with 5 days left as plain files: the agent renews it at once.
fn plant_due(setup: &Setup) {
    let (not_before, not_after) = certs::days_left(5);
    let leaf = certs::TestCa::new().leaf(
        &["shop.example.test"],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    leaf.write_fullchain(&setup.cert_path("shop"));
    leaf.write_key(&setup.key_path("shop"));
}

/// Per step of the agent's install. The first install of a planted pair pauses 16 times
/// (new version 4, import 4, flips 2+2, two path swaps 2+2); 12 of them are counted below.
const AGENT_STEP_DELAY: Duration = Duration::from_millis(500);
const AGENT_PAUSES_AT_LEAST: u32 = 12;

/// The agent, renewing the planted due certificate with every install step slowed by
/// [`AGENT_STEP_DELAY`], once it is inside that install (holding the certificate's lock).
fn agent_installing_slowly(setup: &Setup) -> Running {
    let mut command = setup.command(&["run"]);
    command.env("EVERCERT_LOG", "info").env(
        "EVERCERT_TEST_STORE_DELAY_MS",
        AGENT_STEP_DELAY.as_millis().to_string(),
    );
    let agent = Running::capture(command, Capture::StdoutAndStderr);
    // A staged version exists only inside the agent's install, under its lock.
    wait_for(
        Duration::from_secs(60),
        "the agent to start installing",
        || !staging_dirs(setup).is_empty(),
    );
    agent
}

#[test]
fn renew_waits_for_the_agent_renewing_the_same_certificate_and_orders_after_it() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    plant_due(&setup);

    let mut agent = agent_installing_slowly(&setup);

    let started = Instant::now();
    let renew = setup.run(&["renew", "--force"]);
    let renew_took = started.elapsed();
    assert_eq!(renew.code, 0, "{}\nagent:\n{}", renew.all(), agent.log());
    assert!(
        renew.stdout.contains(WAITING),
        "renew did not say it waits: {}",
        renew.all()
    );
    let waiting_at = renew.stdout.find(WAITING).unwrap();
    let ordering_at = renew.stdout.find("shop: ordering").unwrap();
    assert!(
        waiting_at < ordering_at,
        "renew ordered before it waited: {}",
        renew.all()
    );
    assert!(
        renew.stdout.contains("summary: 1 renewed"),
        "{}",
        renew.all()
    );
    // Far below the 60 s the lock is waited for: it took the lock as soon as it was free.
    assert!(
        renew_took < Duration::from_secs(45),
        "renew took {renew_took:?}"
    );

    // Two issued versions: the agent's, then renew's, whose install began only after the
    // agent's slowed install (at least AGENT_PAUSES_AT_LEAST pauses) was over.
    let versions = issued_versions(&setup);
    assert_eq!(versions.len(), 2, "{versions:?}\n{}", agent.log());
    let (agent_version, agent_issued_at) = &versions[0];
    let (renew_version, renew_issued_at) = &versions[1];
    let gap = *renew_issued_at - *agent_issued_at;
    let agent_install_at_least = AGENT_STEP_DELAY * AGENT_PAUSES_AT_LEAST;
    assert!(
        gap >= agent_install_at_least,
        "renew installed {gap} after the agent began, inside the agent's install (at least {agent_install_at_least:?}): the orders overlapped\n{}",
        renew.all()
    );
    assert_pair_matches(agent_version);
    assert_pair_matches(renew_version);
    // What is live is renew's pair, the later one.
    let live = fs::canonicalize(setup.cert_path("shop")).unwrap();
    assert_eq!(
        live.parent().unwrap(),
        fs::canonicalize(renew_version).unwrap()
    );
    assert!(staging_dirs(&setup).is_empty());

    agent.signal(rustix::process::Signal::TERM);
    let code = agent.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0), "agent:\n{}", agent.log());
    // The agent renewed exactly once: renew's run did not make it order again.
    assert_eq!(issued_versions(&setup).len(), 2);
    println!(
        "renew waited and ordered {gap} after the agent's install began (took {renew_took:?})"
    );
}

#[test]
fn a_lock_left_by_a_killed_renew_does_not_block_the_next_one() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{}", first.all());

    // A renew stuck in its install, holding the lock, killed with SIGKILL.
    let mut command = setup.command(&["renew", "--force"]);
    command.env("EVERCERT_TEST_STORE_DELAY_MS", "5000");
    let mut holder = Running::capture(command, Capture::StdoutAndStderr);
    wait_for(
        Duration::from_secs(60),
        "the renew to start installing",
        || !staging_dirs(&setup).is_empty(),
    );
    let lock_path = setup.state_dir().join("locks/shop.lock");
    let lock = fs::File::open(&lock_path).unwrap();
    assert!(
        matches!(lock.try_lock(), Err(fs::TryLockError::WouldBlock)),
        "the renew does not hold {}",
        lock_path.display()
    );
    assert_eq!(
        fs::read_to_string(&lock_path).unwrap().trim(),
        holder.child.id().to_string(),
        "the lock file names its holder"
    );
    holder.signal(rustix::process::Signal::KILL);
    assert!(holder.wait(Duration::from_secs(20)).is_some());
    drop(lock);
    // The dead holder's pid and staging directory are still there.
    assert!(!staging_dirs(&setup).is_empty());

    let started = Instant::now();
    let next = setup.run(&["renew", "--force"]);
    let took = started.elapsed();
    assert_eq!(next.code, 0, "{}", next.all());
    assert!(!next.stdout.contains(WAITING), "it waited: {}", next.all());
    // Nowhere near the 60 s lock timeout.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(
        staging_dirs(&setup).is_empty(),
        "the dead run's staging was left"
    );
    let lock = fs::File::open(&lock_path).unwrap();
    lock.try_lock()
        .expect("the finished renew released the lock");
    println!("after a SIGKILLed holder, renew took the lock at once and finished in {took:?}");
}

#[test]
fn renew_that_waited_for_the_agent_does_not_order_a_second_certificate() {
    let setup = Setup::new();
    setup.write_config(&[CertSpec::new("shop")]);
    plant_due(&setup);
    let mut agent = agent_installing_slowly(&setup);
    // Not forced: once the agent is done, the certificate is not due any more.
    let renew = setup.run(&["renew"]);
    assert_eq!(renew.code, 0, "{}", renew.all());
    assert!(renew.stdout.contains(WAITING), "{}", renew.all());
    assert!(
        renew
            .stdout
            .contains("shop: renewed meanwhile by the other evercert"),
        "{}",
        renew.all()
    );
    assert!(!renew.stdout.contains("shop: ordering"), "{}", renew.all());
    assert!(
        renew
            .stdout
            .contains("summary: 0 renewed, 1 not due, 0 failed"),
        "{}",
        renew.all()
    );
    assert_eq!(issued_versions(&setup).len(), 1, "one order, the agent's");
    agent.signal(rustix::process::Signal::TERM);
    assert_eq!(
        agent.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        agent.log()
    );
}

#[test]
fn a_run_rolling_back_after_a_failed_reload_leaves_a_newer_version_live() {
    let setup = Setup::new();
    let marks = setup.path().join("marks");
    fs::create_dir(&marks).unwrap();
    // Once armed, the first reload fails after a pause; every other reload succeeds.
    let hook = format!(
        "[ -e {m}/armed ] || exit 0; if mkdir {m}/first 2>/dev/null; then touch {m}/in-hook; sleep 4; exit 1; fi; exit 0",
        m = marks.display()
    );
    setup.write_config(&[CertSpec::new("shop").reload(&hook)]);
    let first = setup.run(&["renew"]);
    assert_eq!(first.code, 0, "{}", first.all());

    fs::write(marks.join("armed"), "").unwrap();
    let mut failing = Running::capture(
        setup.command(&["renew", "--force"]),
        Capture::StdoutAndStderr,
    );
    wait_for(
        Duration::from_secs(60),
        "the failing reload to start",
        || marks.join("in-hook").exists(),
    );
    // Installed while the first run's reload is failing: the first run's rollback must not
    // take this newer version away again.
    let second = setup.run(&["renew", "--force"]);
    assert_eq!(second.code, 0, "{}", second.all());
    assert_eq!(
        failing.wait(Duration::from_secs(60)),
        Some(1),
        "{}",
        failing.log()
    );
    let failed = failing.log();
    let version = second
        .stdout
        .lines()
        .find_map(|line| {
            line.strip_prefix("shop: written ")?
                .rsplit_once("(version ")?
                .1
                .strip_suffix(')')
        })
        .unwrap()
        .to_owned();
    let live = fs::canonicalize(setup.cert_path("shop")).unwrap();
    assert_eq!(
        live.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        version,
        "renew reported version {version} live, but {live:?} is\n{failed}"
    );
    assert!(failed.contains("reload hook failed"), "{failed}");
    assert!(
        failed.contains("not rolled back: another evercert has since made version"),
        "{failed}"
    );
}
