//! Record: deploy what was stored, then write each outcome into the certificate's history
//! (a version whose deploy failed stays pending there).

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::deploy::reload_and_verify;
use super::store::Live;
use super::{Deps, Failure, Outcome, RunReport, ordered};
use crate::config::CertificateSettings;
use crate::decision::Reason;
use crate::state::Pending;
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

/// Records a failure in the history, with the version left pending by a failed deploy.
pub(super) fn record(
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
