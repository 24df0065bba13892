//! `evercert run`: the long-running agent. It only decides *when*; the work is the shared
//! renewal pipeline (`renew::run`).
//!
//! Each wake-up (a scan) inspects every certificate, starts a renewal run for what is due
//! (by the lifetime rule, the CA's ARI window, or a retry after a failure), queues the alerts
//! a change of state calls for, probes endpoints, polls ARI and publishes metrics. Then it
//! sleeps until the earliest next event — no polling every N seconds — or until a watched
//! file changes, the renewal run ends, a signal arrives, or the safety rescan is due.
//!
//! The loop never waits on one slow thing: the renewal run is a task of its own (a CA that
//! stalls holds the run, not the scans and alerts), alerts are delivered by the alert queue's
//! task (`alert_queue`), and endpoint probes and ARI polls have deadlines. So a scan always
//! ends within a bounded time, and the systemd watchdog is fed only when one did (or while
//! the loop waits, which proves it is not stuck): a loop that hangs stops feeding it and is
//! restarted. READY=1 is sent once the configuration and the inventory are loaded, before
//! any network work.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
#[cfg(test)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration as StdDuration;

use time::{Duration, OffsetDateTime};
use tokio::sync::mpsc;

use crate::acme::AcmeClient;
use crate::alert_queue::{AlertDelivery, AlertQueue};
use crate::alerts::{self, Alert, Alerter};
use crate::ari;
pub use crate::clock::{Clock, SystemClock, TokioClock};
use crate::config::{self, Config, MonitorTarget};
use crate::decision::{self, Reason};
use crate::inventory::{self, ManagedStatus};
use crate::links::{self, Layout};
use crate::lock::{FileLock, RenewLock as _};
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
/// A renewal run is given up on after this (each request to the CA and each hook has its
/// own, shorter timeout; this bounds what they add up to). The certificates left are tried
/// again at the next scan, [`MIN_ATTEMPT_INTERVAL`] later at the earliest.
pub const RENEWAL_DEADLINE: StdDuration = StdDuration::from_secs(3600);
/// While a certificate's renewal has been running for less than this, its alerts wait for
/// the outcome: a renewal that takes seconds should not page anyone. After it, they go out
/// whatever the CA does.
pub const RENEWAL_ALERT_GRACE: Duration = Duration::seconds(30);
/// The ARI polls of one scan are cut off after this (a CA that stalls); the rest are asked
/// at the next scan, [`ARI_RETRY`] later.
pub const ARI_DEADLINE: StdDuration = StdDuration::from_secs(30);
/// When ARI polls ran out of time, ask again after this.
pub const ARI_RETRY: Duration = Duration::minutes(10);
/// The endpoint probes of one scan are cut off after this (each probe has its own 10 s
/// timeout; this bounds many of them); endpoints not probed are tried at the next scan.
pub const PROBES_DEADLINE: StdDuration = StdDuration::from_secs(60);
/// On SIGTERM, queued alerts get this long to go out.
pub const ALERT_FLUSH: StdDuration = StdDuration::from_secs(2);
/// Endpoint probes in flight at once (sockets, under the open-files limit).
pub const MAX_CONCURRENT_PROBES: usize = 64;

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

    /// Makes the account the agent's other CA requests (ARI) use the one renewals use, before
    /// a connection may register one. The single host has nothing to do; the fleet installs
    /// its shared account (one account per CA for the whole fleet).
    fn prepare_account<'a>(&'a self, _config: &'a Config) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
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
            // The run goes on from the agent's `now` (its clock) at tokio's pace.
            let clock = TokioClock::starting_at(now);
            let deps = renew::Deps {
                store: &store,
                lock: &lock,
                state: &state,
                progress: &progress,
                clock: &clock,
                fanout: None,
                shared_account: None,
            };
            // No retries inside a run: the agent's own backoff schedules the next attempt. Not
            // forced: the pipeline takes the same decision (`decision::decide`), and a due
            // certificate with a version issued but not deployed gets that one deployed.
            let request = RenewRequest {
                names,
                force: false,
                dry_run: false,
                retry_transient: false,
            };
            renew::run(config, &request, &deps).await
        })
    }
}

/// A renewal run in flight: a task of its own, so that scans and alerts go on meanwhile.
struct Renewal {
    names: Vec<String>,
    started: OffsetDateTime,
    /// `None` when the run passed [`RENEWAL_DEADLINE`].
    task: tokio::task::JoinHandle<Option<RunReport>>,
}

/// A broken link the agent found and what it did about it.
struct LinkRepair {
    name: String,
    /// The layout found, before the repair.
    before: Layout,
    outcome: Result<links::Repair, crate::store::StoreError>,
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
    /// Shared with the renewal task and the inspection thread of each scan.
    config: Arc<Config>,
    clock: Arc<dyn Clock>,
    renewer: Arc<dyn Renewer>,
    state: FileState,
    alerter: Arc<Alerter>,
    alerts: AlertQueue,
    pub metrics: Arc<Metrics>,
    memory: BTreeMap<String, AlertMemory>,
    attempts: HashMap<String, OffsetDateTime>,
    ari_supported: Option<bool>,
    acme: Option<Arc<AcmeClient>>,
    /// How many renewal runs were started (for tests and STATUS).
    pub runs: u64,
    /// How many scans were made (for tests).
    pub scans: u64,
    renewal: Option<Renewal>,
    /// The longest a scan may wait on the network: a fraction of the watchdog's interval,
    /// so that a CA or an endpoint that stalls never makes systemd kill a healthy agent.
    scan_budget: Option<StdDuration>,
    /// `[discover]`: the web servers' configuration as last read, and the configuration
    /// without what it added (what a re-discovery adds to).
    discovery: Option<Discovery>,
    /// Test-only: makes every scan hang, as a scan stuck on something would.
    #[cfg(test)]
    hang_scans: Arc<AtomicBool>,
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

/// The certificates `[discover]` found before (kept across restarts, so that one added while
/// the agent was stopped is announced too).
fn discovered_path(state_dir: &Path) -> PathBuf {
    state_dir.join("state").join("discovered.json")
}

/// `[discover]` in the agent: see `discover::Live`.
struct Discovery {
    live: crate::discover::Live,
    /// The configuration as loaded, before discovery added to it.
    base: Arc<Config>,
    /// When the servers' configuration was last read.
    read_at: Option<OffsetDateTime>,
    /// A file it was read from changed: read it again at the next scan.
    stale: bool,
    /// The discovered certificate paths already announced (or the baseline); `None` before
    /// the first discovery with this state_dir.
    known: Option<std::collections::BTreeSet<String>>,
}

impl Discovery {
    /// Reads the servers' configuration (at start-up and after SIGHUP: synchronous, before
    /// the loop runs) and returns the configuration with what they serve.
    fn start(base: Config) -> (Option<Self>, Config) {
        let Some(sources) = base.discover.clone() else {
            return (None, base);
        };
        let mut live = crate::discover::Live::new(sources);
        live.refresh();
        let config = live.apply(base.clone());
        let known = crate::state::load_json(&discovered_path(&base.state_dir));
        let discovery = Self {
            live,
            base: Arc::new(base),
            read_at: None,
            stale: false,
            known,
        };
        (Some(discovery), config)
    }

    /// The discovered certificates in `config` (those `base` does not name).
    fn found(&self, config: &Config) -> std::collections::BTreeSet<String> {
        config
            .monitors
            .iter()
            .skip(self.base.monitors.len())
            .filter_map(|monitor| match &monitor.target {
                MonitorTarget::File(path) => Some(path.display().to_string()),
                MonitorTarget::Endpoint(_) => None,
            })
            .collect()
    }
}

impl Agent {
    pub fn new(
        config_path: PathBuf,
        config: Config,
        clock: Arc<dyn Clock>,
        renewer: Arc<dyn Renewer>,
    ) -> Self {
        let memory = crate::state::load_json(&alerts_path(&config.state_dir)).unwrap_or_default();
        // `[discover]`: what the web servers serve is watched like a [[monitor]].
        let (discovery, config) = Discovery::start(config);
        Self {
            config_path,
            state: FileState::new(&config.state_dir),
            alerter: Arc::new(Alerter::new(config.alerts.clone())),
            alerts: AlertQueue::default(),
            config: Arc::new(config),
            clock,
            renewer,
            metrics: Arc::new(Metrics::default()),
            memory,
            attempts: HashMap::new(),
            ari_supported: None,
            acme: None,
            runs: 0,
            scans: 0,
            renewal: None,
            scan_budget: None,
            discovery,
            #[cfg(test)]
            hang_scans: Arc::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Re-reads the configuration and runs the permission checks that start-up runs; a
    /// configuration that is invalid or fails them is refused and the old one kept.
    pub fn reload_config(&mut self) -> Result<(), ReloadError> {
        let config = config::load(&self.config_path).map_err(ReloadError::Invalid)?;
        crate::safety::check_permissions(&self.config_path, &config)
            .map_err(ReloadError::Unsafe)?;
        let (discovery, config) = Discovery::start(config);
        self.discovery = discovery;
        self.alerter = Arc::new(Alerter::new(config.alerts.clone()));
        self.ari_supported = None;
        self.acme = None;
        self.config = Arc::new(config);
        Ok(())
    }

    /// When a managed certificate should next be attempted, and why.
    fn next_attempt(
        &self,
        status: &ManagedStatus,
        history: &CertHistory,
        now: OffsetDateTime,
    ) -> (OffsetDateTime, &'static str) {
        // The same decision as `renew` and `status` (`decision::decide`); the agent only adds
        // when to look again at an unreadable file, and the hot-loop guard.
        let facts = decision::Facts {
            name: &status.name,
            assessment: &status.assessment,
            leaf: status.file.as_ref().map(|file| &file.leaf),
        };
        let decided = decision::decide(
            &facts,
            history,
            status.ari_window,
            &self.config.renewal.windows,
            now,
        );
        let (mut at, mut why) = match decided.reason {
            // Unreadable (permission denied): an error to alert on, not a reason to order
            // certificates that could not be written either.
            Reason::Unreadable => return (now + RESCAN, "error"),
            Reason::AriWindow => (decided.renew_at, "ARI window"),
            Reason::Retry => (decided.renew_at, "retry"),
            Reason::RenewalWindow => (decided.renew_at, "renewal window"),
            Reason::Lifetime | Reason::NoCertificate | Reason::Defect | Reason::Revoked => {
                (decided.renew_at, "renewal")
            }
        };
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

    /// The decisions from what is on disk: what is due now, and the next renewal.
    fn plan(&self, statuses: &[ManagedStatus], now: OffsetDateTime) -> Plan {
        let mut plan = Plan::default();
        for status in statuses {
            let history = self.state.load(&status.name);
            let (at, why) = self.next_attempt(status, &history, now);
            if at <= now {
                plan.due.push(status.name.clone());
            } else {
                plan.consider(at, format!("{} {why}", status.name));
            }
        }
        plan.next_renewal = plan.next.clone();
        plan
    }

    /// One wake-up: inspect, start renewing what is due (without waiting for it), queue
    /// alerts, probe endpoints, poll ARI, publish. Returns when to wake up next. Every part
    /// that waits on the network has a deadline, so a scan always ends.
    pub async fn tick(&mut self) -> Plan {
        self.scans += 1;
        #[cfg(test)]
        if self.hang_scans.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.collect_renewal().await;
        let now = self.clock.now();
        let thresholds = self.config.renewal.thresholds;
        self.rediscover(now).await;
        // Links first: a broken `live/NAME` is repaired from the archive before anything is
        // decided, so a mistyped rollback costs a reload, not an issuance.
        let (layouts, repaired) = self.check_links().await;
        let (statuses, file_monitors) = self.inspect(now).await;
        self.announce_discovered(&file_monitors, now);
        if !repaired.is_empty() {
            self.report_repairs(&repaired, &statuses, now);
        }
        let mut plan = self.plan(&statuses, now);
        // A broken file (garbage, emptied) is repaired by the renewal below; someone broke it,
        // though, and that is worth an alert before the repair hides it.
        let broken: Vec<Entry> = statuses
            .iter()
            .filter(|status| status.assessment.state == crate::policy::CertState::Error)
            .map(|status| report::managed_entry(status, now))
            .collect();
        if !broken.is_empty() {
            self.alert(&broken, now);
        }
        if !plan.due.is_empty() && self.renewal.is_none() {
            self.start_renewal(plan.due.clone(), now);
        }
        // Alerts from what is on disk go out first: nothing below (probes, ARI) delays them.
        let held = self.held_alerts(now, &mut plan);
        let mut entries: Vec<Entry> = statuses
            .iter()
            .map(|status| report::managed_entry(status, now))
            .collect();
        // A broken or foreign link is an error whatever `cert_path` reads as.
        let mut layouts: HashMap<String, Layout> = layouts.into_iter().collect();
        for entry in &mut entries {
            if let Some(layout) = layouts.remove(&entry.name) {
                report::apply_layout(entry, layout, true);
            }
        }
        entries.extend(file_monitors);
        let alerting: Vec<Entry> = entries
            .iter()
            .filter(|entry| entry.kind != report::Kind::Managed || !held.contains(&entry.name))
            .cloned()
            .collect();
        self.alert(&alerting, now);
        let probed = self.probe_endpoints(now).await;
        self.alert(&probed, now);
        entries.extend(probed);
        for at in entries
            .iter()
            .filter_map(|entry| next_threshold(entry, thresholds, now))
        {
            plan.consider(at, "alert threshold".to_owned());
        }
        // The last renewal error of each managed certificate, for the `/status` page.
        let last_errors = crate::status_page::last_errors(&self.state, &entries);
        self.metrics.record_status(thresholds, last_errors);
        self.metrics.record_scan(entries, now);
        let ari_deadline = self.budgeted(ARI_DEADLINE);
        match tokio::time::timeout(ari_deadline, self.poll_ari(&statuses, now)).await {
            Ok(Some(at)) => plan.consider(at, "ARI poll".to_owned()),
            Ok(None) => {}
            Err(_) => {
                tracing::warn!(
                    "ARI: the CA did not answer the renewal-information polls within {:.1} s; asking again in {}",
                    ari_deadline.as_secs_f64(),
                    crate::units::format_duration(ARI_RETRY)
                );
                plan.consider(now + ARI_RETRY, "ARI poll".to_owned());
            }
        }
        if self.ari_supported == Some(false) {
            // Without ARI the agent has nothing more to ask the CA between renewals: do not
            // keep a connection open to it.
            self.acme = None;
        }
        plan.consider(now + RESCAN, "rescan".to_owned());
        plan
    }

    /// `[discover]`: reads the web servers' configuration again when a file of it changed,
    /// and at each safety rescan (an event may have been missed), on a blocking thread.
    async fn rediscover(&mut self, now: OffsetDateTime) {
        let Some(discovery) = &mut self.discovery else {
            return;
        };
        let due = discovery.stale || discovery.read_at.is_none_or(|at| now - at >= RESCAN);
        if !due {
            return;
        }
        if discovery.read_at.is_some() {
            let mut live = discovery.live.clone();
            let base = discovery.base.clone();
            let read = tokio::task::spawn_blocking(move || {
                live.refresh();
                let config = live.apply(Config::clone(&base));
                (live, config)
            });
            match read.await {
                Ok((live, config)) => {
                    discovery.live = live;
                    self.config = Arc::new(config);
                }
                Err(err) => tracing::error!(
                    "reading the web servers' configuration failed ({err}); trying again at the next scan"
                ),
            }
        }
        discovery.read_at = Some(now);
        discovery.stale = false;
    }

    /// `[discover]`: one alert for each certificate the web servers serve that was not
    /// monitored before; the set is saved so that a restart does not announce it again.
    fn announce_discovered(&mut self, file_monitors: &[Entry], now: OffsetDateTime) {
        let Some(discovery) = &self.discovery else {
            return;
        };
        let found = discovery.found(&self.config);
        let new = schedule::newly_discovered(discovery.known.as_ref(), &found);
        let unchanged = discovery.known.as_ref() == Some(&found);
        for entry in file_monitors
            .iter()
            .filter(|entry| entry.path.as_ref().is_some_and(|path| new.contains(path)))
        {
            let alert = Alert::new(schedule::AlertEvent::Discovered, entry, None, now);
            alerts::log(&alert);
            self.alerts.push(AlertDelivery {
                alerter: self.alerter.clone(),
                alert,
            });
        }
        if unchanged {
            return;
        }
        let path = discovered_path(&self.config.state_dir);
        let saved = serde_json::to_vec_pretty(&found)
            .map_err(|err| err.to_string())
            .and_then(|json| renew::save_secret(&path, &json).map_err(|err| err.to_string()));
        if let Err(err) = saved {
            tracing::warn!(
                "cannot save the discovered certificates to {}: {err}; a restart may announce them again",
                path.display()
            );
        }
        if let Some(discovery) = &mut self.discovery {
            discovery.known = Some(found);
        }
    }

    /// `[discover]`: the web servers' configuration files and the directories their globs
    /// list, to watch.
    pub fn discovery_inputs(&self) -> Option<(Vec<&Path>, Vec<&Path>)> {
        self.discovery
            .as_ref()
            .map(|discovery| discovery.live.inputs())
    }

    /// `deadline`, shortened to the scan's budget under a watchdog.
    fn budgeted(&self, deadline: StdDuration) -> StdDuration {
        self.scan_budget
            .map_or(deadline, |budget| deadline.min(budget))
    }

    /// Inspects every managed certificate's links (`links`) and repairs a broken `live/NAME`
    /// under the certificate's renewal lock, on a blocking thread like `inspect`. Returns the
    /// layouts after the repairs, and what was repaired.
    async fn check_links(&self) -> (Vec<(String, Layout)>, Vec<LinkRepair>) {
        let config = self.config.clone();
        let renewing: Vec<String> = self
            .renewal
            .as_ref()
            .map(|renewal| renewal.names.clone())
            .unwrap_or_default();
        let work = tokio::task::spawn_blocking(move || {
            let state = FileState::new(&config.state_dir);
            let locks = FileLock::new(config.state_dir.join("locks"));
            let mut layouts = Vec::with_capacity(config.certificates.len());
            let mut repairs = Vec::new();
            for cert in &config.certificates {
                let mut layout = links::inspect(&config.state_dir, cert);
                if layout.repairable() {
                    // Our own renewal installs a new version anyway; another process's holds
                    // the lock, and a first install links the paths a moment before it creates
                    // `live/NAME`: not broken, in progress. Its flip wakes the watcher.
                    if renewing.contains(&cert.name) {
                        continue;
                    }
                    let Ok(_guard) = locks.acquire(&cert.name, StdDuration::ZERO) else {
                        continue;
                    };
                    let before = links::inspect(&config.state_dir, cert);
                    if before.repairable() {
                        let skip = state
                            .load(&cert.name)
                            .pending
                            .map(|pending| pending.version);
                        let outcome = links::repair(&config.state_dir, cert, skip.as_deref());
                        layout = links::inspect(&config.state_dir, cert);
                        repairs.push(LinkRepair {
                            name: cert.name.clone(),
                            before,
                            outcome,
                        });
                    }
                }
                layouts.push((cert.name.clone(), layout));
            }
            (layouts, repairs)
        });
        work.await.unwrap_or_else(|err| {
            tracing::error!("checking the links failed ({err}); looking again at the next scan");
            (Vec::new(), Vec::new())
        })
    }

    /// Logs and alerts each repair (an error now; the recovery follows from the state the
    /// scan finds), and runs the reload of each repaired certificate in a task of its own.
    fn report_repairs(
        &mut self,
        repairs: &[LinkRepair],
        statuses: &[ManagedStatus],
        now: OffsetDateTime,
    ) {
        let mut alerting = Vec::new();
        for repair in repairs {
            let Some(cert) = self.config.certificate(&repair.name).cloned() else {
                continue;
            };
            let outcome = match &repair.outcome {
                Ok(links::Repair::Repointed(version)) => format!(
                    "repaired: live/{} now points at version {version}, the newest complete one whose key matches its certificate",
                    repair.name
                ),
                Ok(links::Repair::NoGoodVersion) => "no version in the archive can be served (none is complete with a matching key); ordering a new certificate".to_owned(),
                Err(err) => format!("repairing it failed: {err}; ordering a new certificate"),
            };
            let message = format!("{}; {outcome}", repair.before.summary().unwrap_or_default());
            if let Some(status) = statuses.iter().find(|status| status.name == repair.name) {
                let mut entry = report::managed_entry(status, now);
                entry.state = crate::policy::CertState::Error;
                entry.error = Some(message.clone());
                entry.layout = Some(repair.before.clone());
                alerting.push(entry);
            } else {
                tracing::error!("{}: {message}", repair.name);
            }
            if let (Ok(links::Repair::Repointed(_)), Some(command)) =
                (&repair.outcome, cert.reload.clone())
            {
                tokio::spawn(async move {
                    let env = vec![
                        ("EVERCERT_NAMES", cert.name.clone()),
                        ("EVERCERT_NAME", cert.name.clone()),
                        ("EVERCERT_DOMAINS", cert.domains.join(" ")),
                        ("EVERCERT_CERT_PATH", cert.cert_path.display().to_string()),
                        ("EVERCERT_KEY_PATH", cert.key_path.display().to_string()),
                    ];
                    match crate::hooks::run(&command, &[], &env, cert.reload_timeout.unsigned_abs())
                        .await
                    {
                        Ok(_) => tracing::info!(
                            "{}: reloaded (`{command}`) after repairing the link",
                            cert.name
                        ),
                        Err(err) => tracing::error!(
                            "{}: the reload after repairing the link failed: {err}; the web server may still fail to read the certificate: reload it by hand",
                            cert.name
                        ),
                    }
                });
            }
        }
        self.alert(&alerting, now);
    }

    /// Starts the renewal run for `names` as a task of its own.
    fn start_renewal(&mut self, names: Vec<String>, now: OffsetDateTime) {
        tracing::info!("renewing {}", names.join(", "));
        for name in &names {
            self.attempts.insert(name.clone(), now);
        }
        self.runs += 1;
        let renewer = self.renewer.clone();
        let config = self.config.clone();
        let run_names = names.clone();
        let task = tokio::spawn(async move {
            tokio::time::timeout(RENEWAL_DEADLINE, renewer.renew(&config, run_names, now))
                .await
                .ok()
        });
        self.renewal = Some(Renewal {
            names,
            started: now,
            task,
        });
    }

    /// Takes in the result of a renewal run that has ended (if one has).
    async fn collect_renewal(&mut self) {
        if let Some(renewal) = self.renewal.take_if(|renewal| renewal.task.is_finished()) {
            let result = renewal.task.await;
            self.record_renewal(&renewal.names, result);
        }
    }

    fn record_renewal(
        &mut self,
        names: &[String],
        result: Result<Option<RunReport>, tokio::task::JoinError>,
    ) {
        let now = self.clock.now();
        match result {
            Ok(Some(report)) => {
                for (name, outcome) in &report.outcomes {
                    let (success, verify_failed) = match outcome {
                        Outcome::Renewed { .. } => (true, false),
                        Outcome::Failed(failure) => (false, failure.step == renew::Step::Verify),
                        Outcome::NotDue { .. } | Outcome::DryRun { .. } => continue,
                    };
                    self.metrics
                        .record_renewal(name, success, verify_failed, now);
                }
            }
            Ok(None) => tracing::error!(
                "renewing {} took longer than {} min and was given up; it is tried again at the next scan; see the lines above for the step that hung",
                names.join(", "),
                RENEWAL_DEADLINE.as_secs() / 60
            ),
            Err(err) => tracing::error!(
                "the renewal run for {} ended abnormally ({err}); it is tried again at the next scan",
                names.join(", ")
            ),
        }
    }

    /// The managed certificates whose alerts wait for their renewal's outcome (see
    /// [`RENEWAL_ALERT_GRACE`]); the end of the wait is scheduled in `plan`.
    fn held_alerts(&self, now: OffsetDateTime, plan: &mut Plan) -> Vec<String> {
        match &self.renewal {
            Some(renewal) if now < renewal.started + RENEWAL_ALERT_GRACE => {
                plan.consider(
                    renewal.started + RENEWAL_ALERT_GRACE,
                    "alerts held for the renewal".to_owned(),
                );
                renewal.names.clone()
            }
            _ => Vec::new(),
        }
    }

    /// Reads every managed certificate and every `[[monitor]]` file, on a blocking thread:
    /// a read that hangs (a dead network filesystem) holds that thread, not the loop, so
    /// SIGTERM still ends the agent and the watchdog sees the hang.
    async fn inspect(&self, now: OffsetDateTime) -> (Vec<ManagedStatus>, Vec<Entry>) {
        let config = self.config.clone();
        let read = tokio::task::spawn_blocking(move || {
            let thresholds = config.renewal.thresholds;
            let statuses = inventory::inspect_all(&config, thresholds, now);
            let monitors = config
                .monitors
                .iter()
                .filter_map(|monitor| match &monitor.target {
                    MonitorTarget::File(path) => Some(report::file_entry(
                        monitor.name.clone(),
                        path,
                        inventory::read_cert_file(path),
                        thresholds,
                        now,
                    )),
                    MonitorTarget::Endpoint(_) => None,
                })
                .collect();
            (statuses, monitors)
        });
        read.await.unwrap_or_else(|err| {
            tracing::error!(
                "reading the certificates failed ({err}); looking again at the next scan"
            );
            (Vec::new(), Vec::new())
        })
    }

    /// Entries for the `[[monitor]]` endpoints, probed [`MAX_CONCURRENT_PROBES`] at a time,
    /// each with its own timeout and all within [`PROBES_DEADLINE`]. An endpoint not probed
    /// in time has no entry this scan (no false alert); it is probed at the next one.
    async fn probe_endpoints(&self, now: OffsetDateTime) -> Vec<Entry> {
        let thresholds = self.config.renewal.thresholds;
        let endpoints: Vec<(String, config::Endpoint)> = self
            .config
            .monitors
            .iter()
            .filter_map(|monitor| match &monitor.target {
                MonitorTarget::Endpoint(endpoint) => Some((monitor.name.clone(), endpoint.clone())),
                MonitorTarget::File(_) => None,
            })
            .collect();
        if endpoints.is_empty() {
            return Vec::new();
        }
        let roots = Arc::new(crate::probe::system_roots(&[]));
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PROBES));
        let mut probes = tokio::task::JoinSet::new();
        let total = endpoints.len();
        for (index, (name, endpoint)) in endpoints.into_iter().enumerate() {
            let (roots, slots) = (roots.clone(), slots.clone());
            probes.spawn(async move {
                let _slot = slots.acquire_owned().await;
                let result = report::probe_endpoint(&endpoint, roots).await;
                (
                    index,
                    report::endpoint_entry(name, &endpoint, result, thresholds, now),
                )
            });
        }
        let mut done = Vec::with_capacity(total);
        let budget = self.budgeted(PROBES_DEADLINE);
        let deadline = tokio::time::Instant::now() + budget;
        while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, probes.join_next()).await {
            if let Ok(entry) = joined {
                done.push(entry);
            }
        }
        if done.len() < total {
            tracing::warn!(
                "{} of {total} monitored endpoints were not probed within {:.1} s; they are probed at the next scan",
                total - done.len(),
                budget.as_secs_f64()
            );
        }
        done.sort_by_key(|(index, _)| *index);
        done.into_iter().map(|(_, entry)| entry).collect()
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
        // The cache in state_dir is shared with the one-shot `renew`: whoever asked last,
        // the CA is not asked again before its Retry-After.
        let directory = self.config.acme.directory.clone();
        let state_dir = self.config.state_dir.clone();
        let mut next: Option<OffsetDateTime> = None;
        let mut questions = Vec::new();
        for status in statuses {
            let Some(file) = &status.file else { continue };
            let cached = ari::load(&state_dir, &status.name);
            match &cached {
                Some(cached) if cached.is_fresh(&directory, &file.leaf.serial, now) => {
                    if !cached.supported {
                        self.ari_supported = Some(false);
                    }
                    if let Some(window) = cached.window {
                        self.metrics
                            .record_ari(&status.name, window.start, window.end);
                    }
                    next = Some(next.map_or(cached.next_poll, |n| n.min(cached.next_poll)));
                }
                _ => questions.extend(ari::Question::about(status, cached)),
            }
        }
        if self.ari_supported == Some(false) {
            return None;
        }
        if questions.is_empty() {
            return next;
        }
        let client = match self.acme_client().await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!("ARI: {err}; next try in an hour");
                return Some(now + Duration::HOUR);
            }
        };
        for (name, cached) in ari::poll_all(&client, &state_dir, questions, now).await {
            if !cached.supported {
                tracing::info!(
                    "the CA offers no renewal information (ARI); the lifetime rule decides"
                );
                self.ari_supported = Some(false);
                return None;
            }
            self.ari_supported = Some(true);
            if let Some(window) = cached.window {
                self.metrics.record_ari(&name, window.start, window.end);
            }
            next = Some(next.map_or(cached.next_poll, |n| n.min(cached.next_poll)));
            // A window just learned changes `renew_at` (it may even make the certificate due
            // now): decide again at once rather than at the next rescan, an hour away. That
            // scan finds the answer cached and does not ask again.
            if cached.window.is_some() {
                next = Some(now);
            }
        }
        next
    }

    async fn acme_client(&mut self) -> Result<Arc<AcmeClient>, String> {
        if let Some(client) = &self.acme {
            return Ok(client.clone());
        }
        self.renewer.prepare_account(&self.config).await?;
        let client = Arc::new(
            AcmeClient::connect(
                &self.config.acme,
                &self.config.acme.directory,
                &self.config.state_dir,
                &renew::save_secret,
            )
            .await
            .map_err(|err| format!("cannot reach the CA: {err}"))?,
        );
        self.acme = Some(client.clone());
        Ok(client)
    }

    /// Decides the alerts a change of state calls for, writes them to the log and queues
    /// them for delivery; never waits for a channel.
    fn alert(&mut self, entries: &[Entry], now: OffsetDateTime) {
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
                verify_failed: history.failure_step == Some(renew::Step::Verify),
                fallback_renewals: history.fallback_renewals,
                new_accounts: history.new_accounts,
            };
            let (events, next) = schedule::alerts_due(&memory, facts, now);
            for event in events {
                // The fallback alert says why the primary was left (its error, kept past the
                // success that cleared `last_error`).
                let why = match event {
                    schedule::AlertEvent::FallbackUsed => history.fallback_reason.as_deref(),
                    schedule::AlertEvent::AccountRegistered => {
                        history.new_account_reason.as_deref()
                    }
                    _ => history.last_error.as_deref(),
                };
                let alert = Alert::new(event, entry, why, now);
                alerts::log(&alert);
                self.alerts.push(AlertDelivery {
                    alerter: self.alerter.clone(),
                    alert,
                });
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
        let renewing = match self.renewal.as_ref().map(|renewal| &renewal.names[..]) {
            Some(names) if names.len() > 3 => format!(", renewing {} certificates", names.len()),
            Some(names) => format!(", renewing {}", names.join(", ")),
            None => String::new(),
        };
        format!(
            "{count} certificate{}{renewing}{next}",
            if count == 1 { "" } else { "s" }
        )
    }

    /// The line logged after each scan, so that an idle agent can be told from a hung one:
    /// `nothing due; next: shop renewal in 20d (2026-12-20T10:34:07Z)`.
    pub fn idle_line(&self, plan: &Plan) -> String {
        let now = self.clock.now();
        let doing = match self.renewal.as_ref().map(|renewal| &renewal.names[..]) {
            Some(names) if names.len() > 3 => format!("renewing {} certificates", names.len()),
            Some(names) => format!("renewing {}", names.join(", ")),
            None => "nothing due".to_owned(),
        };
        let next = plan.next_renewal.as_ref().map_or_else(
            || "nothing scheduled".to_owned(),
            |(at, why)| {
                format!(
                    "{why} {} ({})",
                    report::relative(*at, now),
                    crate::units::rfc3339(at.replace_nanosecond(0).unwrap_or(*at))
                )
            },
        );
        let count = self.config.certificates.len() + self.config.monitors.len();
        format!(
            "{doing}; next: {next}; watching {count} certificate{} for changes",
            if count == 1 { "" } else { "s" }
        )
    }

    /// The agent's loop, until `controls.stop` says so: scan, then wait for the next event.
    ///
    /// READY=1 goes out first, once the configuration and the inventory are loaded and before
    /// any network work. The watchdog is fed after each completed scan and, while the loop
    /// waits, on its interval — never while a scan runs, so a scan that hangs stops it.
    pub async fn serve(
        &mut self,
        controls: &mut Controls,
        outside: &mut dyn Outside,
        watchdog: Option<StdDuration>,
    ) {
        // Half the interval at which the watchdog is fed (a quarter of WatchdogSec) for each
        // part of a scan that waits on the network.
        self.scan_budget = watchdog.map(|every| every / 2);
        {
            let now = self.clock.now();
            let (statuses, _) = self.inspect(now).await;
            let plan = self.plan(&statuses, now);
            outside.notify(Notice::Ready(&self.status_line(&plan)));
        }
        let mut next_pet = tokio::time::Instant::now();
        loop {
            // The loop got here, so it is alive: the scan starts with a full WatchdogSec of its
            // own rather than what is left of the last interval (its network parts may take
            // half of WatchdogSec).
            if watchdog.is_some() {
                outside.notify(Notice::Watchdog);
            }
            // A scan is raced against SIGTERM: the store's writes are synchronous and atomic,
            // so stopping mid-way leaves the old or the new pair, never half of one.
            let scanned = tokio::select! {
                plan = self.tick() => Some(plan),
                _ = controls.stop.recv() => None,
            };
            let Some(plan) = scanned else { break };
            // A directory that appeared (first issuance) is watched only now: a change made
            // in between would be missed, so look once more shortly.
            let mut newly_watched = outside.watch(&self.config);
            if let Some((files, dirs)) = self.discovery_inputs() {
                newly_watched |= outside.watch_discovery(&files, &dirs);
            }
            let status = self.status_line(&plan);
            tracing::info!("{}", self.idle_line(&plan));
            outside.notify(Notice::Status(&status));
            if let Some(every) = watchdog {
                outside.notify(Notice::Watchdog);
                next_pet = tokio::time::Instant::now() + every;
            }
            let now = self.clock.now();
            let mut next = plan
                .next
                .map_or(RESCAN, |(at, _)| at - now)
                .max(Duration::ZERO);
            if outside.degraded() {
                next = next.min(RESCAN_DEGRADED);
            }
            if newly_watched {
                next = next.min(Duration::try_from(COALESCE).unwrap_or(Duration::SECOND));
            }
            // Whatever the schedule says, never spin: a second between scans at the least.
            next = next.max(MIN_SLEEP);
            let mut deadline = tokio::time::Instant::now() + next.unsigned_abs();
            let mut coalescing = false;
            let stop = loop {
                let woke = tokio::select! {
                    biased;
                    _ = controls.stop.recv() => Woke::Stop,
                    result = renewal_finished(&mut self.renewal) => Woke::Renewed(result),
                    () = tokio::time::sleep_until(next_pet), if watchdog.is_some() => Woke::Pet,
                    () = tokio::time::sleep_until(deadline) => Woke::Due,
                    Some(()) = controls.reload.recv() => Woke::Reload,
                    Some(path) = controls.files.recv() => Woke::File(path),
                };
                match woke {
                    Woke::Stop => break true,
                    Woke::Renewed(result) => {
                        if let Some(renewal) = self.renewal.take() {
                            self.record_renewal(&renewal.names, result);
                        }
                        break false;
                    }
                    Woke::Pet => {
                        outside.notify(Notice::Watchdog);
                        next_pet =
                            tokio::time::Instant::now() + watchdog.unwrap_or(StdDuration::MAX);
                    }
                    Woke::Due => break false,
                    Woke::Reload => {
                        match self.reload_config() {
                            Ok(()) => {
                                tracing::info!(
                                    "configuration reloaded from {}",
                                    self.config_path.display()
                                );
                                outside.reloaded(&self.config, &self.metrics).await;
                            }
                            Err(err) => tracing::error!("{err}"),
                        }
                        break false;
                    }
                    Woke::File(path) => {
                        if let Some(discovery) = &mut self.discovery
                            && discovery.live.touches(&path)
                        {
                            discovery.stale = true;
                        }
                        // Coalesce a burst (certbot swaps two symlinks; Kubernetes flips ..data).
                        if !coalescing {
                            coalescing = true;
                            tracing::info!("{} changed on disk; looking again", path.display());
                            deadline = deadline.min(tokio::time::Instant::now() + COALESCE);
                        }
                    }
                }
            };
            if stop {
                break;
            }
        }
        outside.notify(Notice::Stopping);
        tracing::info!("stopping");
        if let Some(renewal) = self.renewal.take() {
            // Hooks die with their futures; the files are the old or the new pair.
            renewal.task.abort();
            tracing::warn!(
                "stopped while renewing {}; the next start tries again",
                renewal.names.join(", ")
            );
        }
        // An alert decided just before SIGTERM is recorded as sent: give it a moment.
        let pending = self.alerts.flush(ALERT_FLUSH).await;
        if pending > 0 {
            tracing::warn!(
                "stopped with {pending} alert(s) not delivered to the command or webhook (they are in this log)"
            );
        }
        self.alerts = AlertQueue::default();
    }
}

/// Waits for the renewal run to end (forever when there is none).
async fn renewal_finished(
    renewal: &mut Option<Renewal>,
) -> Result<Option<RunReport>, tokio::task::JoinError> {
    match renewal {
        Some(renewal) => (&mut renewal.task).await,
        None => std::future::pending().await,
    }
}

/// What woke the waiting loop.
enum Woke {
    Stop,
    Renewed(Result<Option<RunReport>, tokio::task::JoinError>),
    Pet,
    Due,
    Reload,
    File(PathBuf),
}

/// What reaches the loop from outside: SIGTERM/SIGINT, SIGHUP, file changes.
#[derive(Debug)]
pub struct Controls {
    /// A message (or every sender gone) stops the agent.
    pub stop: mpsc::UnboundedReceiver<()>,
    pub reload: mpsc::UnboundedReceiver<()>,
    pub files: mpsc::UnboundedReceiver<PathBuf>,
}

/// What the loop tells systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    Ready(&'a str),
    Status(&'a str),
    Watchdog,
    Stopping,
}

/// The loop's surroundings: systemd's notify socket, the file watcher, the metrics server.
/// A trait so that tests can run the real loop on a paused clock and record what it says.
pub trait Outside: Send {
    fn notify(&mut self, notice: Notice<'_>);
    /// Watches the directories `config` names that are not watched yet; true when some are
    /// newly watched.
    fn watch(&mut self, _config: &Config) -> bool {
        false
    }
    /// Watches the web servers' configuration (`[discover]`): `files`, and any file in
    /// `dirs`; true when some directory is newly watched.
    fn watch_discovery(&mut self, _files: &[&Path], _dirs: &[&Path]) -> bool {
        false
    }
    /// Some directory cannot be watched: rescan more often.
    fn degraded(&self) -> bool {
        false
    }
    /// After a successful reload: watch the new paths, serve metrics on the new address.
    fn reloaded<'a>(
        &'a mut self,
        _config: &'a Config,
        _metrics: &'a Arc<Metrics>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

impl Plan {
    fn consider(&mut self, at: OffsetDateTime, why: String) {
        if self.next.as_ref().is_none_or(|(next, _)| at < *next) {
            self.next = Some((at, why));
        }
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
    let (stop_tx, stop) = mpsc::unbounded_channel();
    let (reload_tx, reload) = mpsc::unbounded_channel();
    let (files_tx, files) = mpsc::unbounded_channel();
    // Signals become messages, so the loop can tell "stop" from "reload" wherever it is.
    let signals = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = terminate.recv() => { let _ = stop_tx.send(()); }
                _ = interrupt.recv() => { let _ = stop_tx.send(()); }
                _ = hangup.recv() => { let _ = reload_tx.send(()); }
            }
        }
    });

    // Held until the agent exits: `status` reads who runs here, and a second agent for the
    // same state_dir is refused (it would alert twice and race the first one's repairs).
    let _agent_lock = crate::lock::hold_agent(&config.state_dir, OffsetDateTime::now_utc())
        .map_err(AgentError::Lock)?;
    // The single-host pipeline, or the fleet's with [cluster] (joins etcd in the background).
    let renewer = crate::fleet::agent::renewer(&config);
    let mut agent = Agent::new(config_path, config, Arc::new(SystemClock), renewer);
    // Counted after `[discover]` added what the web servers serve.
    tracing::info!(
        "evercert {} starting: {} certificate(s), {} monitor(s), config {}",
        env!("CARGO_PKG_VERSION"),
        agent.config().certificates.len(),
        agent.config().monitors.len(),
        agent.config_path.display()
    );
    let metrics_task = start_metrics(agent.config(), &agent.metrics).await?;
    let mut watcher = Watcher::new(files_tx.clone());
    let _ = watcher.watch_config(agent.config());
    if let Some((files, dirs)) = agent.discovery_inputs() {
        let _ = watcher.watch_inputs(&files, &dirs);
    }
    let mut outside = Systemd {
        watcher,
        files: files_tx,
        metrics_task,
    };
    let mut controls = Controls {
        stop,
        reload,
        files,
    };
    agent
        .serve(&mut controls, &mut outside, watchdog_interval())
        .await;
    signals.abort();
    outside.metrics_task.abort();
    Ok(())
}

/// The production surroundings: sd_notify, inotify, the metrics listener.
struct Systemd {
    watcher: Watcher,
    files: mpsc::UnboundedSender<PathBuf>,
    metrics_task: tokio::task::JoinHandle<()>,
}

impl Outside for Systemd {
    fn notify(&mut self, notice: Notice<'_>) {
        let _ = match notice {
            Notice::Ready(status) => sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(status),
            ]),
            Notice::Status(status) => sd_notify::notify(&[sd_notify::NotifyState::Status(status)]),
            Notice::Watchdog => sd_notify::notify(&[sd_notify::NotifyState::Watchdog]),
            Notice::Stopping => sd_notify::notify(&[sd_notify::NotifyState::Stopping]),
        };
    }

    fn watch(&mut self, config: &Config) -> bool {
        self.watcher.watch_config(config) > 0
    }

    fn watch_discovery(&mut self, files: &[&Path], dirs: &[&Path]) -> bool {
        self.watcher.watch_inputs(files, dirs) > 0
    }

    fn degraded(&self) -> bool {
        self.watcher.degraded
    }

    fn reloaded<'a>(
        &'a mut self,
        config: &'a Config,
        metrics: &'a Arc<Metrics>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.watcher = Watcher::new(self.files.clone());
            let _ = self.watcher.watch_config(config);
            // The old listener must be gone before the new one binds.
            self.metrics_task.abort();
            let _ = (&mut self.metrics_task).await;
            self.metrics_task = start_metrics(config, metrics).await.unwrap_or_else(|err| {
                tracing::error!("{err}");
                tokio::spawn(async {})
            });
        })
    }
}

async fn start_metrics(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<tokio::task::JoinHandle<()>, AgentError> {
    match &config.metrics {
        Some(settings) => metrics::serve(settings.listen, metrics.clone())
            .await
            .map_err(|err| AgentError::Metrics {
                listen: settings.listen.to_string(),
                message: err.to_string(),
            }),
        None => Ok(tokio::spawn(async {})),
    }
}

/// Half of systemd's WatchdogSec, when it is set.
fn watchdog_interval() -> Option<StdDuration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(StdDuration::from_micros(usec / 2).max(StdDuration::from_millis(100)))
}

/// Why a SIGHUP's configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new configuration is invalid; keeping the old one:\n{0}")]
    Invalid(config::ConfigErrors),
    #[error("the new configuration fails the permission checks; keeping the old one:\n{0}")]
    Unsafe(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Lock(crate::lock::AgentLockError),
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
                    history.record_failure(
                        FailureKind::Transient,
                        renew::Step::Order,
                        "CA down",
                        None,
                        now,
                    );
                    Outcome::Failed(Failure {
                        step: renew::Step::Order,
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
        config_with(dir, "")
    }

    /// The test configuration with `extra` TOML at the end.
    fn config_with(dir: &Path, extra: &str) -> Config {
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
{extra}"#,
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

    /// What the loop told "systemd", and when (tokio's clock).
    #[derive(Default, Clone)]
    struct Recorder {
        notices: Arc<Mutex<Vec<(tokio::time::Instant, String)>>>,
    }

    impl Recorder {
        fn notices(&self) -> Vec<(tokio::time::Instant, String)> {
            self.notices.lock().unwrap().clone()
        }

        fn pets(&self) -> Vec<tokio::time::Instant> {
            self.notices()
                .into_iter()
                .filter(|(_, notice)| notice == "WATCHDOG=1")
                .map(|(at, _)| at)
                .collect()
        }
    }

    impl Outside for Recorder {
        fn notify(&mut self, notice: Notice<'_>) {
            let text = match notice {
                Notice::Ready(status) => format!("READY=1 {status}"),
                Notice::Status(status) => format!("STATUS={status}"),
                Notice::Watchdog => "WATCHDOG=1".to_owned(),
                Notice::Stopping => "STOPPING=1".to_owned(),
            };
            self.notices
                .lock()
                .unwrap()
                .push((tokio::time::Instant::now(), text));
        }
    }

    /// The senders of the loop's controls, as the signal handlers and the watcher hold them.
    struct Senders {
        stop: mpsc::UnboundedSender<()>,
        files: mpsc::UnboundedSender<PathBuf>,
        _reload: mpsc::UnboundedSender<()>,
    }

    fn controls() -> (Controls, Senders) {
        let (stop_tx, stop) = mpsc::unbounded_channel();
        let (reload_tx, reload) = mpsc::unbounded_channel();
        let (files_tx, files) = mpsc::unbounded_channel();
        (
            Controls {
                stop,
                reload,
                files,
            },
            Senders {
                stop: stop_tx,
                files: files_tx,
                _reload: reload_tx,
            },
        )
    }

    /// Runs the agent's real loop (`serve`) on tokio's paused clock for `span` of virtual
    /// time, then stops it. Returns how many scans it made.
    async fn run_for(agent: &mut Agent, span: Duration) -> usize {
        let (mut controls, senders) = controls();
        let mut outside = Recorder::default();
        let stopper = async move {
            tokio::time::sleep(span.unsigned_abs()).await;
            senders.stop.send(()).unwrap();
            senders
        };
        let ((), _senders) = tokio::join!(agent.serve(&mut controls, &mut outside, None), stopper);
        usize::try_from(agent.scans).unwrap()
    }

    /// A CA that never answers: the renewal run never ends.
    struct StalledRenewer {
        calls: Mutex<u32>,
    }

    impl Renewer for StalledRenewer {
        fn renew<'a>(
            &'a self,
            _config: &'a Config,
            _names: Vec<String>,
            _now: OffsetDateTime,
        ) -> BoxFuture<'a, RunReport> {
            *self.calls.lock().unwrap() += 1;
            Box::pin(std::future::pending())
        }
    }

    /// An agent with one due certificate, a CA that stalls, and an expired `[[monitor]]` file.
    fn stalled_agent() -> (tempfile::TempDir, Arc<StalledRenewer>, Agent) {
        let dir = tempfile::tempdir().unwrap();
        let monitor = format!(
            "[[monitor]]\nname = \"partner\"\npath = \"{}/partner.pem\"\n",
            dir.path().display()
        );
        let config = config_with(dir.path(), &monitor);
        let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        write_cert(
            &config,
            start - Duration::days(85),
            start + Duration::days(5),
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["partner.example.test".into()]).unwrap();
        params.not_before = start - Duration::days(90);
        params.not_after = start - Duration::days(1);
        let expired = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("partner.pem"), expired.pem()).unwrap();
        let renewer = Arc::new(StalledRenewer {
            calls: Mutex::new(0),
        });
        let agent = Agent::new(
            dir.path().join("evercert.toml"),
            config,
            Arc::new(TokioClock::starting_at(start)),
            renewer.clone(),
        );
        (dir, renewer, agent)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_ca_holds_neither_ready_nor_alerts_nor_the_watchdog_nor_sigterm() {
        let (_dir, renewer, mut agent) = stalled_agent();
        let (mut controls, senders) = controls();
        let recorder = Recorder::default();
        let mut outside = recorder.clone();
        let start = tokio::time::Instant::now();
        let watchdog = Some(StdDuration::from_secs(1));
        {
            let serve = agent.serve(&mut controls, &mut outside, watchdog);
            tokio::pin!(serve);
            // A minute of a CA that never answers.
            tokio::select! {
                () = &mut serve => panic!("the agent stopped on its own"),
                () = tokio::time::sleep(StdDuration::from_secs(60)) => {}
            }
            let notices = recorder.notices();
            assert!(
                notices[0].1.starts_with("READY=1 2 certificates"),
                "{notices:?}"
            );
            assert_eq!(notices[0].0, start, "READY waited for something");
            assert_eq!(*renewer.calls.lock().unwrap(), 1);
            // The watchdog was fed all along, about every second.
            let pets = recorder.pets();
            assert!(pets.len() >= 55, "{} pets in 60 s", pets.len());
            // SIGTERM ends it at once, in the middle of the renewal.
            senders.stop.send(()).unwrap();
            let stopping = tokio::time::Instant::now();
            serve.await;
            assert!(tokio::time::Instant::now() - stopping < StdDuration::from_millis(10));
        }
        // The scans went on (the alert-hold wake-up after 30 s at least) and the expired
        // monitored certificate was alerted at the first one.
        assert!(agent.scans >= 2, "{} scans", agent.scans);
        assert!(agent.renewal.is_none());
        let memory = agent
            .memory
            .get("Monitored:partner")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            memory.level,
            Some(schedule::AlertLevel::Expired),
            "{memory:?}"
        );
        // The managed certificate (5 days left: critical) was held for the renewal's grace,
        // then alerted although the renewal still runs.
        let managed = agent
            .memory
            .get("Managed:shop")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            managed.level,
            Some(schedule::AlertLevel::Critical),
            "{managed:?}"
        );
        assert_eq!(
            recorder.notices().last().map(|(_, notice)| notice.clone()),
            Some("STOPPING=1".to_owned())
        );
        drop(senders);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_scan_stops_feeding_the_watchdog_and_still_stops_on_sigterm() {
        let (_dir, _, _renewer, mut agent) = agent_with_certificate(10, 80, false);
        let hang = agent.hang_scans.clone();
        let (mut controls, senders) = controls();
        let recorder = Recorder::default();
        let mut outside = recorder.clone();
        let serve = agent.serve(&mut controls, &mut outside, Some(StdDuration::from_secs(1)));
        tokio::pin!(serve);
        tokio::select! {
            () = &mut serve => panic!("the agent stopped on its own"),
            () = tokio::time::sleep(StdDuration::from_secs(10)) => {}
        }
        assert!(recorder.pets().len() >= 9, "{:?}", recorder.pets());
        // The next scan (a file changed) hangs.
        hang.store(true, Ordering::SeqCst);
        senders
            .files
            .send(PathBuf::from("/x/fullchain.pem"))
            .unwrap();
        let hung_at = tokio::time::Instant::now();
        tokio::select! {
            () = &mut serve => panic!("the agent stopped on its own"),
            () = tokio::time::sleep(StdDuration::from_secs(60)) => {}
        }
        // Fed while the loop waited for the coalescing period, then never again.
        let last = *recorder.pets().last().unwrap();
        assert!(
            last <= hung_at + COALESCE,
            "fed {:?} after the scan hung",
            last - hung_at
        );
        senders.stop.send(()).unwrap();
        serve.await;
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
