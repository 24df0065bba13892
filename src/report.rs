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
use crate::links::{self, Health, Layout, ProblemKind};
use crate::policy::{self, CertState, Thresholds};
use crate::probe::{self, ProbeError, Served};
use crate::renew::Step;
use crate::state::{CertHistory, FileState, Pending, StateStore as _};

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
    /// With `[renewal] windows`: when the next one opens (now, while one is open).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_window: Option<OffsetDateTime>,
    /// For managed certificates: the directory URL of the CA that issued it (the primary or
    /// an `[[acme.fallback]]`), when evercert issued it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
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
    /// Managed: the last renewal attempt and its result, from the renewal history.
    pub last_attempt: Option<Attempt>,
    /// Managed: when evercert tries next, why, and who (the agent, or a `renew` by hand).
    pub next_attempt: Option<NextAttempt>,
    /// Managed: how `cert_path` and `key_path` resolve through `live/NAME` (`links`).
    pub layout: Option<Layout>,
    /// Managed: whether an agent runs for this state_dir, since when.
    pub agent: Option<AgentStatus>,
}

/// A renewal attempt as the history remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `success` or `failure`.
    pub result: &'static str,
    /// The step that failed.
    pub step: Option<Step>,
    pub error: Option<String>,
    /// The serial issued by a successful attempt.
    pub serial: Option<String>,
    /// Failures in a row since the last success.
    pub failures: u32,
}

impl Attempt {
    /// The latest of the last success and the last failure.
    pub fn from_history(history: &CertHistory) -> Option<Self> {
        let failure = history.last_failure.filter(|at| {
            history.failures > 0 && history.last_success.is_none_or(|success| *at >= success)
        });
        match (failure, history.last_success) {
            (Some(at), _) => Some(Self {
                at,
                result: "failure",
                step: history.failure_step,
                error: history.last_error.clone(),
                serial: None,
                failures: history.failures,
            }),
            (None, Some(at)) => Some(Self {
                at,
                result: "success",
                step: None,
                error: None,
                serial: history.last_serial.clone(),
                failures: 0,
            }),
            (None, None) => None,
        }
    }
}

/// The next attempt, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextAttempt {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: Reason,
    /// Why, and who acts: "lifetime rule; the agent renews it then".
    pub explanation: String,
}

/// Whether an agent looks after the state directory, and whether this certificate is being
/// renewed right now (by the agent or a `renew` by hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStatus {
    pub running: bool,
    pub pid: Option<u32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// The pid holding this certificate's renewal lock, when one does.
    pub renewing_pid: Option<u32>,
    /// The renewal lock is held (the pid may be unknown).
    pub renewing: bool,
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
            next_window: None,
            ca: None,
            pending: None,
            state: CertState::Error,
            error: None,
            reason: None,
            trusted: None,
            trust_error: None,
            last_attempt: None,
            next_attempt: None,
            layout: None,
            agent: None,
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
    entry.next_window = status.decision.next_window;
    entry.ca = status.issued_by.clone();
    entry.pending = status.pending.clone();
    entry.state = status.assessment.state;
    if entry.state == CertState::Error {
        entry.error = status.problem.clone();
    } else {
        entry.reason = status.problem.clone();
    }
    if status.decision.reason == Reason::Revoked {
        // Still within its dates, but clients that check revocation refuse it.
        if entry.state == CertState::Ok {
            entry.state = CertState::Due;
        }
        entry.reason = Some(
            "revoked with `evercert revoke`; the next renewal (`evercert renew` or the agent) replaces it"
                .to_owned(),
        );
    }
    entry
}

/// Marks `entry` as an error when its links are broken or lead somewhere else: the web server
/// then does not read what evercert keeps live, whatever the file at `cert_path` says.
/// `agent_running` picks the advice.
pub fn apply_layout(entry: &mut Entry, layout: Layout, agent_running: bool) {
    let name = entry.name.clone();
    let serious = match layout.health {
        Health::Broken => true,
        Health::Foreign => layout
            .problems
            .iter()
            .any(|problem| problem.kind == ProblemKind::ForeignLink),
        Health::Ok | Health::Unmanaged => false,
    };
    if serious && let Some(summary) = layout.summary() {
        let advice = if layout.repairable() && agent_running {
            "the running agent repairs it by pointing the link at the newest complete version in the archive, then runs the reload".to_owned()
        } else if layout.repairable() {
            format!(
                "start the agent (it repairs the link from the archive), point live/{name} at a version listed in archive/{name}/ by hand (docs/storage.md), or run `evercert renew {name} --force` for a new certificate"
            )
        } else if layout.health == Health::Broken {
            format!("move it away and run `evercert renew {name} --force`")
        } else {
            format!(
                "if it is meant to be served, set cert_path/key_path to it in the configuration; otherwise `evercert renew {name} --force` links it to evercert's version again"
            )
        };
        entry.state = CertState::Error;
        entry.error = Some(format!("{summary}; {advice}"));
    }
    entry.layout = Some(layout);
}

/// Adds what `status` explains to the managed entries: the last attempt, the next one and
/// who makes it, the links, and whether an agent is running.
pub fn explain(entries: &mut [Entry], config: &Config, now: OffsetDateTime) {
    let agent = crate::lock::running_agent(&config.state_dir);
    let state = FileState::new(&config.state_dir);
    for entry in entries
        .iter_mut()
        .filter(|entry| entry.kind == Kind::Managed)
    {
        let Some(cert) = config.certificate(&entry.name) else {
            continue;
        };
        let history = state.load(&entry.name);
        let renewing = crate::lock::renewing(&config.state_dir, &entry.name);
        let status = AgentStatus {
            running: agent.is_some(),
            pid: agent.as_ref().and_then(|agent| agent.pid),
            since: agent.as_ref().and_then(|agent| agent.since),
            renewing_pid: renewing.flatten(),
            renewing: renewing.is_some(),
        };
        entry.last_attempt = Attempt::from_history(&history);
        if let (Some(at), Some(reason)) = (entry.renew_at, entry.renew_reason) {
            entry.next_attempt = Some(NextAttempt {
                at,
                reason,
                explanation: next_explanation(reason, at, &history, &status, now),
            });
        }
        apply_layout(
            entry,
            links::inspect(&config.state_dir, cert),
            status.running,
        );
        entry.agent = Some(status);
    }
}

/// Why the next attempt is when it is, and who makes it: advice that fits (no "run renew"
/// while the agent is renewing it).
fn next_explanation(
    reason: Reason,
    at: OffsetDateTime,
    history: &CertHistory,
    agent: &AgentStatus,
    now: OffsetDateTime,
) -> String {
    let mut why = reason.describe().to_owned();
    if reason == Reason::Retry {
        let _ = write!(
            why,
            " ({} failure{} in a row",
            history.failures,
            if history.failures == 1 { "" } else { "s" }
        );
        if let Some(after) = history.retry_after.filter(|after| *after > now) {
            let _ = write!(
                why,
                "; the CA asked not to come back before {}",
                crate::units::rfc3339(after)
            );
        }
        why.push(')');
    }
    if reason == Reason::Unreadable {
        return format!("{why}; renewing cannot help: fix the file's permissions");
    }
    let who = if agent.renewing {
        match agent.renewing_pid {
            Some(pid) if agent.pid == Some(pid) => "the agent is renewing it now".to_owned(),
            Some(pid) => format!("evercert (pid {pid}) is renewing it now"),
            None => "another evercert is renewing it now".to_owned(),
        }
    } else if at <= now {
        if agent.running {
            "due now: the running agent renews it".to_owned()
        } else {
            "due now, and no agent runs for this state_dir: run `evercert renew` (or start the agent)".to_owned()
        }
    } else if agent.running {
        format!("the running agent renews it then ({})", relative(at, now))
    } else {
        format!(
            "no agent runs for this state_dir: a timer or cron job must run `evercert renew` by then ({})",
            relative(at, now)
        )
    };
    format!("{why}; {who}")
}

/// "in 3d", "2h ago", "now": how far `at` is from `now`, in the largest units.
pub fn relative(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let delta = at - now;
    if delta.whole_seconds().abs() < 1 {
        "now".to_owned()
    } else if delta.is_negative() {
        format!("{} ago", crate::units::format_duration(-delta))
    } else {
        format!("in {}", crate::units::format_duration(delta))
    }
}

/// Why an entry needs a person's attention, if it does.
pub fn attention(entry: &Entry) -> Option<String> {
    match entry.state {
        CertState::Error => return Some("error".to_owned()),
        CertState::Expired | CertState::Critical | CertState::Warning => {
            return Some(entry.state.to_string());
        }
        CertState::Ok | CertState::Due => {}
    }
    if let Some(attempt) = &entry.last_attempt
        && attempt.result == "failure"
    {
        return Some(format!(
            "renewal failing ({} failure{})",
            attempt.failures,
            if attempt.failures == 1 { "" } else { "s" }
        ));
    }
    if entry.pending.is_some() {
        return Some("a version is waiting to be deployed".to_owned());
    }
    if let Some(layout) = &entry.layout
        && layout.health == Health::Foreign
    {
        return Some("no longer evercert's link".to_owned());
    }
    let agent_running = entry.agent.as_ref().is_some_and(|agent| agent.running);
    if entry.state == CertState::Due && entry.kind == Kind::Managed && !agent_running {
        return Some("due, and no agent runs".to_owned());
    }
    None
}

/// The last line of `status`: how many need attention, and which.
pub fn summary_line(entries: &[Entry]) -> String {
    let count = entries.len();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let needing: Vec<String> = entries
        .iter()
        .filter_map(|entry| attention(entry).map(|why| format!("{} ({why})", entry.name)))
        .collect();
    if needing.is_empty() {
        format!(
            "summary: {count} certificate{}, none needs attention",
            plural(count)
        )
    } else {
        format!(
            "summary: {count} certificate{}, {} need{} attention: {}",
            plural(count),
            needing.len(),
            if needing.len() == 1 { "s" } else { "" },
            needing.join(", ")
        )
    }
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
    explain(&mut entries, config, now);
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

/// The human table of `status`, with what it explains under it (`now` for "2h ago").
pub fn render_table(entries: &[Entry], now: OffsetDateTime) -> String {
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
        if let Some(attempt) = &entry.last_attempt {
            let _ = write!(
                out,
                "  {}: last attempt {} ({}): ",
                entry.name,
                crate::units::rfc3339(attempt.at),
                relative(attempt.at, now)
            );
            match (attempt.result, &attempt.error) {
                ("failure", error) => {
                    let step = attempt
                        .step
                        .map(|step| format!(" at {step}"))
                        .unwrap_or_default();
                    let _ = write!(
                        out,
                        "failed{step}: {}",
                        error.as_deref().unwrap_or("no message recorded")
                    );
                    if attempt.failures > 1 {
                        let _ = write!(out, " ({} failures in a row)", attempt.failures);
                    }
                    out.push('\n');
                }
                _ => {
                    let serial = attempt
                        .serial
                        .as_deref()
                        .map(|serial| format!(", serial {serial}"))
                        .unwrap_or_default();
                    let _ = writeln!(out, "renewed{serial}");
                }
            }
        }
        if let Some(next) = &entry.next_attempt {
            let _ = writeln!(
                out,
                "  {}: next attempt {}: {}",
                entry.name,
                crate::units::rfc3339(next.at),
                next.explanation
            );
        }
        if let Some(layout) = &entry.layout {
            for problem in &layout.problems {
                if !entry
                    .error
                    .as_deref()
                    .is_some_and(|error| error.contains(&problem.message))
                {
                    let _ = writeln!(out, "  {}: {}", entry.name, problem.message);
                }
            }
        }
        if let (Some(reason), Some(at)) = (entry.renew_reason, entry.renew_at)
            && entry.next_attempt.is_none()
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
    if let Some(agent) = entries.iter().find_map(|entry| entry.agent.as_ref()) {
        out.push_str(&agent_line(agent, now));
        out.push('\n');
    }
    if entries
        .iter()
        .any(|entry| entry.agent.is_some() || entry.kind == Kind::Monitored)
    {
        out.push_str(&summary_line(entries));
        out.push('\n');
    }
    out
}

/// `agent: running (pid 812) since 2026-11-30T10:00:00Z (2h ago)`, or that none runs.
pub fn agent_line(agent: &AgentStatus, now: OffsetDateTime) -> String {
    if !agent.running {
        return "agent: not running for this state_dir (renewals happen only when `evercert renew` runs)".to_owned();
    }
    let pid = agent
        .pid
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default();
    let since = agent
        .since
        .map(|since| {
            format!(
                " since {} ({})",
                crate::units::rfc3339(since),
                relative(since, now)
            )
        })
        .unwrap_or_default();
    format!("agent: running{pid}{since}")
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

/// Every message an operator meets in `status`, `check` and the alerts, rendered for a set of
/// situations in one place, so that a reviewer reads them as a person would; the whole text
/// is compared, and checked for what must never appear (parser internals, raw UNIX seconds,
/// doubled words).
#[cfg(test)]
mod messages {
    use time::Duration;
    use time::macros::datetime;

    use super::*;
    use crate::alerts::Alert;
    use crate::links::Problem;
    use crate::schedule::AlertEvent;

    const NOW: OffsetDateTime = datetime!(2026-11-30 12:00:00 UTC);

    fn managed(name: &str, days_left: i64) -> Entry {
        let mut entry = Entry::blank(name.to_owned(), Kind::Managed);
        entry.path = Some(format!("/etc/nginx/tls/{name}/fullchain.pem"));
        entry.domains = vec![format!("{name}.example.com")];
        entry.serial = Some("4f2a".into());
        entry.issuer = Some("CN=R11".into());
        entry.not_before = Some(NOW - Duration::days(90 - days_left));
        entry.not_after = Some(NOW + Duration::days(days_left));
        entry.days_left = Some(days_left as f64);
        entry.renew_at = Some(NOW + Duration::days(days_left - 30));
        entry.renew_reason = Some(Reason::Lifetime);
        entry.state = CertState::Ok;
        entry
    }

    fn agent(running: bool, renewing: bool) -> AgentStatus {
        AgentStatus {
            running,
            pid: running.then_some(812),
            since: running.then_some(NOW - Duration::hours(2)),
            renewing_pid: renewing.then_some(812),
            renewing,
        }
    }

    fn situations() -> Vec<Entry> {
        let running = agent(true, false);
        let mut ok = managed("shop", 60);
        let mut history = CertHistory::default();
        history.record_success("4f2a", NOW - Duration::days(30));
        ok.last_attempt = Attempt::from_history(&history);
        ok.next_attempt = Some(NextAttempt {
            at: ok.renew_at.unwrap(),
            reason: Reason::Lifetime,
            explanation: next_explanation(
                Reason::Lifetime,
                ok.renew_at.unwrap(),
                &history,
                &running,
                NOW,
            ),
        });
        ok.layout = Some(Layout {
            health: Health::Ok,
            live_version: Some("20261031T120000Z-4f2a".into()),
            problems: Vec::new(),
        });
        ok.agent = Some(running.clone());

        let mut failing = managed("blog", 20);
        failing.state = CertState::Warning;
        let mut history = CertHistory::default();
        history.record_failure(
            crate::acme::FailureKind::Transient,
            Step::Order,
            "the CA could not fetch http://blog.example.com/.well-known/acme-challenge/…: 404 Not Found",
            None,
            NOW - Duration::hours(1),
        );
        history.record_failure(
            crate::acme::FailureKind::Transient,
            Step::Order,
            "the CA could not fetch http://blog.example.com/.well-known/acme-challenge/…: 404 Not Found",
            None,
            NOW - Duration::minutes(20),
        );
        failing.renew_at = Some(NOW + Duration::minutes(40));
        failing.renew_reason = Some(Reason::Retry);
        failing.last_attempt = Attempt::from_history(&history);
        let alone = agent(false, false);
        failing.next_attempt = Some(NextAttempt {
            at: NOW + Duration::minutes(40),
            reason: Reason::Retry,
            explanation: next_explanation(
                Reason::Retry,
                NOW + Duration::minutes(40),
                &history,
                &alone,
                NOW,
            ),
        });
        failing.agent = Some(alone);

        let mut due = managed("api", 25);
        due.state = CertState::Due;
        due.renew_at = Some(NOW - Duration::hours(1));
        let renewing = agent(true, true);
        due.next_attempt = Some(NextAttempt {
            at: NOW - Duration::hours(1),
            reason: Reason::Lifetime,
            explanation: next_explanation(
                Reason::Lifetime,
                NOW - Duration::hours(1),
                &CertHistory::default(),
                &renewing,
                NOW,
            ),
        });
        due.agent = Some(renewing);

        let mut broken = managed("mail", 60);
        apply_layout(
            &mut broken,
            Layout {
                health: Health::Broken,
                live_version: Some("20261130T000000Z-typo".into()),
                problems: vec![Problem {
                    kind: ProblemKind::VersionMissing,
                    message: "cert_path → live/mail → archive/mail/20261130T000000Z-typo: missing"
                        .into(),
                }],
            },
            true,
        );

        let garbage = file_entry(
            "partner".into(),
            Path::new("/etc/ssl/partner/bundle.pem"),
            Err(CertFileError::NotACertificate {
                path: "/etc/ssl/partner/bundle.pem".into(),
                detail: format!(
                    "not PEM (no -----BEGIN line) and not a DER certificate: {}",
                    inventory::der_problem(&[0x30, 0x82, 0x05, 0x00, 1])
                ),
            }),
            Thresholds::default(),
            NOW,
        );
        let mut expired = Entry::blank("legacy".into(), Kind::Monitored);
        expired.endpoint = Some("legacy.example.com:443".into());
        expired.domains = vec!["legacy.example.com".into()];
        expired.not_before = Some(NOW - Duration::days(92));
        expired.not_after = Some(NOW - Duration::days(2));
        expired.days_left = Some(-2.0);
        expired.state = CertState::Expired;
        vec![ok, failing, due, broken, garbage, expired]
    }

    fn render_all() -> String {
        let entries = situations();
        let mut out = String::from("== evercert status\n");
        out.push_str(&render_table(&entries, NOW));
        out.push_str("== evercert check\n");
        out.push_str(&render_check(&entries, Thresholds::default(), NOW));
        out.push_str("== alerts\n");
        let events = [
            ("shop", AlertEvent::Recovered),
            ("blog", AlertEvent::Warning),
            ("blog", AlertEvent::RenewalFailed),
            ("mail", AlertEvent::Error),
            ("partner", AlertEvent::Error),
            ("legacy", AlertEvent::Expired),
        ];
        for (name, event) in events {
            let entry = entries.iter().find(|entry| entry.name == name).unwrap();
            let failure = entry
                .last_attempt
                .as_ref()
                .and_then(|attempt| attempt.error.as_deref());
            let _ = writeln!(out, "{}", Alert::new(event, entry, failure, NOW).message);
        }
        out
    }

    #[test]
    fn every_message_reads_as_a_person_would_want() {
        let text = render_all();
        println!("{text}");
        // No parser internals, no raw UNIX seconds, no debug output.
        for banned in [
            "NomError",
            "Parsing Error",
            "(UNIX)",
            "Some(",
            "None",
            "os error",
        ] {
            assert!(!text.contains(banned), "{banned:?} in:\n{text}");
        }
        let digits = text
            .split(|c: char| !c.is_ascii_digit())
            .filter(|run| run.len() >= 9)
            .collect::<Vec<_>>();
        assert!(
            digits.is_empty(),
            "raw numbers that look like UNIX seconds: {digits:?}"
        );
        // No word twice in a row ("expired expired", "ok: ok").
        for line in text.lines() {
            let words: Vec<String> = line
                .split_whitespace()
                .map(|word| {
                    word.trim_matches(|c: char| !c.is_alphanumeric())
                        .to_lowercase()
                })
                .filter(|word| !word.is_empty())
                .collect();
            for pair in words.windows(2) {
                assert!(
                    pair[0] != pair[1] || pair[0].chars().all(|c| c.is_ascii_digit()),
                    "{:?} twice in a row in: {line}",
                    pair[0]
                );
            }
        }
        assert_eq!(
            text, EXPECTED,
            "the messages changed; if on purpose, update EXPECTED:\n{text}"
        );
    }

    const EXPECTED: &str = r#"== evercert status
NAME     DOMAINS             EXPIRES (UTC)     DAYS  RENEWS AT         STATE
shop     shop.example.com    2027-01-29 12:00  60    2026-12-30 12:00  ok
blog     blog.example.com    2026-12-20 12:00  20    2026-11-30 12:40  warning
api      api.example.com     2026-12-25 12:00  25    2026-11-30 11:00  due
mail     mail.example.com    2027-01-29 12:00  60    2026-12-30 12:00  error
partner  -                   -                 -     (monitored)       error
legacy   legacy.example.com  2026-11-28 12:00  -2    (monitored)       expired
  shop: last attempt 2026-10-31T12:00:00Z (30d ago): renewed, serial 4f2a
  shop: next attempt 2026-12-30T12:00:00Z: lifetime rule; the running agent renews it then (in 30d)
  blog: last attempt 2026-11-30T11:40:00Z (20m ago): failed at order: the CA could not fetch http://blog.example.com/.well-known/acme-challenge/…: 404 Not Found (2 failures in a row)
  blog: next attempt 2026-11-30T12:40:00Z: waiting to retry after a failure (2 failures in a row); no agent runs for this state_dir: a timer or cron job must run `evercert renew` by then (in 40m)
  api: next attempt 2026-11-30T11:00:00Z: lifetime rule; the agent is renewing it now
  mail: cert_path → live/mail → archive/mail/20261130T000000Z-typo: missing; the running agent repairs it by pointing the link at the newest complete version in the archive, then runs the reload
  partner: /etc/ssl/partner/bundle.pem: not a certificate: not PEM (no -----BEGIN line) and not a DER certificate: it is truncated at byte 5 of the 1284 its header announces
agent: running (pid 812) since 2026-11-30T10:00:00Z (2h ago)
summary: 6 certificates, 4 need attention: blog (warning), mail (error), partner (error), legacy (expired)
== evercert check
CRITICAL - 6 targets: 3 critical, 1 warning, 2 ok | 'shop'=60d;30:;7: 'blog'=20d;30:;7: 'api'=25d;30:;7: 'mail'=60d;30:;7: 'partner'=U 'legacy'=-2d;30:;7:
OK /etc/nginx/tls/shop/fullchain.pem: expires 2027-01-29T12:00:00Z (in 60d)
WARNING /etc/nginx/tls/blog/fullchain.pem: expires 2026-12-20T12:00:00Z (in 20d)
OK /etc/nginx/tls/api/fullchain.pem: due for renewal, expires 2026-12-25T12:00:00Z (in 25d)
CRITICAL /etc/nginx/tls/mail/fullchain.pem: cert_path → live/mail → archive/mail/20261130T000000Z-typo: missing; the running agent repairs it by pointing the link at the newest complete version in the archive, then runs the reload
CRITICAL /etc/ssl/partner/bundle.pem: not a certificate: not PEM (no -----BEGIN line) and not a DER certificate: it is truncated at byte 5 of the 1284 its header announces
CRITICAL legacy.example.com:443: expired 2026-11-28T12:00:00Z (2d ago)
== alerts
shop: recovered; the certificate /etc/nginx/tls/shop/fullchain.pem expires 2027-01-29 (in 60.0 days)
blog: certificate /etc/nginx/tls/blog/fullchain.pem expires 2026-12-20 (in 20.0 days) and has not been renewed; last renewal error: the CA could not fetch http://blog.example.com/.well-known/acme-challenge/…: 404 Not Found; evercert keeps retrying with backoff; `evercert status` shows the last error and the next attempt, and docs/alerts.md maps the error to its fix
blog: renewal failed; last renewal error: the CA could not fetch http://blog.example.com/.well-known/acme-challenge/…: 404 Not Found; the certificate /etc/nginx/tls/blog/fullchain.pem expires 2026-12-20 (in 20.0 days); evercert keeps retrying with backoff; `evercert status` shows the last error and the next attempt, and docs/alerts.md maps the error to its fix
mail: cert_path → live/mail → archive/mail/20261130T000000Z-typo: missing; the running agent repairs it by pointing the link at the newest complete version in the archive, then runs the reload
partner: /etc/ssl/partner/bundle.pem: not a certificate: not PEM (no -----BEGIN line) and not a DER certificate: it is truncated at byte 5 of the 1284 its header announces; evercert does not renew it: tell whoever issues it
legacy: certificate legacy.example.com:443 EXPIRED on 2026-11-28 (2.0 days ago); evercert does not renew it: tell whoever issues it
"#;
}
