//! What `status` and `check` print: one entry per certificate, as a table for people, as
//! one line per target for monitoring systems, or as the JSON array of the product brief.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rustls::RootCertStore;
use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Config, Endpoint, MonitorTarget};
use crate::decision::{Reason, Window};
use crate::inventory::{self, CertFile, CertFileError, ManagedStatus};
use crate::policy::{self, CertState, Thresholds};
use crate::probe::{self, ProbeError, Served};
use crate::state::Pending;

/// How long `check` and `status` wait for one endpoint's handshake.
pub const PROBE_TIMEOUT: StdDuration = StdDuration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Issued and renewed by evercert.
    Managed,
    /// Only watched for expiry.
    Monitored,
}

/// One certificate's line in `status` / `check`; its JSON is the documented contract.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub domains: Vec<String>,
    pub serial: Option<String>,
    pub issuer: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub days_left: Option<f64>,
    /// For managed certificates: the moment chosen by `decision::decide`, and why.
    #[serde(with = "time::serde::rfc3339::option")]
    pub renew_at: Option<OffsetDateTime>,
    pub renew_reason: Option<Reason>,
    /// The CA's renewal window (ARI) for the certificate on disk, when known.
    pub ari_window: Option<Window>,
    /// A version issued but not yet deployed (its reload or verification failed).
    pub pending: Option<Pending>,
    pub state: CertState,
    /// The message when `state` is `error`.
    pub error: Option<String>,
    /// Why a managed certificate is due before its time (key mismatch, names not covered…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For endpoints: whether the served chain is trusted by this host for the name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trusted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_error: Option<String>,
}

impl Entry {
    fn blank(name: String, kind: Kind) -> Self {
        Self {
            name,
            kind,
            path: None,
            endpoint: None,
            domains: Vec::new(),
            serial: None,
            issuer: None,
            not_before: None,
            not_after: None,
            days_left: None,
            renew_at: None,
            renew_reason: None,
            ari_window: None,
            pending: None,
            state: CertState::Error,
            error: None,
            reason: None,
            trusted: None,
            trust_error: None,
        }
    }

    fn fill(&mut self, file: &CertFile, now: OffsetDateTime) {
        let leaf = &file.leaf;
        self.serial = Some(leaf.serial.clone());
        self.issuer = Some(leaf.issuer.clone());
        self.not_before = Some(leaf.not_before);
        self.not_after = Some(leaf.not_after);
        self.days_left = Some(policy::days_left(leaf.not_after, now));
    }

    /// The target as the operator named it: the path or HOST:PORT.
    pub fn target(&self) -> &str {
        self.endpoint
            .as_deref()
            .or(self.path.as_deref())
            .unwrap_or(&self.name)
    }
}

/// The entry of a managed certificate.
pub fn managed_entry(status: &ManagedStatus, now: OffsetDateTime) -> Entry {
    let mut entry = Entry::blank(status.name.clone(), Kind::Managed);
    entry.path = Some(status.cert_path.display().to_string());
    entry.domains = status.domains.clone();
    if let Some(file) = &status.file {
        entry.fill(file, now);
    }
    entry.renew_at = Some(status.decision.renew_at);
    entry.renew_reason = Some(status.decision.reason);
    entry.ari_window = status.ari_window;
    entry.pending = status.pending.clone();
    entry.state = status.assessment.state;
    if entry.state == CertState::Error {
        entry.error = status.problem.clone();
    } else {
        entry.reason = status.problem.clone();
    }
    entry
}

/// The entry of a certificate file watched for expiry only.
pub fn file_entry(
    name: String,
    path: &Path,
    result: Result<CertFile, CertFileError>,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Entry {
    let mut entry = Entry::blank(name, Kind::Monitored);
    entry.path = Some(path.display().to_string());
    match result {
        Ok(file) => {
            entry.fill(&file, now);
            entry.domains = file.leaf.names();
            entry.state =
                policy::expiry_state(file.leaf.not_before, file.leaf.not_after, thresholds, now);
        }
        Err(err) => entry.error = Some(err.to_string()),
    }
    entry
}

/// An entry that stands for something that could not be looked at (a web server's
/// configuration `[discover]` names that does not parse).
pub fn error_entry(name: String, message: String) -> Entry {
    let mut entry = Entry::blank(name, Kind::Monitored);
    entry.error = Some(message);
    entry
}

/// The entry of a live endpoint.
pub fn endpoint_entry(
    name: String,
    endpoint: &Endpoint,
    result: Result<Served, ProbeError>,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Entry {
    let mut entry = Entry::blank(name, Kind::Monitored);
    entry.endpoint = Some(endpoint.to_string());
    match result {
        Ok(served) => {
            entry.fill(&served.file, now);
            entry.domains = served.file.leaf.names();
            entry.state = policy::expiry_state(
                served.file.leaf.not_before,
                served.file.leaf.not_after,
                thresholds,
                now,
            );
            entry.trusted = Some(served.trusted.is_ok());
            entry.trust_error = served.trusted.err();
        }
        Err(err) => entry.error = Some(err.to_string()),
    }
    entry
}

/// Probes an endpoint with its own name as SNI.
pub async fn probe_endpoint(
    endpoint: &Endpoint,
    roots: Arc<RootCertStore>,
) -> Result<Served, ProbeError> {
    probe::probe(endpoint, &endpoint.host, roots, PROBE_TIMEOUT).await
}

/// Entries for everything in the configuration: managed certificates, then monitors.
pub async fn gather(config: &Config, thresholds: Thresholds, now: OffsetDateTime) -> Vec<Entry> {
    let mut entries: Vec<Entry> = inventory::inspect_all(config, thresholds, now)
        .iter()
        .map(|status| managed_entry(status, now))
        .collect();
    entries.extend(gather_monitors(config, thresholds, now).await);
    let discovered = crate::discover::monitor_entries(config, &entries, thresholds, now);
    entries.extend(discovered);
    entries
}

/// Entries for the `[[monitor]]` certificates, files read and endpoints probed at once.
pub async fn gather_monitors(
    config: &Config,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Vec<Entry> {
    let mut entries = Vec::with_capacity(config.monitors.len());
    let roots = Arc::new(probe::system_roots(&[]));
    let mut probes = tokio::task::JoinSet::new();
    for monitor in &config.monitors {
        match &monitor.target {
            MonitorTarget::File(path) => entries.push(file_entry(
                monitor.name.clone(),
                path,
                inventory::read_cert_file(path),
                thresholds,
                now,
            )),
            MonitorTarget::Endpoint(endpoint) => {
                let (endpoint, roots, name) =
                    (endpoint.clone(), roots.clone(), monitor.name.clone());
                // Placeholder keeps the configured order; filled when the probe returns.
                entries.push(Entry::blank(name.clone(), Kind::Monitored));
                let slot = entries.len() - 1;
                probes.spawn(async move {
                    let result = probe_endpoint(&endpoint, roots).await;
                    (
                        slot,
                        endpoint_entry(name, &endpoint, result, thresholds, now),
                    )
                });
            }
        }
    }
    while let Some(done) = probes.join_next().await {
        if let Ok((slot, entry)) = done {
            entries[slot] = entry;
        }
    }
    entries
}

fn date(at: Option<OffsetDateTime>) -> String {
    at.map_or_else(
        || "-".to_owned(),
        |at| format!("{} {:02}:{:02}", at.date(), at.hour(), at.minute()),
    )
}

/// Rows under a header, in columns as wide as their widest cell (the last is not padded).
pub fn columns<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header.map(str::to_owned));
    for row in rows {
        line(row);
    }
    out
}

/// The human table of `status`.
pub fn render_table(entries: &[Entry]) -> String {
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|entry| {
            let domains = match entry.domains.len() {
                0 => "-".to_owned(),
                1 => entry.domains[0].clone(),
                n => format!("{} (+{})", entry.domains[0], n - 1),
            };
            [
                entry.name.clone(),
                domains,
                date(entry.not_after),
                entry
                    .days_left
                    .map_or_else(|| "-".to_owned(), |days| format!("{:.0}", days.floor())),
                match entry.kind {
                    Kind::Managed => date(entry.renew_at),
                    Kind::Monitored => "(monitored)".to_owned(),
                },
                entry.state.to_string(),
            ]
        })
        .collect();
    let mut out = columns(
        &[
            "NAME",
            "DOMAINS",
            "EXPIRES (UTC)",
            "DAYS",
            "RENEWS AT",
            "STATE",
        ],
        &rows,
    );
    for entry in entries {
        if let Some(problem) = entry.error.as_ref().or(entry.reason.as_ref()) {
            let _ = writeln!(out, "  {}: {problem}", entry.name);
        }
        if let Some(trust) = &entry.trust_error {
            let _ = writeln!(out, "  {}: not trusted by this host: {trust}", entry.name);
        }
        if let (Some(reason), Some(at)) = (entry.renew_reason, entry.renew_at)
            && !matches!(reason, Reason::Lifetime | Reason::Unreadable)
        {
            let _ = writeln!(
                out,
                "  {}: renews at {}: {}",
                entry.name,
                crate::units::rfc3339(at),
                reason.describe()
            );
        }
        if let Some(window) = entry.ari_window {
            let _ = writeln!(
                out,
                "  {}: the CA's renewal window (ARI): {} to {}",
                entry.name,
                crate::units::rfc3339(window.start),
                crate::units::rfc3339(window.end)
            );
        }
        if let Some(pending) = &entry.pending {
            let _ = writeln!(
                out,
                "  {}: pending: version {} (serial {}, expires {}) was issued but not deployed; the next renewal deploys it",
                entry.name,
                pending.version,
                pending.serial,
                crate::units::rfc3339(pending.not_after)
            );
        }
    }
    if entries.is_empty() {
        out.push_str("(no certificates configured)\n");
    }
    out
}

/// One monitoring-plugin line: `CRITICAL api.example.com:443: expired 2 days ago (…)`.
pub fn render_check_line(entry: &Entry, now: OffsetDateTime) -> String {
    let label = check_label(entry.state.check_exit_code());
    let detail = match (&entry.error, entry.not_after) {
        // The message names its file for other places; the line already starts with it.
        (Some(error), _) => error
            .strip_prefix(&format!("{}: ", entry.target()))
            .unwrap_or(error)
            .to_owned(),
        (None, Some(not_after)) => {
            let stamp = crate::units::rfc3339(not_after);
            let left = not_after - now;
            if left.is_negative() {
                format!(
                    "expired {stamp} ({} ago)",
                    crate::units::format_duration(-left)
                )
            } else {
                format!(
                    "expires {stamp} (in {})",
                    crate::units::format_duration(left)
                )
            }
        }
        (None, None) => entry
            .reason
            .clone()
            .unwrap_or_else(|| "no certificate".into()),
    };
    // The label already says ok/warning/critical and the detail says expired: only `due`
    // adds something (healthy for a monitor, but the agent should be renewing it).
    let mut line = if entry.state == CertState::Due {
        format!("{label} {}: due for renewal, {detail}", entry.target())
    } else {
        format!("{label} {}: {detail}", entry.target())
    };
    if entry.state != CertState::Error && entry.kind == Kind::Managed && entry.reason.is_some() {
        let _ = write!(line, "; {}", entry.reason.as_deref().unwrap_or_default());
    }
    if let Some(trust) = &entry.trust_error {
        let _ = write!(line, " [not trusted: {trust}]");
    }
    line
}

fn check_label(code: u8) -> &'static str {
    match code {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        _ => "UNKNOWN",
    }
}

/// `check`'s whole output in the monitoring-plugin shape (Nagios plugin guidelines, also
/// read by Icinga, Checkmk, Zabbix' Nagios items): a first line `STATUS - summary | perfdata`
/// with the days left for every target, so the days left can be graphed, and with several
/// targets one line per target below it.
pub fn render_check(entries: &[Entry], thresholds: Thresholds, now: OffsetDateTime) -> String {
    let status = check_label(check_exit_code(entries));
    let perfdata: Vec<String> = entries
        .iter()
        .map(|entry| perfdata(entry, thresholds))
        .collect();
    let mut out = match entries {
        [entry] => {
            let line = render_check_line(entry, now);
            let detail = line.split_once(' ').map_or(line.as_str(), |(_, rest)| rest);
            format!("{status} - {detail}")
        }
        _ => {
            let mut counts = Vec::new();
            for code in [2, 1, 0] {
                let count = entries
                    .iter()
                    .filter(|entry| entry.state.check_exit_code() == code)
                    .count();
                if count > 0 {
                    counts.push(format!("{count} {}", check_label(code).to_lowercase()));
                }
            }
            format!(
                "{status} - {} targets: {}",
                entries.len(),
                counts.join(", ")
            )
        }
    };
    let _ = writeln!(out, " | {}", perfdata.join(" "));
    if entries.len() > 1 {
        for entry in entries {
            let _ = writeln!(out, "{}", render_check_line(entry, now));
        }
    }
    out
}

/// `'name'=DAYSd;WARN:;CRIT:` — days left, with the thresholds in force for this
/// certificate's lifetime as plugin ranges (`30:` alerts below 30); `U` when there is no
/// certificate to count days on.
fn perfdata(entry: &Entry, thresholds: Thresholds) -> String {
    let label = entry.name.replace(['\'', '='], "_");
    let (Some(days), Some(not_before), Some(not_after)) =
        (entry.days_left, entry.not_before, entry.not_after)
    else {
        return format!("'{label}'=U");
    };
    let (warn, critical) = thresholds.effective(not_after - not_before);
    let in_days =
        |duration: time::Duration| (duration.as_seconds_f64() / 86_400.0 * 100.0).round() / 100.0;
    format!(
        "'{label}'={days}d;{}:;{}:",
        in_days(warn),
        in_days(critical)
    )
}

/// The check exit code for several entries: the worst wins; no entries is UNKNOWN.
pub fn check_exit_code(entries: &[Entry]) -> u8 {
    entries
        .iter()
        .map(|entry| entry.state.check_exit_code())
        .max()
        .unwrap_or(3)
}
