//! Log lines on standard error, for a person at a terminal or for the systemd journal.
//!
//! At a terminal the lines keep tracing's usual shape (timestamp, coloured level). Under
//! journald the journal adds its own timestamp and stores colour codes as raw bytes, and it
//! learns each line's priority only from an sd-daemon `<N>` prefix (sd-daemon(3)); without
//! one every line is stored as info and `journalctl -p err` finds none of the errors. So
//! there each line is `<N>LEVEL message`, with no colour and no time.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Whether standard error goes to the journal (or anywhere that is not a person's terminal):
/// systemd sets `JOURNAL_STREAM` for a unit whose output it connects to journald.
pub fn journal_mode() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some() || !std::io::stderr().is_terminal()
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
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        eprint!("{}", prefix_lines(3, text));
    } else {
        eprintln!("{text}");
    }
}

/// Formats an event as `<N>LEVEL span: message fields` for journald.
pub struct JournalFormat;

impl<S, N> FormatEvent<S, N> for JournalFormat
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
        let mut first = true;
        for text in line.lines() {
            if first {
                writeln!(writer, "<{}>{level} {text}", priority(level))?;
                first = false;
            } else {
                writeln!(writer, "<{}>  {text}", priority(level))?;
            }
        }
        if first {
            writeln!(writer, "<{}>{level}", priority(level))?;
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
    let _ = if journal_mode() {
        builder
            .with_ansi(false)
            .event_format(JournalFormat)
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
    fn every_line_of_a_message_is_prefixed() {
        assert_eq!(prefix_lines(3, "a\nb"), "<3>a\n<3>b\n");
    }
}
