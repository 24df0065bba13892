//! When the agent acts: renewal times with jitter, ARI window choice, retry backoff, and
//! which alerts a change of state calls for. Pure functions of facts and `now`.
//!
//! Randomness (jitter, the point inside an ARI window) comes from a stable hash of what is
//! being decided — the certificate's name and serial, the failure count — rather than from
//! an RNG: the choice is still spread across a fleet, but the same question asked again on
//! the next wake-up gets the same answer, so a restart does not re-roll the dice.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::acme::FailureKind;
use crate::policy::CertState;

/// First retry after a transient failure.
pub const RETRY_FIRST: Duration = Duration::minutes(1);
/// Longest wait between retries of a transient failure.
pub const RETRY_CAP: Duration = Duration::hours(4);
/// First retry after a permanent failure (the CA refused): slow, so the account is not
/// paused as a client that hammers failing validations.
pub const PERMANENT_FIRST: Duration = Duration::hours(1);
pub const PERMANENT_CAP: Duration = Duration::hours(24);
/// At most this much earlier than `renew_at`, so a fleet does not renew in one second.
pub const RENEW_JITTER: Duration = Duration::hours(1);
/// The CA's Retry-After for ARI polls is kept inside these bounds: a broken CA answering 0
/// must not make us poll in a loop, and a day is the longest we wait to hear of revocations.
pub const ARI_POLL_MIN: Duration = Duration::minutes(1);
pub const ARI_POLL_MAX: Duration = Duration::hours(24);
/// A renewal failure is alerted at the start of a streak, then at most this often.
pub const FAILURE_ALERT_REPEAT: Duration = Duration::hours(4);

/// A number in [0, 1) from a stable hash of `parts`: SHA-256 over the length-prefixed parts,
/// so the answer is fixed by this code — std's `DefaultHasher` may change with a Rust
/// release, and a new compiler must not move every renewal of a fleet at once.
pub fn stable_fraction(parts: &[&str]) -> f64 {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    let digest = context.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// The policy's renewal time moved earlier by a fraction `uniform` of the jitter, which is
/// at most an hour and at most 1% of the lifetime (6-day certificates get ~1.4 h → 86 min).
pub fn jittered(renew_at: OffsetDateTime, lifetime: Duration, uniform: f64) -> OffsetDateTime {
    let spread = RENEW_JITTER.min(lifetime / 100).max(Duration::ZERO);
    renew_at - spread * uniform.clamp(0.0, 1.0)
}

/// A point in the CA's suggested window as RFC 9773 §4.2 says: uniformly at random in
/// [start, end], and `now` when that point is already past. (Picking in [max(start, now), end]
/// instead would make a window that opened a year ago and closes tomorrow wait until
/// tomorrow.) A window whose end is not after its start counts as its start.
pub fn ari_choice(
    start: OffsetDateTime,
    end: OffsetDateTime,
    now: OffsetDateTime,
    uniform: f64,
) -> OffsetDateTime {
    let chosen = if end <= start {
        start
    } else {
        start + (end - start) * uniform.clamp(0.0, 1.0)
    };
    chosen.max(now)
}

/// When to renew: the ARI choice when there is one, but never later than the lifetime rule
/// (the emergency floor: a CA that suggests "later" cannot make us cut it close).
pub fn renewal_time(
    policy_renew_at: OffsetDateTime,
    ari: Option<OffsetDateTime>,
) -> OffsetDateTime {
    match ari {
        Some(choice) => choice.min(policy_renew_at),
        None => policy_renew_at,
    }
}

/// The next ARI poll, from the CA's Retry-After, kept inside sane bounds.
pub fn next_ari_poll(now: OffsetDateTime, retry_after: Duration) -> OffsetDateTime {
    now + retry_after.clamp(ARI_POLL_MIN, ARI_POLL_MAX)
}

/// When to try again after `failures` failures in a row, the last at `last_failure`.
/// Exponential from a minute up to a few hours with jitter in [½, 1] of the step; slower for
/// permanent refusals; never before the CA's Retry-After.
pub fn retry_at(
    failures: u32,
    kind: FailureKind,
    retry_after: Option<OffsetDateTime>,
    last_failure: OffsetDateTime,
    uniform: f64,
) -> OffsetDateTime {
    let (first, cap) = match kind {
        FailureKind::Transient | FailureKind::RateLimited => (RETRY_FIRST, RETRY_CAP),
        FailureKind::Permanent => (PERMANENT_FIRST, PERMANENT_CAP),
    };
    let exponent = failures.saturating_sub(1).min(20);
    let step = (first * 2f64.powi(exponent as i32)).min(cap);
    let delay = step * (0.5 + 0.5 * uniform.clamp(0.0, 1.0));
    let at = last_failure + delay;
    match retry_after {
        Some(ca) if ca > at => ca,
        _ => at,
    }
}

/// What the agent alerts about, once per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertLevel {
    Ok,
    Warning,
    Critical,
    Expired,
}

impl AlertLevel {
    /// The expiry level of a state; `error` (unreadable file) counts as critical: whatever
    /// was there cannot be served.
    pub fn of(state: CertState) -> Self {
        match state {
            CertState::Ok | CertState::Due => Self::Ok,
            CertState::Warning => Self::Warning,
            CertState::Critical | CertState::Error => Self::Critical,
            CertState::Expired => Self::Expired,
        }
    }
}

/// The kind of alert sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    Warning,
    Critical,
    Expired,
    Error,
    RenewalFailed,
    VerifyFailed,
    Recovered,
    /// A certificate a web server serves (`[discover]`) is monitored from now on.
    Discovered,
    /// A certificate was issued by a fallback CA (`[[acme.fallback]]`): the primary failed.
    FallbackUsed,
    /// The CA no longer knew evercert's account (lost or deactivated): a new one was
    /// registered for this certificate's order.
    AccountRegistered,
}

/// What was last alerted for one certificate (kept in the agent's state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertMemory {
    pub level: Option<AlertLevel>,
    /// The failure streak length last alerted, and when.
    pub failures_alerted: u32,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub failure_alerted_at: Option<OffsetDateTime>,
    /// Whether the last alert was about an unreadable file.
    #[serde(default)]
    pub error_alerted: bool,
    /// Certificates issued by a fallback CA, as counted when last alerted.
    #[serde(default)]
    pub fallback_alerted: u64,
    /// New accounts registered for this certificate's orders, as counted when last alerted.
    #[serde(default)]
    pub new_accounts_alerted: u64,
}

/// What is true of a certificate now, for alerting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertFacts {
    pub state: CertState,
    /// Failures since the last success (0 for monitored certificates).
    pub failures: u32,
    /// The last failure was at verification.
    pub verify_failed: bool,
    /// Certificates issued by a fallback CA so far (`CertHistory::fallback_renewals`).
    pub fallback_renewals: u64,
    /// New accounts registered for its orders so far (`CertHistory::new_accounts`).
    pub new_accounts: u64,
}

/// Which alerts to send now, and the memory to keep. Each alert is sent once per change of
/// state, not on every wake-up; a failure streak is alerted at its start and then at most
/// every [`FAILURE_ALERT_REPEAT`].
pub fn alerts_due(
    memory: &AlertMemory,
    facts: AlertFacts,
    now: OffsetDateTime,
) -> (Vec<AlertEvent>, AlertMemory) {
    let mut events = Vec::new();
    let mut next = memory.clone();
    let level = AlertLevel::of(facts.state);
    let was = memory.level.unwrap_or(AlertLevel::Ok);
    let is_error = facts.state == CertState::Error;
    if is_error && !memory.error_alerted {
        events.push(AlertEvent::Error);
    } else if level != was && !is_error {
        match level {
            AlertLevel::Ok => events.push(AlertEvent::Recovered),
            AlertLevel::Warning if level > was => events.push(AlertEvent::Warning),
            AlertLevel::Critical if level > was => events.push(AlertEvent::Critical),
            AlertLevel::Expired => events.push(AlertEvent::Expired),
            // Getting better but not well (critical → warning after a renewal that still
            // left little time): no page, the recovery comes when it is ok.
            _ => {}
        }
    } else if !is_error && memory.error_alerted && level == AlertLevel::Ok {
        events.push(AlertEvent::Recovered);
    }
    next.level = Some(level);
    next.error_alerted = is_error;
    if facts.fallback_renewals > memory.fallback_alerted {
        events.push(AlertEvent::FallbackUsed);
    }
    next.fallback_alerted = facts.fallback_renewals;
    if facts.new_accounts > memory.new_accounts_alerted {
        events.push(AlertEvent::AccountRegistered);
    }
    next.new_accounts_alerted = facts.new_accounts;

    if facts.failures == 0 {
        if memory.failures_alerted > 0 && !events.contains(&AlertEvent::Recovered) {
            events.push(AlertEvent::Recovered);
        }
        next.failures_alerted = 0;
        next.failure_alerted_at = None;
    } else {
        let new_streak = memory.failures_alerted == 0;
        let repeat = memory
            .failure_alerted_at
            .is_none_or(|at| now - at >= FAILURE_ALERT_REPEAT);
        if (new_streak || repeat) && facts.failures > memory.failures_alerted {
            events.push(if facts.verify_failed {
                AlertEvent::VerifyFailed
            } else {
                AlertEvent::RenewalFailed
            });
            next.failures_alerted = facts.failures;
            next.failure_alerted_at = Some(now);
        }
    }
    (events, next)
}

/// The discovered certificates to announce (a [`AlertEvent::Discovered`] each): those in
/// `found` that were not in `known`, what was discovered before (kept across restarts).
/// With no `known` at all — the first start with `[discover]` — nothing is new: the
/// existing certificates are the baseline, and announcing each of them would bury the one
/// that matters next month.
pub fn newly_discovered(
    known: Option<&std::collections::BTreeSet<String>>,
    found: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    match known {
        None => Vec::new(),
        Some(known) => found.difference(known).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    #[test]
    fn backoff_table() {
        // (failures, kind, expected lower bound, upper bound) with uniform in [0, 1)
        let cases = [
            (
                1,
                FailureKind::Transient,
                Duration::seconds(30),
                Duration::minutes(1),
            ),
            (
                2,
                FailureKind::Transient,
                Duration::minutes(1),
                Duration::minutes(2),
            ),
            (
                5,
                FailureKind::Transient,
                Duration::minutes(8),
                Duration::minutes(16),
            ),
            (
                30,
                FailureKind::Transient,
                Duration::hours(2),
                Duration::hours(4),
            ),
            (
                1,
                FailureKind::Permanent,
                Duration::minutes(30),
                Duration::hours(1),
            ),
            (
                9,
                FailureKind::Permanent,
                Duration::hours(12),
                Duration::hours(24),
            ),
        ];
        for (failures, kind, low, high) in cases {
            for uniform in [0.0, 0.5, 0.999] {
                let wait = retry_at(failures, kind, None, NOW, uniform) - NOW;
                assert!(
                    wait >= low && wait <= high,
                    "{failures} {kind:?} u={uniform}: {wait}"
                );
            }
        }
    }

    #[test]
    fn retry_after_from_the_ca_always_wins() {
        let ca = NOW + Duration::hours(3);
        assert_eq!(
            retry_at(1, FailureKind::RateLimited, Some(ca), NOW, 0.3),
            ca
        );
        // An earlier Retry-After does not shorten our own backoff.
        let early = NOW + Duration::seconds(1);
        assert!(retry_at(3, FailureKind::Transient, Some(early), NOW, 0.0) > early);
    }

    #[test]
    fn ari_window_choice() {
        let start = NOW + Duration::days(10);
        let end = NOW + Duration::days(12);
        assert_eq!(ari_choice(start, end, NOW, 0.0), start);
        assert_eq!(ari_choice(start, end, NOW, 0.5), NOW + Duration::days(11));
        // A window in the past (revocation): renew now.
        assert_eq!(
            ari_choice(NOW - Duration::days(2), NOW - Duration::days(1), NOW, 0.7),
            NOW
        );
        // A window that has begun: a point in the whole window, now if that point is past
        // (RFC 9773 §4.2), not a point between now and the end.
        let begun = (NOW - Duration::days(365), NOW + Duration::days(1));
        assert_eq!(ari_choice(begun.0, begun.1, NOW, 0.5), NOW);
        assert_eq!(
            ari_choice(begun.0, begun.1, NOW, 0.9999),
            begun.0 + (begun.1 - begun.0) * 0.9999
        );
        let chosen = ari_choice(NOW - Duration::days(1), NOW + Duration::days(1), NOW, 0.75);
        assert_eq!(chosen, NOW + Duration::hours(12));
        // The lifetime rule is a floor.
        let policy = NOW + Duration::days(5);
        assert_eq!(renewal_time(policy, Some(start)), policy);
        assert_eq!(renewal_time(policy, Some(NOW)), NOW);
        assert_eq!(renewal_time(policy, None), policy);
    }

    #[test]
    fn ari_polls_are_bounded() {
        assert_eq!(next_ari_poll(NOW, Duration::ZERO), NOW + ARI_POLL_MIN);
        assert_eq!(next_ari_poll(NOW, Duration::days(7)), NOW + ARI_POLL_MAX);
        assert_eq!(
            next_ari_poll(NOW, Duration::hours(6)),
            NOW + Duration::hours(6)
        );
    }

    #[test]
    fn jitter_is_small_and_earlier() {
        let renew_at = NOW + Duration::days(30);
        assert_eq!(jittered(renew_at, Duration::days(90), 0.0), renew_at);
        assert_eq!(
            jittered(renew_at, Duration::days(90), 0.5),
            renew_at - Duration::minutes(30)
        );
        // A 6-day certificate: at most 1% of its lifetime.
        let short = jittered(renew_at, Duration::days(6), 0.999);
        assert!(renew_at - short < Duration::minutes(87));
        assert!(stable_fraction(&["shop", "1"]) != stable_fraction(&["shop", "2"]));
        assert_eq!(
            stable_fraction(&["shop", "1"]),
            stable_fraction(&["shop", "1"])
        );
        // Pinned: the hash is the project's, not the standard library's of the day.
        assert_eq!(stable_fraction(&[]), 0.8894159948913373);
        assert!(stable_fraction(&["ab", "c"]) != stable_fraction(&["a", "bc"]));
    }

    fn facts(state: CertState, failures: u32) -> AlertFacts {
        AlertFacts {
            state,
            failures,
            verify_failed: false,
            fallback_renewals: 0,
            new_accounts: 0,
        }
    }

    #[test]
    fn alerts_once_per_change() {
        let memory = AlertMemory::default();
        let (events, memory) = alerts_due(&memory, facts(CertState::Ok, 0), NOW);
        assert!(events.is_empty());
        let (events, memory) = alerts_due(&memory, facts(CertState::Warning, 0), NOW);
        assert_eq!(events, vec![AlertEvent::Warning]);
        // The same state on the next wake-up: nothing.
        let (events, memory) = alerts_due(&memory, facts(CertState::Warning, 0), NOW);
        assert!(events.is_empty());
        let (events, memory) = alerts_due(&memory, facts(CertState::Critical, 0), NOW);
        assert_eq!(events, vec![AlertEvent::Critical]);
        let (events, memory) = alerts_due(&memory, facts(CertState::Expired, 0), NOW);
        assert_eq!(events, vec![AlertEvent::Expired]);
        let (events, _) = alerts_due(&memory, facts(CertState::Ok, 0), NOW);
        assert_eq!(events, vec![AlertEvent::Recovered]);
    }

    #[test]
    fn failure_streaks_alert_at_start_then_rarely() {
        let memory = AlertMemory::default();
        let (events, memory) = alerts_due(&memory, facts(CertState::Due, 1), NOW);
        assert_eq!(events, vec![AlertEvent::RenewalFailed]);
        let later = NOW + Duration::minutes(30);
        let (events, memory) = alerts_due(&memory, facts(CertState::Due, 2), later);
        assert!(events.is_empty(), "{events:?}");
        let much_later = NOW + Duration::hours(5);
        let (events, memory) = alerts_due(&memory, facts(CertState::Due, 6), much_later);
        assert_eq!(events, vec![AlertEvent::RenewalFailed]);
        let (events, _) = alerts_due(&memory, facts(CertState::Ok, 0), much_later);
        assert_eq!(events, vec![AlertEvent::Recovered]);
        let verify = AlertFacts {
            state: CertState::Due,
            failures: 1,
            verify_failed: true,
            fallback_renewals: 0,
            new_accounts: 0,
        };
        let (events, _) = alerts_due(&AlertMemory::default(), verify, NOW);
        assert_eq!(events, vec![AlertEvent::VerifyFailed]);
    }

    #[test]
    fn a_fallback_issuance_is_alerted_once() {
        let from_fallback = AlertFacts {
            fallback_renewals: 1,
            ..facts(CertState::Ok, 0)
        };
        let (events, memory) = alerts_due(&AlertMemory::default(), from_fallback, NOW);
        assert_eq!(events, vec![AlertEvent::FallbackUsed]);
        let (events, memory) = alerts_due(&memory, from_fallback, NOW);
        assert_eq!(events, Vec::<AlertEvent>::new());
        let again = AlertFacts {
            fallback_renewals: 2,
            ..from_fallback
        };
        let (events, _) = alerts_due(&memory, again, NOW);
        assert_eq!(events, vec![AlertEvent::FallbackUsed]);
    }

    #[test]
    fn a_new_account_is_alerted_once_per_registration() {
        let registered = AlertFacts {
            new_accounts: 1,
            ..facts(CertState::Ok, 0)
        };
        let (events, memory) = alerts_due(&AlertMemory::default(), registered, NOW);
        assert_eq!(events, vec![AlertEvent::AccountRegistered]);
        let (events, memory) = alerts_due(&memory, registered, NOW);
        assert_eq!(events, Vec::<AlertEvent>::new());
        // A later registration, while the renewal also failed: both are said.
        let again = AlertFacts {
            new_accounts: 2,
            ..facts(CertState::Ok, 1)
        };
        let (events, _) = alerts_due(&memory, again, NOW);
        assert_eq!(
            events,
            vec![AlertEvent::AccountRegistered, AlertEvent::RenewalFailed]
        );
    }

    #[test]
    fn unreadable_files_alert_once_and_recover() {
        let (events, memory) = alerts_due(&AlertMemory::default(), facts(CertState::Error, 0), NOW);
        assert_eq!(events, vec![AlertEvent::Error]);
        let (events, memory) = alerts_due(&memory, facts(CertState::Error, 0), NOW);
        assert!(events.is_empty());
        let (events, _) = alerts_due(&memory, facts(CertState::Ok, 0), NOW);
        assert_eq!(events, vec![AlertEvent::Recovered]);
    }

    proptest! {
        #[test]
        fn retries_never_come_before_the_ca_allows_or_after_the_cap(
            failures in 1u32..200,
            uniform in 0.0f64..1.0,
            retry_after_secs in proptest::option::of(0i64..100_000),
            permanent in any::<bool>(),
        ) {
            let kind = if permanent { FailureKind::Permanent } else { FailureKind::Transient };
            let retry_after = retry_after_secs.map(|s| NOW + Duration::seconds(s));
            let at = retry_at(failures, kind, retry_after, NOW, uniform);
            prop_assert!(at > NOW);
            if let Some(ca) = retry_after {
                prop_assert!(at >= ca);
            } else {
                prop_assert!(at - NOW <= PERMANENT_CAP);
            }
        }

        #[test]
        fn ari_choice_is_inside_the_window_or_now(
            start_offset in -100_000i64..100_000,
            length in 0i64..200_000,
            uniform in 0.0f64..1.0,
        ) {
            let start = NOW + Duration::seconds(start_offset);
            let end = start + Duration::seconds(length);
            let chosen = ari_choice(start, end, NOW, uniform);
            prop_assert!(chosen >= NOW);
            // Inside the window, or now when the uniform point is already past.
            let point = start + (end - start) * uniform;
            if point > NOW {
                prop_assert_eq!(chosen, point);
                prop_assert!(chosen >= start && chosen <= end);
            } else {
                prop_assert_eq!(chosen, NOW);
            }
        }
    }

    #[test]
    fn discovered_certificates_are_announced_once_after_the_baseline() {
        let set = |paths: &[&str]| -> std::collections::BTreeSet<String> {
            paths.iter().map(|path| (*path).to_owned()).collect()
        };
        let found = set(&["/tls/a.pem", "/tls/b.pem"]);
        // The first discovery is the baseline.
        assert!(newly_discovered(None, &found).is_empty());
        // Afterwards only what was not known; a removed one is simply gone.
        assert_eq!(
            newly_discovered(Some(&set(&["/tls/a.pem", "/tls/old.pem"])), &found),
            vec!["/tls/b.pem"]
        );
        assert!(newly_discovered(Some(&found), &found).is_empty());
        assert!(newly_discovered(Some(&found), &set(&[])).is_empty());
    }
}
