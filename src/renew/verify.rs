//! Verify: after the reload, every verify endpoint must serve the new serial on several
//! fresh connections in a row.

use std::sync::Arc;
use std::time::Duration;

use super::Deps;
use super::store::Live;
use crate::config::{CertificateSettings, Endpoint};
use crate::probe;
use crate::units::rfc3339;

/// Waits until every verify endpoint serves the new serial.
pub(super) async fn verify_all(
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
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    let mut streak = 0u32;
    let mut last;
    // The last other serial seen, so that a streak cut short by the deadline still names it.
    let mut other_serial: Option<String> = None;
    loop {
        let wait = match probe::probe(endpoint, server_name, roots.clone(), Duration::from_secs(5))
            .await
        {
            Ok(served) if served.file.leaf.serial == serial => {
                streak += 1;
                if streak >= consecutive.max(1) {
                    return Ok(());
                }
                let before = other_serial
                    .as_deref()
                    .map(|other| format!(" (the connection before got serial {other})"))
                    .unwrap_or_default();
                last = format!(
                    "{endpoint} served serial {serial} on {streak} connection{} in a row, not yet {consecutive}{before}",
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
                    Ok(served) => {
                        other_serial = Some(served.file.leaf.serial.clone());
                        format!(
                            "{endpoint} {before}still serves serial {} (expires {})",
                            served.file.leaf.serial,
                            rfc3339(served.file.leaf.not_after)
                        )
                    }
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
