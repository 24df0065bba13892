//! The renewal rule, as pure functions of certificate facts, settings and `now`.
//!
//! Nothing here reads a clock or a file: the caller passes `now`, so every rule is testable
//! with a fixed instant (certmagic's check calls `time.Now()` inside and cannot be).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::units::{format_duration, parse_duration};

/// Below this lifetime a fractional `renew_before` is raised to at least one half, as
/// certbot 4 and certmagic do: a 6-day certificate renewed with 2 days left leaves too little
/// room for a failed attempt or two.
pub const SHORT_LIFETIME: Duration = Duration::days(10);

/// How long before `not_after` a certificate is renewed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RenewBefore {
    /// This fraction of the lifetime left, in (0, 1).
    Fraction(f64),
    /// A fixed duration before expiry.
    Fixed(Duration),
}

impl RenewBefore {
    /// One third of the lifetime left: 30 days for a 90-day certificate.
    pub const DEFAULT: Self = Self::Fraction(1.0 / 3.0);
}

impl Default for RenewBefore {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl fmt::Display for RenewBefore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fraction(fraction) => write!(f, "{fraction:.3} of the lifetime"),
            Self::Fixed(duration) => f.write_str(&format_duration(*duration)),
        }
    }
}

/// Why a `renew_before` value was refused; the text is shown to the operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RenewBeforeError(String);

impl FromStr for RenewBefore {
    type Err = RenewBeforeError;

    /// Accepts `1/3`, `0.33` or a duration such as `30d`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let fraction = if let Some((numerator, denominator)) = text.split_once('/') {
            let numerator: f64 = numerator.trim().parse().map_err(|_| fraction_hint(text))?;
            let denominator: f64 = denominator
                .trim()
                .parse()
                .map_err(|_| fraction_hint(text))?;
            Some(numerator / denominator)
        } else if text.starts_with(|c: char| c.is_ascii_digit()) && text.contains('.') {
            Some(text.parse::<f64>().map_err(|_| fraction_hint(text))?)
        } else {
            None
        };
        match fraction {
            Some(value) => Self::from_fraction(value).ok_or_else(|| fraction_hint(text)),
            None => match parse_duration(text) {
                Ok(duration) if duration > Duration::ZERO => Ok(Self::Fixed(duration)),
                _ => Err(fraction_hint(text)),
            },
        }
    }
}

impl RenewBefore {
    /// A fraction strictly between 0 and 1, or `None`.
    pub fn from_fraction(value: f64) -> Option<Self> {
        (value.is_finite() && value > 0.0 && value < 1.0).then_some(Self::Fraction(value))
    }
}

fn fraction_hint(text: &str) -> RenewBeforeError {
    RenewBeforeError(format!(
        "renew_before = \"{text}\" is neither a fraction of the lifetime between 0 and 1 \
         (like \"1/3\" or \"0.5\") nor a duration (like \"30d\")"
    ))
}

/// The instant a certificate becomes due: `not_after - renew_before`, kept inside
/// `[not_before, not_after]` so that it is never after expiry and never before issuance.
pub fn renew_at(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    renew_before: RenewBefore,
) -> OffsetDateTime {
    if not_after <= not_before {
        return not_after;
    }
    let lifetime = not_after - not_before;
    let before = match renew_before {
        RenewBefore::Fraction(fraction) => {
            let fraction = if lifetime < SHORT_LIFETIME {
                fraction.max(0.5)
            } else {
                fraction
            };
            lifetime * fraction
        }
        RenewBefore::Fixed(duration) => duration,
    };
    let at = not_after.checked_sub(before).unwrap_or(not_before);
    // Whole seconds, like every other timestamp evercert prints.
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.clamp(not_before, not_after)
}

/// A certificate's state, as `status` and `check` report it. Ordered from best to worst, so
/// that the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertState {
    Ok,
    Due,
    Warning,
    Critical,
    Expired,
    Error,
}

impl CertState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Due => "due",
            Self::Warning => "warning",
            Self::Critical => "critical",
            Self::Expired => "expired",
            Self::Error => "error",
        }
    }

    /// The monitoring-plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL. `due` is fine for a
    /// monitor: renewal is the agent's job and has not failed yet.
    pub fn check_exit_code(self) -> u8 {
        match self {
            Self::Ok | Self::Due => 0,
            Self::Warning => 1,
            Self::Critical | Self::Expired | Self::Error => 2,
        }
    }
}

impl fmt::Display for CertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How close to expiry is worth a warning and a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub warn_before: Duration,
    pub critical_before: Duration,
    /// Shrink the thresholds for short lifetimes (at most a third and a sixth of the
    /// lifetime), so that a healthy 6-day certificate is not "critical" from birth. Off when
    /// the operator gave the thresholds on the command line: then they are meant literally.
    pub scale_to_lifetime: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            warn_before: Duration::days(30),
            critical_before: Duration::days(7),
            scale_to_lifetime: true,
        }
    }
}

impl Thresholds {
    /// The thresholds in force for a certificate with this lifetime.
    pub fn effective(self, lifetime: Duration) -> (Duration, Duration) {
        if !self.scale_to_lifetime || lifetime <= Duration::ZERO {
            return (self.warn_before, self.critical_before);
        }
        (
            self.warn_before.min(lifetime / 3),
            self.critical_before.min(lifetime / 6),
        )
    }
}

/// The expiry part of the state: ok, warning, critical or expired.
pub fn expiry_state(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> CertState {
    let (warn_before, critical_before) = thresholds.effective(not_after - not_before);
    let left = not_after - now;
    if left <= Duration::ZERO {
        CertState::Expired
    } else if left <= critical_before {
        CertState::Critical
    } else if left <= warn_before {
        CertState::Warning
    } else {
        CertState::Ok
    }
}

/// What is known of a managed certificate on disk, reduced to what the decision needs.
#[derive(Debug, Clone, PartialEq)]
pub enum OnDisk {
    /// No certificate file yet: issue one.
    Missing,
    /// A file that cannot be used at all (garbage, empty, a chain out of order): renewal
    /// replaces it. The message says why.
    Broken(String),
    /// A file evercert may not read (permission denied, I/O error): an error, but renewing
    /// would not help and would spend the CA's rate limits on every retry.
    Unreadable(String),
    /// A readable certificate, possibly with a defect that makes it due at once.
    Present {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        defect: Option<String>,
    },
}

/// The decision for one managed certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub state: CertState,
    pub renew_at: OffsetDateTime,
    pub due: bool,
    /// Why it is due early or in error, in words for the operator.
    pub reason: Option<String>,
    /// When the certificate enters its warning and its critical period (`warn_before`,
    /// `critical_before`, scaled to the lifetime); `None` without a readable certificate.
    pub warning_at: Option<OffsetDateTime>,
    pub critical_at: Option<OffsetDateTime>,
}

/// Decides whether a managed certificate is due, and its state.
pub fn assess(
    on_disk: &OnDisk,
    renew_before: RenewBefore,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Assessment {
    match on_disk {
        OnDisk::Missing => Assessment {
            state: CertState::Due,
            renew_at: now,
            due: true,
            reason: Some("no certificate yet".to_owned()),
            warning_at: None,
            critical_at: None,
        },
        OnDisk::Broken(message) => Assessment {
            state: CertState::Error,
            renew_at: now,
            due: true,
            reason: Some(message.clone()),
            warning_at: None,
            critical_at: None,
        },
        OnDisk::Unreadable(message) => Assessment {
            state: CertState::Error,
            renew_at: now,
            due: false,
            reason: Some(message.clone()),
            warning_at: None,
            critical_at: None,
        },
        OnDisk::Present {
            not_before,
            not_after,
            defect,
        } => {
            let scheduled = renew_at(*not_before, *not_after, renew_before);
            let renew_at = if defect.is_some() {
                scheduled.min(now)
            } else {
                scheduled
            };
            let due = now >= renew_at;
            let expiry = expiry_state(*not_before, *not_after, thresholds, now);
            // A defect (key mismatch, names not covered) breaks the next reload of the web
            // server: worth a warning for monitoring, not just "due".
            let floor = match (defect.is_some(), due) {
                (true, _) => CertState::Warning,
                (false, true) => CertState::Due,
                (false, false) => CertState::Ok,
            };
            let state = expiry.max(floor);
            let (warn_before, critical_before) = thresholds.effective(*not_after - *not_before);
            Assessment {
                state,
                renew_at,
                due,
                reason: defect.clone(),
                warning_at: Some(*not_after - warn_before),
                critical_at: Some(*not_after - critical_before),
            }
        }
    }
}

/// Days left until `not_after`, negative once expired, to two decimals.
pub fn days_left(not_after: OffsetDateTime, now: OffsetDateTime) -> f64 {
    let seconds = (not_after - now).whole_seconds() as f64;
    (seconds / 86_400.0 * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-11-22 12:00 UTC);

    fn cert(lifetime_days: i64, left_days: f64) -> (OffsetDateTime, OffsetDateTime) {
        let not_after = NOW + Duration::seconds_f64(left_days * 86_400.0);
        (not_after - Duration::days(lifetime_days), not_after)
    }

    #[test]
    fn renew_at_table() {
        struct Case {
            lifetime_days: i64,
            renew_before: RenewBefore,
            expected_days_before_expiry: f64,
        }
        let cases = [
            // Let's Encrypt 90-day: one third is 30 days.
            Case {
                lifetime_days: 90,
                renew_before: RenewBefore::DEFAULT,
                expected_days_before_expiry: 30.0,
            },
            // 45-day lifetimes (2028): 15 days.
            Case {
                lifetime_days: 45,
                renew_before: RenewBefore::DEFAULT,
                expected_days_before_expiry: 15.0,
            },
            // 6-day certificates: one half, 3 days.
            Case {
                lifetime_days: 6,
                renew_before: RenewBefore::DEFAULT,
                expected_days_before_expiry: 3.0,
            },
            // A larger fraction stays as given for short lifetimes.
            Case {
                lifetime_days: 6,
                renew_before: RenewBefore::Fraction(0.75),
                expected_days_before_expiry: 4.5,
            },
            Case {
                lifetime_days: 90,
                renew_before: RenewBefore::Fixed(Duration::days(21)),
                expected_days_before_expiry: 21.0,
            },
            // A fixed duration longer than the lifetime is clamped to not_before.
            Case {
                lifetime_days: 6,
                renew_before: RenewBefore::Fixed(Duration::days(30)),
                expected_days_before_expiry: 6.0,
            },
        ];
        for case in cases {
            let (not_before, not_after) = cert(case.lifetime_days, 50.0);
            let at = renew_at(not_before, not_after, case.renew_before);
            let before = (not_after - at).as_seconds_f64() / 86_400.0;
            assert!(
                (before - case.expected_days_before_expiry).abs() < 1e-6,
                "lifetime {}d with {:?}: renews {before} days before expiry",
                case.lifetime_days,
                case.renew_before
            );
        }
    }

    #[test]
    fn parses_renew_before() {
        assert_eq!("1/3".parse(), Ok(RenewBefore::Fraction(1.0 / 3.0)));
        assert_eq!("0.5".parse(), Ok(RenewBefore::Fraction(0.5)));
        assert_eq!("30d".parse(), Ok(RenewBefore::Fixed(Duration::days(30))));
        for bad in [
            "0", "1", "3/2", "0/3", "1/0", "-1/3", "thirty", "1.5", "0s", "",
        ] {
            assert!(
                bad.parse::<RenewBefore>().is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn state_table() {
        let thresholds = Thresholds::default();
        // (lifetime, days left, expected state, due)
        let cases = [
            (90, 80.0, CertState::Ok, false),
            (90, 45.0, CertState::Ok, false),
            (90, 29.5, CertState::Warning, true),
            (90, 20.0, CertState::Warning, true),
            (90, 5.0, CertState::Critical, true),
            (90, -1.0, CertState::Expired, true),
            // A 6-day certificate: warn at 2 days left, critical at 1, due at 3.
            (6, 5.0, CertState::Ok, false),
            (6, 2.5, CertState::Due, true),
            (6, 2.0, CertState::Warning, true),
            (6, 0.5, CertState::Critical, true),
            // A one-year certificate is due with about 122 days left.
            (365, 150.0, CertState::Ok, false),
            (365, 100.0, CertState::Due, true),
        ];
        for (lifetime, left, state, due) in cases {
            let (not_before, not_after) = cert(lifetime, left);
            let on_disk = OnDisk::Present {
                not_before,
                not_after,
                defect: None,
            };
            let got = assess(&on_disk, RenewBefore::DEFAULT, thresholds, NOW);
            assert_eq!(
                (got.state, got.due),
                (state, due),
                "{lifetime}d lifetime, {left} left"
            );
        }
    }

    #[test]
    fn defects_and_missing_files_are_due_now() {
        let (not_before, not_after) = cert(90, 80.0);
        let on_disk = OnDisk::Present {
            not_before,
            not_after,
            defect: Some("key does not match".into()),
        };
        let got = assess(&on_disk, RenewBefore::DEFAULT, Thresholds::default(), NOW);
        assert!(got.due);
        assert_eq!(got.renew_at, NOW);
        assert_eq!(got.state, CertState::Warning);
        let missing = assess(
            &OnDisk::Missing,
            RenewBefore::DEFAULT,
            Thresholds::default(),
            NOW,
        );
        assert!(missing.due);
        let broken = assess(
            &OnDisk::Broken("garbage".into()),
            RenewBefore::DEFAULT,
            Thresholds::default(),
            NOW,
        );
        assert_eq!(broken.state, CertState::Error);
        assert!(broken.due);
        let unreadable = assess(
            &OnDisk::Unreadable("permission denied".into()),
            RenewBefore::DEFAULT,
            Thresholds::default(),
            NOW,
        );
        assert_eq!(unreadable.state, CertState::Error);
        assert!(!unreadable.due, "renewing cannot fix a permission problem");
    }

    #[test]
    fn literal_thresholds_are_not_scaled() {
        let (not_before, not_after) = cert(6, 5.0);
        let literal = Thresholds {
            scale_to_lifetime: false,
            ..Thresholds::default()
        };
        assert_eq!(
            expiry_state(not_before, not_after, literal, NOW),
            CertState::Critical
        );
        assert_eq!(
            expiry_state(not_before, not_after, Thresholds::default(), NOW),
            CertState::Ok
        );
    }

    #[test]
    fn worst_state_is_the_maximum() {
        let states = [CertState::Due, CertState::Expired, CertState::Warning];
        assert_eq!(states.iter().max(), Some(&CertState::Expired));
        assert_eq!(CertState::Error.check_exit_code(), 2);
        assert_eq!(CertState::Warning.check_exit_code(), 1);
        assert_eq!(CertState::Due.check_exit_code(), 0);
    }

    fn any_renew_before() -> impl Strategy<Value = RenewBefore> {
        prop_oneof![
            (0.001f64..0.999).prop_map(RenewBefore::Fraction),
            (1i64..400 * 86_400).prop_map(|s| RenewBefore::Fixed(Duration::seconds(s))),
        ]
    }

    proptest! {
        #[test]
        fn renew_at_stays_inside_the_validity(
            lifetime in 1i64..(800 * 86_400),
            offset in -(1i64 << 40)..(1i64 << 40),
            renew_before in any_renew_before(),
        ) {
            let not_before = NOW + Duration::seconds(offset / 1000);
            let not_after = not_before + Duration::seconds(lifetime);
            let at = renew_at(not_before, not_after, renew_before);
            prop_assert!(at <= not_after);
            prop_assert!(at >= not_before);
        }

        #[test]
        fn renew_at_is_monotone_in_renew_before(
            lifetime in 1i64..(800 * 86_400),
            a in 0.001f64..0.999,
            b in 0.001f64..0.999,
            da in 1i64..(400 * 86_400),
            db in 1i64..(400 * 86_400),
        ) {
            let not_before = NOW;
            let not_after = NOW + Duration::seconds(lifetime);
            let (small, large) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(
                renew_at(not_before, not_after, RenewBefore::Fraction(large))
                    <= renew_at(not_before, not_after, RenewBefore::Fraction(small))
            );
            let (small, large) = if da <= db { (da, db) } else { (db, da) };
            prop_assert!(
                renew_at(not_before, not_after, RenewBefore::Fixed(Duration::seconds(large)))
                    <= renew_at(not_before, not_after, RenewBefore::Fixed(Duration::seconds(small)))
            );
        }
    }
}
