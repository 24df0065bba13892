//! Lock: one evercert at a time renews a certificate; a second one waits a while.

use std::time::Duration;

use super::{Deps, Failure, Step};
use crate::acme::FailureKind;

/// How long to wait for another evercert renewing the same certificate.
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Takes the renewal lock; `true` with it when another evercert held it first, or when the
/// lock's backend changed the certificate on taking it (its note, reported here).
pub(super) async fn acquire_lock(
    deps: &Deps<'_>,
    name: &str,
) -> Result<(crate::lock::LockGuard, bool), Failure> {
    // tokio's clock, which a test may pause like the rest of the pipeline's time.
    let started = tokio::time::Instant::now();
    let mut announced = false;
    loop {
        match deps.lock.acquire(name, Duration::ZERO) {
            Ok(guard) => {
                if let Some(note) = guard.note() {
                    (deps.progress)(name, note);
                }
                let changed = announced || guard.note().is_some();
                return Ok((guard, changed));
            }
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
