//! The renewal pipeline: lock → inspect → decide → order → check → store → reload → verify
//! → record. `evercert renew` runs it once; the agent runs it when its schedule says so.
//!
//! Live files change only through the store's single atomic flip, after the new pair was
//! checked (chain parses, key matches, names covered, not expired). A failed reload or a
//! server that keeps serving the old certificate flips back to the previous version and
//! reloads again, so the server ends on a pair that worked.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream;
use time::OffsetDateTime;

use crate::acme::{AcmeClient, AcmeError, FailureKind, OrderRequest};
use crate::ari;
use crate::challenge::Responders;
use crate::config::{CertificateSettings, Config, Endpoint};
use crate::decision::{Reason, Window};
use crate::hooks;
use crate::inventory::{self, CertFile};
use crate::lock::RenewLock;
use crate::probe;
use crate::state::{CertHistory, Pending, StateStore};
use crate::store::{CertStore, Installed, NewPair, Target, VersionId};
use crate::units::rfc3339;

/// How many orders run at once: enough to hide round trips, few enough not to look like a
/// flood to the CA.
const CONCURRENT_ORDERS: usize = 16;
/// How long to wait for another evercert renewing the same certificate.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct RenewRequest {
    /// Only these certificates (all when empty).
    pub names: Vec<String>,
    /// Renew even if not due.
    pub force: bool,
    /// Against the staging CA, writing nothing live and reloading nothing.
    pub dry_run: bool,
    /// Try transient failures (network, 5xx, a short Retry-After) again within this run, a
    /// bounded number of times. One-shot `renew` does; the agent has its own backoff.
    pub retry_transient: bool,
}

/// The waits before a one-shot run tries a transient failure again.
const ONE_SHOT_RETRY_WAITS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// A Retry-After longer than this is not waited for within one run: it is reported.
const ONE_SHOT_RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// How long to wait before trying this failure again within the run, or `None`.
fn one_shot_wait(failure: &Failure, base: Duration, now: OffsetDateTime) -> Option<Duration> {
    if !failure.step.retried_in_a_run() {
        return None;
    }
    let asked = failure
        .retry_after
        .map(|at| (at - now).max(time::Duration::ZERO).unsigned_abs());
    match (failure.kind, asked) {
        (FailureKind::Permanent, _) => None,
        (_, Some(asked)) if asked > ONE_SHOT_RETRY_AFTER_MAX => None,
        (FailureKind::RateLimited, None) => None,
        (_, asked) => Some(asked.unwrap_or_default().max(base)),
    }
}

/// What happened to one certificate.
#[derive(Debug, Clone)]
pub enum Outcome {
    NotDue {
        renew_at: OffsetDateTime,
        /// Why not before `renew_at`: a certificate waiting to retry after failures (`Retry`)
        /// makes `renew` exit 1.
        reason: Reason,
    },
    Renewed {
        serial: String,
        not_after: OffsetDateTime,
        version: VersionId,
    },
    DryRun {
        serial: String,
        not_after: OffsetDateTime,
    },
    Failed(Failure),
}

/// The step of the pipeline where a renewal failed. Serde keeps the names state files have
/// always held (`"order"`, `"verify"`, …), so existing histories load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Reading the certificate on disk.
    Inspect,
    /// Taking the renewal lock.
    Lock,
    /// Proving, before ordering, that the new files can be written.
    Preflight,
    /// Loading or registering the ACME account.
    Account,
    /// The ACME order: authorizations, challenges, finalization, download.
    Order,
    /// Checking what the CA sent (chain, key, names, dates).
    Check,
    /// Writing the new version and making it live.
    Store,
    /// The reload hook.
    Reload,
    /// The served certificate after the reload.
    Verify,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inspect => "inspect",
            Self::Lock => "lock",
            Self::Preflight => "preflight",
            Self::Account => "account",
            Self::Order => "order",
            Self::Check => "check",
            Self::Store => "store",
            Self::Reload => "reload",
            Self::Verify => "verify",
        }
    }

    /// Steps that talk to the CA or check its answer: worth trying again within a run.
    fn retried_in_a_run(self) -> bool {
        matches!(self, Self::Account | Self::Order | Self::Check)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed renewal: at which step, why, and how soon it is worth trying again.
#[derive(Debug, Clone)]
pub struct Failure {
    pub step: Step,
    pub message: String,
    pub kind: FailureKind,
    pub retry_after: Option<OffsetDateTime>,
    /// The CA no longer knows the account: register anew and retry once.
    pub account_gone: bool,
}

impl Failure {
    fn new(step: Step, kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            step,
            message: message.into(),
            kind,
            retry_after: None,
            account_gone: false,
        }
    }

    fn from_acme(err: AcmeError) -> Self {
        Self {
            account_gone: err.account_gone(),
            step: Step::Order,
            message: err.message,
            kind: err.kind,
            retry_after: err.retry_after.map(OffsetDateTime::from),
        }
    }
}

/// Everything the pipeline needs from outside, so the agent and tests can supply their own.
pub struct Deps<'a> {
    pub store: &'a dyn CertStore,
    pub lock: &'a dyn RenewLock,
    pub state: &'a dyn StateStore,
    /// Progress lines (`shop: ordering`); the CLI prints them.
    pub progress: &'a (dyn Fn(&str, &str) + Sync),
}

/// The result of one run, in configuration order.
#[derive(Debug, Default)]
pub struct RunReport {
    pub outcomes: Vec<(String, Outcome)>,
}

impl RunReport {
    /// `renew`'s exit code: 1 when any certificate failed.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.outcomes.iter().any(|(_, outcome)| {
            matches!(
                outcome,
                Outcome::Failed(_)
                    | Outcome::NotDue {
                        reason: Reason::Retry,
                        ..
                    }
            )
        }))
    }
}

/// Names that are not configured, for a usage error.
pub fn unknown_names<'a>(config: &Config, names: &'a [String]) -> Vec<&'a str> {
    names
        .iter()
        .filter(|name| config.certificate(name).is_none())
        .map(String::as_str)
        .collect()
}

fn target(cert: &CertificateSettings) -> Target<'_> {
    crate::links::target(cert)
}

/// Saves a secret file through the store's atomic writer (mode 0600).
pub fn save_secret(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir).map_err(|err| err.to_string())?;
    }
    crate::store::write_atomic(path, bytes, 0o600).map_err(|err| err.to_string())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Runs the pipeline for the selected certificates.
pub async fn run(
    config: &Config,
    request: &RenewRequest,
    deps: &Deps<'_>,
    now: OffsetDateTime,
) -> RunReport {
    let selected: Vec<&CertificateSettings> = config
        .certificates
        .iter()
        .filter(|cert| request.names.is_empty() || request.names.contains(&cert.name))
        .collect();

    let directory = if request.dry_run {
        &config.acme.staging_directory
    } else {
        &config.acme.directory
    };
    // Decide first: a run where nothing is due, and whose ARI answers are cached, touches no
    // network at all.
    let (statuses, mut client) = decide_all(config, &selected, request, deps, directory, now).await;
    let mut due = Vec::new();
    let mut deploy = Vec::new();
    let mut report = BTreeMap::new();
    for (cert, (status, history)) in selected.iter().zip(statuses) {
        let decision = status.decision;
        if decision.due || request.force {
            if !request.force
                && !request.dry_run
                && let Some(live) = usable_pending(config, cert, &history, deps, now)
            {
                (deps.progress)(
                    &cert.name,
                    &format!(
                        "deploying version {} (serial {}), issued earlier but never deployed; nothing is ordered",
                        live.installed.version, live.serial
                    ),
                );
                deploy.push((*cert, live, decision.reason, status.file));
                continue;
            }
            due.push((*cert, status.file, decision.reason));
        } else if decision.reason == Reason::Unreadable {
            // Unreadable files (permissions, a file where a directory should be): renewing
            // cannot fix them, but "not due" and exit 0 would hide them from cron and CI.
            let problem = status
                .problem
                .or(status.assessment.reason)
                .unwrap_or_else(|| "the certificate cannot be read".to_owned());
            let failure = Failure::new(
                Step::Inspect,
                FailureKind::Permanent,
                format!(
                    "{problem}; evercert must be able to read and replace cert_path and key_path: fix their directories or permissions, or the paths in the configuration"
                ),
            );
            (deps.progress)(
                &cert.name,
                &format!("failed at {}: {}", failure.step, failure.message),
            );
            record_failure(deps, &cert.name, &failure, now, request.dry_run);
            report.insert(cert.name.clone(), Outcome::Failed(failure));
        } else {
            let why = match decision.reason {
                Reason::Retry => format!(
                    "; waiting to retry after {} failure{} (last: {}); `renew --force` tries now",
                    history.failures,
                    if history.failures == 1 { "" } else { "s" },
                    history.last_error.as_deref().unwrap_or("unknown")
                ),
                Reason::AriWindow => "; inside the CA's renewal window (ARI)".to_owned(),
                Reason::RenewalWindow => {
                    "; outside the renewal windows: waits for the next one, or for critical_before; `renew --force` renews now".to_owned()
                }
                _ => String::new(),
            };
            (deps.progress)(
                &cert.name,
                &format!("not due (renews at {}{why})", rfc3339(decision.renew_at)),
            );
            report.insert(
                cert.name.clone(),
                Outcome::NotDue {
                    renew_at: decision.renew_at,
                    reason: decision.reason,
                },
            );
        }
    }
    if due.is_empty() && deploy.is_empty() {
        return ordered(&selected, report);
    }
    let reasons: BTreeMap<String, Reason> = due
        .iter()
        .map(|(cert, _, reason)| (cert.name.clone(), *reason))
        .chain(
            deploy
                .iter()
                .map(|(cert, _, reason, _)| (cert.name.clone(), *reason)),
        )
        .collect();
    let mut due: Vec<(&CertificateSettings, Option<CertFile>)> = due
        .into_iter()
        .map(|(cert, file, _)| (cert, file))
        .collect();
    let mut stored = Vec::new();
    for (cert, live, _, file) in deploy {
        match make_pending_live(cert, live, deps).await {
            Ok(live) => stored.push((cert, live)),
            Err(failure) if failure.kind == FailureKind::Permanent => {
                // The pending version cannot be made live here (the paths are no longer
                // evercert's links, say). Keeping it would block every later attempt until the
                // live certificate expires: set it aside and order a new one now.
                (deps.progress)(
                    &cert.name,
                    &format!(
                        "the pending version cannot be deployed ({}); ordering a new certificate instead",
                        failure.message
                    ),
                );
                let mut history = deps.state.load(&cert.name);
                history.pending = None;
                if let Err(err) = deps.state.save(&cert.name, &history) {
                    tracing::warn!("{}: {err}", cert.name);
                }
                due.push((cert, file));
            }
            Err(failure) => {
                (deps.progress)(
                    &cert.name,
                    &format!("failed at {}: {}", failure.step, failure.message),
                );
                record_failure(deps, &cert.name, &failure, now, false);
                report.insert(cert.name.clone(), Outcome::Failed(failure));
            }
        }
    }
    if due.is_empty() {
        return finish(&selected, report, stored, &reasons, deps, now).await;
    }

    let mut waits = ONE_SHOT_RETRY_WAITS.iter();
    let client = loop {
        if let Some(client) = client.take() {
            break client;
        }
        match AcmeClient::connect(&config.acme, directory, &config.state_dir, &save_secret).await {
            Ok(client) => break Arc::new(client),
            Err(err) => {
                let failure = Failure {
                    step: Step::Account,
                    kind: err.kind,
                    retry_after: err.retry_after.map(OffsetDateTime::from),
                    account_gone: false,
                    message: err.message,
                };
                let wait = waits
                    .next()
                    .filter(|_| request.retry_transient)
                    .and_then(|base| one_shot_wait(&failure, *base, OffsetDateTime::now_utc()));
                if let Some(wait) = wait {
                    tracing::warn!(
                        "{}; trying again in {} s",
                        failure.message,
                        wait.as_secs_f64().ceil()
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                for (cert, _) in &due {
                    (deps.progress)(&cert.name, &format!("failed: {}", failure.message));
                    record_failure(deps, &cert.name, &failure, now, request.dry_run);
                    report.insert(cert.name.clone(), Outcome::Failed(failure.clone()));
                }
                return ordered(&selected, report);
            }
        }
    };
    let currents: BTreeMap<String, Option<CertFile>> = due
        .iter()
        .map(|(cert, file)| (cert.name.clone(), file.clone()))
        .collect();
    let mut issued = order_all(config, due, &client, deps, request).await;
    let gone: Vec<&CertificateSettings> = issued
        .iter()
        .filter(|(_, result)| matches!(result, Err(failure) if failure.account_gone))
        .map(|(cert, _)| *cert)
        .collect();
    if !gone.is_empty() {
        // Once per run: register a new account and try those orders again.
        match crate::acme::forget_account(&config.state_dir, directory) {
            Ok(aside) => tracing::warn!(
                "the CA at {directory} no longer knows our account; moved its credentials to {} and registering a new one",
                aside.display()
            ),
            Err(err) => tracing::warn!("cannot move the stale account aside: {err}"),
        }
        if let Ok(fresh) =
            AcmeClient::connect(&config.acme, directory, &config.state_dir, &save_secret).await
        {
            let retry: Vec<(&CertificateSettings, Option<CertFile>)> = gone
                .iter()
                .map(|cert| (*cert, currents.get(&cert.name).cloned().flatten()))
                .collect();
            let retried = order_all(config, retry, &Arc::new(fresh), deps, request).await;
            issued.retain(|(cert, _)| !gone.iter().any(|g| g.name == cert.name));
            issued.extend(retried);
        }
    }
    if request.retry_transient {
        for base in ONE_SHOT_RETRY_WAITS {
            let now = OffsetDateTime::now_utc();
            let retry: Vec<(&CertificateSettings, Duration)> = issued
                .iter()
                .filter_map(|(cert, result)| match result {
                    Err(failure) => one_shot_wait(failure, base, now).map(|wait| {
                        (deps.progress)(
                            &cert.name,
                            &format!(
                                "{} failed ({}); trying again in {} s",
                                failure.step,
                                failure.message,
                                wait.as_secs_f64().ceil()
                            ),
                        );
                        (*cert, wait)
                    }),
                    Ok(_) => None,
                })
                .collect();
            let Some(wait) = retry.iter().map(|(_, wait)| *wait).max() else {
                break;
            };
            tokio::time::sleep(wait).await;
            let again: Vec<(&CertificateSettings, Option<CertFile>)> = retry
                .iter()
                .map(|(cert, _)| (*cert, currents.get(&cert.name).cloned().flatten()))
                .collect();
            let retried = order_all(config, again, &client, deps, request).await;
            issued.retain(|(cert, _)| !retry.iter().any(|(r, _)| r.name == cert.name));
            issued.extend(retried);
        }
    }

    for (cert, result) in issued {
        match result {
            Ok(Stored::DryRun { serial, not_after }) => {
                report.insert(cert.name.clone(), Outcome::DryRun { serial, not_after });
            }
            Ok(Stored::Live(live)) => stored.push((cert, live)),
            Ok(Stored::NotDue { renew_at }) => {
                report.insert(
                    cert.name.clone(),
                    Outcome::NotDue {
                        renew_at,
                        reason: Reason::Lifetime,
                    },
                );
            }
            Err(failure) => {
                (deps.progress)(
                    &cert.name,
                    &format!("failed at {}: {}", failure.step, failure.message),
                );
                record_failure(deps, &cert.name, &failure, now, request.dry_run);
                report.insert(cert.name.clone(), Outcome::Failed(failure));
            }
        }
    }
    let fresh: Vec<ari::Question> = if config.renewal.ari && !request.dry_run {
        stored
            .iter()
            .map(|(cert, live)| ari::Question {
                name: cert.name.clone(),
                serial: live.serial.clone(),
                cert_pem: crate::fsread::read(&cert.cert_path, crate::fsread::SMALL_FILE_MAX)
                    .unwrap_or_default(),
                previous: None,
            })
            .collect()
    } else {
        Vec::new()
    };
    let report = finish(&selected, report, stored, &reasons, deps, now).await;
    // The new certificates' first ARI answer, so the next timer run has it cached (no network
    // at all when the CA offers no ARI).
    if !fresh.is_empty() {
        ari::poll_all(&client, &config.state_dir, fresh, now).await;
    }
    report
}

/// Deploys what was stored (reload, verify; roll back on failure) and records the outcome.
async fn finish(
    selected: &[&CertificateSettings],
    mut report: BTreeMap<String, Outcome>,
    stored: Vec<(&CertificateSettings, Live)>,
    reasons: &BTreeMap<String, Reason>,
    deps: &Deps<'_>,
    now: OffsetDateTime,
) -> RunReport {
    let versions: BTreeMap<String, Pending> = stored
        .iter()
        .map(|(cert, live)| {
            let pending = Pending {
                version: live.installed.version.0.clone(),
                serial: live.serial.clone(),
                not_after: live.not_after,
            };
            (cert.name.clone(), pending)
        })
        .collect();
    for (cert, result) in reload_and_verify(stored, deps).await {
        match result {
            Ok(live) => {
                let mut history = deps.state.load(&cert.name);
                history.record_success(&live.serial, now);
                history.renewed_for = reasons.get(&cert.name).copied();
                if let Err(err) = deps.state.save(&cert.name, &history) {
                    tracing::warn!("{}: {err}", cert.name);
                }
                (deps.progress)(
                    &cert.name,
                    &format!(
                        "renewed: serial {}, expires {}",
                        live.serial,
                        rfc3339(live.not_after)
                    ),
                );
                report.insert(
                    cert.name.clone(),
                    Outcome::Renewed {
                        serial: live.serial,
                        not_after: live.not_after,
                        version: live.installed.version,
                    },
                );
            }
            Err(failure) => {
                (deps.progress)(
                    &cert.name,
                    &format!("failed at {}: {}", failure.step, failure.message),
                );
                // Rolled back: the issued version waits in the archive, and the next attempt
                // deploys it instead of ordering another (`usable_pending`).
                let pending = versions.get(&cert.name).filter(|pending| {
                    deps.store.current(&cert.name).ok().flatten().as_ref()
                        != Some(&VersionId(pending.version.clone()))
                });
                if let Some(pending) = pending {
                    (deps.progress)(
                        &cert.name,
                        &format!(
                            "version {} (serial {}) stays in the archive; the next attempt deploys it without ordering",
                            pending.version, pending.serial
                        ),
                    );
                }
                record(deps, &cert.name, &failure, now, pending.cloned());
                report.insert(cert.name.clone(), Outcome::Failed(failure));
            }
        }
    }
    ordered(selected, report)
}

/// Inspects the selected certificates and decides for each (`decision::decide`), with the
/// history and the CA's renewal window. Where ARI is on and a cached answer is stale, the
/// CA is asked first, all at once, and the client is kept for the orders.
async fn decide_all(
    config: &Config,
    selected: &[&CertificateSettings],
    request: &RenewRequest,
    deps: &Deps<'_>,
    directory: &str,
    now: OffsetDateTime,
) -> (
    Vec<(inventory::ManagedStatus, CertHistory)>,
    Option<Arc<AcmeClient>>,
) {
    let mut statuses: Vec<(inventory::ManagedStatus, CertHistory)> = selected
        .iter()
        .map(|cert| {
            let mut status = inventory::inspect_managed(
                cert,
                config.renew_before(cert),
                config.renewal.thresholds,
                now,
            );
            let history = deps.state.load(&cert.name);
            status.decide(&history, None, &config.renewal.windows, now);
            (status, history)
        })
        .collect();
    let use_ari = config.renewal.ari && !request.dry_run;
    let mut windows: BTreeMap<String, Window> = BTreeMap::new();
    let mut questions = Vec::new();
    for (status, _) in &statuses {
        let Some(file) = status.file.as_ref().filter(|_| use_ari) else {
            continue;
        };
        let cached = ari::load(&config.state_dir, &status.name);
        if let Some(window) = cached
            .as_ref()
            .and_then(|cached| cached.window_for(directory, &file.leaf.serial))
        {
            windows.insert(status.name.clone(), window);
        }
        // Asking changes nothing when the certificate is due anyway, waits for a retry, or
        // when the CA's last answer still holds.
        let pointless = request.force
            || status.decision.due
            || matches!(status.decision.reason, Reason::Retry | Reason::Unreadable)
            || cached
                .as_ref()
                .is_some_and(|cached| cached.is_fresh(directory, &file.leaf.serial, now));
        if pointless {
            continue;
        }
        questions.extend(ari::Question::about(status, cached));
    }
    let mut client = None;
    if !questions.is_empty() {
        match AcmeClient::connect(&config.acme, directory, &config.state_dir, &save_secret).await {
            Ok(connected) => {
                let connected = Arc::new(connected);
                for (name, cached) in
                    ari::poll_all(&connected, &config.state_dir, questions, now).await
                {
                    match cached.window_for(directory, &cached.serial) {
                        Some(window) => windows.insert(name, window),
                        None => windows.remove(&name),
                    };
                }
                client = Some(connected);
            }
            Err(err) => tracing::warn!(
                "cannot ask the CA at {directory} for renewal information (ARI): {err}; deciding with what is cached"
            ),
        }
    }
    for (status, history) in &mut statuses {
        let window = windows.get(&status.name).copied();
        status.decide(history, window, &config.renewal.windows, now);
    }
    (statuses, client)
}

/// The pending version of this certificate (issued, stored, never deployed), when it may be
/// deployed instead of ordering again: it is newer than the live one, its key matches, it
/// covers the configured names, and it is not itself due by the lifetime rule.
fn usable_pending(
    config: &Config,
    cert: &CertificateSettings,
    history: &CertHistory,
    deps: &Deps<'_>,
    now: OffsetDateTime,
) -> Option<Live> {
    let pending = history.pending.as_ref()?;
    let version = VersionId(pending.version.clone());
    let previous = deps.store.current(&cert.name).ok()?;
    if previous.as_ref().is_some_and(|live| *live >= version) {
        return None;
    }
    let refuse = |why: String| {
        tracing::warn!(
            "{}: the pending version {version} is not deployed: {why}; ordering a new certificate",
            cert.name
        );
        None
    };
    let (chain, key) = match deps.store.read_version(&cert.name, &version) {
        Ok(pair) => pair,
        Err(err) => return refuse(err.to_string()),
    };
    let (Ok(chain), Ok(key)) = (String::from_utf8(chain), String::from_utf8(key)) else {
        return refuse("its files are not PEM text".to_owned());
    };
    let file = match check_issued(&chain, &key, &cert.domains, now) {
        Ok(file) => file,
        Err(why) => return refuse(why),
    };
    let renew_at = crate::policy::renew_at(
        file.leaf.not_before,
        file.leaf.not_after,
        config.renew_before(cert),
    );
    if renew_at <= now {
        return refuse(format!("it is due itself (renew_at {})", rfc3339(renew_at)));
    }
    Some(Live {
        serial: file.leaf.serial,
        not_after: file.leaf.not_after,
        installed: Installed { version, previous },
    })
}

/// Makes a pending version live, under the renewal lock.
async fn make_pending_live(
    cert: &CertificateSettings,
    live: Live,
    deps: &Deps<'_>,
) -> Result<Live, Failure> {
    let (_guard, _) = acquire_lock(deps, &cert.name).await?;
    let store_failure = |err: crate::store::StoreError| {
        Failure::new(Step::Store, FailureKind::Permanent, err.to_string())
    };
    deps.store.recover(&target(cert)).map_err(store_failure)?;
    // Another evercert may have deployed something meanwhile.
    let current = deps.store.current(&cert.name).map_err(store_failure)?;
    if current != live.installed.previous {
        return Err(Failure::new(
            Step::Store,
            FailureKind::Transient,
            format!(
                "another evercert changed the live version of {} meanwhile; the next run decides again",
                cert.name
            ),
        ));
    }
    deps.store
        .rollback(&target(cert), &live.installed.version)
        .map_err(store_failure)?;
    (deps.progress)(
        &cert.name,
        &format!("version {} is live", live.installed.version),
    );
    Ok(live)
}

/// Orders every due certificate, up to [`CONCURRENT_ORDERS`] at once, sharing one set of
/// challenge responders (bound only for the duration of this call).
async fn order_all<'c>(
    config: &'c Config,
    due: Vec<(&'c CertificateSettings, Option<CertFile>)>,
    client: &Arc<AcmeClient>,
    deps: &Deps<'_>,
    request: &RenewRequest,
) -> Vec<(&'c CertificateSettings, Result<Stored, Failure>)> {
    let responders = Responders::default();
    // Boxed with an explicit type: a closure in `.map()` trips the compiler's higher-ranked
    // lifetime inference once the whole pipeline must be `Send` (the agent spawns it).
    type Pending<'c, 'r> = Pin<
        Box<dyn Future<Output = (&'c CertificateSettings, Result<Stored, Failure>)> + Send + 'r>,
    >;
    let orders: Vec<Pending<'c, '_>> = due
        .into_iter()
        .map(|(cert, current)| -> Pending<'c, '_> {
            let client = client.clone();
            let responders = &responders;
            Box::pin(async move {
                let result = order_and_store(
                    config,
                    cert,
                    current.as_ref(),
                    &client,
                    responders,
                    deps,
                    request,
                )
                .await;
                (cert, result)
            })
        })
        .collect();
    stream::iter(orders)
        .buffer_unordered(CONCURRENT_ORDERS)
        .collect()
        .await
}

fn ordered(selected: &[&CertificateSettings], mut report: BTreeMap<String, Outcome>) -> RunReport {
    RunReport {
        outcomes: selected
            .iter()
            .filter_map(|cert| {
                report
                    .remove(&cert.name)
                    .map(|outcome| (cert.name.clone(), outcome))
            })
            .collect(),
    }
}

fn record_failure(
    deps: &Deps<'_>,
    name: &str,
    failure: &Failure,
    now: OffsetDateTime,
    dry_run: bool,
) {
    if dry_run {
        return;
    }
    record(deps, name, failure, now, None);
}

/// Records a failure in the history, with the version left pending by a failed deploy.
fn record(
    deps: &Deps<'_>,
    name: &str,
    failure: &Failure,
    now: OffsetDateTime,
    pending: Option<Pending>,
) {
    let mut history = deps.state.load(name);
    history.record_failure(
        failure.kind,
        failure.step,
        &failure.message,
        failure.retry_after,
        now,
    );
    if pending.is_some() {
        history.pending = pending;
    }
    if let Err(err) = deps.state.save(name, &history) {
        tracing::warn!("{name}: {err}");
    }
}

/// A new version made live, not yet reloaded or verified.
#[derive(Debug)]
struct Live {
    serial: String,
    not_after: OffsetDateTime,
    installed: Installed,
}

enum Stored {
    Live(Live),
    /// Renewed by another evercert while this run waited for the lock.
    NotDue {
        renew_at: OffsetDateTime,
    },
    DryRun {
        serial: String,
        not_after: OffsetDateTime,
    },
}

/// Takes the renewal lock; `true` with it when another evercert held it first.
async fn acquire_lock(
    deps: &Deps<'_>,
    name: &str,
) -> Result<(crate::lock::LockGuard, bool), Failure> {
    let started = std::time::Instant::now();
    let mut announced = false;
    loop {
        match deps.lock.acquire(name, Duration::ZERO) {
            Ok(guard) => return Ok((guard, announced)),
            Err(crate::lock::LockError::Busy { .. }) if started.elapsed() < LOCK_WAIT => {
                if !announced {
                    (deps.progress)(
                        name,
                        "another evercert is renewing this certificate; waiting",
                    );
                    announced = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => {
                return Err(Failure::new(
                    Step::Lock,
                    FailureKind::Transient,
                    err.to_string(),
                ));
            }
        }
    }
}

async fn order_and_store(
    config: &Config,
    cert: &CertificateSettings,
    current: Option<&CertFile>,
    client: &AcmeClient,
    responders: &Responders,
    deps: &Deps<'_>,
    request: &RenewRequest,
) -> Result<Stored, Failure> {
    let name = cert.name.as_str();
    let dry_run = request.dry_run;
    let (_guard, waited) = if dry_run {
        (None, false)
    } else {
        let (guard, waited) = acquire_lock(deps, name).await?;
        (Some(guard), waited)
    };
    if waited && !request.force {
        // The other evercert has most likely just renewed it: decide again on what is there.
        let status = inventory::inspect_managed(
            cert,
            config.renew_before(cert),
            config.renewal.thresholds,
            OffsetDateTime::now_utc(),
        );
        if !status.assessment.due {
            let renew_at = status.assessment.renew_at;
            (deps.progress)(
                name,
                &format!(
                    "renewed meanwhile by the other evercert; not due until {}",
                    rfc3339(renew_at)
                ),
            );
            return Ok(Stored::NotDue { renew_at });
        }
    }
    if !dry_run {
        deps.store
            .recover(&target(cert))
            .map_err(|err| Failure::new(Step::Store, FailureKind::Permanent, err.to_string()))?;
    }
    preflight(cert, deps, dry_run)?;
    let reuse_key = if cert.reuse_key {
        crate::fsread::read_to_string(&cert.key_path, crate::fsread::SMALL_FILE_MAX).ok()
    } else {
        None
    };
    let current_pem = if current.is_some() {
        crate::fsread::read(&cert.cert_path, crate::fsread::SMALL_FILE_MAX).ok()
    } else {
        None
    };
    (deps.progress)(
        name,
        &format!(
            "ordering {} from {}",
            cert.domains.join(", "),
            client.directory()
        ),
    );
    let request = OrderRequest {
        name,
        domains: &cert.domains,
        key_type: cert.key_type,
        reuse_key: reuse_key.as_deref(),
        profile: config.acme.profile.as_deref(),
        replaces: if config.renewal.ari {
            current_pem.as_deref()
        } else {
            None
        },
        challenge: &cert.challenge,
    };
    let progress = |step: &str| (deps.progress)(name, step);
    let issued = client
        .issue(&request, responders, &progress)
        .await
        .map_err(Failure::from_acme)?;
    let now = OffsetDateTime::now_utc();
    let file = check_issued(&issued.chain_pem, &issued.key_pem, &cert.domains, now).map_err(
        |message| {
            Failure::new(
                Step::Check,
                FailureKind::Transient,
                format!("the CA's certificate was not written: {message}"),
            )
        },
    )?;
    let serial = file.leaf.serial.clone();
    let not_after = file.leaf.not_after;
    (deps.progress)(
        name,
        &format!("issued serial {serial}, expires {}", rfc3339(not_after)),
    );
    if dry_run {
        dry_run_check(
            cert,
            &issued.chain_pem,
            &issued.key_pem,
            &config.state_dir,
            deps,
        )?;
        return Ok(Stored::DryRun { serial, not_after });
    }
    let pair = NewPair {
        key_pem: issued.key_pem.as_bytes(),
        chain_pem: issued.chain_pem.as_bytes(),
        serial: &serial,
        not_after,
        domains: &cert.domains,
    };
    let installed = deps
        .store
        .install(&target(cert), &pair)
        .map_err(|err| Failure::new(Step::Store, FailureKind::Permanent, err.to_string()))?;
    prune(cert, config.renewal.archive_keep, &installed, deps);
    (deps.progress)(
        name,
        &format!(
            "written {} and {} (version {})",
            cert.cert_path.display(),
            cert.key_path.display(),
            installed.version.0
        ),
    );
    Ok(Stored::Live(Live {
        serial,
        not_after,
        installed,
    }))
}

/// Before anything is ordered: the destination (and the webroot) can be written, and what
/// is there may be archived, so a sandbox mistake (ReadWritePaths=) costs no issuance.
fn preflight(cert: &CertificateSettings, deps: &Deps<'_>, dry_run: bool) -> Result<(), Failure> {
    let failed = |err: crate::store::StoreError| {
        Failure::new(Step::Preflight, FailureKind::Permanent, err.to_string())
    };
    if !dry_run {
        deps.store.preflight(&target(cert)).map_err(failed)?;
    }
    if let crate::config::ChallengeSettings::Http01Webroot(webroot) = &cert.challenge {
        crate::store::check_webroot(&cert.name, webroot).map_err(failed)?;
    }
    Ok(())
}

/// Archive retention after an install; a failure is logged, the renewal stands.
fn prune(cert: &CertificateSettings, keep: usize, installed: &Installed, deps: &Deps<'_>) {
    match deps.store.prune(&cert.name, keep, installed) {
        Ok(removed) if !removed.is_empty() => (deps.progress)(
            &cert.name,
            &format!(
                "removed {} old version{} from the archive (archive_keep = {keep})",
                removed.len(),
                if removed.len() == 1 { "" } else { "s" }
            ),
        ),
        Ok(_) => {}
        Err(err) => tracing::warn!("{err}; old versions stay in the archive for now"),
    }
}

/// What must hold before a new pair may replace a working one.
pub fn check_issued(
    chain_pem: &str,
    key_pem: &str,
    domains: &[String],
    now: OffsetDateTime,
) -> Result<CertFile, String> {
    let ders: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|err| format!("the chain is not valid PEM: {err}"))?;
    if ders.is_empty() {
        return Err("the CA sent no certificate".into());
    }
    let file = inventory::facts_of_chain(&ders)
        .map_err(|problem| format!("the chain does not parse or is out of order: {problem:?}"))?;
    let public_key = inventory::public_key_of_pem(key_pem.as_bytes())
        .ok_or("the new private key cannot be read back")?;
    if public_key != file.leaf.public_key {
        return Err("the certificate is not for the new key".into());
    }
    let uncovered = file.leaf.uncovered(domains);
    if !uncovered.is_empty() {
        return Err(format!(
            "the certificate does not cover {}",
            uncovered.join(", ")
        ));
    }
    if file.leaf.not_after <= now {
        return Err(format!(
            "the certificate is already expired ({})",
            rfc3339(file.leaf.not_after)
        ));
    }
    Ok(file)
}

use rustls::pki_types::pem::PemObject as _;

/// Dry run: the new pair goes to a scratch directory, is read back like a live one, and is
/// removed; nothing live is written and no hook runs.
fn dry_run_check(
    cert: &CertificateSettings,
    chain_pem: &str,
    key_pem: &str,
    state_dir: &Path,
    deps: &Deps<'_>,
) -> Result<(), Failure> {
    let result = (|| -> Result<(), String> {
        // Fresh, private and under state_dir: never a predictable name in the shared /tmp.
        let dir = crate::store::ScratchDir::create(state_dir).map_err(|err| err.to_string())?;
        let scratch = dir.path();
        let cert_file = scratch.join("fullchain.pem");
        let key_file = scratch.join("privkey.pem");
        crate::store::write_atomic(&key_file, key_pem.as_bytes(), 0o600)
            .map_err(|err| err.to_string())?;
        crate::store::write_atomic(&cert_file, chain_pem.as_bytes(), 0o644)
            .map_err(|err| err.to_string())?;
        let file = inventory::read_cert_file(&cert_file).map_err(|err| err.to_string())?;
        inventory::check_key_file(&key_file, &cert_file, &file.leaf)
            .map_err(|err| err.to_string())?;
        Ok(())
    })();
    result.map_err(|message| Failure::new(Step::Check, FailureKind::Transient, message))?;
    (deps.progress)(
        &cert.name,
        &format!(
            "dry run: would write {} and {}{}",
            cert.cert_path.display(),
            cert.key_path.display(),
            cert.reload
                .as_deref()
                .map(|reload| format!(", then run `{reload}`"))
                .unwrap_or_default()
        ),
    );
    Ok(())
}

/// Runs each distinct reload command once for the certificates that share it, then checks
/// every verify endpoint. Failures roll the certificates back and reload again.
async fn reload_and_verify<'c>(
    stored: Vec<(&'c CertificateSettings, Live)>,
    deps: &Deps<'_>,
) -> Vec<(&'c CertificateSettings, Result<Live, Failure>)> {
    let mut groups: BTreeMap<Option<String>, Vec<(&CertificateSettings, Live)>> = BTreeMap::new();
    for (cert, live) in stored {
        groups
            .entry(cert.reload.clone())
            .or_default()
            .push((cert, live));
    }
    let mut results = Vec::new();
    for (reload, mut members) in groups {
        // Orders finish in any order; hooks and logs see the names sorted.
        members.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let Some(command) = reload else {
            for (cert, live) in members {
                let verified = verify_all(cert, &live, deps).await;
                results.push(finish_verify(cert, live, verified, None, deps).await);
            }
            continue;
        };
        let timeout = members
            .iter()
            .map(|(cert, _)| cert.reload_timeout)
            .max()
            .unwrap_or_default();
        let env = reload_env(&members);
        match hooks::run(&command, &[], &env, timeout.unsigned_abs()).await {
            Ok(_) => {
                for (cert, _) in &members {
                    (deps.progress)(&cert.name, &format!("reloaded (`{command}`)"));
                }
                for (cert, live) in members {
                    let verified = verify_all(cert, &live, deps).await;
                    results.push(finish_verify(cert, live, verified, Some(&command), deps).await);
                }
            }
            Err(err) => {
                // The new files are live but the server did not take them: put back what it
                // had, and reload again so it ends on a consistent pair.
                let restored: Vec<Rollback> = members
                    .iter()
                    .map(|(cert, live)| rollback(cert, live, deps))
                    .collect();
                // The hook now reloads the restored pair: describe that one, not the rejected.
                // When nothing was restored there is nothing new for it to load.
                let again = if restored
                    .iter()
                    .any(|rollback| matches!(rollback, Rollback::Restored))
                {
                    let certs: Vec<&CertificateSettings> =
                        members.iter().map(|(cert, _)| *cert).collect();
                    let env = restored_env(&certs);
                    Some(
                        hooks::run(&command, &[], &env, timeout.unsigned_abs())
                            .await
                            .map(drop)
                            .map_err(|again| again.to_string()),
                    )
                } else {
                    None
                };
                for ((cert, _), restored) in members.into_iter().zip(restored) {
                    let message = format!(
                        "reload hook failed: {err}{}",
                        restored.describe(again.as_ref())
                    );
                    results.push((
                        cert,
                        Err(Failure::new(Step::Reload, FailureKind::Permanent, message)),
                    ));
                }
            }
        }
    }
    results
}

fn reload_env(members: &[(&CertificateSettings, Live)]) -> Vec<(&'static str, String)> {
    let certs: Vec<&CertificateSettings> = members.iter().map(|(cert, _)| *cert).collect();
    let live = match members {
        [(_, live)] => Some((live.serial.clone(), live.not_after)),
        _ => None,
    };
    hook_env(&certs, live)
}

/// The environment of the reload after a rollback: the pair that is live again, read back
/// through `cert_path`.
fn restored_env(certs: &[&CertificateSettings]) -> Vec<(&'static str, String)> {
    let live = match certs {
        [cert] => inventory::read_cert_file(&cert.cert_path)
            .ok()
            .map(|file| (file.leaf.serial, file.leaf.not_after)),
        _ => None,
    };
    hook_env(certs, live)
}

fn hook_env(
    certs: &[&CertificateSettings],
    live: Option<(String, OffsetDateTime)>,
) -> Vec<(&'static str, String)> {
    let names: Vec<&str> = certs.iter().map(|cert| cert.name.as_str()).collect();
    let mut env = vec![("EVERCERT_NAMES", names.join(" "))];
    // Single-certificate variables only when they are unambiguous.
    if let [cert] = certs {
        env.push(("EVERCERT_NAME", cert.name.clone()));
        env.push(("EVERCERT_DOMAINS", cert.domains.join(" ")));
        env.push(("EVERCERT_CERT_PATH", cert.cert_path.display().to_string()));
        env.push(("EVERCERT_KEY_PATH", cert.key_path.display().to_string()));
        if let Some(bundle) = &cert.bundle_path {
            env.push(("EVERCERT_BUNDLE_PATH", bundle.display().to_string()));
        }
        if let Some((serial, not_after)) = live {
            env.push(("EVERCERT_SERIAL", serial));
            env.push(("EVERCERT_NOT_AFTER", rfc3339(not_after)));
        }
    }
    env
}

/// What a rollback after a failed reload or verification did.
enum Rollback {
    /// The previous version is live again.
    Restored,
    /// The first certificate evercert installed here: there is nothing older to go back to.
    NoPrevious,
    /// Left alone, for the reason given (another evercert's newer version), or failed.
    NotDone(String),
}

impl Rollback {
    /// The words appended to the failure, given what the reload that followed did (`None`
    /// when no reload follows).
    fn describe(&self, reloaded: Option<&Result<(), String>>) -> String {
        match (self, reloaded) {
            (Self::Restored, None) => "; the previous certificate was restored".to_owned(),
            (Self::Restored, Some(Ok(()))) => {
                "; the previous certificate was restored and reloaded".to_owned()
            }
            (Self::Restored, Some(Err(err))) => {
                format!("; the previous certificate was restored, but reloading it failed too: {err}")
            }
            (Self::NoPrevious, _) => "; this was the first certificate evercert installed here, so there is nothing older to restore: the new files stay in place; fix the problem, then reload the web server by hand".to_owned(),
            (Self::NotDone(why), _) => format!("; {why}"),
        }
    }
}

/// Flips back to the previous version.
fn rollback(cert: &CertificateSettings, live: &Live, deps: &Deps<'_>) -> Rollback {
    let Some(previous) = &live.installed.previous else {
        return Rollback::NoPrevious;
    };
    // The lock was let go after the install: another evercert may since have installed a newer
    // version (or be installing one), and that one must not be rolled back over.
    let _guard = match deps.lock.acquire(&cert.name, Duration::ZERO) {
        Ok(guard) => guard,
        Err(crate::lock::LockError::Busy { .. }) => {
            return Rollback::NotDone("not rolled back: another evercert is renewing it right now, and its version replaces this one".to_owned());
        }
        Err(err) => return Rollback::NotDone(format!("ROLLBACK FAILED: {err}")),
    };
    match deps.store.current(&cert.name) {
        Ok(Some(current)) if current != live.installed.version => {
            return Rollback::NotDone(format!(
                "not rolled back: another evercert has since made version {current} live"
            ));
        }
        Ok(_) => {}
        Err(err) => return Rollback::NotDone(format!("ROLLBACK FAILED: {err}")),
    }
    match deps.store.rollback(&target(cert), previous) {
        Ok(()) => {
            (deps.progress)(
                &cert.name,
                &format!("rolled back to version {}", previous.0),
            );
            Rollback::Restored
        }
        Err(err) => Rollback::NotDone(format!("ROLLBACK FAILED: {err}")),
    }
}

async fn finish_verify<'c>(
    cert: &'c CertificateSettings,
    live: Live,
    verified: Result<(), String>,
    reload: Option<&str>,
    deps: &Deps<'_>,
) -> (&'c CertificateSettings, Result<Live, Failure>) {
    match verified {
        Ok(()) => (cert, Ok(live)),
        Err(message) => {
            let restored = rollback(cert, &live, deps);
            let again = match (reload, &restored) {
                (Some(command), Rollback::Restored) => {
                    let env = restored_env(&[cert]);
                    Some(
                        hooks::run(command, &[], &env, cert.reload_timeout.unsigned_abs())
                            .await
                            .map(drop)
                            .map_err(|err| err.to_string()),
                    )
                }
                _ => None,
            };
            (
                cert,
                Err(Failure::new(
                    Step::Verify,
                    FailureKind::Permanent,
                    format!("{message}{}", restored.describe(again.as_ref())),
                )),
            )
        }
    }
}

/// Waits until every verify endpoint serves the new serial.
async fn verify_all(
    cert: &CertificateSettings,
    live: &Live,
    deps: &Deps<'_>,
) -> Result<(), String> {
    if cert.verify.is_empty() {
        return Ok(());
    }
    let roots = Arc::new(probe::system_roots(&[]));
    let server_name = verify_name(cert);
    for endpoint in &cert.verify {
        verify_one(
            endpoint,
            &server_name,
            &live.serial,
            roots.clone(),
            cert.verify_timeout.unsigned_abs(),
            cert.verify_consecutive,
        )
        .await?;
        (deps.progress)(
            &cert.name,
            &format!(
                "verified: {endpoint} serves serial {} ({} fresh connections in a row)",
                live.serial, cert.verify_consecutive
            ),
        );
    }
    Ok(())
}

/// Checks that every verify endpoint of `cert` serves `serial` (a fleet host applying a
/// version another host published).
pub(crate) async fn verify_served(cert: &CertificateSettings, serial: &str) -> Result<(), String> {
    let roots = Arc::new(probe::system_roots(&[]));
    let server_name = verify_name(cert);
    for endpoint in &cert.verify {
        verify_one(
            endpoint,
            &server_name,
            serial,
            roots.clone(),
            cert.verify_timeout.unsigned_abs(),
            cert.verify_consecutive,
        )
        .await?;
    }
    Ok(())
}

/// The SNI to ask for: the first name, with a wildcard's `*` replaced by a label.
fn verify_name(cert: &CertificateSettings) -> String {
    let first = cert.domains.first().cloned().unwrap_or_default();
    match first.strip_prefix("*.") {
        Some(base) => format!("evercert-verify.{base}"),
        None => first,
    }
}

/// Between the fresh connections that must all see the new certificate: `verify_consecutive`
/// of them (3 by default) then span about a second, longer than the old workers of a graceful
/// nginx, Apache or HAProxy reload usually keep accepting.
const VERIFY_SPACING: Duration = Duration::from_millis(500);

/// Waits until `endpoint` serves `serial` on `consecutive` fresh connections in a row; a
/// connection that sees anything else starts the count again.
async fn verify_one(
    endpoint: &Endpoint,
    server_name: &str,
    serial: &str,
    roots: Arc<rustls::RootCertStore>,
    window: Duration,
    consecutive: u32,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut streak = 0u32;
    let mut last;
    loop {
        let wait = match probe::probe(endpoint, server_name, roots.clone(), Duration::from_secs(5))
            .await
        {
            Ok(served) if served.file.leaf.serial == serial => {
                streak += 1;
                if streak >= consecutive.max(1) {
                    return Ok(());
                }
                last = format!(
                    "{endpoint} served serial {serial} on {streak} connection{} in a row, not yet {consecutive}",
                    if streak == 1 { "" } else { "s" }
                );
                VERIFY_SPACING
            }
            other => {
                let before = if streak > 0 {
                    format!("after serving serial {serial} {streak} time(s), ")
                } else {
                    String::new()
                };
                streak = 0;
                last = match other {
                    Ok(served) => format!(
                        "{endpoint} {before}still serves serial {} (expires {})",
                        served.file.leaf.serial,
                        rfc3339(served.file.leaf.not_after)
                    ),
                    Err(err) => format!("{before}{err}"),
                };
                let wait = delay;
                delay = (delay * 2).min(Duration::from_secs(2));
                wait
            }
        };
        if started.elapsed() + wait > window {
            return Err(format!(
                "verification failed after {} s: {last}; does the reload command make the server read {}?",
                window.as_secs(),
                "the new files"
            ));
        }
        tokio::time::sleep(wait).await;
    }
}

/// Where a dry run's account lives, for messages.
pub fn account_path(config: &Config, dry_run: bool) -> PathBuf {
    let directory = if dry_run {
        &config.acme.staging_directory
    } else {
        &config.acme.directory
    };
    crate::acme::account_dir(&config.state_dir, directory)
}
