//! The pipeline through its `Deps` (the file store, lock and history in a temporary
//! directory) with a clock the test chooses, and the retry helper under tokio's paused time:
//! no CA, no network, no real waiting. The CA's side is tested against Pebble in tests/it.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use time::OffsetDateTime;
use time::macros::datetime;

use super::retry::{Again, Policy, Round, retrying};
use super::*;
use crate::clock::TokioClock;
use crate::lock::FileLock;
use crate::state::{FileState, Pending};
use crate::store::{FsStore, NewPair};

const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
const NAME: &str = "shop";
const DOMAIN: &str = "shop.example.test";

// ---- the retry helper and its policy -------------------------------------------------

fn transient(step: Step) -> Failure {
    Failure::new(step, FailureKind::Transient, "the CA answered 503")
}

/// Runs the helper over one item whose attempts give `results` in turn; returns the last
/// result, the number of attempts, the rounds and the waits announced.
async fn run_retrying(
    policy: Policy,
    clock: &TokioClock,
    results: Vec<Result<(), Failure>>,
) -> (Result<(), Failure>, usize, Vec<Round>, Vec<Again>) {
    let attempts = AtomicUsize::new(0);
    let rounds = Mutex::new(Vec::new());
    let mut announced = Vec::new();
    let (attempts_ref, rounds_ref, results_ref) = (&attempts, &rounds, &results);
    let outcome = retrying(
        policy,
        clock,
        vec![NAME],
        |items: Vec<&str>, round| async move {
            let n = attempts_ref.fetch_add(1, Ordering::SeqCst);
            rounds_ref.lock().unwrap().push(round);
            let result = results_ref.get(n).cloned().unwrap_or(Ok(()));
            items
                .into_iter()
                .map(|item| (item, result.clone()))
                .collect()
        },
        |_: &&str, _: &Failure, again| announced.push(again),
    )
    .await;
    let [(_, last)] = <[_; 1]>::try_from(outcome).unwrap();
    let rounds = rounds.into_inner().unwrap();
    (last, attempts.into_inner(), rounds, announced)
}

const ONE_SHOT: Policy = Policy { transient: true };
const AGENT: Policy = Policy { transient: false };

#[tokio::test(start_paused = true)]
async fn a_transient_ca_failure_is_tried_again_after_1_s_then_3_s_then_reported() {
    let clock = TokioClock::starting_at(NOW);
    let failures = vec![Err(transient(Step::Order)); 5];
    let (last, attempts, _, announced) = run_retrying(ONE_SHOT, &clock, failures).await;
    assert_eq!(attempts, 3, "the first attempt and two retries");
    assert_eq!(
        announced,
        [
            Again::After(Duration::from_secs(1)),
            Again::After(Duration::from_secs(3))
        ]
    );
    assert_eq!(last.unwrap_err().kind, FailureKind::Transient);
    // The clock moved by exactly the waits: the helper slept on tokio's (paused) time.
    assert_eq!(clock.now() - NOW, time::Duration::seconds(4));
}

#[tokio::test(start_paused = true)]
async fn a_ca_that_recovers_is_used_in_the_same_run() {
    let clock = TokioClock::starting_at(NOW);
    let results = vec![Err(transient(Step::Account)), Ok(())];
    let (last, attempts, _, _) = run_retrying(ONE_SHOT, &clock, results).await;
    assert!(last.is_ok());
    assert_eq!(attempts, 2);
    assert_eq!(clock.now() - NOW, time::Duration::seconds(1));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_when_longer_than_the_policy_wait() {
    let clock = TokioClock::starting_at(NOW);
    let mut limited = Failure::new(Step::Order, FailureKind::RateLimited, "429");
    limited.retry_after = Some(NOW + time::Duration::seconds(12));
    let (last, attempts, _, announced) =
        run_retrying(ONE_SHOT, &clock, vec![Err(limited), Ok(())]).await;
    assert!(last.is_ok());
    assert_eq!(attempts, 2);
    assert_eq!(announced, [Again::After(Duration::from_secs(12))]);
    assert_eq!(clock.now() - NOW, time::Duration::seconds(12));

    // A Retry-After already past: the policy's own wait.
    let clock = TokioClock::starting_at(NOW);
    let mut past = transient(Step::Order);
    past.retry_after = Some(NOW - time::Duration::minutes(5));
    let (_, _, _, announced) = run_retrying(ONE_SHOT, &clock, vec![Err(past), Ok(())]).await;
    assert_eq!(announced, [Again::After(Duration::from_secs(1))]);
}

#[tokio::test(start_paused = true)]
async fn what_a_run_does_not_wait_for_is_reported_at_once() {
    let mut long = Failure::new(Step::Order, FailureKind::RateLimited, "429");
    long.retry_after = Some(NOW + time::Duration::seconds(31));
    let unlimited = Failure::new(Step::Order, FailureKind::RateLimited, "429");
    let permanent = Failure::new(Step::Order, FailureKind::Permanent, "rejectedIdentifier");
    // Writing the files or reloading is not the CA's to fix by asking again.
    let store = transient(Step::Store);
    for failure in [long, unlimited, permanent, store] {
        let clock = TokioClock::starting_at(NOW);
        let (last, attempts, _, announced) =
            run_retrying(ONE_SHOT, &clock, vec![Err(failure.clone()), Ok(())]).await;
        assert!(last.is_err(), "{failure:?}");
        assert_eq!(attempts, 1, "{failure:?}");
        assert!(announced.is_empty(), "{failure:?}");
        assert_eq!(clock.now(), NOW, "{failure:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_agent_leaves_transient_failures_to_its_backoff() {
    let clock = TokioClock::starting_at(NOW);
    let (last, attempts, _, _) =
        run_retrying(AGENT, &clock, vec![Err(transient(Step::Order)), Ok(())]).await;
    assert!(last.is_err());
    assert_eq!(attempts, 1);
    assert_eq!(clock.now(), NOW);
}

#[tokio::test(start_paused = true)]
async fn an_account_the_ca_forgot_is_registered_anew_once_without_waiting() {
    for policy in [ONE_SHOT, AGENT] {
        let clock = TokioClock::starting_at(NOW);
        let mut gone = transient(Step::Order);
        gone.account_gone = true;
        let (last, attempts, rounds, announced) = run_retrying(
            policy,
            &clock,
            vec![Err(gone.clone()), Err(gone.clone()), Ok(())],
        )
        .await;
        // Once per run: the CA forgetting the new account too is reported.
        assert!(last.unwrap_err().account_gone);
        assert_eq!(attempts, 2);
        assert_eq!(
            rounds,
            [Round::default(), Round { new_account: true }],
            "{policy:?}"
        );
        assert_eq!(announced, [Again::NewAccount]);
        assert_eq!(clock.now(), NOW);
    }
}

#[tokio::test(start_paused = true)]
async fn each_round_waits_once_for_the_longest_of_its_items() {
    let clock = TokioClock::starting_at(NOW);
    let mut slow = transient(Step::Order);
    slow.retry_after = Some(NOW + time::Duration::seconds(7));
    let first: Vec<(&str, Result<(), Failure>)> = vec![
        ("a", Err(transient(Step::Order))),
        ("b", Err(slow)),
        ("c", Ok(())),
    ];
    let calls = Mutex::new(Vec::new());
    let calls_ref = &calls;
    let mut first = Some(first);
    let outcome = retrying(
        ONE_SHOT,
        &clock,
        vec!["a", "b", "c"],
        |items: Vec<&str>, _| {
            let results = first
                .take()
                .unwrap_or_else(|| items.iter().map(|item| (*item, Ok(()))).collect());
            async move {
                calls_ref.lock().unwrap().push(items);
                results
            }
        },
        |_: &&str, _: &Failure, _| {},
    )
    .await;
    assert!(outcome.iter().all(|(_, result)| result.is_ok()));
    assert_eq!(outcome.len(), 3);
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls, [vec!["a", "b", "c"], vec!["a", "b"]]);
    assert_eq!(clock.now() - NOW, time::Duration::seconds(7));
}

// ---- the pipeline through Deps -------------------------------------------------------

/// A certificate and key for `DOMAIN`, valid from `not_before` to `not_after`.
fn mint(not_before: OffsetDateTime, not_after: OffsetDateTime) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![DOMAIN.to_owned()]).unwrap();
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A configuration whose CA cannot be reached (port 1 on loopback): a test that wrongly
/// orders fails at the account step instead of passing.
fn config(dir: &Path, reload: Option<&str>) -> Config {
    let reload = reload
        .map(|command| format!("reload = {command:?}\n"))
        .unwrap_or_default();
    let text = format!(
        r#"state_dir = "{dir}/state"
[acme]
directory = "https://127.0.0.1:1/directory"
[renewal]
ari = false
[[certificate]]
name = "{NAME}"
domains = ["{DOMAIN}"]
cert_path = "{dir}/tls/fullchain.pem"
key_path = "{dir}/tls/privkey.pem"
{reload}[certificate.http01]
listen = "127.0.0.1:1"
"#,
        dir = dir.display()
    );
    crate::config::parse(&text, &dir.join("evercert.toml")).unwrap()
}

/// The files in a temporary directory, and what the pipeline said.
struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    store: FsStore,
    lock: FileLock,
    state: FileState,
    progress: Mutex<Vec<String>>,
}

impl Fixture {
    fn new(reload: Option<&str>) -> Self {
        // In memory where there is a tmpfs: the store fsyncs every file and directory, which
        // costs tens of milliseconds per test on a busy disk and proves nothing here.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .unwrap();
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        let config = config(dir.path(), reload);
        Self {
            store: FsStore::new(&config.state_dir),
            lock: FileLock::new(config.state_dir.join("locks")),
            state: FileState::new(&config.state_dir),
            progress: Mutex::new(Vec::new()),
            config,
            _dir: dir,
        }
    }

    fn cert(&self) -> &CertificateSettings {
        &self.config.certificates[0]
    }

    /// Stores a pair as a new live version, issued at `issued_at`.
    fn install(&self, issued_at: OffsetDateTime, not_after: OffsetDateTime) -> (VersionId, String) {
        let (chain, key) = mint(issued_at, not_after);
        let file = check_issued(&chain, &key, &[DOMAIN.to_owned()], issued_at).unwrap();
        let pair = NewPair {
            key_pem: key.as_bytes(),
            chain_pem: chain.as_bytes(),
            serial: &file.leaf.serial,
            not_after,
            domains: &self.cert().domains,
            issued_at,
        };
        let installed = self.store.install(&target(self.cert()), &pair).unwrap();
        (installed.version, file.leaf.serial)
    }

    /// A live certificate that is due (80 of its 90 days gone), and a newer version that was
    /// issued yesterday but rolled back after a failed deploy: it waits in the history as
    /// pending, with the failure.
    fn due_with_pending(&self) -> (VersionId, Pending) {
        let (live, _) = self.install(
            NOW - time::Duration::days(80),
            NOW + time::Duration::days(10),
        );
        let issued = NOW - time::Duration::days(1);
        let (pending, serial) = self.install(issued, issued + time::Duration::days(90));
        self.store.rollback(&target(self.cert()), &live).unwrap();
        let mut history = self.state.load(NAME);
        history.record_failure(
            FailureKind::Permanent,
            Step::Reload,
            "reload hook failed: exit status 1",
            None,
            issued,
        );
        history.pending = Some(Pending {
            version: pending.0.clone(),
            serial,
            not_after: issued + time::Duration::days(90),
        });
        self.state.save(NAME, &history).unwrap();
        (live, history.pending.unwrap())
    }

    async fn run(&self, clock: &dyn Clock, request: &RenewRequest) -> RunReport {
        let progress = |name: &str, message: &str| {
            self.progress
                .lock()
                .unwrap()
                .push(format!("{name}: {message}"));
        };
        let deps = Deps {
            store: &self.store,
            lock: &self.lock,
            state: &self.state,
            progress: &progress,
            clock,
            fanout: None,
            shared_account: None,
        };
        run(&self.config, request, &deps).await
    }

    fn said(&self) -> String {
        self.progress.lock().unwrap().join("\n")
    }
}

fn one_shot() -> RenewRequest {
    RenewRequest {
        retry_transient: true,
        ..RenewRequest::default()
    }
}

#[tokio::test]
async fn a_pending_version_is_deployed_instead_of_ordering() {
    let fx = Fixture::new(None);
    let (_, pending) = fx.due_with_pending();
    let clock = TokioClock::starting_at(NOW);

    let report = fx.run(&clock, &one_shot()).await;

    let [(name, outcome)] = <[_; 1]>::try_from(report.outcomes).unwrap();
    assert_eq!(name, NAME);
    let Outcome::Renewed {
        serial, version, ..
    } = outcome
    else {
        panic!("{outcome:?}\n{}", fx.said());
    };
    assert_eq!(serial, pending.serial);
    assert_eq!(version.0, pending.version);
    assert_eq!(fx.store.current(NAME).unwrap(), Some(version));
    assert!(fx.said().contains("nothing is ordered"), "{}", fx.said());
    assert!(
        !fx.said().contains(&format!("ordering {DOMAIN}")),
        "{}",
        fx.said()
    );
    let history = fx.state.load(NAME);
    assert_eq!(history.pending, None);
    // Recorded at the run's clock, in whole seconds like every time evercert records.
    let recorded = history.last_success.unwrap();
    assert!(
        recorded >= NOW && recorded < NOW + time::Duration::minutes(1),
        "{recorded}"
    );
    assert_eq!(recorded.nanosecond(), 0, "{recorded}");
}

#[tokio::test]
async fn a_failed_reload_rolls_back_and_keeps_the_version_pending() {
    let fx = Fixture::new(Some("exit 3"));
    let (live, pending) = fx.due_with_pending();
    let clock = TokioClock::starting_at(NOW);

    let report = fx.run(&clock, &one_shot()).await;

    let [(_, outcome)] = <[_; 1]>::try_from(report.outcomes).unwrap();
    let Outcome::Failed(failure) = outcome else {
        panic!("{outcome:?}\n{}", fx.said());
    };
    assert_eq!(failure.step, Step::Reload, "{}", failure.message);
    assert!(
        failure
            .message
            .contains("the previous certificate was restored"),
        "{}",
        failure.message
    );
    assert_eq!(fx.store.current(NAME).unwrap(), Some(live));
    let history = fx.state.load(NAME);
    assert_eq!(history.pending.as_ref(), Some(&pending));
    assert_eq!(history.failure_step, Some(Step::Reload));
    assert_eq!(history.failures, 2);
    assert!(
        !fx.said().contains(&format!("ordering {DOMAIN}")),
        "{}",
        fx.said()
    );
}

#[tokio::test]
async fn a_certificate_not_due_touches_nothing() {
    let fx = Fixture::new(Some("exit 3"));
    let (live, _) = fx.install(
        NOW - time::Duration::days(10),
        NOW + time::Duration::days(80),
    );
    let clock = TokioClock::starting_at(NOW);

    let report = fx.run(&clock, &one_shot()).await;

    assert_eq!(report.exit_code(), 0);
    let [(_, outcome)] = <[_; 1]>::try_from(report.outcomes).unwrap();
    let Outcome::NotDue { renew_at, reason } = outcome else {
        panic!("{outcome:?}\n{}", fx.said());
    };
    assert_eq!(reason, Reason::Lifetime);
    // 1/3 of the 90 days left: renew at day 60, a little earlier by the stable jitter.
    let day_60 = NOW + time::Duration::days(50);
    assert!(
        renew_at <= day_60 && renew_at > day_60 - time::Duration::days(1),
        "{renew_at}"
    );
    assert_eq!(fx.store.current(NAME).unwrap(), Some(live));
}
