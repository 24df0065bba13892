//! Crash consistency: `evercert renew --force` against Pebble, killed with SIGKILL at random
//! instants, must always leave a complete, matching key+certificate pair behind, and the next
//! run must succeed and clean up after the dead one.
//!
//! `EVERCERT_TEST_STORE_DELAY_MS` widens each step of the store's install, so a good share of
//! the kills land while files are written and renamed. Kill instants are uniform over the
//! length of an unkilled run (measured first, per starting layout). The RNG is seeded; the
//! seed is printed and can be replayed with `EVERCERT_CRASH_SEED=N`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::support::certs::{self, KeyType};
use crate::support::setup::{CertSpec, Setup};

/// Pause between the store's steps in killed runs: wide enough to hit, short enough to keep
/// the whole test within about a minute on two cores.
const STEP_DELAY_MS: u64 = 25;
/// SIGKILLs per test (each followed by one unkilled recovery run): about 50 s on two busy
/// cores. `EVERCERT_CRASH_KILLS` asks for more in a longer soak.
const KILLS: usize = 80;
const KILLS_ENV: &str = "EVERCERT_CRASH_KILLS";
const SEED_ENV: &str = "EVERCERT_CRASH_SEED";
const NAME: &str = "shop";

/// What the configured paths hold when a killed run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Our symlinks into `live/NAME` (the usual renewal).
    Migrated,
    /// An operator's plain files, with evercert's archive already holding older versions.
    Planted,
    /// Plain files and no archive or live link at all: the very first migration.
    PlantedFresh,
}

const STARTS: [Start; 3] = [Start::Migrated, Start::Planted, Start::PlantedFresh];

/// Where the killed run was when it died, from the progress lines it had printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Account, order, challenge, finalize, download.
    Ordering,
    /// Issued, inside the store's install (write, fsync, rename, symlink flips).
    Installing,
    /// Installed; recording history or exiting.
    AfterInstall,
    /// It had exited by itself before the kill.
    Finished,
}

fn seed() -> u64 {
    match std::env::var(SEED_ENV) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_ENV}={text:?} is not a u64")),
        Err(_) => rand::random(),
    }
}

/// The bytes the configured paths resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Served {
    key: Vec<u8>,
    chain: Vec<u8>,
}

fn served(setup: &Setup) -> Served {
    Served {
        key: fs::read(setup.key_path(NAME)).unwrap(),
        chain: fs::read(setup.cert_path(NAME)).unwrap(),
    }
}

/// Puts an operator's pair (plain files, key 0600) at the configured paths.
fn plant(setup: &Setup) {
    let (not_before, not_after) = certs::days_left(40);
    let leaf = certs::TestCa::new().leaf(
        &[&format!("{NAME}.example.test")],
        not_before,
        not_after,
        KeyType::EcdsaP256,
    );
    for path in [setup.cert_path(NAME), setup.key_path(NAME)] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("remove {}: {err}", path.display()),
        }
    }
    leaf.write_fullchain(&setup.cert_path(NAME));
    leaf.write_key(&setup.key_path(NAME));
    fs::set_permissions(setup.key_path(NAME), fs::Permissions::from_mode(0o600)).unwrap();
}

fn prepare(setup: &Setup, start: Start) {
    match start {
        Start::Migrated => {
            let link = fs::read_link(setup.key_path(NAME)).expect("key_path is a symlink");
            assert!(link.starts_with(setup.state_dir().join("live")), "{link:?}");
        }
        Start::Planted => plant(setup),
        Start::PlantedFresh => {
            for dir in ["archive", "live"] {
                let dir = setup.state_dir().join(dir);
                if dir.exists() {
                    fs::remove_dir_all(&dir).unwrap();
                }
            }
            plant(setup);
        }
    }
}

/// Runs `renew --force` with the step delay and kills it `kill_after` after spawning
/// (`None`: lets it finish). Returns the phase it died in, its output and its duration.
fn killed_run(setup: &Setup, kill_after: Option<Duration>) -> (Phase, String, Duration) {
    let started = Instant::now();
    let mut child = setup
        .command(&["renew", "--force"])
        .env("EVERCERT_TEST_STORE_DELAY_MS", STEP_DELAY_MS.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let finished = match kill_after {
        Some(after) => {
            std::thread::sleep(after);
            let finished = child.try_wait().unwrap().is_some();
            if !finished {
                child.kill().unwrap();
            }
            finished
        }
        None => true,
    };
    let output = child.wait_with_output().unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let all = format!(
        "{:?}\n--- stdout\n{stdout}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    if kill_after.is_none() {
        assert!(output.status.success(), "calibration run failed: {all}");
    }
    let phase = if finished {
        Phase::Finished
    } else if stdout.contains(&format!("{NAME}: written ")) {
        Phase::AfterInstall
    } else if stdout.contains(&format!("{NAME}: issued serial")) {
        Phase::Installing
    } else {
        Phase::Ordering
    };
    (phase, all, took)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count()
}

/// The chain is whole PEM (every certificate closed, nothing after the last), parses, and the
/// key is whole PEM that belongs to its leaf.
fn assert_complete_matching_pair(chain: &[u8], key: &[u8], chain_path: &Path, context: &str) {
    let begins = count(chain, b"-----BEGIN CERTIFICATE-----");
    assert!(begins >= 1, "{context}: no certificate in the chain");
    assert_eq!(
        begins,
        count(chain, b"-----END CERTIFICATE-----"),
        "{context}: torn chain"
    );
    assert!(
        chain.ends_with(b"-----END CERTIFICATE-----\n"),
        "{context}: the chain does not end with a whole certificate"
    );
    assert!(
        key.starts_with(b"-----BEGIN ") && key.trim_ascii_end().ends_with(b" KEY-----"),
        "{context}: torn key"
    );
    let file = evercert::inventory::read_cert_file(chain_path)
        .unwrap_or_else(|err| panic!("{context}: the certificate does not parse: {err}"));
    let public_key = evercert::inventory::public_key_of_pem(key)
        .unwrap_or_else(|| panic!("{context}: the key does not parse"));
    assert_eq!(
        public_key, file.leaf.public_key,
        "{context}: the key does not match the certificate"
    );
}

/// After a kill: both paths resolve, to the pair that was there before or to one complete
/// version in the archive, which matches, with the key 0600.
fn assert_consistent_after_kill(setup: &Setup, before: &Served, context: &str) {
    let cert_path = setup.cert_path(NAME);
    let key_path = setup.key_path(NAME);
    let cert_real = fs::canonicalize(&cert_path)
        .unwrap_or_else(|err| panic!("{context}: {} does not resolve: {err}", cert_path.display()));
    let key_real = fs::canonicalize(&key_path)
        .unwrap_or_else(|err| panic!("{context}: {} does not resolve: {err}", key_path.display()));
    let now = served(setup);
    if now != *before {
        // Not the old pair, so it must be one whole version, key and chain from the same one.
        let version = cert_real.parent().unwrap();
        assert_eq!(
            key_real.parent().unwrap(),
            version,
            "{context}: key and certificate come from different places"
        );
        let archive = fs::canonicalize(setup.state_dir().join("archive").join(NAME)).unwrap();
        assert_eq!(version.parent().unwrap(), archive, "{context}: {version:?}");
        let version_name = version.file_name().unwrap().to_string_lossy();
        assert!(
            !version_name.starts_with('.'),
            "{context}: a staging directory is live: {version:?}"
        );
        assert!(
            version.join("meta.json").is_file(),
            "{context}: live version {version:?} has no meta.json"
        );
    }
    assert_complete_matching_pair(&now.chain, &now.key, &cert_path, context);
    let key_mode = fs::metadata(&key_path).unwrap().mode() & 0o7777;
    assert_eq!(key_mode, 0o600, "{context}: key mode {key_mode:04o}");
}

/// After a successful run: no temp file anywhere, only the configured files beside the
/// certificate, our symlinks in place, and every archived version whole and matching.
fn assert_clean(setup: &Setup, checked_versions: &mut BTreeSet<PathBuf>, context: &str) {
    let names = |dir: &Path| -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let archive = setup.state_dir().join("archive").join(NAME);
    let live = setup.state_dir().join("live");
    let cert_dir = setup.cert_path(NAME).parent().unwrap().to_owned();
    let staging: Vec<_> = names(&archive)
        .into_iter()
        .filter(|name| name.starts_with(".tmp-"))
        .collect();
    assert!(
        staging.is_empty(),
        "{context}: left in archive: {staging:?}"
    );
    let live_temps: Vec<_> = names(&live)
        .into_iter()
        .filter(|name| name.starts_with('.') && name.ends_with(".tmp"))
        .collect();
    assert!(
        live_temps.is_empty(),
        "{context}: left in live: {live_temps:?}"
    );
    let mut beside: Vec<_> = names(&cert_dir);
    beside.sort();
    assert_eq!(
        beside,
        ["fullchain.pem", "privkey.pem"],
        "{context}: the certificate directory holds more than the configured files"
    );
    for (path, file) in [
        (setup.cert_path(NAME), "fullchain.pem"),
        (setup.key_path(NAME), "privkey.pem"),
    ] {
        assert_eq!(
            fs::read_link(&path).ok(),
            Some(live.join(NAME).join(file)),
            "{context}: {} is not evercert's symlink",
            path.display()
        );
    }
    for version in names(&archive) {
        let dir = archive.join(&version);
        if !checked_versions.insert(dir.clone()) {
            continue;
        }
        let key = fs::read(dir.join("privkey.pem"))
            .unwrap_or_else(|err| panic!("{context}: {version}: no key: {err}"));
        let chain = fs::read(dir.join("fullchain.pem"))
            .unwrap_or_else(|err| panic!("{context}: {version}: no chain: {err}"));
        assert!(
            dir.join("meta.json").is_file(),
            "{context}: {version}: no meta.json"
        );
        let key_mode = fs::metadata(dir.join("privkey.pem")).unwrap().mode() & 0o7777;
        assert_eq!(
            key_mode, 0o600,
            "{context}: {version}: key mode {key_mode:04o}"
        );
        assert_complete_matching_pair(
            &chain,
            &key,
            &dir.join("fullchain.pem"),
            &format!("{context}: archived {version}"),
        );
    }
}

#[test]
fn renew_killed_at_random_instants_never_leaves_a_broken_pair() {
    let seed = seed();
    println!("crash test seed: {seed} (replay with {SEED_ENV}={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let test_started = Instant::now();

    let setup = Setup::new();
    setup.write_config(&[CertSpec::new(NAME)]);
    let first = setup.run(&["renew", "--force"]);
    assert_eq!(first.code, 0, "{}", first.all());

    // How long an unkilled, delayed run takes from each starting layout. Killed runs that
    // finished before their kill are measurements too; the median of all is used.
    let mut run_lengths: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for start in STARTS {
        prepare(&setup, start);
        let (_, _, took) = killed_run(&setup, None);
        run_lengths.insert(format!("{start:?}"), vec![took]);
    }
    println!("unkilled run length with {STEP_DELAY_MS} ms steps: {run_lengths:?}");

    let mut checked_versions = BTreeSet::new();
    let mut phases = BTreeMap::<Phase, usize>::new();
    let mut per_start = BTreeMap::<String, usize>::new();
    let kills_wanted = std::env::var(KILLS_ENV)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(KILLS);
    let mut kills = 0;
    let mut iteration = 0;
    // A run that finishes before its instant was not killed; it only refines the estimate.
    while kills < kills_wanted {
        assert!(
            iteration < 2 * kills_wanted,
            "most runs finished before their kill: {phases:?}"
        );
        let start = STARTS[iteration % STARTS.len()];
        iteration += 1;
        prepare(&setup, start);
        let before = served(&setup);
        let lengths = run_lengths.get_mut(&format!("{start:?}")).unwrap();
        lengths.sort();
        let length = lengths[lengths.len() / 2];
        let kill_after = length.mul_f64(rng.random_range(0.0..1.0));
        let (phase, output, took) = killed_run(&setup, Some(kill_after));
        if phase == Phase::Finished {
            lengths.push(took);
        } else {
            kills += 1;
        }
        *phases.entry(phase).or_default() += 1;
        *per_start.entry(format!("{start:?}")).or_default() += 1;
        let context = format!(
            "seed {seed}, iteration {iteration} ({start:?}, killed after {kill_after:?} in {phase:?})\n{output}"
        );
        assert_consistent_after_kill(&setup, &before, &context);

        let next = setup.run(&["renew", "--force"]);
        assert_eq!(next.code, 0, "{context}\nnext run: {}", next.all());
        assert_clean(&setup, &mut checked_versions, &context);
        let after = served(&setup);
        assert_ne!(
            after, before,
            "{context}: the next run installed nothing new"
        );
        assert_complete_matching_pair(&after.chain, &after.key, &setup.cert_path(NAME), &context);
    }

    let took = test_started.elapsed();
    println!(
        "crash test: {kills} SIGKILLs in {iteration} runs (each followed by a recovery run), starts {per_start:?}, phases {phases:?}, {} versions checked, 0 broken pairs, {took:?}",
        checked_versions.len()
    );
    let in_store = phases.get(&Phase::Installing).copied().unwrap_or_default();
    assert!(
        in_store > 0,
        "no kill landed inside the install (phases {phases:?}); widen STEP_DELAY_MS"
    );
}
