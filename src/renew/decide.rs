//! Decide: inspect each selected certificate, ask the CA's renewal window (ARI) where it is
//! stale, and take the one decision (`decision::decide`); find a pending version that may be
//! deployed instead of ordering again.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::check::check_issued;
use super::store::Live;
use super::{Deps, RenewRequest, save_secret};
use crate::acme::AcmeClient;
use crate::ari;
use crate::config::{CertificateSettings, Config};
use crate::decision::{Reason, Window};
use crate::inventory;
use crate::state::CertHistory;
use crate::store::{Installed, VersionId};
use crate::units::rfc3339;

/// Inspects the selected certificates and decides for each (`decision::decide`), with the
/// history and the CA's renewal window. Where ARI is on and a cached answer is stale, the
/// CA is asked first, all at once, and the client is kept for the orders.
pub(super) async fn decide_all(
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
pub(super) fn usable_pending(
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
