//! Store: a new or pending version made live through the store's atomic flip, and the
//! archive's retention.

use time::OffsetDateTime;

use super::lock::acquire_lock;
use super::{Deps, Failure, Step, target};
use crate::acme::FailureKind;
use crate::config::CertificateSettings;
use crate::store::Installed;

/// A new version made live, not yet reloaded or verified.
#[derive(Debug)]
pub(super) struct Live {
    pub(super) serial: String,
    pub(super) not_after: OffsetDateTime,
    pub(super) installed: Installed,
}

pub(super) enum Stored {
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

/// Makes a pending version live, under the renewal lock.
pub(super) async fn make_pending_live(
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

/// Archive retention after an install; a failure is logged, the renewal stands.
pub(super) fn prune(
    cert: &CertificateSettings,
    keep: usize,
    installed: &Installed,
    deps: &Deps<'_>,
) {
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
