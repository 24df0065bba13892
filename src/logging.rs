//! Log lines on standard error, for a person at a terminal or for the systemd journal.
//!
//! At a terminal the lines keep tracing's usual shape (timestamp, coloured level). Under
//! journald the journal adds its own timestamp and stores colour codes as raw bytes, and it
//! learns each line's priority only from an sd-daemon `<N>` prefix (sd-daemon(3)); without
//! one every line is stored as info and `journalctl -p err` finds none of the errors. So
//! there each line is `<N>LEVEL message`, with no colour and no time.
//!
//! "Under journald" is decided per stream, the way systemd.exec(5) says: `JOURNAL_STREAM` is
//! the `DEVICE:INODE` of the stream systemd connected to the journal, and it is inherited by
//! everything the unit starts, so a shell pipeline or redirection inside a unit
//! (`evercert renew | tee`, `ExecStart=sh -c 'evercert renew > file'`) still has it set. Only
//! a stream whose fstat matches gets the prefixes; elsewhere they would be literal text.

use std::fmt;
use std::io::IsTerminal;
use std::os::fd::AsFd;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// One of the process's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Whether `stream` is connected to the journal: `JOURNAL_STREAM` is set and names this
/// stream's device and inode. The one place that reads `JOURNAL_STREAM`.
pub fn to_journal(stream: Stream) -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let stat = match stream {
        Stream::Stdout => rustix::fs::fstat(std::io::stdout().as_fd()),
        Stream::Stderr => rustix::fs::fstat(std::io::stderr().as_fd()),
    };
    // A closed stream (EBADF) is not the journal's.
    let Ok(stat) = stat else {
        return false;
    };
    value
        .to_str()
        .is_some_and(|value| journal_stream_matches(value, stat.st_dev, stat.st_ino))
}

/// Whether a `JOURNAL_STREAM` value (`DEVICE:INODE`, both decimal) names the file with this
/// device and inode number. Anything malformed names nothing.
pub fn journal_stream_matches(value: &str, device: u64, inode: u64) -> bool {
    let Some((value_device, value_inode)) = value.trim().split_once(':') else {
        return false;
    };
    value_device.parse::<u64>() == Ok(device) && value_inode.parse::<u64>() == Ok(inode)
}

/// How log lines on standard error look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// `<N>LEVEL message`: standard error is the journal's stream.
    Journal,
    /// `LEVEL message`, no colour, no time: a pipe or a file (the shape the journal gets, minus
    /// the prefixes, so that a log captured from a pipe reads the same).
    Lines,
    /// tracing's own shape, with colour: a person's terminal.
    Terminal,
}

fn style() -> Style {
    if to_journal(Stream::Stderr) {
        Style::Journal
    } else if std::io::stderr().is_terminal() {
        Style::Terminal
    } else {
        Style::Lines
    }
}

/// The sd-daemon priority for a tracing level (syslog numbers: 3 err, 4 warning, 6 info,
/// 7 debug).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Prefixes every line of `text` with `<priority>`: journald reads the prefix per line, so a
/// continuation line without one would be stored as info.
pub fn prefix_lines(priority: u8, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        out.push_str(&format!("<{priority}>{line}\n"));
    }
    out
}

/// Writes an error message meant for the operator to standard error; under journald each
/// line carries the error priority, so `journalctl -p err` shows it.
pub fn error_message(text: &str) {
    if to_journal(Stream::Stderr) {
        eprint!("{}", prefix_lines(3, text));
    } else {
        eprintln!("{text}");
    }
}

/// Formats an event as `<N>LEVEL span: message fields` for journald (with `prefix`), or as
/// `LEVEL span: message fields` for a pipe or a file.
pub struct LineFormat {
    pub prefix: bool,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let mut line = String::new();
        {
            let mut buffer = Writer::new(&mut line);
            if let Some(scope) = ctx.event_scope() {
                for span in scope.from_root() {
                    write!(buffer, "{}: ", span.name())?;
                }
            }
            ctx.format_fields(buffer.by_ref(), event)?;
        }
        let prefix = if self.prefix {
            format!("<{}>", priority(level))
        } else {
            String::new()
        };
        let mut first = true;
        for text in line.lines() {
            if first {
                writeln!(writer, "{prefix}{level} {text}")?;
                first = false;
            } else {
                writeln!(writer, "{prefix}  {text}")?;
            }
        }
        if first {
            writeln!(writer, "{prefix}{level}")?;
        }
        Ok(())
    }
}

/// Formats an event as `warning: message` for a person at a terminal running a one-shot
/// command: the same voice as the command's own progress lines, no time, no level column.
pub struct PlainFormat;

impl<S, N> FormatEvent<S, N> for PlainFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let word = match *event.metadata().level() {
            Level::ERROR => "error: ",
            Level::WARN => "warning: ",
            _ => "",
        };
        writer.write_str(word)?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Who logs: the agent (`evercert run`), or a one-shot command, with or without `--verbose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Agent,
    OneShot { verbose: bool },
}

/// Sets up the global subscriber: `EVERCERT_LOG` (EnvFilter syntax) filters. The agent logs
/// from info up. A one-shot command prints its own progress lines, so it logs only warnings
/// and errors, in the same plain voice at a terminal (`warning: …`); `--verbose` gives the
/// full log (times, levels, info) for a person debugging.
pub fn init(mode: Mode) {
    let default = match mode {
        Mode::Agent | Mode::OneShot { verbose: true } => "info",
        Mode::OneShot { verbose: false } => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVERCERT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let style = style();
    let _ = if style != Style::Terminal {
        builder
            .with_ansi(false)
            .event_format(LineFormat {
                prefix: style == Style::Journal,
            })
            .try_init()
    } else if mode == (Mode::OneShot { verbose: false }) {
        builder
            .with_ansi(false)
            .event_format(PlainFormat)
            .try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_has_its_syslog_priority() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }

    #[test]
    fn journal_stream_names_one_device_and_inode() {
        // The shape systemd writes: decimal device, colon, decimal inode.
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(journal_stream_matches("64769:4711\n", 64769, 4711));
        assert!(journal_stream_matches(
            &format!("{}:{}", u64::MAX, u64::MAX),
            u64::MAX,
            u64::MAX
        ));
        // Another stream: a pipe or a file the unit's shell set up.
        assert!(!journal_stream_matches("8:12345", 8, 12346));
        assert!(!journal_stream_matches("8:12345", 9, 12345));
        assert!(!journal_stream_matches("12345:8", 8, 12345));
        // Malformed values name nothing.
        for value in [
            "",
            "8",
            "8:",
            ":12345",
            "8:12345:1",
            "0x8:12345",
            "8:-1",
            "a:b",
            "8 :1",
        ] {
            assert!(!journal_stream_matches(value, 8, 12345), "{value:?}");
        }
    }

    #[test]
    fn every_line_of_a_message_is_prefixed() {
        assert_eq!(prefix_lines(3, "a\nb"), "<3>a\n<3>b\n");
    }
}
