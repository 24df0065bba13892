//! The retry policy of a run, in one place, and the one helper that applies it: which
//! failures are tried again within the run, after how long, and when a new ACME account is
//! registered first. Connecting to the CA and ordering both go through [`retrying`].
//!
//! Time comes from the run's clock, and waits are tokio sleeps: under tokio's paused time a
//! test sees the whole policy (1 s, 3 s, a Retry-After) in microseconds.

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;

use super::Failure;
use crate::acme::FailureKind;
use crate::clock::Clock;

/// The waits before a one-shot run tries a transient failure again.
const ONE_SHOT_RETRY_WAITS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];
/// A Retry-After longer than this is not waited for within one run: it is reported.
const ONE_SHOT_RETRY_AFTER_MAX: Duration = Duration::from_secs(30);

/// What to do before trying a failure again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Again {
    /// Wait this long, then try again.
    After(Duration),
    /// The CA no longer knows the account: register a new one, then try again at once.
    NewAccount,
}

/// One round of attempts: the first, or a retry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Round {
    /// Register a new ACME account before this round's attempts (the CA forgot ours).
    pub(super) new_account: bool,
}

/// The retry policy of one run.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// Transient failures (network, 5xx, a short Retry-After) are tried again within the
    /// run: one-shot `renew` does; the agent has its own backoff across runs.
    pub(super) transient: bool,
}

impl Policy {
    /// Whether and how to try `failure` again, after `waits` rounds that waited, and when a
    /// new account was (`true`) or was not yet registered in this run.
    pub(super) fn again(
        self,
        failure: &Failure,
        waits: usize,
        new_account_done: bool,
        now: OffsetDateTime,
    ) -> Option<Again> {
        if failure.account_gone {
            // Once per run, in the agent too: a CA that forgets the new account at once is
            // not something another registration fixes.
            return (!new_account_done).then_some(Again::NewAccount);
        }
        if !self.transient {
            return None;
        }
        let base = ONE_SHOT_RETRY_WAITS.get(waits)?;
        one_shot_wait(failure, *base, now).map(Again::After)
    }
}

/// How long to wait before trying this failure again within the run, or `None`: at least
/// `base`, longer when the CA asked for it, and not at all for a permanent failure, a rate
/// limit without a Retry-After, or a Retry-After beyond [`ONE_SHOT_RETRY_AFTER_MAX`].
fn one_shot_wait(failure: &Failure, base: Duration, now: OffsetDateTime) -> Option<Duration> {
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

/// Runs `attempt` on every item, then again on the items that failed, as `policy` says: one
/// round at a time, each after the longest wait any of its items needs. `announce` hears of
/// every retry before its wait. Returns every item's last result, in no particular order.
pub(super) async fn retrying<T, R, A, Fut>(
    policy: Policy,
    clock: &dyn Clock,
    items: Vec<T>,
    mut attempt: A,
    mut announce: impl FnMut(&T, &Failure, Again),
) -> Vec<(T, Result<R, Failure>)>
where
    A: FnMut(Vec<T>, Round) -> Fut,
    Fut: Future<Output = Vec<(T, Result<R, Failure>)>>,
{
    let mut finished = Vec::new();
    let mut results = attempt(items, Round::default()).await;
    let mut waits = 0;
    let mut new_account_done = false;
    loop {
        let now = clock.now();
        let mut again = Vec::new();
        for (item, result) in results {
            let how = match &result {
                Err(failure) => policy
                    .again(failure, waits, new_account_done, now)
                    .inspect(|how| announce(&item, failure, *how)),
                Ok(_) => None,
            };
            match how {
                Some(how) => again.push((item, how)),
                None => finished.push((item, result)),
            }
        }
        if again.is_empty() {
            return finished;
        }
        let wait = again
            .iter()
            .filter_map(|(_, how)| match how {
                Again::After(wait) => Some(*wait),
                Again::NewAccount => None,
            })
            .max();
        let new_account = again.iter().any(|(_, how)| *how == Again::NewAccount);
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
            waits += 1;
        }
        new_account_done |= new_account;
        let items = again.into_iter().map(|(item, _)| item).collect();
        results = attempt(items, Round { new_account }).await;
    }
}
