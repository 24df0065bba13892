//! The renewal pipeline: lock → inspect → decide → order → check → store → reload → verify
//! → record. `evercert renew` runs it once; the agent runs it when its schedule says so.
//!
//! Live files change only through the store's single atomic flip, after the new pair was
//! checked (chain parses, key matches, names covered, not expired). A failed reload or a
//! server that keeps serving the old certificate flips back to the previous version and
//! reloads again, so the server ends on a pair that worked.
//!
//! One phase per module, in the order `run` calls them: `decide` (inspect, ARI, the one
//! decision), `lock`, `order` (preflight, the ACME order), `check`, `store`,
//! `deploy` (reload, and `verify`; roll back on failure) and `record` (the history).
//! `retry` holds the retry policy and the one helper that applies it (connect, a new
//! account when the CA forgot ours, transient failures of an order).
//!
//! Time comes only from `Deps::clock`: the pipeline reads no wall clock of its own.

mod account;
mod check;
mod decide;
mod deploy;
mod failure;
mod lock;
mod order;
mod record;
mod retry;
mod store;
#[cfg(test)]
mod tests;
mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

pub use account::{BoxFuture, Claim, Published, SharedAccount};
pub use check::check_issued;
pub use failure::{Failure, Step};
pub(crate) use verify::verify_served;

use crate::acme::{AcmeClient, FailureKind};
use crate::ari;
use crate::clock::Clock;
use crate::config::{AcmeSettings, CertificateSettings, Config};
use crate::decision::Reason;
use crate::fallback;
use crate::inventory::{self, CertFile};
use crate::lock::RenewLock;
use crate::state::StateStore;
use crate::store::{CertStore, Target, VersionId};
use crate::units::rfc3339;
use decide::{decide_all, usable_pending};
use order::order_all;
use record::{finish, record_failure};
use retry::{Again, Policy, retrying};
use store::{Live, Stored, make_pending_live};

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

/// Everything the pipeline needs from outside, so the agent and tests can supply their own.
pub struct Deps<'a> {
    pub store: &'a dyn CertStore,
    pub lock: &'a dyn RenewLock,
    pub state: &'a dyn StateStore,
    /// Progress lines (`shop: ordering`); the CLI prints them.
    pub progress: &'a (dyn Fn(&str, &str) + Sync),
    /// The only source of time in the pipeline: the decision's `now`, Retry-After and
    /// retry waits, the store's version names.
    pub clock: &'a dyn Clock,
    /// In a fleet: shares http-01 tokens with the other hosts (`None` for one host).
    pub fanout: Option<Arc<dyn crate::challenge::ChallengeFanout>>,
    /// In a fleet: the account every host shares, replaced for all when the CA forgot it
    /// (`None` for one host).
    pub shared_account: Option<Arc<dyn SharedAccount>>,
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

/// Runs the pipeline for the selected certificates, deciding at `deps.clock`'s now.
pub async fn run(config: &Config, request: &RenewRequest, deps: &Deps<'_>) -> RunReport {
    // Whole seconds, like every time evercert records and prints.
    let now = deps.clock.now();
    let now = now.replace_nanosecond(0).unwrap_or(now);
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
    let mut warnings: BTreeMap<String, Option<OffsetDateTime>> = BTreeMap::new();
    for (cert, (status, history)) in selected.iter().zip(statuses) {
        let decision = status.decision;
        warnings.insert(cert.name.clone(), status.assessment.warning_at);
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

    // Where the primary failed before and a fallback CA takes this turn, go there directly
    // (the primary's Retry-After binds the primary only).
    let mut to_fallback: Vec<(&CertificateSettings, Option<CertFile>, usize)> = Vec::new();
    if !request.dry_run && !config.acme.fallbacks.is_empty() {
        let mut stay = Vec::new();
        for (cert, file) in due {
            let history = deps.state.load(&cert.name);
            let warning_at = warnings.get(&cert.name).copied().flatten();
            match fallback::choose(directory, &config.acme.fallbacks, &history, warning_at, now) {
                fallback::Ca::Fallback(index) => to_fallback.push((cert, file, index)),
                fallback::Ca::Primary => stay.push((cert, file)),
            }
        }
        due = stay;
    }
    let policy = Policy {
        transient: request.retry_transient,
    };
    let mut issued = Vec::new();
    let client = if due.is_empty() {
        None
    } else if let Some(client) = client.take() {
        Some(client)
    } else {
        let connected = retrying(
            policy,
            deps.clock,
            vec![()],
            |_, _| async move { vec![((), connect(&config.acme, directory, config).await)] },
            |(), failure, again| {
                if let Again::After(wait) = again {
                    tracing::warn!(
                        "{}; trying again in {} s",
                        failure.message,
                        wait.as_secs_f64().ceil()
                    );
                }
            },
        )
        .await;
        match connected.into_iter().next() {
            Some(((), Ok(client))) => Some(client),
            Some(((), Err(failure))) => {
                for (cert, _) in &due {
                    issued.push((*cert, Err(failure.clone())));
                }
                None
            }
            None => None,
        }
    };
    let currents: BTreeMap<String, Option<CertFile>> = due
        .iter()
        .map(|(cert, file)| (cert.name.clone(), file.clone()))
        .chain(
            to_fallback
                .iter()
                .map(|(cert, file, _)| (cert.name.clone(), file.clone())),
        )
        .collect();
    let client = match client {
        Some(client) => {
            let certs = due.iter().map(|(cert, _)| *cert).collect();
            let (results, client) = order_primary(
                config, certs, client, deps, policy, request, directory, &currents,
            )
            .await;
            issued = results;
            client
        }
        None => None,
    };
    let (issued, attempts) = fallback_stage(
        config,
        issued,
        to_fallback,
        &warnings,
        deps,
        request,
        &currents,
        now,
    )
    .await;
    finish_orders(
        config, &selected, report, issued, stored, &reasons, client, attempts, deps, request, now,
    )
    .await
}

/// Loads (or registers) the account at `directory` and connects.
async fn connect(
    settings: &AcmeSettings,
    directory: &str,
    config: &Config,
) -> Result<Arc<AcmeClient>, Failure> {
    AcmeClient::connect(settings, directory, &config.state_dir, &save_secret)
        .await
        .map(Arc::new)
        .map_err(Failure::from_connect)
}

/// The primary CA's orders, tried again as the retry policy says: after a new account when
/// the CA forgot ours, and, in one-shot runs, after transient failures. Returns the results
/// and the client the last orders went through (a new account's, after a registration).
#[allow(clippy::too_many_arguments)]
async fn order_primary<'c>(
    config: &'c Config,
    certs: Vec<&'c CertificateSettings>,
    client: Arc<AcmeClient>,
    deps: &Deps<'_>,
    policy: Policy,
    request: &RenewRequest,
    directory: &str,
    currents: &BTreeMap<String, Option<CertFile>>,
) -> (
    Vec<(&'c CertificateSettings, Result<Stored, Failure>)>,
    Option<Arc<AcmeClient>>,
) {
    // `None` once the account was moved aside: the next round registers a new one.
    let slot: Mutex<Option<Arc<AcmeClient>>> = Mutex::new(Some(client));
    let slot = &slot;
    // The forgotten account and where its credentials went, until a round connects with its
    // replacement: a round that failed to replace it (the fleet's turn not taken, the CA's
    // newAccount failing) leaves it here, so the next round replaces it the same way (in a
    // fleet, through the fleet) instead of registering an account no other host knows.
    let replacing: Mutex<Option<(String, String)>> = Mutex::new(None);
    let replacing = &replacing;
    let attempt = |certs: Vec<&'c CertificateSettings>, round: retry::Round| async move {
        if round.new_account {
            let old = slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .map(|client| client.info.id.clone())
                .unwrap_or_default();
            let aside = match crate::acme::forget_account(&config.state_dir, directory) {
                Ok(aside) => {
                    tracing::warn!(
                        "the CA at {directory} no longer knows our account; moved its credentials to {} and registering a new one",
                        aside.display()
                    );
                    format!("in {}", aside.display())
                }
                Err(err) => {
                    tracing::warn!("cannot move the stale account aside: {err}");
                    format!("still in place ({err})")
                }
            };
            let mut pending = replacing.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_none() || !old.is_empty() {
                *pending = Some((old, aside));
            }
        }
        let forgotten = replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let current = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let connected = match (current, &forgotten) {
            (Some(client), _) => Ok(client),
            (None, Some((old, aside))) => {
                // In a fleet the replacement is the fleet's (a dry run's staging account is
                // this host's own).
                let shared = deps.shared_account.as_deref().filter(|_| !request.dry_run);
                account::replace(config, directory, shared, old, aside)
                    .await
                    .map(|(client, reason)| {
                        if let Some(reason) = reason {
                            note_new_account(deps, &certs, &reason);
                        }
                        client
                    })
            }
            (None, None) => connect(&config.acme, directory, config).await,
        };
        let client = match connected {
            Ok(client) => {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(client.clone());
                *replacing.lock().unwrap_or_else(PoisonError::into_inner) = None;
                client
            }
            Err(failure) => {
                return certs
                    .into_iter()
                    .map(|cert| (cert, Err(failure.clone())))
                    .collect();
            }
        };
        let due = certs
            .into_iter()
            .map(|cert| (cert, currents.get(&cert.name).cloned().flatten()))
            .collect();
        order_all(config, due, &client, deps, request).await
    };
    let announce = |cert: &&CertificateSettings, failure: &Failure, again: Again| {
        if let Again::After(wait) = again {
            (deps.progress)(
                &cert.name,
                &format!(
                    "{} failed ({}); trying again in {} s",
                    failure.step,
                    failure.message,
                    wait.as_secs_f64().ceil()
                ),
            );
        }
    };
    let issued = retrying(policy, deps.clock, certs, attempt, announce).await;
    let client = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    (issued, client)
}

/// Notes in each certificate's history that its order needed a new account (the agent
/// alerts `account_registered` once for each).
fn note_new_account(deps: &Deps<'_>, certs: &[&CertificateSettings], reason: &str) {
    for cert in certs {
        let mut history = deps.state.load(&cert.name);
        history.new_accounts += 1;
        history.new_account_reason = Some(reason.to_owned());
        if let Err(err) = deps.state.save(&cert.name, &history) {
            tracing::warn!("{}: {err}", cert.name);
        }
    }
}

/// Records what the orders gave, deploys what was stored, and notes which CA each attempt
/// went to.
#[allow(clippy::too_many_arguments)]
async fn finish_orders(
    config: &Config,
    selected: &[&CertificateSettings],
    mut report: BTreeMap<String, Outcome>,
    issued: Vec<(&CertificateSettings, Result<Stored, Failure>)>,
    mut stored: Vec<(&CertificateSettings, Live)>,
    reasons: &BTreeMap<String, Reason>,
    client: Option<Arc<AcmeClient>>,
    attempts: BTreeMap<String, Attempt>,
    deps: &Deps<'_>,
    request: &RenewRequest,
    now: OffsetDateTime,
) -> RunReport {
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
            .filter(|(cert, _)| {
                attempts
                    .get(&cert.name)
                    .is_none_or(|attempt| attempt.fallback.is_none())
            })
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
    let report = finish(selected, report, stored, reasons, deps, now).await;
    if !request.dry_run {
        note_attempts(config, &report, &attempts, deps, now);
    }
    // The new certificates' first ARI answer, so the next timer run has it cached (no network
    // at all when the CA offers no ARI).
    if let Some(client) = client.filter(|_| !fresh.is_empty()) {
        ari::poll_all(&client, &config.state_dir, fresh, now).await;
    }
    report
}

/// Which CA one certificate's attempt ended at in this run.
#[derive(Debug, Clone)]
struct Attempt {
    directory: String,
    /// `Some(why)` when it was a fallback CA: the primary's error, or why it was skipped.
    fallback: Option<String>,
}

/// Orders from fallback CAs: the certificates whose turn it is ([`fallback::choose`]), and
/// those the primary just failed for at a CA step when that makes a fallback the next
/// choice. Returns every result, and the CA each certificate's attempt ended at.
#[allow(clippy::too_many_arguments)]
async fn fallback_stage<'c>(
    config: &'c Config,
    mut issued: Vec<(&'c CertificateSettings, Result<Stored, Failure>)>,
    direct: Vec<(&'c CertificateSettings, Option<CertFile>, usize)>,
    warnings: &BTreeMap<String, Option<OffsetDateTime>>,
    deps: &Deps<'_>,
    request: &RenewRequest,
    currents: &BTreeMap<String, Option<CertFile>>,
    now: OffsetDateTime,
) -> (
    Vec<(&'c CertificateSettings, Result<Stored, Failure>)>,
    BTreeMap<String, Attempt>,
) {
    let primary = config.acme.directory.as_str();
    let mut attempts: BTreeMap<String, Attempt> = issued
        .iter()
        .map(|(cert, _)| {
            let attempt = Attempt {
                directory: primary.to_owned(),
                fallback: None,
            };
            (cert.name.clone(), attempt)
        })
        .collect();
    // Per fallback CA: the certificates, their files, and why they go there.
    type Turn<'c> = (&'c CertificateSettings, Option<CertFile>, String);
    let mut groups: BTreeMap<usize, Vec<Turn<'c>>> = BTreeMap::new();
    for (cert, file, index) in direct {
        let history = deps.state.load(&cert.name);
        let why = format!(
            "the primary CA {primary} kept failing (last: {})",
            history.last_error.as_deref().unwrap_or("unknown")
        );
        groups.entry(index).or_default().push((cert, file, why));
    }
    if request.dry_run || config.acme.fallbacks.is_empty() {
        return (issued, attempts);
    }
    let mut keep = Vec::new();
    for (cert, result) in issued {
        let Err(failure) = &result else {
            keep.push((cert, result));
            continue;
        };
        if !fallback::ca_failure(failure.step) {
            keep.push((cert, result));
            continue;
        }
        // The history as it will be once this failure is recorded (and the attempt noted).
        let mut history = record::with_failure(deps.state.load(&cert.name), failure, now);
        history.last_ca = Some(primary.to_owned());
        let warning_at = warnings.get(&cert.name).copied().flatten();
        match fallback::choose(primary, &config.acme.fallbacks, &history, warning_at, now) {
            fallback::Ca::Fallback(index) => {
                let why = format!("the primary CA {primary} failed: {}", failure.message);
                let file = currents.get(&cert.name).cloned().flatten();
                groups.entry(index).or_default().push((cert, file, why));
            }
            fallback::Ca::Primary => keep.push((cert, result)),
        }
    }
    issued = keep;
    if groups.is_empty() {
        return (issued, attempts);
    }
    // Orders from a fallback CA name no certificate to replace (`replaces` is about the
    // primary's certificate) and ask for no profile (profiles are per CA).
    let mut plain = config.clone();
    plain.renewal.ari = false;
    plain.acme.profile = None;
    let plain = &plain;
    for (index, members) in groups {
        let Some(ca) = config.acme.fallbacks.get(index) else {
            continue;
        };
        for (cert, _, why) in &members {
            (deps.progress)(
                &cert.name,
                &format!("{why}; ordering from the fallback CA {}", ca.directory),
            );
            attempts.insert(
                cert.name.clone(),
                Attempt {
                    directory: ca.directory.clone(),
                    fallback: Some(why.clone()),
                },
            );
        }
        let settings = config.acme.for_fallback(ca);
        let due: Vec<(&CertificateSettings, Option<CertFile>)> = members
            .iter()
            .map(|(cert, file, _)| (*cert, file.clone()))
            .collect();
        match connect(&settings, &ca.directory, config).await {
            Ok(client) => {
                let results = order_all(plain, due, &client, deps, request).await;
                // `plain` lives only in this function: map back to the caller's settings.
                for (cert, result) in results {
                    if let Some(original) = config.certificate(&cert.name) {
                        issued.push((original, result));
                    }
                }
            }
            Err(mut failure) => {
                failure.message = format!("fallback CA {}: {}", ca.directory, failure.message);
                for (cert, _) in due {
                    issued.push((cert, Err(failure.clone())));
                }
            }
        }
    }
    (issued, attempts)
}

/// Notes in each history which CA the attempt went to, the issuer of a new certificate,
/// and when a fallback CA takes over after a failure of the primary.
fn note_attempts(
    config: &Config,
    report: &RunReport,
    attempts: &BTreeMap<String, Attempt>,
    deps: &Deps<'_>,
    now: OffsetDateTime,
) {
    for (name, outcome) in &report.outcomes {
        let Some(attempt) = attempts.get(name) else {
            continue;
        };
        let mut history = deps.state.load(name);
        history.last_ca = Some(attempt.directory.clone());
        if attempt.fallback.is_some() {
            history.last_fallback = Some(attempt.directory.clone());
        }
        match outcome {
            Outcome::Renewed { .. } => {
                history.issued_by = Some(attempt.directory.clone());
                if let Some(why) = &attempt.fallback {
                    history.fallback_renewals += 1;
                    history.fallback_reason = Some(why.clone());
                }
            }
            Outcome::Failed(_) => {
                let warning_at = config.certificate(name).and_then(|cert| {
                    inventory::inspect_managed(
                        cert,
                        config.renew_before(cert),
                        config.renewal.thresholds,
                        now,
                    )
                    .assessment
                    .warning_at
                });
                let primary_failed = attempt.fallback.is_none()
                    && history.failure_step.is_some_and(fallback::ca_failure);
                history.fallback_at = if primary_failed {
                    fallback::fallback_at(&config.acme.fallbacks, &history, warning_at)
                } else {
                    None
                };
            }
            _ => continue,
        }
        if let Err(err) = deps.state.save(name, &history) {
            tracing::warn!("{name}: {err}");
        }
    }
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

/// Where a dry run's account lives, for messages.
pub fn account_path(config: &Config, dry_run: bool) -> PathBuf {
    let directory = if dry_run {
        &config.acme.staging_directory
    } else {
        &config.acme.directory
    };
    crate::acme::account_dir(&config.state_dir, directory)
}
