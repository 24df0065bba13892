//! The retry policy of a one-shot run: which failures are tried again within the run, and
//! after how long.

use std::time::Duration;

use time::OffsetDateTime;

use super::Failure;
use crate::acme::FailureKind;

/// The waits before a one-shot run tries a transient failure again.
pub(super) const ONE_SHOT_RETRY_WAITS: [Duration; 2] =
    [Duration::from_secs(1), Duration::from_secs(3)];
/// A Retry-After longer than this is not waited for within one run: it is reported.
const ONE_SHOT_RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// How long to wait before trying this failure again within the run, or `None`.
pub(super) fn one_shot_wait(
    failure: &Failure,
    base: Duration,
    now: OffsetDateTime,
) -> Option<Duration> {
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
