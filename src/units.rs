//! Durations as operators write them in the config and on the command line: `30d`, `12h`,
//! `90m`, `45s`, and sums such as `1d12h`. Kept tiny and strict so that a typo (`30 days`,
//! `1M`) is an error with a hint rather than a silently different threshold.

use std::fmt;

use time::{Duration, OffsetDateTime};

/// The one timestamp format evercert prints and stores: RFC 3339 in UTC, like
/// `2026-11-22T12:00:00Z` (whole seconds unless the instant has a fraction).
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The same instant as a compact UTC stamp for file names, like `20261122T120000Z`: sorts
/// by time, and has no characters a path or a shell would trip over.
pub fn compact_stamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "00000000T000000Z".to_owned())
}

/// A duration that could not be parsed, with the text that was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{input}' is not a duration: write a number followed by d, h, m or s, like \"30d\", \"12h\", \"90m\" or \"45s\""
)]
pub struct DurationError {
    input: String,
}

/// Parses `30d`, `12h`, `90m`, `45s`, `0s` and concatenations like `1d12h`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(err());
    }
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit = match ch {
            'd' => Duration::DAY,
            'h' => Duration::HOUR,
            'm' => Duration::MINUTE,
            's' => Duration::SECOND,
            _ => return Err(err()),
        };
        let count: i32 = digits.parse().map_err(|_| err())?;
        digits.clear();
        total = total.checked_add(unit * count).ok_or_else(err)?;
    }
    if !digits.is_empty() {
        return Err(err());
    }
    Ok(total)
}

/// Formats a duration the way operators write it: the largest whole units, at most two.
pub fn format_duration(duration: Duration) -> String {
    DurationDisplay(duration).to_string()
}

struct DurationDisplay(Duration);

impl fmt::Display for DurationDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.whole_seconds();
        if secs < 0 {
            f.write_str("-")?;
            secs = -secs;
        }
        if secs == 0 {
            return f.write_str("0s");
        }
        let units = [(86_400, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')];
        let mut written = 0;
        for (size, suffix) in units {
            if secs >= size && written < 2 {
                write!(f, "{}{suffix}", secs / size)?;
                secs %= size;
                written += 1;
            } else if written > 0 {
                // Only adjacent units: "1d3h", never "1d7s".
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("30d", Duration::days(30)),
            ("12h", Duration::hours(12)),
            ("90m", Duration::minutes(90)),
            ("45s", Duration::seconds(45)),
            ("0s", Duration::ZERO),
            ("1d12h", Duration::hours(36)),
            (" 7d ", Duration::days(7)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for text in [
            "",
            "30",
            "d",
            "30 days",
            "1M",
            "-5d",
            "3.5d",
            "30D",
            "99999999999d",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn formats_round_trip() {
        for text in ["30d", "12h", "1d12h", "90m", "45s", "0s"] {
            let parsed = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(parsed)), Ok(parsed));
        }
        assert_eq!(format_duration(Duration::minutes(90)), "1h30m");
    }
}
