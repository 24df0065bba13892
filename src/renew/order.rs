//! Order: for each due certificate, under its lock, prove the files can be written, order
//! from the CA, check what it sent, and store it (or, in a dry run, only check it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_util::StreamExt;
use futures_util::stream;

use super::check::{check_issued, dry_run_check};
use super::lock::acquire_lock;
use super::store::{Live, Stored, prune};
use super::{Deps, Failure, RenewRequest, Step, target};
use crate::acme::{AcmeClient, FailureKind, OrderRequest};
use crate::challenge::Responders;
use crate::config::{CertificateSettings, Config};
use crate::inventory::{self, CertFile};
use crate::store::NewPair;
use crate::units::rfc3339;

/// How many orders run at once: enough to hide round trips, few enough not to look like a
/// flood to the CA.
const CONCURRENT_ORDERS: usize = 16;

/// Orders every due certificate, up to [`CONCURRENT_ORDERS`] at once, sharing one set of
/// challenge responders (bound only for the duration of this call).
pub(super) async fn order_all<'c>(
    config: &'c Config,
    due: Vec<(&'c CertificateSettings, Option<CertFile>)>,
    client: &Arc<AcmeClient>,
    deps: &Deps<'_>,
    request: &RenewRequest,
) -> Vec<(&'c CertificateSettings, Result<Stored, Failure>)> {
    let responders = Responders::with_state_dir(&config.state_dir).with_fanout(deps.fanout.clone());
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
    let (guard, waited) = if dry_run {
        (None, false)
    } else {
        let (guard, waited) = acquire_lock(deps, name).await?;
        (Some(guard), waited)
    };
    if !request.force {
        // Another evercert renewed it while this one waited for the lock, or installed a new
        // version since this run decided (in fleet mode a host installs the version another
        // host published while its own queue of orders is still running; ordering then would
        // put a second order on the fleet): decide again on what is there.
        let status = inventory::inspect_managed(
            cert,
            config.renew_before(cert),
            config.renewal.thresholds,
            deps.clock.now(),
        );
        let replaced = current.map(|before| &before.leaf.serial)
            != status.file.as_ref().map(|now| &now.leaf.serial);
        if (waited || replaced) && !status.assessment.due {
            let renew_at = status.assessment.renew_at;
            // The lock's note already said what put this version in place.
            let noted = guard.as_ref().is_some_and(|held| held.note().is_some());
            let why = if noted {
                ""
            } else {
                "renewed meanwhile by the other evercert; "
            };
            (deps.progress)(name, &format!("{why}not due until {}", rfc3339(renew_at)));
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
    let now = deps.clock.now();
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
        issued_at: now,
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
