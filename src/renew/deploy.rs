//! Deploy: run each reload command once for the certificates sharing it, verify, and roll
//! back (and reload again) when either fails, so the server ends on a pair that worked.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::store::Live;
use super::verify::verify_all;
use super::{Deps, Failure, Step, target};
use crate::acme::FailureKind;
use crate::config::CertificateSettings;
use crate::hooks;
use crate::inventory;
use crate::units::rfc3339;

/// Runs each distinct reload command once for the certificates that share it, then checks
/// every verify endpoint. Failures roll the certificates back and reload again.
pub(super) async fn reload_and_verify<'c>(
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
