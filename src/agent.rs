//! `evercert run`: the long-running agent. It only decides *when*; the work is the shared
//! renewal pipeline (`renew::run`).
//!
//! Each wake-up inspects every certificate, renews what is due (by the lifetime rule, the
//! CA's ARI window, or a retry after a failure), polls ARI, sends the alerts a change of
//! state calls for, and publishes metrics. Then it sleeps until the earliest next event —
//! no polling every N seconds — or until a watched file changes, a signal arrives, or the
//! safety rescan is due.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};
use tokio::sync::mpsc;

use crate::acme::{AcmeClient, RenewalWindow};
use crate::alerts::{Alert, Alerter};
use crate::config::{self, Config};
use crate::inventory::{self, ManagedStatus};
use crate::lock::FileLock;
use crate::metrics::{self, Metrics};
use crate::renew::{self, Outcome, RenewRequest, RunReport};
use crate::report::{self, Entry};
use crate::schedule::{self, AlertFacts, AlertMemory};
use crate::state::{CertHistory, FileState, StateStore};
use crate::store::FsStore;
use crate::watch::Watcher;

/// The slow safety net: everything is looked at again at least this often, even if no
/// event is scheduled and no file changed (endpoints, clock jumps, missed events).
pub const RESCAN: Duration = Duration::hours(1);
/// The shortest sleep between two scans.
pub const MIN_SLEEP: Duration = Duration::SECOND;
/// The rescan interval when some directory cannot be watched (inotify watches ran out).
pub const RESCAN_DEGRADED: Duration = Duration::minutes(5);
/// A certificate is never attempted twice within this, whatever the schedule says: the
/// guard against a hot loop (a `renew_before` longer than the lifetime, a clock gone wrong).
pub const MIN_ATTEMPT_INTERVAL: Duration = Duration::minutes(5);
/// File events are collected for this long before acting, so a certbot-style swap of two
/// symlinks or a Kubernetes `..data` flip is seen as one change, complete.
pub const COALESCE: StdDuration = StdDuration::from_secs(2);

/// Where time comes from: the wall clock in production; tokio's (pausable) clock in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Wall time at creation plus tokio's elapsed time: under `tokio::time::pause` it moves only
/// when the test (or auto-advance) moves it.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: OffsetDateTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(wall: OffsetDateTime) -> Self {
        Self {
            wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.wall + elapsed
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs the renewal pipeline for the certificates the agent decided are due. A trait so that
/// the scheduler can be tested without a CA.
pub trait Renewer: Send + Sync {
    fn renew<'a>(
        &'a self,
        config: &'a Config,
        names: Vec<String>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, RunReport>;
}

/// The real pipeline with the file-backed store, lock and history.
#[derive(Debug, Default)]
pub struct PipelineRenewer;

impl Renewer for PipelineRenewer {
    fn renew<'a>(
        &'a self,
        config: &'a Config,
        names: Vec<String>,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, RunReport> {
        Box::pin(async move {
            let store = FsStore::new(&config.state_dir);
            let lock = FileLock::new(config.state_dir.join("locks"));
            let state = FileState::new(&config.state_dir);
            let progress = |name: &str, message: &str| tracing::info!("{name}: {message}");
            let deps = renew::Deps {
                store: &store,
                lock: &lock,
                state: &state,
                progress: &progress,
            };
            // No retries inside a run: the agent's own backoff schedules the next attempt.
            let request = RenewRequest {
                names,
                force: true,
                dry_run: false,
                retry_transient: false,
            };
            renew::run(config, &request, &deps, now).await
        })
    }
}

/// What the agent knows of a CA's renewal window for one certificate.
#[derive(Debug, Clone)]
struct AriState {
    serial: String,
    window: Option<RenewalWindow>,
    next_poll: OffsetDateTime,
}

/// The agent's decisions for one wake-up, for logs, `STATUS=` and tests.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Certificates to renew now.
    pub due: Vec<String>,
    /// The earliest future event.
    pub next: Option<(OffsetDateTime, String)>,
    /// The earliest future renewal (or retry), for the operator's `STATUS=` line.
    pub next_renewal: Option<(OffsetDateTime, String)>,
}

/// The agent.
pub struct Agent {
    config_path: PathBuf,
    config: Config,
    clock: Arc<dyn Clock>,
    renewer: Arc<dyn Renewer>,
    state: FileState,
    alerter: Alerter,
    pub metrics: Arc<Metrics>,
    memory: BTreeMap<String, AlertMemory>,
    attempts: HashMap<String, OffsetDateTime>,
    ari: HashMap<String, AriState>,
    ari_supported: Option<bool>,
    acme: Option<Arc<AcmeClient>>,
    /// How many renewal runs were started (for tests and STATUS).
    pub runs: u64,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config_path)
            .field("runs", &self.runs)
            .finish()
    }
}

fn alerts_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state").join("alerts.json")
}

impl Agent {
    pub fn new(
        config_path: PathBuf,
        config: Config,
        clock: Arc<dyn Clock>,
        renewer: Arc<dyn Renewer>,
    ) -> Self {
        let memory = std::fs::read(alerts_path(&config.state_dir))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Self {
            config_path,
            state: FileState::new(&config.state_dir),
            alerter: Alerter::new(config.alerts.clone()),
            config,
            clock,
            renewer,
            metrics: Arc::new(Metrics::default()),
            memory,
            attempts: HashMap::new(),
            ari: HashMap::new(),
            ari_supported: None,
            acme: None,
            runs: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Re-reads the configuration; an invalid one is reported and the old one kept.
    pub fn reload_config(&mut self) -> Result<(), config::ConfigErrors> {
        let config = config::load(&self.config_path)?;
        self.alerter = Alerter::new(config.alerts.clone());
        self.ari_supported = None;
        self.acme = None;
        self.config = config;
        Ok(())
    }

    /// When a managed certificate should next be attempted, and why.
    fn next_attempt(
        &self,
        status: &ManagedStatus,
        history: &CertHistory,
        now: OffsetDateTime,
    ) -> (OffsetDateTime, &'static str) {
        let assessment = &status.assessment;
        if !assessment.due && assessment.renew_at <= now {
            // Unreadable (permission denied): an error to alert on, not a reason to order
            // certificates that could not be written either.
            return (now + RESCAN, "error");
        }
        let mut at = assessment.renew_at;
        let mut why = "renewal";
        if let Some(file) = &status.file {
            if status.problem.is_none() {
                let lifetime = file.leaf.not_after - file.leaf.not_before;
                let uniform = schedule::stable_fraction(&[&status.name, &file.leaf.serial]);
                at = schedule::jittered(at, lifetime, uniform);
            }
            if let Some(ari) = self
                .ari
                .get(&status.name)
                .filter(|ari| ari.serial == file.leaf.serial)
                && let Some(window) = &ari.window
            {
                let uniform = schedule::stable_fraction(&[
                    &status.name,
                    &file.leaf.serial,
                    &window.start.to_string(),
                ]);
                let choice = schedule::ari_choice(window.start, window.end, now, uniform);
                if choice < at {
                    why = "ARI window";
                }
                at = schedule::renewal_time(at, Some(choice));
            }
        }
        // A failure streak since the last success: the retry time, never earlier.
        if history.failures > 0
            && let (Some(last), Some(kind)) = (history.last_failure, history.failure_kind)
        {
            let uniform = schedule::stable_fraction(&[&status.name, &history.failures.to_string()]);
            let retry =
                schedule::retry_at(history.failures, kind, history.retry_after, last, uniform);
            if retry > at {
                at = retry;
                why = "retry";
            }
        }
        // The hot-loop guard applies while a readable certificate is there; a deleted or
        // broken one is replaced at once.
        if status.file.is_some()
            && let Some(last) = self.attempts.get(&status.name)
        {
            let floor = *last + MIN_ATTEMPT_INTERVAL;
            if floor > at {
                at = floor;
                why = "retry";
            }
        }
        (at, why)
    }

    /// One wake-up: inspect, renew what is due, poll ARI, alert, publish. Returns when to
    /// wake up next.
    pub async fn tick(&mut self) -> Plan {
        let now = self.clock.now();
        let thresholds = self.config.renewal.thresholds;
        let statuses = inventory::inspect_all(&self.config, thresholds, now);
        let mut plan = Plan::default();
        let consider = |at: OffsetDateTime, why: String, plan: &mut Plan| {
            if plan.next.as_ref().is_none_or(|(next, _)| at < *next) {
                plan.next = Some((at, why));
            }
        };
        for status in &statuses {
            let history = self.state.load(&status.name);
            let (at, why) = self.next_attempt(status, &history, now);
            if at <= now {
                plan.due.push(status.name.clone());
            } else {
                consider(at, format!("{} {why}", status.name), &mut plan);
            }
        }
        plan.next_renewal = plan.next.clone();
        // A broken file (garbage, emptied) is repaired by the renewal below; someone broke it,
        // though, and that is worth an alert before the repair hides it.
        let broken: Vec<Entry> = statuses
            .iter()
            .filter(|status| status.assessment.state == crate::policy::CertState::Error)
            .map(|status| report::managed_entry(status, now))
            .collect();
        if !broken.is_empty() {
            self.alert(&broken, now).await;
        }
        if !plan.due.is_empty() {
            tracing::info!("renewing {}", plan.due.join(", "));
            for name in &plan.due {
                self.attempts.insert(name.clone(), now);
            }
            self.runs += 1;
            let report = self
                .renewer
                .renew(&self.config, plan.due.clone(), now)
                .await;
            for (name, outcome) in &report.outcomes {
                let (success, verify_failed) = match outcome {
                    Outcome::Renewed { .. } => (true, false),
                    Outcome::Failed(failure) => (false, failure.step == "verify"),
                    Outcome::NotDue { .. } | Outcome::DryRun { .. } => continue,
                };
                self.metrics
                    .record_renewal(name, success, verify_failed, now);
            }
        }
        // Fresh facts after the renewals, for alerts, metrics and the next schedule.
        let now = self.clock.now();
        let statuses = if plan.due.is_empty() {
            statuses
        } else {
            let statuses = inventory::inspect_all(&self.config, thresholds, now);
            plan.next = None;
            for status in &statuses {
                let history = self.state.load(&status.name);
                let (at, why) = self.next_attempt(status, &history, now);
                consider(
                    at.max(now + Duration::SECOND),
                    format!("{} {why}", status.name),
                    &mut plan,
                );
            }
            plan.next_renewal = plan.next.clone();
            statuses
        };
        if let Some(at) = self.poll_ari(&statuses, now).await {
            consider(at, "ARI poll".to_owned(), &mut plan);
        }
        let mut entries: Vec<Entry> = statuses
            .iter()
            .map(|status| report::managed_entry(status, now))
            .collect();
        entries.extend(report::gather_monitors(&self.config, thresholds, now).await);
        for at in entries
            .iter()
            .filter_map(|entry| next_threshold(entry, thresholds, now))
        {
            consider(at, "alert threshold".to_owned(), &mut plan);
        }
        self.alert(&entries, now).await;
        self.metrics.record_scan(entries, now);
        consider(now + RESCAN, "rescan".to_owned(), &mut plan);
        plan
    }

    /// Polls the CA's renewal information where it is due; returns the next poll time.
    async fn poll_ari(
        &mut self,
        statuses: &[ManagedStatus],
        now: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        if !self.config.renewal.ari || self.ari_supported == Some(false) {
            return None;
        }
        let mut next: Option<OffsetDateTime> = None;
        for status in statuses {
            let Some(file) = &status.file else { continue };
            let fresh = self
                .ari
                .get(&status.name)
                .is_some_and(|ari| ari.serial == file.leaf.serial && ari.next_poll > now);
            if !fresh {
                let Ok(pem) = std::fs::read(&status.cert_path) else {
                    continue;
                };
                let client = match self.acme_client().await {
                    Ok(client) => client,
                    Err(err) => {
                        tracing::warn!("ARI: cannot reach the CA: {err}; next try in an hour");
                        return Some(now + Duration::HOUR);
                    }
                };
                match client.renewal_info(&pem).await {
                    Ok(None) => {
                        tracing::info!(
                            "the CA offers no renewal information (ARI); the lifetime rule decides"
                        );
                        self.ari_supported = Some(false);
                        return None;
                    }
                    Ok(Some(window)) => {
                        self.ari_supported = Some(true);
                        self.metrics
                            .record_ari(&status.name, window.start, window.end);
                        let retry =
                            Duration::try_from(window.retry_after).unwrap_or(Duration::HOUR);
                        let next_poll = schedule::next_ari_poll(now, retry);
                        if window.end <= now {
                            tracing::warn!(
                                "{}: the CA's renewal window is in the past (revoked or to be replaced): renewing now",
                                status.name
                            );
                        }
                        self.ari.insert(
                            status.name.clone(),
                            AriState {
                                serial: file.leaf.serial.clone(),
                                window: Some(window),
                                next_poll,
                            },
                        );
                    }
                    Err(err) => {
                        tracing::warn!("{}: ARI poll failed: {err}", status.name);
                        self.ari.insert(
                            status.name.clone(),
                            AriState {
                                serial: file.leaf.serial.clone(),
                                window: None,
                                next_poll: now + Duration::HOUR,
                            },
                        );
                    }
                }
            }
            if let Some(ari) = self.ari.get(&status.name) {
                next = Some(next.map_or(ari.next_poll, |n| n.min(ari.next_poll)));
                // A window that was just learned may make the certificate due now.
                if let Some(window) = &ari.window
                    && window.end <= now
                {
                    next = Some(now);
                }
            }
        }
        next
    }

    async fn acme_client(&mut self) -> Result<Arc<AcmeClient>, crate::acme::AcmeError> {
        if let Some(client) = &self.acme {
            return Ok(client.clone());
        }
        let client = Arc::new(
            AcmeClient::connect(
                &self.config.acme,
                &self.config.acme.directory,
                &self.config.state_dir,
                &renew::save_secret,
            )
            .await?,
        );
        self.acme = Some(client.clone());
        Ok(client)
    }

    async fn alert(&mut self, entries: &[Entry], now: OffsetDateTime) {
        let mut changed = false;
        for entry in entries {
            let history = match entry.kind {
                report::Kind::Managed => self.state.load(&entry.name),
                report::Kind::Monitored => CertHistory::default(),
            };
            let key = format!("{:?}:{}", entry.kind, entry.name);
            let memory = self.memory.get(&key).cloned().unwrap_or_default();
            let facts = AlertFacts {
                state: entry.state,
                failures: history.failures,
                verify_failed: history.failure_step.as_deref() == Some("verify"),
            };
            let (events, next) = schedule::alerts_due(&memory, facts, now);
            for event in events {
                let alert = Alert::new(event, entry, history.last_error.as_deref(), now);
                self.alerter.send(&alert).await;
            }
            if next != memory {
                self.memory.insert(key, next);
                changed = true;
            }
        }
        if changed && let Ok(json) = serde_json::to_vec_pretty(&self.memory) {
            let path = alerts_path(&self.config.state_dir);
            if let Err(err) = renew::save_secret(&path, &json) {
                tracing::warn!("cannot save alert state to {}: {err}", path.display());
            }
        }
    }

    /// The `STATUS=` line for systemd.
    pub fn status_line(&self, plan: &Plan) -> String {
        let count = self.config.certificates.len() + self.config.monitors.len();
        let next = plan
            .next_renewal
            .as_ref()
            .map(|(at, why)| {
                format!(
                    ", next: {why} in {}",
                    crate::units::format_duration(*at - self.clock.now())
                )
            })
            .unwrap_or_default();
        format!(
            "{count} certificate{}{next}",
            if count == 1 { "" } else { "s" }
        )
    }
}

/// The next instant at which the entry crosses an alert threshold (warning, critical,
/// expiry), so that an alert is sent on time even if nothing else wakes the agent.
fn next_threshold(
    entry: &Entry,
    thresholds: crate::policy::Thresholds,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let (not_before, not_after) = (entry.not_before?, entry.not_after?);
    let (warn, critical) = thresholds.effective(not_after - not_before);
    [not_after - warn, not_after - critical, not_after]
        .into_iter()
        .filter(|at| *at > now)
        .min()
}

/// Runs the agent until SIGTERM or SIGINT: the entry point of `evercert run`.
pub async fn run(config_path: PathBuf, config: Config) -> Result<(), AgentError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).map_err(AgentError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;

    let mut agent = Agent::new(
        config_path,
        config,
        Arc::new(SystemClock),
        Arc::new(PipelineRenewer),
    );
    let mut metrics_task = start_metrics(&agent).await?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut watcher = Watcher::new(events_tx.clone());
    let _ = watcher.watch_config(agent.config());

    let watchdog = watchdog_interval();
    let mut ready = false;
    loop {
        // A scan (with its renewals) is raced against SIGTERM: the store's writes are
        // synchronous and atomic, and hooks die with their futures, so stopping mid-way
        // leaves the old or the new pair, never half of one.
        let plan = {
            let tick = agent.tick();
            tokio::pin!(tick);
            let mut pet = tokio::time::interval(watchdog.unwrap_or(StdDuration::from_secs(3600)));
            loop {
                tokio::select! {
                    plan = &mut tick => break plan,
                    // A long scan (dns-01 waits, a slow CA) is progress, not a hang.
                    _ = pet.tick(), if watchdog.is_some() => {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    _ = terminate.recv() => return stopping(&metrics_task),
                    _ = interrupt.recv() => return stopping(&metrics_task),
                }
            }
        };
        // A directory that appeared during the scan (first issuance) is watched only now: a
        // change made in between would be missed, so look once more shortly.
        let newly_watched = watcher.watch_config(agent.config()) > 0;
        let status = agent.status_line(&plan);
        tracing::debug!("{status}");
        notify(ready, &status);
        ready = true;
        let now = agent.clock.now();
        let mut next = plan
            .next
            .map_or(RESCAN, |(at, _)| at - now)
            .max(Duration::ZERO);
        if watcher.degraded {
            next = next.min(RESCAN_DEGRADED);
        }
        if newly_watched {
            next = next.min(Duration::try_from(COALESCE).unwrap_or(Duration::SECOND));
        }
        // Whatever the schedule says, never spin: a second between scans at the least.
        next = next.max(MIN_SLEEP);
        let deadline = tokio::time::Instant::now() + next.unsigned_abs();
        // Waits for the deadline, a file event, or a signal; the watchdog is fed meanwhile.
        let stop = loop {
            let mut pet = tokio::time::interval(watchdog.unwrap_or(StdDuration::from_secs(3600)));
            pet.tick().await;
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break false,
                _ = pet.tick(), if watchdog.is_some() => {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                Some(path) = events.recv() => {
                    // Coalesce a burst (certbot swaps two symlinks; Kubernetes flips ..data).
                    tokio::time::sleep(COALESCE).await;
                    while events.try_recv().is_ok() {}
                    tracing::info!("{} changed on disk; looking again", path.display());
                    break false;
                }
                _ = hangup.recv() => {
                    match agent.reload_config() {
                        Ok(()) => {
                            tracing::info!("configuration reloaded from {}", agent.config_path.display());
                            watcher = Watcher::new(events_tx.clone());
                            let _ = watcher.watch_config(agent.config());
                            // The old listener must be gone before the new one binds.
                            metrics_task.abort();
                            let _ = (&mut metrics_task).await;
                            metrics_task = start_metrics(&agent).await.unwrap_or_else(|err| {
                                tracing::error!("{err}");
                                tokio::spawn(async {})
                            });
                        }
                        Err(errors) => tracing::error!("the new configuration is invalid; keeping the old one:\n{errors}"),
                    }
                    break false;
                }
                _ = terminate.recv() => break true,
                _ = interrupt.recv() => break true,
            }
        };
        if stop {
            return stopping(&metrics_task);
        }
    }
}

fn stopping(metrics_task: &tokio::task::JoinHandle<()>) -> Result<(), AgentError> {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopping");
    metrics_task.abort();
    Ok(())
}

async fn start_metrics(agent: &Agent) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    match &agent.config().metrics {
        Some(settings) => metrics::serve(settings.listen, agent.metrics.clone())
            .await
            .map_err(|err| AgentError::Metrics {
                listen: settings.listen.to_string(),
                message: err.to_string(),
            }),
        None => Ok(tokio::spawn(async {})),
    }
}

fn notify(ready: bool, status: &str) {
    let status = sd_notify::NotifyState::Status(status);
    if ready {
        let _ = sd_notify::notify(&[status]);
    } else {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, status]);
    }
}

/// Half of systemd's WatchdogSec, when it is set.
fn watchdog_interval() -> Option<StdDuration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(StdDuration::from_micros(usec / 2).max(StdDuration::from_millis(100)))
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(
        "cannot serve metrics on {listen}: {message}; is another process bound there? change [metrics] listen"
    )]
    Metrics { listen: String, message: String },
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::acme::FailureKind;
    use crate::renew::Failure;

    /// Stands in for the pipeline: records when it was asked, and either writes a fresh
    /// 90-day certificate or records a transient failure like the pipeline would.
    struct FakeRenewer {
        calls: Mutex<Vec<OffsetDateTime>>,
        fail: bool,
    }

    fn write_cert(config: &Config, not_before: OffsetDateTime, not_after: OffsetDateTime) {
        let cert = &config.certificates[0];
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(cert.domains.clone()).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        let issued = params.self_signed(&key).unwrap();
        std::fs::create_dir_all(cert.cert_path.parent().unwrap()).unwrap();
        std::fs::write(&cert.cert_path, issued.pem()).unwrap();
        std::fs::write(&cert.key_path, key.serialize_pem()).unwrap();
    }

    impl Renewer for FakeRenewer {
        fn renew<'a>(
            &'a self,
            config: &'a Config,
            names: Vec<String>,
            now: OffsetDateTime,
        ) -> BoxFuture<'a, RunReport> {
            Box::pin(async move {
                self.calls.lock().unwrap().push(now);
                let state = FileState::new(&config.state_dir);
                let name = names[0].clone();
                let mut history = state.load(&name);
                let outcome = if self.fail {
                    history.record_failure(FailureKind::Transient, "order", "CA down", None, now);
                    Outcome::Failed(Failure {
                        step: "order",
                        message: "CA down".into(),
                        kind: FailureKind::Transient,
                        retry_after: None,
                        account_gone: false,
                    })
                } else {
                    write_cert(config, now, now + Duration::days(90));
                    history.record_success("01", now);
                    Outcome::Renewed {
                        serial: "01".into(),
                        not_after: now + Duration::days(90),
                        version: crate::store::VersionId("v".into()),
                    }
                };
                state.save(&name, &history).unwrap();
                RunReport {
                    outcomes: vec![(name, outcome)],
                }
            })
        }
    }

    fn config(dir: &Path) -> Config {
        let text = format!(
            r#"state_dir = "{dir}/state"
[renewal]
ari = false
[[certificate]]
name = "shop"
domains = ["shop.example.test"]
cert_path = "{dir}/tls/fullchain.pem"
key_path = "{dir}/tls/privkey.pem"
[certificate.http01]
listen = "127.0.0.1:1"
"#,
            dir = dir.display()
        );
        config::parse(&text, &dir.join("evercert.toml")).unwrap()
    }

    /// An agent on tokio's clock with one certificate issued `days_ago` days ago that expires
    /// in `days_left` days, and a fake renewer that succeeds or fails.
    fn agent_with_certificate(
        days_ago: i64,
        days_left: i64,
        fail: bool,
    ) -> (tempfile::TempDir, OffsetDateTime, Arc<FakeRenewer>, Agent) {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        write_cert(
            &config,
            start - Duration::days(days_ago),
            start + Duration::days(days_left),
        );
        let renewer = Arc::new(FakeRenewer {
            calls: Mutex::new(Vec::new()),
            fail,
        });
        let agent = Agent::new(
            dir.path().join("evercert.toml"),
            config,
            Arc::new(TokioClock::starting_at(start)),
            renewer.clone(),
        );
        (dir, start, renewer, agent)
    }

    /// Runs the agent's wake-up loop on tokio's paused clock for `span` of virtual time.
    /// Returns how many wake-ups it took.
    async fn run_for(agent: &mut Agent, span: Duration) -> usize {
        let end = agent.clock.now() + span;
        let mut wakeups = 0;
        while agent.clock.now() < end {
            let plan = agent.tick().await;
            wakeups += 1;
            let now = agent.clock.now();
            let next = plan
                .next
                .map_or(RESCAN, |(at, _)| at - now)
                .max(Duration::ZERO);
            tokio::time::sleep(next.unsigned_abs().max(StdDuration::from_millis(1))).await;
        }
        wakeups
    }

    #[tokio::test(start_paused = true)]
    async fn renews_on_time_without_polling() {
        // 90-day certificate with 32 days left: due in 2 days (renew_before 1/3 = 30 days).
        let (_dir, start, renewer, mut agent) = agent_with_certificate(58, 32, false);
        let wakeups = run_for(&mut agent, Duration::days(3)).await;
        let calls = renewer.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "{calls:?}");
        // Due at 2 days, jittered at most an hour earlier, and not later than a second after.
        let due = start + Duration::days(2);
        assert!(
            calls[0] <= due + Duration::SECOND && calls[0] >= due - Duration::HOUR,
            "{}",
            calls[0]
        );
        // The loop sleeps until events: hourly safety rescans, not a poll every few seconds.
        assert!(wakeups <= 3 * 24 + 5, "{wakeups} wake-ups in 3 days");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ca_down_for_hours_is_retried_with_backoff_not_in_a_loop() {
        let (_dir, _, renewer, mut agent) = agent_with_certificate(70, 20, true);
        run_for(&mut agent, Duration::hours(12)).await;
        let calls = renewer.calls.lock().unwrap().clone();
        // 5 min floor, then 1, 2, 4 … minutes up to 4 h with jitter: a dozen attempts at most.
        assert!(
            calls.len() >= 5 && calls.len() <= 14,
            "{} attempts: {calls:?}",
            calls.len()
        );
        let gaps: Vec<Duration> = calls.windows(2).map(|pair| pair[1] - pair[0]).collect();
        assert!(
            gaps.iter().all(|gap| *gap >= MIN_ATTEMPT_INTERVAL),
            "{gaps:?}"
        );
        assert!(
            gaps.last().is_some_and(|gap| *gap >= Duration::hours(1)),
            "{gaps:?}"
        );
        assert!(
            gaps.iter()
                .all(|gap| *gap <= schedule::RETRY_CAP + Duration::SECOND),
            "{gaps:?}"
        );
    }
}
