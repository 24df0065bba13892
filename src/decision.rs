//! The renewal decision, in one place: is a certificate due, when, and why. `renew`, the agent
//! and `status` all ask this function, so they cannot disagree.
//!
//! Pure, like rustls' core: facts in (what is on disk, the renewal history, the CA's ARI window
//! if one is known), a decision out; `now` is passed in, and the jitter comes from a stable
//! hash of the certificate's name and serial (`schedule::stable_fraction`), so the same
//! question asked on the next wake-up gets the same answer.
//!
//! Order of the rules: a certificate that is missing or defective is due at once; otherwise
//! the lifetime rule (`renew_before`, moved up to an hour earlier by the jitter) sets the
//! latest moment, and the CA's window (RFC 9773) may only move it earlier — never later, so a
//! CA that suggests "later" cannot make us cut it close. After failures the retry time
//! (backoff, the CA's Retry-After) is the earliest moment.
//!
//! After failures with a fallback CA configured, the retry time is the earlier of the
//! primary's (backoff and Retry-After) and the moment the fallback takes over
//! (`fallback::fallback_at`, after the backoff alone).
//!
//! Renewal windows (`[renewal] windows`) come last: a renewal of a working certificate that
//! falls outside them waits for the next opening — but never past the moment the
//! certificate enters `critical_before`, which always wins. A missing or defective
//! certificate is replaced at once: there is nothing working to protect from a reload.
//!
//! An ARI window is distrusted when it would renew a certificate younger than
//! [`ARI_MIN_AGE_FRACTION`] of its lifetime (9 days of 90, about 14 hours of 6 days), unless the
//! window has already ended — the CA's signal to replace at once, as before a mass revocation
//! — and ended after the certificate was issued, and the certificate was not itself ordered
//! early on such a signal. So a broken or hostile CA that always answers "renew now" gets one
//! early order, and then at most one per tenth of the lifetime, instead of one every few
//! minutes; a real revocation notice is still followed at once.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::inventory::CertFacts;
use crate::policy::{Assessment, CertState};
use crate::schedule;
use crate::state::CertHistory;
use crate::window::Windows;

/// See the module header: the youngest age, as a fraction of the lifetime, at which the CA's
/// window alone may make a certificate due.
pub const ARI_MIN_AGE_FRACTION: f64 = 0.1;

/// Why `renew_at` is what it is. Serde names are part of `status --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// There is no certificate at `cert_path` yet.
    NoCertificate,
    /// The file is broken, the key does not match, or configured names are not covered.
    Defect,
    /// The files cannot be read: renewing cannot help, the operator must.
    Unreadable,
    /// The lifetime rule (`renew_before`), moved a little earlier by the jitter.
    Lifetime,
    /// The CA's renewal window (ARI, RFC 9773).
    AriWindow,
    /// Waiting after failures: the backoff, or the CA's Retry-After.
    Retry,
    /// Due (or soon), but outside the renewal windows: waiting for the next one to open.
    RenewalWindow,
    /// `evercert revoke` revoked the certificate on disk: clients that check revocation
    /// refuse it, so it is replaced at once (no `--force`, no renewal window).
    Revoked,
}

impl Reason {
    /// In the operator's words, for progress lines and the table.
    pub fn describe(self) -> &'static str {
        match self {
            Self::NoCertificate => "no certificate yet",
            Self::Defect => "the certificate on disk is defective",
            Self::Unreadable => "the certificate cannot be read",
            Self::Lifetime => "lifetime rule",
            Self::AriWindow => "the CA's renewal window (ARI)",
            Self::Retry => "waiting to retry after a failure",
            Self::RenewalWindow => "waiting for the next renewal window",
            Self::Revoked => "revoked with `evercert revoke`: replaced at once",
        }
    }
}

/// A CA's suggested renewal window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// What became of the CA's window, when there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AriUse {
    /// No window known for this certificate.
    None,
    /// The moment chosen in the window is the renewal time.
    Followed,
    /// The lifetime rule comes first; the window changes nothing.
    Later,
    /// The window would renew a certificate issued moments ago: ignored (module header).
    Distrusted,
}

/// The decision for one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub due: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub renew_at: OffsetDateTime,
    pub reason: Reason,
    pub ari: AriUse,
    /// With `[renewal] windows`: the first moment from now on when one is open (now, while
    /// one is); `None` without windows.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_window: Option<OffsetDateTime>,
}

/// What is known of a certificate on disk.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub name: &'a str,
    /// The lifetime rule's verdict on the files (`policy::assess`).
    pub assessment: &'a Assessment,
    /// The leaf, when the file could be read.
    pub leaf: Option<&'a CertFacts>,
}

/// The decision: see the module header for the rules and their order.
pub fn decide(
    facts: &Facts<'_>,
    history: &CertHistory,
    ari: Option<Window>,
    windows: &Windows,
    now: OffsetDateTime,
) -> Decision {
    let assessment = facts.assessment;
    let next_window = (!windows.is_empty()).then(|| windows.next_open(now));
    if !assessment.due && assessment.state == CertState::Error {
        return Decision {
            due: false,
            renew_at: assessment.renew_at,
            reason: Reason::Unreadable,
            ari: AriUse::None,
            next_window,
        };
    }
    let (mut renew_at, mut reason, mut ari_use) = match facts.leaf {
        None if assessment.state == CertState::Error => {
            (assessment.renew_at, Reason::Defect, AriUse::None)
        }
        None => (assessment.renew_at, Reason::NoCertificate, AriUse::None),
        Some(_) if assessment.reason.is_some() => {
            (assessment.renew_at, Reason::Defect, AriUse::None)
        }
        Some(leaf) if history.revoked_serial.as_deref() == Some(leaf.serial.as_str()) => {
            (now.min(assessment.renew_at), Reason::Revoked, AriUse::None)
        }
        Some(leaf) => {
            let lifetime = leaf.not_after - leaf.not_before;
            let uniform = schedule::stable_fraction(&[facts.name, &leaf.serial]);
            let by_lifetime = schedule::jittered(assessment.renew_at, lifetime, uniform);
            match ari {
                None => (by_lifetime, Reason::Lifetime, AriUse::None),
                Some(window) => {
                    let uniform = schedule::stable_fraction(&[
                        facts.name,
                        &leaf.serial,
                        &window.start.unix_timestamp().to_string(),
                    ]);
                    let chosen = schedule::ari_choice(window.start, window.end, now, uniform);
                    let ordered_early = history.last_serial.as_deref() == Some(&leaf.serial)
                        && history.renewed_for == Some(Reason::AriWindow);
                    if !ari_trusted(leaf, window, chosen, ordered_early, now) {
                        (by_lifetime, Reason::Lifetime, AriUse::Distrusted)
                    } else if chosen < by_lifetime {
                        (chosen, Reason::AriWindow, AriUse::Followed)
                    } else {
                        (by_lifetime, Reason::Lifetime, AriUse::Later)
                    }
                }
            }
        }
    };
    if history.failures > 0
        && let (Some(last), Some(kind)) = (history.last_failure, history.failure_kind)
    {
        let uniform = schedule::stable_fraction(&[facts.name, &history.failures.to_string()]);
        let mut retry =
            schedule::retry_at(history.failures, kind, history.retry_after, last, uniform);
        // The primary's Retry-After binds the primary only: a fallback CA is asked from
        // `fallback_at` on, after the backoff alone (`fallback`).
        if let Some(fallback_at) = history.fallback_at {
            let backoff = schedule::retry_at(history.failures, kind, None, last, uniform);
            retry = retry.min(fallback_at.max(backoff));
        }
        if retry > renew_at {
            renew_at = retry;
            reason = Reason::Retry;
            if ari_use == AriUse::Followed {
                ari_use = AriUse::Later;
            }
        }
    }
    let working = facts.leaf.is_some() && assessment.reason.is_none() && reason != Reason::Revoked;
    if working && !windows.is_empty() {
        // The renewal may run at the first open moment from `renew_at` (from now when that
        // has passed); `critical_before` caps the wait, and once reached lifts it.
        let earliest = renew_at.max(now);
        let critical = assessment.critical_at.unwrap_or(earliest);
        if critical > earliest {
            let opens = windows.next_open(earliest).min(critical);
            if opens > earliest {
                renew_at = opens;
                reason = Reason::RenewalWindow;
                if ari_use == AriUse::Followed {
                    ari_use = AriUse::Later;
                }
            }
        }
    }
    // Whole seconds, like every other timestamp evercert prints.
    let renew_at = renew_at.replace_nanosecond(0).unwrap_or(renew_at);
    Decision {
        due: renew_at <= now,
        renew_at,
        reason,
        ari: ari_use,
        next_window,
    }
}

/// Whether the CA's window may decide for this certificate (module header).
fn ari_trusted(
    leaf: &CertFacts,
    window: Window,
    chosen: OffsetDateTime,
    ordered_early: bool,
    now: OffsetDateTime,
) -> bool {
    let lifetime = (leaf.not_after - leaf.not_before).max(Duration::ZERO);
    let grown_up = leaf.not_before + lifetime * ARI_MIN_AGE_FRACTION;
    if chosen >= grown_up {
        return true;
    }
    window.end <= now && window.end > leaf.not_before && !ordered_early
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;
    use crate::acme::FailureKind;
    use crate::policy::{self, OnDisk, RenewBefore, Thresholds};

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    fn leaf(issued_days_ago: f64, lifetime_days: f64) -> CertFacts {
        let not_before = NOW - Duration::seconds_f64(issued_days_ago * 86_400.0);
        CertFacts {
            subject: String::new(),
            dns_names: vec!["shop.example.com".into()],
            ip_addresses: Vec::new(),
            issuer: "test".into(),
            serial: "0a1b".into(),
            not_before,
            not_after: not_before + Duration::seconds_f64(lifetime_days * 86_400.0),
            key_algorithm: String::new(),
            authority_key_id: None,
            public_key: Vec::new(),
        }
    }

    fn assess(leaf: &CertFacts, now: OffsetDateTime) -> Assessment {
        let on_disk = OnDisk::Present {
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            defect: None,
        };
        policy::assess(&on_disk, RenewBefore::DEFAULT, Thresholds::default(), now)
    }

    fn decide_at(
        leaf: &CertFacts,
        history: &CertHistory,
        ari: Option<Window>,
        now: OffsetDateTime,
    ) -> Decision {
        let assessment = assess(leaf, now);
        let facts = Facts {
            name: "shop",
            assessment: &assessment,
            leaf: Some(leaf),
        };
        decide(&facts, history, ari, &Windows::default(), now)
    }

    fn window(start_days: f64, end_days: f64) -> Option<Window> {
        Some(Window {
            start: NOW + Duration::seconds_f64(start_days * 86_400.0),
            end: NOW + Duration::seconds_f64(end_days * 86_400.0),
        })
    }

    fn failed(failures: u32, kind: FailureKind, minutes_ago: i64) -> CertHistory {
        CertHistory {
            failures,
            failure_kind: Some(kind),
            last_failure: Some(NOW - Duration::minutes(minutes_ago)),
            ..CertHistory::default()
        }
    }

    /// (case, leaf, history, window, due, reason, ari)
    type Case = (
        &'static str,
        CertFacts,
        CertHistory,
        Option<Window>,
        bool,
        Reason,
        AriUse,
    );

    #[test]
    fn decision_table() {
        let fresh = CertHistory::default();
        // (case, leaf (issued days ago, lifetime), history, window, due, reason, ari)
        let cases: Vec<Case> = vec![
            (
                "young, no ARI",
                leaf(10.0, 90.0),
                fresh.clone(),
                None,
                false,
                Reason::Lifetime,
                AriUse::None,
            ),
            (
                "past the lifetime rule",
                leaf(61.0, 90.0),
                fresh.clone(),
                None,
                true,
                Reason::Lifetime,
                AriUse::None,
            ),
            (
                "window in the future, before the lifetime rule",
                leaf(30.0, 90.0),
                fresh.clone(),
                window(10.0, 12.0),
                false,
                Reason::AriWindow,
                AriUse::Followed,
            ),
            (
                "window after the lifetime rule: the rule wins",
                leaf(30.0, 90.0),
                fresh.clone(),
                window(50.0, 52.0),
                false,
                Reason::Lifetime,
                AriUse::Later,
            ),
            (
                "window in the past: renew now",
                leaf(30.0, 90.0),
                fresh.clone(),
                window(-2.0, -1.0),
                true,
                Reason::AriWindow,
                AriUse::Followed,
            ),
            (
                "window open for a year, closing tomorrow: the point is past, renew now",
                leaf(30.0, 90.0),
                fresh.clone(),
                window(-365.0, 0.001),
                true,
                Reason::AriWindow,
                AriUse::Followed,
            ),
            (
                "certificate minutes old, window 'now' not yet ended: distrusted",
                leaf(0.003, 90.0),
                fresh.clone(),
                window(-0.001, 0.001),
                false,
                Reason::Lifetime,
                AriUse::Distrusted,
            ),
            (
                "certificate minutes old, window ended before it was issued: distrusted",
                leaf(0.003, 90.0),
                fresh.clone(),
                window(-2.0, -1.0),
                false,
                Reason::Lifetime,
                AriUse::Distrusted,
            ),
            (
                "certificate a day old, window ended after issuance: revocation notice, renew",
                leaf(1.0, 90.0),
                fresh.clone(),
                window(-0.5, -0.1),
                true,
                Reason::AriWindow,
                AriUse::Followed,
            ),
            (
                "the same, but the certificate was itself ordered on an ARI signal",
                leaf(1.0, 90.0),
                CertHistory {
                    last_serial: Some("0a1b".into()),
                    renewed_for: Some(Reason::AriWindow),
                    ..CertHistory::default()
                },
                window(-0.5, -0.1),
                false,
                Reason::Lifetime,
                AriUse::Distrusted,
            ),
            (
                "ordered on ARI, but old enough now: followed",
                leaf(10.0, 90.0),
                CertHistory {
                    last_serial: Some("0a1b".into()),
                    renewed_for: Some(Reason::AriWindow),
                    ..CertHistory::default()
                },
                window(-0.5, -0.1),
                true,
                Reason::AriWindow,
                AriUse::Followed,
            ),
            (
                "due, but a failure a minute ago: backoff",
                leaf(70.0, 90.0),
                failed(3, FailureKind::Transient, 1),
                None,
                false,
                Reason::Retry,
                AriUse::None,
            ),
            (
                "due, failure long ago: the retry time has come",
                leaf(70.0, 90.0),
                failed(3, FailureKind::Transient, 600),
                None,
                true,
                Reason::Retry,
                AriUse::None,
            ),
            (
                "ARI says now, but the CA refused an hour ago: backoff first",
                leaf(30.0, 90.0),
                failed(5, FailureKind::Permanent, 60),
                window(-2.0, -1.0),
                false,
                Reason::Retry,
                AriUse::Later,
            ),
        ];
        for (case, leaf, history, window, due, reason, ari) in cases {
            let decision = decide_at(&leaf, &history, window, NOW);
            assert_eq!(
                (decision.due, decision.reason, decision.ari),
                (due, reason, ari),
                "{case}: {decision:?}"
            );
            assert_eq!(decision.due, decision.renew_at <= NOW, "{case}");
        }
    }

    #[test]
    fn a_certificate_evercert_revoked_is_due_at_once_until_replaced() {
        let young = leaf(1.0, 90.0);
        let revoked = CertHistory {
            revoked_serial: Some(young.serial.clone()),
            ..CertHistory::default()
        };
        let decision = decide_at(&young, &revoked, window(30.0, 40.0), NOW);
        assert_eq!((decision.due, decision.reason), (true, Reason::Revoked));
        assert_eq!(decision.renew_at, NOW);
        // Another serial (the replacement) is not affected.
        let other = CertHistory {
            revoked_serial: Some("ffff".into()),
            ..CertHistory::default()
        };
        let decision = decide_at(&young, &other, None, NOW);
        assert_eq!((decision.due, decision.reason), (false, Reason::Lifetime));
        // A failed replacement still waits for its retry time.
        let failing = CertHistory {
            revoked_serial: Some(young.serial.clone()),
            ..failed(1, FailureKind::Transient, 0)
        };
        let decision = decide_at(&young, &failing, None, NOW);
        assert_eq!((decision.due, decision.reason), (false, Reason::Retry));
    }

    #[test]
    fn missing_defective_and_unreadable() {
        let missing = missing();
        let facts = Facts {
            name: "shop",
            assessment: &missing,
            leaf: None,
        };
        let decision = decide(
            &facts,
            &CertHistory::default(),
            None,
            &Windows::default(),
            NOW,
        );
        assert_eq!(
            (decision.due, decision.reason),
            (true, Reason::NoCertificate)
        );
        // A missing certificate after a failure still waits for the retry time.
        let history = failed(1, FailureKind::Transient, 0);
        let decision = decide(&facts, &history, None, &Windows::default(), NOW);
        assert_eq!((decision.due, decision.reason), (false, Reason::Retry));

        let broken = policy::assess(
            &OnDisk::Broken("garbage".into()),
            RenewBefore::DEFAULT,
            Thresholds::default(),
            NOW,
        );
        let facts = Facts {
            name: "shop",
            assessment: &broken,
            leaf: None,
        };
        let decision = decide(
            &facts,
            &CertHistory::default(),
            window(-2.0, -1.0),
            &Windows::default(),
            NOW,
        );
        assert_eq!((decision.due, decision.reason), (true, Reason::Defect));

        let unreadable = policy::assess(
            &OnDisk::Unreadable("permission denied".into()),
            RenewBefore::DEFAULT,
            Thresholds::default(),
            NOW,
        );
        let facts = Facts {
            name: "shop",
            assessment: &unreadable,
            leaf: None,
        };
        let decision = decide(
            &facts,
            &CertHistory::default(),
            None,
            &Windows::default(),
            NOW,
        );
        assert_eq!((decision.due, decision.reason), (false, Reason::Unreadable));
    }

    #[test]
    fn the_same_question_gets_the_same_answer() {
        let leaf = leaf(30.0, 90.0);
        let first = decide_at(&leaf, &CertHistory::default(), window(10.0, 12.0), NOW);
        let later = NOW + Duration::hours(3);
        let again = decide_at(&leaf, &CertHistory::default(), window(10.0, 12.0), later);
        assert_eq!(first.renew_at, again.renew_at);
    }

    #[test]
    fn reasons_keep_their_names() {
        let names: Vec<String> = [
            Reason::NoCertificate,
            Reason::Defect,
            Reason::Unreadable,
            Reason::Lifetime,
            Reason::AriWindow,
            Reason::Retry,
            Reason::RenewalWindow,
        ]
        .iter()
        .map(|reason| serde_json::to_string(reason).unwrap())
        .collect();
        assert_eq!(
            names.join(","),
            r#""no_certificate","defect","unreadable","lifetime","ari_window","retry","renewal_window""#
        );
    }

    /// (case, leaf, history, now, due, reason, renew_at when it matters)
    type WindowCase = (
        &'static str,
        CertFacts,
        CertHistory,
        OffsetDateTime,
        bool,
        Reason,
        Option<OffsetDateTime>,
    );

    fn missing() -> Assessment {
        policy::assess(
            &OnDisk::Missing,
            RenewBefore::DEFAULT,
            Thresholds::default(),
            NOW,
        )
    }

    fn weekdays_berlin() -> Windows {
        Windows::new(vec![
            crate::window::WeeklyWindow::parse("Mon-Fri 09:00-17:00 Europe/Berlin").unwrap(),
        ])
    }

    #[test]
    fn renewal_windows_table() {
        // NOW is Sunday 2026-11-22 12:00 UTC; the window next opens Monday 08:00 UTC.
        let monday = datetime!(2026-11-23 08:00 UTC);
        let windows = weekdays_berlin();
        let fresh = CertHistory::default();
        // (case, leaf (issued days ago, lifetime), history, now, due, reason, renew_at)
        let cases: Vec<WindowCase> = vec![
            (
                "due on Sunday: waits for Monday morning",
                leaf(61.0, 90.0),
                fresh.clone(),
                NOW,
                false,
                Reason::RenewalWindow,
                Some(monday),
            ),
            (
                "due, and the window is open",
                leaf(61.0, 90.0),
                fresh.clone(),
                datetime!(2026-11-23 09:00 UTC),
                true,
                Reason::Lifetime,
                None,
            ),
            (
                "not due yet: the lifetime rule, unchanged when it falls inside a window",
                leaf(10.0, 90.0),
                fresh.clone(),
                NOW,
                false,
                Reason::Lifetime,
                None,
            ),
            (
                "inside critical_before (7 days left): at once, window or not",
                leaf(84.0, 90.0),
                fresh.clone(),
                NOW,
                true,
                Reason::Lifetime,
                None,
            ),
            (
                "enters critical_before before the window opens: renews at that moment",
                leaf(83.0 - 0.25, 90.0),
                fresh.clone(),
                NOW,
                false,
                Reason::RenewalWindow,
                Some(NOW + Duration::hours(6)),
            ),
            (
                "expired: at once",
                leaf(95.0, 90.0),
                fresh.clone(),
                NOW,
                true,
                Reason::Lifetime,
                None,
            ),
            (
                "retry time on Sunday: the retry waits for the window too",
                leaf(70.0, 90.0),
                failed(3, FailureKind::Transient, 600),
                NOW,
                false,
                Reason::RenewalWindow,
                Some(monday),
            ),
        ];
        for (case, leaf, history, now, due, reason, renew_at) in cases {
            let assessment = assess(&leaf, now);
            let facts = Facts {
                name: "shop",
                assessment: &assessment,
                leaf: Some(&leaf),
            };
            let decision = decide(&facts, &history, None, &windows, now);
            assert_eq!(
                (decision.due, decision.reason),
                (due, reason),
                "{case}: {decision:?}"
            );
            if let Some(renew_at) = renew_at {
                assert_eq!(decision.renew_at, renew_at, "{case}");
            }
            assert_eq!(decision.next_window, Some(windows.next_open(now)), "{case}");
            // Without windows the same certificate would be due whenever it is due here.
            let without = decide(&facts, &history, None, &Windows::default(), now);
            assert!(!decision.due || without.due, "{case}");
            assert_eq!(without.next_window, None);
        }
        // Missing and defective certificates are replaced at once, outside windows too.
        let missing = missing();
        let facts = Facts {
            name: "shop",
            assessment: &missing,
            leaf: None,
        };
        let decision = decide(&facts, &fresh, None, &windows, NOW);
        assert_eq!(
            (decision.due, decision.reason),
            (true, Reason::NoCertificate)
        );
    }

    proptest! {
        /// Outside a window nothing is due unless it is inside critical_before; a deferred
        /// renewal never goes past the start of critical_before.
        #[test]
        fn windows_only_defer_and_critical_wins(
            issued_hours_ago in 0i64..3000,
            now_offset_minutes in 0i64..20_160,
        ) {
            let now = NOW + Duration::minutes(now_offset_minutes);
            let windows = weekdays_berlin();
            let not_before = now - Duration::hours(issued_hours_ago);
            let leaf = CertFacts { not_before, not_after: not_before + Duration::days(90), ..leaf(0.0, 90.0) };
            let assessment = assess(&leaf, now);
            let facts = Facts { name: "shop", assessment: &assessment, leaf: Some(&leaf) };
            let with = decide(&facts, &CertHistory::default(), None, &windows, now);
            let without = decide(&facts, &CertHistory::default(), None, &Windows::default(), now);
            let critical = assessment.critical_at.unwrap();
            prop_assert!(with.renew_at >= without.renew_at);
            prop_assert!(with.renew_at <= without.renew_at.max(critical.replace_nanosecond(0).unwrap()).max(now));
            if with.due {
                prop_assert!(windows.is_open(now) || now >= critical);
            }
        }
    }

    proptest! {
        /// Whatever the CA answers, the renewal time is never later than the lifetime rule
        /// allows (before failures), and a window never renews a certificate younger than the
        /// minimum age unless it ended after the certificate's issuance.
        #[test]
        fn ari_never_delays_and_never_churns(
            issued_minutes_ago in 0i64..200_000,
            start_offset in -300_000i64..300_000,
            length in 0i64..300_000,
            ordered_early in any::<bool>(),
        ) {
            let leaf = leaf(issued_minutes_ago as f64 / 1440.0, 90.0);
            let history = CertHistory {
                last_serial: Some("0a1b".into()),
                renewed_for: ordered_early.then_some(Reason::AriWindow),
                ..CertHistory::default()
            };
            let start = NOW + Duration::minutes(start_offset);
            let window = Window { start, end: start + Duration::minutes(length) };
            let with = decide_at(&leaf, &history, Some(window), NOW);
            let without = decide_at(&leaf, &history, None, NOW);
            prop_assert!(with.renew_at <= without.renew_at);
            let young = NOW - leaf.not_before < Duration::days(9);
            if with.due && !without.due && young {
                prop_assert!(window.end <= NOW && window.end > leaf.not_before);
                prop_assert!(!ordered_early);
            }
            if with.reason == Reason::AriWindow {
                prop_assert!(with.renew_at >= window.start.min(NOW));
                prop_assert!(with.renew_at <= window.end.max(NOW));
            }
        }
    }
}
