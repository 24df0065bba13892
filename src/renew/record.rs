//! Record: deploy what was stored, then write each outcome into the certificate's history
//! (a version whose deploy failed stays pending there).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::deploy::reload_and_verify;
use super::store::Live;
use super::{Deps, Failure, Outcome, RunReport, ordered};
use crate::config::CertificateSettings;
use crate::decision::Reason;
use crate::state::{CertHistory, Pending};
use crate::store::VersionId;
use crate::units::rfc3339;

/// Deploys what was stored (reload, verify; roll back on failure) and records the outcome.
pub(super) async fn finish(
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

pub(super) fn record_failure(
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

/// `history` once `failure` is recorded in it: what [`record`] writes, and what the choice of a
/// fallback CA predicts on a copy before anything is written, so the two cannot drift.
pub(super) fn with_failure(
    mut history: CertHistory,
    failure: &Failure,
    now: OffsetDateTime,
) -> CertHistory {
    history.record_failure(
        failure.kind,
        failure.step,
        &failure.message,
        failure.retry_after,
        now,
    );
    history
}

/// Records a failure in the history, with the version left pending by a failed deploy.
pub(super) fn record(
    deps: &Deps<'_>,
    name: &str,
    failure: &Failure,
    now: OffsetDateTime,
    pending: Option<Pending>,
) {
    let mut history = with_failure(deps.state.load(name), failure, now);
    if pending.is_some() {
        history.pending = pending;
    }
    if let Err(err) = deps.state.save(name, &history) {
        tracing::warn!("{name}: {err}");
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::acme::FailureKind;
    use crate::renew::Step;

    #[test]
    fn a_failure_counts_keeps_when_failing_began_and_takes_the_latest_retry_time() {
        let first = datetime!(2026-01-01 00:00 UTC);
        let second = datetime!(2026-01-01 06:00 UTC);
        let mut down = Failure::new(Step::Order, FailureKind::Transient, "CA down");
        down.retry_after = Some(datetime!(2026-01-01 01:00 UTC));
        let once = with_failure(CertHistory::default(), &down, first);
        assert_eq!(once.failures, 1);
        assert_eq!(once.failing_since, Some(first));
        assert_eq!(once.last_failure, Some(first));
        assert_eq!(once.retry_after, down.retry_after);

        let refused = Failure::new(Step::Check, FailureKind::Permanent, "CSR refused");
        let twice = with_failure(once.clone(), &refused, second);
        assert_eq!(twice.failures, 2);
        assert_eq!(twice.failing_since, Some(first));
        assert_eq!(twice.last_failure, Some(second));
        assert_eq!(twice.last_error.as_deref(), Some("CSR refused"));
        assert_eq!(twice.failure_kind, Some(FailureKind::Permanent));
        assert_eq!(twice.failure_step, Some(Step::Check));
        assert_eq!(twice.retry_after, None);
        // What was there before the failure stays.
        let served = CertHistory {
            last_success: Some(first),
            ..CertHistory::default()
        };
        assert_eq!(
            with_failure(served, &refused, second).last_success,
            Some(first)
        );
    }
}
