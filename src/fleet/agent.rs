//! The agent in fleet mode: joins etcd in the background (trying again while it cannot be
//! reached), then watches the fleet's versions and installs each one; renewals run the
//! usual pipeline over the fleet's lock, store and history.
//!
//! While etcd is unreachable the agent keeps serving its current files, deletes nothing and
//! orders nothing: a due certificate's renewal fails at the lock step (and the agent's usual
//! failure alerts and backoff follow), and an alert says etcd cannot be reached.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

use super::Fleet;
use super::backends::Backends;
use crate::acme::FailureKind;
use crate::agent::{PipelineRenewer, Renewer};
use crate::config::Config;
use crate::renew::{self, Failure, Outcome, RenewRequest, RunReport, Step};

/// How often to try joining etcd again while it cannot be reached.
const JOIN_RETRY: Duration = Duration::from_secs(5);
/// A renewal waits for the agent's first join attempt for at most this many cluster
/// timeouts: the attempt (a lease grant and a put, each retried across the members for up
/// to two timeouts) ends well within it; the cap only guards against one that hangs.
const FIRST_JOIN_WAIT_TIMEOUTS: u32 = 8;

/// The renewer the agent uses: the single-host pipeline, or the fleet's with `[cluster]`.
pub fn renewer(config: &Config) -> Arc<dyn Renewer> {
    if config.cluster.is_none() {
        return Arc::new(PipelineRenewer);
    }
    let renewer = Arc::new(FleetRenewer {
        fleet: Mutex::new(None),
        first_join_done: AtomicBool::new(false),
    });
    let joining = renewer.clone();
    let config = config.clone();
    tokio::spawn(async move { joining.join(config).await });
    renewer
}

/// Renews through the fleet once joined.
pub struct FleetRenewer {
    fleet: Mutex<Option<Arc<Fleet>>>,
    /// The first attempt to join has ended, joined or not.
    first_join_done: AtomicBool,
}

impl std::fmt::Debug for FleetRenewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetRenewer").finish_non_exhaustive()
    }
}

impl FleetRenewer {
    fn fleet(&self) -> Option<Arc<Fleet>> {
        self.fleet
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The fleet once joined. Right after the start the join is usually still in flight:
    /// wait until its first attempt ends rather than fail the first run, which would put the
    /// renewal behind the agent's backoff (5 min at least). A fixed wait of one cluster
    /// timeout was too short on a loaded machine: three agents started together all failed
    /// their first run, joined a second later, and ordered nothing for minutes.
    async fn joined(&self, config: &Config) -> Option<Arc<Fleet>> {
        let waited = tokio::time::Instant::now();
        let patience = config.cluster.as_ref().map_or(Duration::ZERO, |cluster| {
            cluster.timeout * FIRST_JOIN_WAIT_TIMEOUTS
        });
        while self.fleet().is_none()
            && !self.first_join_done.load(Ordering::SeqCst)
            && waited.elapsed() < patience
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.fleet()
    }

    /// Joins etcd, trying again every few seconds; then starts the watch.
    async fn join(&self, config: Config) {
        let Some(settings) = config.cluster.clone() else {
            return;
        };
        let mut alerted = false;
        loop {
            let attempt = {
                let (config, settings) = (config.clone(), settings.clone());
                tokio::task::spawn_blocking(move || Fleet::start(&config, &settings)).await
            };
            match attempt {
                Ok(Ok(fleet)) => {
                    tracing::info!(
                        "fleet: joined as {} under {} ({} etcd members)",
                        fleet.name(),
                        fleet.settings.prefix,
                        fleet.settings.etcd.len()
                    );
                    let weak = Arc::downgrade(&fleet);
                    fleet.spawn(super::apply::watch(weak.clone()));
                    fleet.spawn(super::lag::watch(weak));
                    *self.fleet.lock().unwrap_or_else(PoisonError::into_inner) = Some(fleet);
                    self.first_join_done.store(true, Ordering::SeqCst);
                    return;
                }
                Ok(Err(err)) => {
                    // A renewal waiting for this attempt fails now, not after the alert.
                    self.first_join_done.store(true, Ordering::SeqCst);
                    let message = format!(
                        "cannot join the fleet: {err}; serving the current certificates, ordering nothing until etcd is back"
                    );
                    if alerted {
                        tracing::warn!("{message}");
                    } else {
                        alert_without_fleet(&config, &message).await;
                        alerted = true;
                    }
                }
                Err(err) => {
                    self.first_join_done.store(true, Ordering::SeqCst);
                    tracing::warn!("fleet: joining panicked: {err}");
                }
            }
            tokio::time::sleep(JOIN_RETRY).await;
        }
    }
}

/// Logs the alert and delivers it through `[alerts]` (no fleet to send it through yet).
async fn alert_without_fleet(config: &Config, message: &str) {
    tracing::error!("ALERT fleet_unreachable: {message}");
    let host = config
        .cluster
        .as_ref()
        .map(|cluster| cluster.name.clone())
        .unwrap_or_default();
    let json = super::apply::alert_json("fleet_unreachable", "", &[], message, &host);
    crate::alerts::Alerter::new(config.alerts.clone())
        .deliver_json("the fleet", &json)
        .await;
}

impl Renewer for FleetRenewer {
    fn renew<'a>(
        &'a self,
        config: &'a Config,
        names: Vec<String>,
        now: OffsetDateTime,
    ) -> Pin<Box<dyn Future<Output = RunReport> + Send + 'a>> {
        Box::pin(async move {
            let Some(fleet) = self.joined(config).await else {
                // Not joined: order nothing.
                return all_failed(names, Step::Lock, NOT_JOINED.into());
            };
            let backends = Backends::fleet(config, fleet.clone());
            let request = RenewRequest {
                names: names.clone(),
                force: false,
                dry_run: false,
                retry_transient: false,
            };
            if let Err(message) = sync_accounts(&fleet, config).await {
                return all_failed(names, Step::Account, format!("fleet mode: {message}"));
            }
            let progress = |name: &str, message: &str| tracing::info!("{name}: {message}");
            let clock = crate::clock::TokioClock::starting_at(now);
            let deps = renew::Deps {
                store: backends.store.as_ref(),
                lock: backends.lock.as_ref(),
                state: backends.state.as_ref(),
                progress: &progress,
                clock: &clock,
                fanout: backends.fanout.clone(),
                shared_account: backends.shared_account.clone(),
            };
            let report = renew::run(config, &request, &deps).await;
            {
                // An account this host registered at a fallback CA becomes the fleet's.
                let config = config.clone();
                let fleet = fleet.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    fleet.block(fleet.share_new_accounts(&config));
                })
                .await;
            }
            for (name, outcome) in &report.outcomes {
                if matches!(outcome, Outcome::Renewed { .. }) {
                    let fleet = fleet.clone();
                    let name = name.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        fleet.block(fleet.report_holder(&name));
                    })
                    .await;
                }
            }
            report
        })
    }

    fn prepare_account<'a>(
        &'a self,
        config: &'a Config,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let fleet = self.joined(config).await.ok_or(NOT_JOINED)?;
            sync_accounts(&fleet, config)
                .await
                .map_err(|message| format!("fleet mode: {message}"))
        })
    }
}

const NOT_JOINED: &str = "fleet mode: etcd cannot be reached yet; nothing is ordered while the fleet cannot coordinate (the current files stay in place)";

/// Installs the fleet's accounts in this host's state_dir (creating the primary's when the
/// fleet has none), so no connection of this host registers one of its own.
async fn sync_accounts(fleet: &Arc<Fleet>, config: &Config) -> Result<(), String> {
    let config = config.clone();
    let fleet = fleet.clone();
    tokio::task::spawn_blocking(move || fleet.block(fleet.sync_accounts(&config)))
        .await
        .unwrap_or_else(|err| Err(err.to_string()))
}

/// Every certificate of the run failed at `step`, transiently (the agent's backoff follows).
fn all_failed(names: Vec<String>, step: Step, message: String) -> RunReport {
    let failure = Failure {
        step,
        message,
        kind: FailureKind::Transient,
        retry_after: None,
        account_gone: false,
    };
    RunReport {
        outcomes: names
            .into_iter()
            .map(|name| (name, Outcome::Failed(failure.clone())))
            .collect(),
    }
}
