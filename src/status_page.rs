//! The status page: one HTML document, served by the agent at `/status` on the metrics
//! listener and written by `evercert status --html FILE`, with an SVG timeline per
//! certificate — validity, warning and critical bands, the CA's ARI window, `renew_at` and
//! now — and the state and last error beside it.
//!
//! A person at 3 a.m. should see at a glance where each certificate stands, on any browser,
//! offline, behind any proxy: so the page is self-contained (inline CSS, inline SVG, no
//! JavaScript, no fonts or images to fetch), and its Content-Security-Policy forbids
//! anything else, so that a mistake here shows as a blocked load, not a silent dependency.
//! Rendering is a pure function of the entries and `now`; everything from outside is
//! HTML-escaped, and the page holds nothing that `status` does not print (no secrets).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use time::{Duration, OffsetDateTime};

use crate::policy::{CertState, Thresholds};
use crate::report::{Entry, Kind};
use crate::state::{FileState, StateStore as _};
use crate::units::{format_duration, rfc3339};

/// The policy the page declares (also sent as a header by the agent): inline styles only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// What the page shows.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub host: &'a str,
    /// Who made it: the agent, or `evercert status --html`.
    pub source: &'a str,
    pub entries: &'a [Entry],
    /// The last renewal error of managed certificates, by name.
    pub last_errors: &'a BTreeMap<String, String>,
    pub thresholds: Thresholds,
    pub now: OffsetDateTime,
}

/// The last renewal error of each managed certificate in `entries`, with its time, from the
/// history evercert keeps (cleared by the next success).
pub fn last_errors(state: &FileState, entries: &[Entry]) -> BTreeMap<String, String> {
    entries
        .iter()
        .filter(|entry| entry.kind == Kind::Managed)
        .filter_map(|entry| {
            let history = state.load(&entry.name);
            let error = history.last_error?;
            let text = match history.last_failure {
                Some(at) => format!("{} (at {})", error, rfc3339(at)),
                None => error,
            };
            Some((entry.name.clone(), text))
        })
        .collect()
}

/// Renders the page and writes it to `path` atomically (a temporary file beside it, then a
/// rename), so that a web server serving the file never sends half a page.
pub fn write_file(path: &std::path::Path, html: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"))?;
    let temporary = path.with_file_name(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        // Readable by all, like any report a web server may serve: it holds nothing that
        // `status` does not print.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&temporary)?;
        file.write_all(html.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// `&`, `<`, `>`, `"` and `'` escaped: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fff}\
h1{font-size:1.4em;margin:0 0 .2em}\
header p{margin:.2em 0;color:#444}\
section{border-top:1px solid #ddd;padding:.8em 0}\
h2{font-size:1.1em;margin:0 0 .4em}\
h2 small{color:#666;font-weight:normal}\
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.1em .8em;margin:0;font-size:.9em;min-width:22em;flex:1}\
dt{color:#666}dd{margin:0;overflow-wrap:anywhere}\
dd.error{color:#a40000}\
.badge{display:inline-block;padding:0 .5em;border-radius:.3em;font-size:.85em;color:#fff;background:#2e7d32}\
.badge.due{background:#1f5fbf}.badge.warning{background:#b26a00}.badge.critical,.badge.error{background:#c62828}\
.badge.expired{background:#000}\
.legend span{display:inline-block;margin-right:1em;font-size:.85em}\
.legend i{display:inline-block;width:1.2em;height:.8em;margin-right:.3em;vertical-align:middle;border:1px solid #999}\
svg.timeline{flex:0 0 auto}\
svg text{font-size:11px;fill:#333}\
";

/// The whole page.
pub fn render(page: &Page<'_>) -> String {
    let mut out = String::with_capacity(4096 + page.entries.len() * 3072);
    let attention = page
        .entries
        .iter()
        .filter(|entry| !matches!(entry.state, CertState::Ok | CertState::Due))
        .count();
    let summary = format!(
        "{} certificate{}, {}",
        page.entries.len(),
        if page.entries.len() == 1 { "" } else { "s" },
        match attention {
            0 => "none needs attention".to_owned(),
            n => format!("{n} need{} attention", if n == 1 { "s" } else { "" }),
        }
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>evercert on {host}: {summary}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header>\n<h1>evercert on {host}</h1>\n<p id=\"summary\">{summary}</p>\n\
         <p>As of {now}, from {source}. Read-only; `evercert status` prints the same.</p>\n\
         <p class=\"legend\"><span><i style=\"background:#cfe8cf\"></i>valid</span>\
         <span><i style=\"background:#ffd666\"></i>warning window</span>\
         <span><i style=\"background:#f28b82\"></i>critical window</span>\
         <span><i style=\"border:2px dashed #1f5fbf\"></i>CA's renewal window (ARI)</span>\
         <span><i style=\"background:#1f5fbf\"></i>renews</span>\
         <span><i style=\"background:#000\"></i>now</span></p>\n</header>\n<main>\n",
        csp = CONTENT_SECURITY_POLICY,
        host = escape(page.host),
        now = rfc3339(page.now),
        source = escape(page.source),
    );
    for (index, entry) in page.entries.iter().enumerate() {
        section(&mut out, page, index, entry);
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn section(out: &mut String, page: &Page<'_>, index: usize, entry: &Entry) {
    let state = entry.state.as_str();
    let kind = match entry.kind {
        Kind::Managed => "managed",
        Kind::Monitored => "monitored",
    };
    let _ = write!(
        out,
        "<section class=\"certificate\" id=\"certificate-{index}\" data-name=\"{name}\" data-state=\"{state}\">\n\
         <h2><span class=\"badge {state}\">{state}</span> {name} <small>{kind}</small></h2>\n<div class=\"row\">\n",
        name = escape(&entry.name),
    );
    timeline(out, page, entry);
    out.push_str("<dl>\n");
    let mut item = |term: &str, value: &str, class: &str| {
        let class = if class.is_empty() {
            String::new()
        } else {
            format!(" class=\"{class}\"")
        };
        let _ = writeln!(out, "<dt>{term}</dt><dd{class}>{}</dd>", escape(value));
    };
    let target_term = if entry.endpoint.is_some() {
        "endpoint"
    } else {
        "file"
    };
    item(target_term, entry.target(), "");
    if !entry.domains.is_empty() {
        item("names", &entry.domains.join(", "), "");
    }
    if let Some(issuer) = &entry.issuer {
        item("issuer", issuer, "");
    }
    if let Some(not_after) = entry.not_after {
        item("expires", &relative(not_after, page.now), "");
    }
    if let Some(renew_at) = entry.renew_at.filter(|_| entry.kind == Kind::Managed) {
        let why = entry
            .renew_reason
            .map(|reason| format!(" ({})", reason.describe()))
            .unwrap_or_default();
        item(
            "renews",
            &format!("{}{why}", relative(renew_at, page.now)),
            "",
        );
    }
    if let Some(window) = entry.ari_window {
        item(
            "ARI window",
            &format!("{} to {}", rfc3339(window.start), rfc3339(window.end)),
            "",
        );
    }
    if let Some(pending) = &entry.pending {
        item(
            "pending",
            &format!(
                "serial {} issued, not deployed (version {})",
                pending.serial, pending.version
            ),
            "",
        );
    }
    if let Some(reason) = &entry.reason {
        item("why due", reason, "");
    }
    if let Some(error) = &entry.error {
        item("error", error, "error");
    }
    if let Some(error) = page.last_errors.get(&entry.name)
        && entry.kind == Kind::Managed
    {
        item("last error", error, "error");
    }
    out.push_str("</dl>\n</div>\n</section>\n");
}

/// `2027-01-20T08:55:00Z (in 59d 3h)` or `(2d ago)`.
fn relative(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let delta = at - now;
    if delta >= Duration::ZERO {
        format!("{} (in {})", rfc3339(at), format_duration(round(delta)))
    } else {
        format!("{} ({} ago)", rfc3339(at), format_duration(round(-delta)))
    }
}

/// Whole minutes: seconds are noise on a page about days.
fn round(duration: Duration) -> Duration {
    Duration::minutes(duration.whole_minutes())
}

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 80.0;
const MARGIN: f64 = 8.0;
/// The bar's vertical position.
const BAR_Y: f64 = 22.0;
const BAR_H: f64 = 18.0;

/// Maps instants to x coordinates over the span the timeline shows.
struct Scale {
    from: OffsetDateTime,
    seconds: f64,
}

impl Scale {
    fn x(&self, at: OffsetDateTime) -> f64 {
        let fraction = (at - self.from).as_seconds_f64() / self.seconds;
        MARGIN + fraction.clamp(0.0, 1.0) * (WIDTH - 2.0 * MARGIN)
    }
}

fn timeline(out: &mut String, page: &Page<'_>, entry: &Entry) {
    let label = format!("timeline of {}", entry.name);
    let _ = writeln!(
        out,
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        escape(&label)
    );
    let (Some(not_before), Some(not_after)) = (entry.not_before, entry.not_after) else {
        let _ = write!(
            out,
            "<rect class=\"nothing\" x=\"{MARGIN}\" y=\"{BAR_Y}\" width=\"{}\" height=\"{BAR_H}\" fill=\"#eee\" stroke=\"#c62828\" stroke-dasharray=\"4 3\"/>\n\
             <text x=\"{}\" y=\"{}\">no certificate to draw: see the error beside</text>\n</svg>\n",
            WIDTH - 2.0 * MARGIN,
            MARGIN + 6.0,
            BAR_Y + 13.0,
        );
        return;
    };
    let now = page.now;
    let renew_at = entry.renew_at.filter(|_| entry.kind == Kind::Managed);
    let mut from = not_before.min(now);
    let mut to = not_after.max(now);
    if let Some(window) = entry.ari_window {
        from = from.min(window.start);
        to = to.max(window.end);
    }
    if let Some(at) = renew_at {
        from = from.min(at);
        to = to.max(at);
    }
    // A little room at both ends, so that a marker at the edge stays visible.
    let span: Duration = to - from;
    let pad = span / 40_i32;
    let scale = Scale {
        from: from - pad,
        seconds: (span + pad * 2_i32).as_seconds_f64().max(1.0),
    };
    let rect = |out: &mut String, class: &str, start, end, style: &str, title: String| {
        let (x0, x1) = (scale.x(start), scale.x(end));
        let _ = writeln!(
            out,
            "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"{BAR_Y}\" width=\"{:.1}\" height=\"{BAR_H}\" {style}><title>{}</title></rect>",
            (x1 - x0).max(1.0),
            escape(&title)
        );
    };
    rect(
        out,
        "validity",
        not_before,
        not_after,
        "fill=\"#cfe8cf\"",
        format!("valid {} to {}", rfc3339(not_before), rfc3339(not_after)),
    );
    let (warn, critical) = page.thresholds.effective(not_after - not_before);
    let warn_from = (not_after - warn).max(not_before);
    let critical_from = (not_after - critical).max(not_before);
    rect(
        out,
        "warning",
        warn_from,
        critical_from,
        "fill=\"#ffd666\"",
        format!(
            "warning window: from {} ({} before expiry)",
            rfc3339(warn_from),
            format_duration(warn)
        ),
    );
    rect(
        out,
        "critical",
        critical_from,
        not_after,
        "fill=\"#f28b82\"",
        format!(
            "critical window: from {} ({} before expiry)",
            rfc3339(critical_from),
            format_duration(critical)
        ),
    );
    if let Some(window) = entry.ari_window {
        let (x0, x1) = (scale.x(window.start), scale.x(window.end));
        let _ = writeln!(
            out,
            "<rect class=\"ari\" x=\"{x0:.1}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"2\" stroke-dasharray=\"5 3\"><title>{}</title></rect>",
            BAR_Y - 4.0,
            (x1 - x0).max(2.0),
            BAR_H + 8.0,
            escape(&format!(
                "the CA's renewal window (ARI): {} to {}",
                rfc3339(window.start),
                rfc3339(window.end)
            ))
        );
    }
    // "now" is labelled above the bar, "renews" below it, so that the two never overlap.
    let marker = |out: &mut String,
                  class: &str,
                  at,
                  color: &str,
                  text: &str,
                  label_y: f64,
                  title: String| {
        let x = scale.x(at);
        let anchor = if x < WIDTH * 0.15 {
            "start"
        } else if x > WIDTH * 0.85 {
            "end"
        } else {
            "middle"
        };
        let _ = writeln!(
            out,
            "<g class=\"{class}\"><line x1=\"{x:.1}\" y1=\"{}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"{color}\" stroke-width=\"2\"/>\
             <text x=\"{x:.1}\" y=\"{label_y}\" text-anchor=\"{anchor}\">{text}</text><title>{}</title></g>",
            BAR_Y - 6.0,
            BAR_Y + BAR_H + 6.0,
            escape(&title)
        );
    };
    if let Some(at) = renew_at {
        marker(
            out,
            "renew-at",
            at,
            "#1f5fbf",
            "renews",
            BAR_Y + BAR_H + 17.0,
            format!("renews {}", relative(at, now)),
        );
    }
    marker(
        out,
        "now",
        now,
        "#000",
        "now",
        12.0,
        format!("now: {}", rfc3339(now)),
    );
    let date = |at: OffsetDateTime| at.date().to_string();
    let _ = write!(
        out,
        "<text class=\"not-before\" x=\"{:.1}\" y=\"{}\" text-anchor=\"start\">{}<title>not before {}</title></text>\n\
         <text class=\"not-after\" x=\"{:.1}\" y=\"{}\" text-anchor=\"end\">{}<title>not after {}</title></text>\n</svg>\n",
        scale.x(not_before),
        HEIGHT - 6.0,
        date(not_before),
        rfc3339(not_before),
        scale.x(not_after),
        HEIGHT - 6.0,
        date(not_after),
        rfc3339(not_after),
    );
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn entry(name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Entry {
        let mut entry = crate::report::error_entry(name.to_owned(), String::new());
        entry.path = Some(format!("/tls/{name}.pem"));
        entry.not_before = Some(not_before);
        entry.not_after = Some(not_after);
        entry.error = None;
        entry.state = CertState::Ok;
        entry
    }

    const NOW: OffsetDateTime = datetime!(2026-11-30 12:00 UTC);

    fn page(entries: &[Entry], last_errors: &BTreeMap<String, String>) -> String {
        render(&Page {
            host: "web1",
            source: "a test",
            entries,
            last_errors,
            thresholds: Thresholds::default(),
            now: NOW,
        })
    }

    #[test]
    fn everything_from_outside_is_escaped() {
        let mut hostile = entry(
            "<script>alert(1)</script>",
            NOW - Duration::days(10),
            NOW + Duration::days(80),
        );
        hostile.path = Some("/tls/\"><img src=x>.pem".into());
        hostile.error = Some("bad & <b>worse</b>".into());
        let html = page(&[hostile], &BTreeMap::new());
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("bad &amp; &lt;b&gt;worse&lt;/b&gt;"));
    }

    #[test]
    fn the_timeline_places_bands_and_markers_in_order() {
        // 90 days, 20 left: the warning band (30 days, scaled to at most a third) began
        // 10 days ago, the critical band (7 days) starts in 13 days.
        let shop = entry("shop", NOW - Duration::days(70), NOW + Duration::days(20));
        let html = page(&[shop], &BTreeMap::new());
        let x_of = |class: &str| -> f64 {
            let at = html
                .find(&format!("class=\"{class}\""))
                .unwrap_or_else(|| panic!("no {class} in {html}"));
            let rest = &html[at..];
            let key = if class == "now" { "x1=\"" } else { "x=\"" };
            let start = rest.find(key).unwrap() + key.len();
            rest[start..start + rest[start..].find('"').unwrap()]
                .parse()
                .unwrap()
        };
        let (validity, warning, now, critical) = (
            x_of("validity"),
            x_of("warning"),
            x_of("now"),
            x_of("critical"),
        );
        assert!(
            validity < warning && warning < now && now < critical,
            "{html}"
        );
        assert!(
            html.contains(
                "<title>warning window: from 2026-11-20T12:00:00Z (30d before expiry)</title>"
            ),
            "{html}"
        );
    }

    #[test]
    fn an_unreadable_certificate_still_gets_its_timeline_and_error() {
        let broken = crate::report::error_entry("broken".into(), "the file is empty".into());
        let mut errors = BTreeMap::new();
        errors.insert("broken".to_owned(), "never shown for monitored".to_owned());
        let html = page(&[broken], &errors);
        assert_eq!(html.matches("<svg class=\"timeline\"").count(), 1);
        assert!(html.contains("no certificate to draw"));
        assert!(html.contains("<dd class=\"error\">the file is empty</dd>"));
        assert!(!html.contains("never shown"));
        assert!(html.contains("1 certificate, 1 needs attention"));
    }
}
