//! Which CA an attempt orders from, when `[[acme.fallback]]` names more than one (like
//! certmagic's issuer list, but back to the primary after every fallback attempt).
//!
//! The rules, pure over the history and `now`:
//! - no failure since the last success: the primary;
//! - the last attempt went to a fallback CA (issued or not): the primary again;
//! - the primary failed at a step that is the CA's (account, order, the CA's answer) and the
//!   failure streak is older than the fallback's `fallback_after`, or the certificate has
//!   entered its warning period: the next fallback CA in configuration order after the one
//!   tried last in this streak;
//! - otherwise the primary.
//!
//! A failure after issuance (store, reload, verify) is not the CA's fault: another CA
//! would not help, so it never leads to a fallback. Each CA has its own account
//! (`acme::account_dir` is per directory URL), and the primary's Retry-After binds the
//! primary only: `fallback_at` lets the next attempt go to a fallback before it.

use time::OffsetDateTime;

use crate::config::FallbackCa;
use crate::renew::Step;
use crate::state::CertHistory;

/// The CA for one attempt: the primary, or `fallbacks[i]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ca {
    Primary,
    Fallback(usize),
}

/// Whether a failure at `step` is the CA's (another CA might succeed).
pub fn ca_failure(step: Step) -> bool {
    matches!(step, Step::Account | Step::Order | Step::Check)
}

/// The CA the next attempt orders from (module header).
pub fn choose(
    primary: &str,
    fallbacks: &[FallbackCa],
    history: &CertHistory,
    warning_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Ca {
    if fallbacks.is_empty() || history.failures == 0 {
        return Ca::Primary;
    }
    if history
        .last_ca
        .as_deref()
        .is_some_and(|last| last != primary)
    {
        return Ca::Primary;
    }
    if !history.failure_step.is_some_and(ca_failure) {
        return Ca::Primary;
    }
    let since = history
        .failing_since
        .or(history.last_failure)
        .unwrap_or(now);
    let warning = warning_at.is_some_and(|at| now >= at);
    // The next fallback after the one tried last in this streak, cyclically.
    let after = history
        .last_fallback
        .as_deref()
        .and_then(|last| fallbacks.iter().position(|ca| ca.directory == last))
        .map_or(0, |index| index + 1);
    (0..fallbacks.len())
        .map(|offset| (after + offset) % fallbacks.len())
        .find(|&index| warning || now - since >= fallbacks[index].fallback_after)
        .map_or(Ca::Primary, Ca::Fallback)
}

/// When a fallback CA becomes the next choice after the primary failed, if ever: the
/// earliest `fallback_after` from the start of the streak, or the warning period.
pub fn fallback_at(
    fallbacks: &[FallbackCa],
    history: &CertHistory,
    warning_at: Option<OffsetDateTime>,
) -> Option<OffsetDateTime> {
    let since = history.failing_since.or(history.last_failure)?;
    let by_time = fallbacks.iter().map(|ca| since + ca.fallback_after).min()?;
    Some(warning_at.map_or(by_time, |warning| by_time.min(warning)))
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;
    use crate::acme::FailureKind;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);
    const PRIMARY: &str = "https://primary.test/dir";

    fn ca(directory: &str, after_hours: i64) -> FallbackCa {
        FallbackCa {
            directory: directory.to_owned(),
            eab: None,
            ca_bundle: None,
            fallback_after: Duration::hours(after_hours),
        }
    }

    fn failing(hours: i64, step: Step, last_ca: &str, last_fallback: Option<&str>) -> CertHistory {
        CertHistory {
            failures: 3,
            failure_kind: Some(FailureKind::Transient),
            failure_step: Some(step),
            last_failure: Some(NOW - Duration::minutes(5)),
            failing_since: Some(NOW - Duration::hours(hours)),
            last_ca: Some(last_ca.to_owned()),
            last_fallback: last_fallback.map(str::to_owned),
            ..CertHistory::default()
        }
    }

    /// (case, fallbacks, history, warning_at, choice)
    type Case<'a> = (
        &'static str,
        &'a [FallbackCa],
        CertHistory,
        Option<OffsetDateTime>,
        Ca,
    );

    #[test]
    fn choice_table() {
        let one = vec![ca("https://b.test/dir", 24)];
        let two = vec![ca("https://b.test/dir", 24), ca("https://c.test/dir", 0)];
        let far = Some(NOW + Duration::days(20));
        let passed = Some(NOW - Duration::days(1));
        // (case, fallbacks, history, warning_at, choice)
        let cases: Vec<Case<'_>> = vec![
            (
                "no fallback configured",
                &[],
                failing(48, Step::Order, PRIMARY, None),
                far,
                Ca::Primary,
            ),
            (
                "no failure",
                &one,
                CertHistory::default(),
                passed,
                Ca::Primary,
            ),
            (
                "primary failing for an hour",
                &one,
                failing(1, Step::Order, PRIMARY, None),
                far,
                Ca::Primary,
            ),
            (
                "primary failing past fallback_after",
                &one,
                failing(25, Step::Order, PRIMARY, None),
                far,
                Ca::Fallback(0),
            ),
            (
                "account step counts too",
                &one,
                failing(25, Step::Account, PRIMARY, None),
                far,
                Ca::Fallback(0),
            ),
            (
                "warning period: at once",
                &one,
                failing(1, Step::Order, PRIMARY, None),
                passed,
                Ca::Fallback(0),
            ),
            (
                "reload failures are not the CA's",
                &one,
                failing(48, Step::Reload, PRIMARY, None),
                passed,
                Ca::Primary,
            ),
            (
                "after a fallback attempt: the primary",
                &one,
                failing(
                    48,
                    Step::Order,
                    "https://b.test/dir",
                    Some("https://b.test/dir"),
                ),
                passed,
                Ca::Primary,
            ),
            (
                "two fallbacks: the first eligible one",
                &two,
                failing(1, Step::Order, PRIMARY, None),
                far,
                Ca::Fallback(1),
            ),
            (
                "two fallbacks: the next after the last tried",
                &two,
                failing(25, Step::Order, PRIMARY, Some("https://b.test/dir")),
                far,
                Ca::Fallback(1),
            ),
            (
                "two fallbacks: round again",
                &two,
                failing(25, Step::Order, PRIMARY, Some("https://c.test/dir")),
                far,
                Ca::Fallback(0),
            ),
        ];
        for (case, fallbacks, history, warning_at, expected) in cases {
            assert_eq!(
                choose(PRIMARY, fallbacks, &history, warning_at, NOW),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn fallback_time_is_the_earliest_trigger() {
        let one = vec![ca("https://b.test/dir", 24)];
        let history = failing(1, Step::Order, PRIMARY, None);
        assert_eq!(
            fallback_at(&one, &history, None),
            Some(NOW + Duration::hours(23))
        );
        assert_eq!(
            fallback_at(&one, &history, Some(NOW + Duration::hours(2))),
            Some(NOW + Duration::hours(2))
        );
        assert_eq!(fallback_at(&[], &history, None), None);
        assert_eq!(fallback_at(&one, &CertHistory::default(), None), None);
    }
}
