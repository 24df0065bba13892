//! Renewal windows (`[renewal] windows = ["Mon-Fri 09:00-17:00 Europe/Berlin"]`): the weekly
//! hours in which a due renewal, and the reload it causes, may run. Like cert-manager's
//! maintenance windows; `decision::decide` applies them, and `critical_before` overrides them.
//!
//! Time zones come from jiff: the system's tzdata first (`/usr/share/zoneinfo`, kept current
//! by the distribution's `tzdata` updates, which matters when a government moves its DST
//! dates), and jiff's bundled copy only where the system has none (a minimal container).
//! A local time that does not exist (in the hour skipped in spring) is moved forward by the
//! length of the gap (02:30 becomes 03:30), as cron and Temporal do; an hour that happens
//! twice (autumn) counts from its first time.
//!
//! Pure: every question takes the moment it is asked about.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use time::OffsetDateTime;

/// One weekly window: on these weekdays, from `start` to `end` local time in `zone`. An
/// `end` at or before `start` (`22:00-06:00`) ends the next morning.
#[derive(Clone)]
pub struct WeeklyWindow {
    /// Monday first.
    days: [bool; 7],
    start: Time,
    /// `None` for `24:00`, the end of the day.
    end: Option<Time>,
    zone: TimeZone,
    /// As the operator wrote it, for messages.
    text: String,
}

impl fmt::Debug for WeeklyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for WeeklyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The configured windows; none means "at any time".
#[derive(Debug, Clone, Default)]
pub struct Windows(Vec<WeeklyWindow>);

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Why a window does not parse, in the operator's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WindowError(String);

impl WeeklyWindow {
    /// Parses `DAYS HH:MM-HH:MM ZONE`, where DAYS is a day (`Mon`), a range (`Mon-Fri`,
    /// `Fri-Mon`), a comma list of those (`Mon,Wed,Fri`) or `daily`, and ZONE an IANA name
    /// (`Europe/Berlin`) or `UTC`.
    pub fn parse(text: &str) -> Result<Self, WindowError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [days, hours, zone] = fields[..] else {
            return Err(WindowError(format!(
                "\"{text}\" is not DAYS HH:MM-HH:MM ZONE (three parts separated by spaces)"
            )));
        };
        let days = parse_days(days)?;
        let (start, end) = hours.split_once('-').ok_or_else(|| {
            WindowError(format!(
                "\"{hours}\" is not a span of hours like 09:00-17:00"
            ))
        })?;
        let Some(start) = parse_time(start)? else {
            return Err(WindowError(
                "a window cannot start at 24:00; write 00:00".into(),
            ));
        };
        let end = parse_time(end)?;
        if end == Some(start) {
            return Err(WindowError(format!(
                "\"{hours}\" starts and ends at the same time; write 00:00-24:00 for a whole day"
            )));
        }
        let zone = TimeZone::get(zone).map_err(|_| {
            WindowError(format!(
                "unknown time zone \"{zone}\"; write an IANA name like Europe/Berlin or UTC (the names in /usr/share/zoneinfo)"
            ))
        })?;
        Ok(Self {
            days,
            start,
            end,
            zone,
            text: fields.join(" "),
        })
    }

    /// The instants this window is open that begin on local `date`: `(opens, closes)`.
    fn span_on(&self, date: Date) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let weekday = usize::try_from(date.weekday().to_monday_zero_offset()).ok()?;
        if !self.days.get(weekday).copied().unwrap_or(false) {
            return None;
        }
        let opens = self.instant(date.to_datetime(self.start))?;
        let closes = match self.end {
            Some(end) if end > self.start => date.to_datetime(end),
            // 24:00, or an overnight window: it closes on the next day.
            Some(end) => date.tomorrow().ok()?.to_datetime(end),
            None => date.tomorrow().ok()?.to_datetime(Time::midnight()),
        };
        let closes = self.instant(closes)?;
        (opens < closes).then_some((opens, closes))
    }

    fn instant(&self, local: DateTime) -> Option<OffsetDateTime> {
        // `compatible`: a skipped local time moves forward by the gap, a repeated one is
        // taken at its first occurrence.
        let timestamp = self.zone.to_ambiguous_timestamp(local).compatible().ok()?;
        OffsetDateTime::from_unix_timestamp(timestamp.as_second()).ok()
    }

    /// The first moment at or after `at` when this window is open, within the next 8 days.
    fn next_open(&self, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let timestamp = Timestamp::from_second(at.unix_timestamp()).ok()?;
        let today = timestamp.to_zoned_datetime(self.zone.clone()).date();
        // From yesterday (an overnight window may still be open) through a week ahead.
        let mut date = today.yesterday().ok()?;
        for _ in 0..9 {
            if let Some((opens, closes)) = self.span_on(date)
                && closes > at
            {
                return Some(opens.max(at));
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

impl Windows {
    pub fn new(windows: Vec<WeeklyWindow>) -> Self {
        Self(windows)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &WeeklyWindow> {
        self.0.iter()
    }

    /// The first moment at or after `at` when a renewal may run: `at` itself inside a window
    /// or when none is configured.
    pub fn next_open(&self, at: OffsetDateTime) -> OffsetDateTime {
        if self.0.is_empty() {
            return at;
        }
        self.0
            .iter()
            .filter_map(|window| window.next_open(at))
            .min()
            // Every window opens at least once a week; a date past the year 9999 is the only
            // way to get here, and then there is nothing to wait for.
            .unwrap_or(at)
    }

    /// Whether a renewal may run at `at`.
    pub fn is_open(&self, at: OffsetDateTime) -> bool {
        self.next_open(at) <= at
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], WindowError> {
    let lower = text.to_ascii_lowercase();
    if matches!(lower.as_str(), "daily" | "*") {
        return Ok([true; 7]);
    }
    let day = |name: &str| -> Result<usize, WindowError> {
        let short: String = name.chars().take(3).collect();
        DAY_NAMES
            .iter()
            .position(|day| *day == short && day_name_ok(name))
            .ok_or_else(|| {
                WindowError(format!(
                    "\"{name}\" is not a weekday; write Mon, Tue, Wed, Thu, Fri, Sat or Sun (ranges like Mon-Fri, lists like Sat,Sun, or daily)"
                ))
            })
    };
    let mut days = [false; 7];
    for part in lower.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                let mut index = first;
                loop {
                    days[index] = true;
                    if index == last {
                        break;
                    }
                    index = (index + 1) % 7;
                }
            }
            None => days[day(part)?] = true,
        }
    }
    Ok(days)
}

/// `mon`, `monday` and the like; not `monk`.
fn day_name_ok(name: &str) -> bool {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    name.len() == 3 || FULL.contains(&name)
}

/// `HH:MM`; `None` for `24:00`.
fn parse_time(text: &str) -> Result<Option<Time>, WindowError> {
    let bad = || {
        WindowError(format!(
            "\"{text}\" is not a time like 09:00 (00:00 to 24:00)"
        ))
    };
    let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
    if hour.is_empty() || hour.len() > 2 || minute.len() != 2 {
        return Err(bad());
    }
    let hour: i8 = hour.parse().map_err(|_| bad())?;
    let minute: i8 = minute.parse().map_err(|_| bad())?;
    if (hour, minute) == (24, 0) {
        return Ok(None);
    }
    Time::new(hour, minute, 0, 0).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn utc(text: &str) -> OffsetDateTime {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        time::PrimitiveDateTime::parse(text, format)
            .unwrap()
            .assume_utc()
    }

    fn windows(specs: &[&str]) -> Windows {
        Windows::new(
            specs
                .iter()
                .map(|spec| WeeklyWindow::parse(spec).unwrap())
                .collect(),
        )
    }

    #[test]
    fn next_open_table() {
        // (windows, [(at, next open)]) in UTC; 2026-11-22 is a Sunday.
        type Moments = &'static [(&'static str, &'static str)];
        let cases: Vec<(&[&str], Moments)> = vec![
            (
                &["Mon-Fri 09:00-17:00 Europe/Berlin"],
                &[
                    // Berlin is UTC+1 in winter.
                    ("2026-11-22 12:00", "2026-11-23 08:00"),
                    ("2026-11-23 10:30", "2026-11-23 10:30"),
                    // 16:00 UTC is 17:00 in Berlin: closed, open again Tuesday.
                    ("2026-11-23 16:00", "2026-11-24 08:00"),
                    // Friday evening: next Monday.
                    ("2026-11-27 18:00", "2026-11-30 08:00"),
                    // Summer time: UTC+2.
                    ("2026-07-04 12:00", "2026-07-06 07:00"),
                ],
            ),
            (
                &["Sat 22:00-06:00 UTC"],
                &[
                    // Overnight, still open on the next morning.
                    ("2026-11-22 05:00", "2026-11-22 05:00"),
                    ("2026-11-22 06:00", "2026-11-28 22:00"),
                ],
            ),
            // Wrapping day range and 24:00.
            (
                &["Fri-Mon 00:00-24:00 America/New_York"],
                &[("2026-11-25 12:00", "2026-11-27 05:00")],
            ),
            // Two windows: the earlier wins.
            (
                &["Sat,Sun 10:00-12:00 UTC", "daily 03:00-04:00 Asia/Tokyo"],
                &[("2026-11-22 12:30", "2026-11-22 18:00")],
            ),
            (
                &["Sun 02:30-04:00 Europe/Berlin"],
                &[
                    // The spring gap: 02:30 does not exist on 2026-03-29 in Berlin; the
                    // window opens at 03:30 local (01:30 UTC).
                    ("2026-03-28 12:00", "2026-03-29 01:30"),
                    // The autumn fold: 02:30 happens twice on 2026-10-25; the first is
                    // 00:30 UTC.
                    ("2026-10-24 12:00", "2026-10-25 00:30"),
                ],
            ),
        ];
        for (specs, moments) in cases {
            let windows = windows(specs);
            for &(at, expected) in moments {
                let (at, expected) = (utc(at), utc(expected));
                assert_eq!(windows.next_open(at), expected, "{specs:?} at {at}");
                assert_eq!(windows.is_open(at), expected == at, "{specs:?} at {at}");
            }
        }
        assert_eq!(
            Windows::default().next_open(datetime!(2026-11-22 12:00 UTC)),
            datetime!(2026-11-22 12:00 UTC)
        );
    }

    #[test]
    fn bad_windows_say_what_to_write() {
        for (spec, words) in [
            ("Mon-Fri 09:00-17:00", "three parts"),
            ("Mon-Fro 09:00-17:00 UTC", "\"fro\" is not a weekday"),
            ("Monk 09:00-17:00 UTC", "is not a weekday"),
            ("Mon 9-17 UTC", "is not a time"),
            ("Mon 09:00-25:00 UTC", "\"25:00\" is not a time"),
            ("Mon 09:00 UTC", "span of hours"),
            ("Mon 09:00-09:00 UTC", "same time"),
            (
                "Mon 09:00-17:00 Europe/Berlim",
                "unknown time zone \"Europe/Berlim\"",
            ),
            ("Mon 24:00-02:00 UTC", "cannot start at 24:00"),
        ] {
            let err = WeeklyWindow::parse(spec).unwrap_err().to_string();
            assert!(err.contains(words), "{spec}: {err}");
        }
        // Through the configuration: file:line and what to write.
        let text =
            "[acme]\ncontact = []\n[renewal]\nwindows = [\"Mon-Fri 09:00-17:00 Mars/Olympus\"]\n";
        let errors =
            crate::config::parse(text, std::path::Path::new("/etc/evercert/evercert.toml"))
                .unwrap_err()
                .to_string();
        assert!(errors.contains("evercert.toml:4:"), "{errors}");
        assert!(
            errors.contains("unknown time zone \"Mars/Olympus\""),
            "{errors}"
        );
        let parsed = WeeklyWindow::parse("monday-FRIDAY  09:00-17:00 Europe/Berlin").unwrap();
        assert_eq!(parsed.days, [true, true, true, true, true, false, false]);
        assert_eq!(
            parsed.to_string(),
            "monday-FRIDAY 09:00-17:00 Europe/Berlin"
        );
    }
}
