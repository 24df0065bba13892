//! `evercert discover`: every certificate the web servers on this host serve, read from their
//! own configuration files.
//!
//! The postmortem's outage was a certificate nobody had told evercert about. The web servers
//! know every certificate they will serve, so their configuration is read directly —
//! following includes and globs like the servers do, without running them — and each
//! certificate is reported with the file:line that names it. What cannot be resolved without
//! running the server (variables, nginx `data:`, HAProxy crt-stores) is listed as such, never
//! dropped: an unlisted certificate is the failure this module exists to prevent.
//!
//! One parser per server (`nginx`, `apache`, `haproxy`) turns configuration into
//! [`Served`] and [`Unresolved`] items; this module reads the certificates with
//! `inventory`, assesses them with `policy` (as `check` does) and renders the table, the JSON
//! and the configuration fragment of `--write`.

mod apache;
mod haproxy;
mod live;
mod nginx;

pub use live::Live;

use std::collections::{BTreeMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::config::{Config, MonitorTarget};
use crate::inventory::{self, CertFile};
use crate::policy::{self, CertState, Thresholds};

/// The usual configuration file of each server (Debian's layout), for `nginx = true` etc.
pub const NGINX_CONF: &str = "/etc/nginx/nginx.conf";
pub const APACHE_CONF: &str = "/etc/apache2/apache2.conf";
pub const HAPROXY_CONF: &str = "/etc/haproxy/haproxy.cfg";

/// Include files followed at most this deep: a file including itself is an error, not a
/// stack overflow.
const MAX_INCLUDE_DEPTH: usize = 32;
/// At most this many configuration files per server (a glob over a huge directory).
const MAX_FILES: usize = 100_000;

/// Which web server's configuration to read, and where (`[discover]` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    pub nginx: Option<PathBuf>,
    pub apache: Option<PathBuf>,
    pub haproxy: Option<PathBuf>,
}

impl Sources {
    /// The servers whose usual configuration file exists on this host: what `discover` reads
    /// when the configuration has no `[discover]`.
    pub fn usual() -> Self {
        let present = |path: &str| Some(PathBuf::from(path)).filter(|path| path.is_file());
        Self {
            nginx: present(NGINX_CONF),
            apache: present(APACHE_CONF),
            haproxy: present(HAPROXY_CONF),
        }
    }

    fn servers(&self) -> Vec<(Server, &Path)> {
        [
            (Server::Nginx, &self.nginx),
            (Server::Apache, &self.apache),
            (Server::Haproxy, &self.haproxy),
        ]
        .into_iter()
        .filter_map(|(server, path)| path.as_deref().map(|path| (server, path)))
        .collect()
    }

    /// Whether any server is configured.
    pub fn is_empty(&self) -> bool {
        self.servers().is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Server {
    Nginx,
    Apache,
    Haproxy,
}

impl Server {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Apache => "apache",
            Self::Haproxy => "haproxy",
        }
    }

    /// The reload command proposed for certificates this server serves (Debian's units).
    fn reload(self) -> &'static str {
        match self {
            Self::Nginx => "systemctl reload nginx",
            Self::Apache => "systemctl reload apache2",
            Self::Haproxy => "systemctl reload haproxy",
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A place in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A certificate file a server is configured to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub server: Server,
    /// The directive naming it (for a `crt` directory or a `crt-list`, the `bind` line).
    pub at: Location,
    pub path: PathBuf,
    /// The private key, when the configuration names one apart from the certificate.
    pub key: Option<PathBuf>,
    /// The names it is served for, from the configuration (`server_name`, `ServerName`, a
    /// crt-list's SNI filters); empty when the server picks it by the certificate's names.
    pub names: Vec<String>,
    /// An intermediate chain file (Apache's `SSLCertificateChainFile`), not a leaf.
    pub chain_only: bool,
}

/// A certificate the configuration names in a way that cannot be read without running the
/// server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub server: Server,
    pub at: Location,
    /// The value as written.
    pub value: String,
    pub reason: String,
    pub names: Vec<String>,
}

/// Everything found in one server's configuration.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub served: Vec<Served>,
    pub unresolved: Vec<Unresolved>,
    /// Every configuration file read, and every directory a glob listed: what to watch.
    pub inputs: Vec<PathBuf>,
}

/// Why a server's configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoverError {
    #[error("{server}: {path}: cannot read the configuration: {message}")]
    Read {
        server: Server,
        path: PathBuf,
        message: String,
    },
    #[error(
        "{server}: {at}: {message}; fix the configuration (check it with {check}) and run discover again"
    )]
    Syntax {
        server: Server,
        at: Location,
        message: String,
        check: &'static str,
    },
}

impl DiscoverError {
    fn syntax(server: Server, at: Location, message: impl Into<String>) -> Self {
        Self::Syntax {
            server,
            at,
            message: message.into(),
            check: match server {
                Server::Nginx => "`nginx -t`",
                Server::Apache => "`apache2ctl configtest`",
                Server::Haproxy => "`haproxy -c -f FILE`",
            },
        }
    }
}

/// Reads every configured server's configuration; each server's result on its own, so that
/// one broken configuration does not hide the certificates of the others.
pub fn discover(sources: &Sources) -> Vec<(Server, Result<Discovery, DiscoverError>)> {
    sources
        .servers()
        .into_iter()
        .map(|(server, path)| {
            let result = match server {
                Server::Nginx => nginx::discover(path),
                Server::Apache => apache::discover(path),
                Server::Haproxy => haproxy::discover(path),
            };
            (server, result)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the parsers.

/// Reads one configuration file (regular files only, size-capped).
fn read_config(server: Server, path: &Path) -> Result<String, DiscoverError> {
    crate::fsread::read_to_string(path, crate::fsread::CONFIG_FILE_MAX).map_err(|err| {
        DiscoverError::Read {
            server,
            path: path.to_owned(),
            message: err.problem.to_string(),
        }
    })
}

/// `path` against `base` unless absolute.
fn resolve(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// The files a glob pattern names, sorted as glob(3) returns them; a pattern without
/// wildcards is itself (whether or not it exists). Directories listed are pushed to
/// `listed`, so that the agent can watch them for new files.
fn glob(pattern: &Path, listed: &mut Vec<PathBuf>) -> Vec<PathBuf> {
    let text = pattern.to_string_lossy();
    if !has_wildcard(&text) {
        return vec![pattern.to_owned()];
    }
    let mut current = vec![PathBuf::from(if pattern.is_absolute() { "/" } else { "" })];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if matches!(component, std::path::Component::RootDir) {
            continue;
        }
        if !has_wildcard(&part) {
            current = current.into_iter().map(|dir| dir.join(&*part)).collect();
            continue;
        }
        let mut next = Vec::new();
        for dir in current {
            let list_dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &dir
            };
            let Ok(entries) = std::fs::read_dir(list_dir) else {
                continue;
            };
            listed.push(dir.clone());
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .filter(|name| fnmatch(&part, name))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|name| dir.join(name)));
        }
        current = next;
    }
    current.into_iter().filter(|path| path.exists()).collect()
}

/// Shell-style matching of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`. A leading
/// dot must be matched literally, as glob(3) does.
fn fnmatch(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    match_from(&pattern, &name)
}

fn match_from(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') => (0..=name.len()).any(|skip| match_from(&pattern[1..], &name[skip..])),
        Some('?') => !name.is_empty() && match_from(&pattern[1..], &name[1..]),
        Some('[') => {
            let Some(close) = pattern
                .iter()
                .skip(2)
                .position(|c| *c == ']')
                .map(|i| i + 2)
            else {
                return name.first() == Some(&'[') && match_from(&pattern[1..], &name[1..]);
            };
            let Some(&c) = name.first() else {
                return false;
            };
            let mut set = &pattern[1..close];
            let negate = matches!(set.first(), Some('!' | '^'));
            if negate {
                set = &set[1..];
            }
            let mut found = false;
            let mut index = 0;
            while index < set.len() {
                if index + 2 < set.len() && set[index + 1] == '-' {
                    found |= set[index] <= c && c <= set[index + 2];
                    index += 3;
                } else {
                    found |= set[index] == c;
                    index += 1;
                }
            }
            found != negate && match_from(&pattern[close + 1..], &name[1..])
        }
        Some(&literal) => name.first() == Some(&literal) && match_from(&pattern[1..], &name[1..]),
    }
}

/// Names an ACME CA could issue a certificate for: public DNS names (wildcards included), not
/// IP addresses, single labels, or the reserved and internal domains.
pub fn acme_issuable(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "localhost",
        "local",
        "internal",
        "lan",
        "home",
        "corp",
        "test",
        "example",
        "invalid",
        "home.arpa",
    ];
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let bare = name.strip_prefix("*.").unwrap_or(&name);
    if bare.parse::<std::net::IpAddr>().is_ok() || !bare.contains('.') {
        return false;
    }
    let valid = bare.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    valid
        && !RESERVED
            .iter()
            .any(|reserved| bare == *reserved || bare.ends_with(&format!(".{reserved}")))
}

// ---------------------------------------------------------------------------------------------
// Assessing what was found.

/// One line of `discover`; its JSON is the documented contract.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub server: Server,
    /// file:line of the directive that names the certificate.
    pub config: String,
    /// The certificate file, or the value as written when it is not resolvable.
    pub path: String,
    /// The names it is served for: from the configuration, else from the certificate.
    pub names: Vec<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub days_left: Option<f64>,
    pub issuer: Option<String>,
    /// As in `check` (ok, warning, critical, expired, error), or `unresolvable`.
    pub state: String,
    /// Renewed by evercert (`[[certificate]]` with this `cert_path`).
    pub managed: bool,
    /// Watched by evercert: a `[[monitor]]` for the file, or `[discover]` for this server.
    pub monitored: bool,
    /// Why it could not be read, or why it is not resolvable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// An intermediate chain file, not a leaf certificate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub chain_only: bool,
    /// The certbot lineage (`DIR/live/NAME/`) it comes from: `evercert import certbot --from
    /// DIR` would take it over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certbot: Option<CertbotLineage>,
    #[serde(skip)]
    pub key: Option<PathBuf>,
    /// Names from the configuration only (for proposals).
    #[serde(skip)]
    config_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertbotLineage {
    pub dir: PathBuf,
    pub lineage: String,
}

/// The result of `discover` for every server: findings and errors.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub errors: Vec<DiscoverError>,
}

/// Whether `a` and `b` name the same file: literally, or once symlinks are resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// The certbot lineage a certificate path belongs to: `DIR/live/NAME/FILE.pem` with
/// `DIR/renewal/NAME.conf` beside it.
fn certbot_lineage(path: &Path) -> Option<CertbotLineage> {
    let lineage_dir = path.parent()?;
    let live = lineage_dir.parent()?;
    if live.file_name()? != "live" {
        return None;
    }
    let dir = live.parent()?;
    let lineage = lineage_dir.file_name()?.to_string_lossy().into_owned();
    dir.join("renewal")
        .join(format!("{lineage}.conf"))
        .is_file()
        .then(|| CertbotLineage {
            dir: dir.to_owned(),
            lineage,
        })
}

/// Reads every certificate found and assesses it against the configuration: its state as in
/// `check`, and whether evercert manages or monitors it. Several directives naming the same
/// file are one finding (the first directive, every name).
pub fn assess(
    config: Option<&Config>,
    sources: &Sources,
    results: Vec<(Server, Result<Discovery, DiscoverError>)>,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Report {
    let mut report = Report::default();
    let mut served: Vec<Served> = Vec::new();
    let mut index: BTreeMap<(Server, PathBuf), usize> = BTreeMap::new();
    let mut unresolved = Vec::new();
    // `[discover]` watches a server's certificates when it names the configuration read here.
    let watched_servers: HashSet<Server> = config
        .and_then(|config| config.discover.as_ref())
        .map(|watched| {
            let watched = watched.servers();
            sources
                .servers()
                .into_iter()
                .filter(|read| watched.contains(read))
                .map(|(server, _)| server)
                .collect()
        })
        .unwrap_or_default();
    for (_, result) in results {
        match result {
            Ok(discovery) => {
                for item in discovery.served {
                    let key = (item.server, item.path.clone());
                    match index.get(&key) {
                        Some(&at) => {
                            let names = &mut served[at].names;
                            for name in item.names {
                                if !names.contains(&name) {
                                    names.push(name);
                                }
                            }
                        }
                        None => {
                            index.insert(key, served.len());
                            served.push(item);
                        }
                    }
                }
                unresolved.extend(discovery.unresolved);
            }
            Err(err) => report.errors.push(err),
        }
    }
    let files = inventory::parallel_map(&served, |item| inventory::read_cert_file(&item.path));
    for (item, file) in served.into_iter().zip(files) {
        let managed = config.is_some_and(|config| {
            config
                .certificates
                .iter()
                .any(|cert| same_file(&cert.cert_path, &item.path))
        });
        let monitored = watched_servers.contains(&item.server)
            || config.is_some_and(|config| {
                config.monitors.iter().any(|monitor| {
                    matches!(&monitor.target, MonitorTarget::File(path) if same_file(path, &item.path))
                })
            });
        report
            .findings
            .push(finding(item, file, managed, monitored, thresholds, now));
    }
    for item in unresolved {
        report.findings.push(Finding {
            server: item.server,
            config: item.at.to_string(),
            path: item.value,
            names: item.names.clone(),
            not_after: None,
            days_left: None,
            issuer: None,
            state: "unresolvable".to_owned(),
            managed: false,
            monitored: false,
            error: Some(item.reason),
            chain_only: false,
            certbot: None,
            key: None,
            config_names: item.names,
        });
    }
    report
}

fn finding(
    item: Served,
    file: Result<CertFile, inventory::CertFileError>,
    managed: bool,
    monitored: bool,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Finding {
    let mut finding = Finding {
        server: item.server,
        config: item.at.to_string(),
        path: item.path.display().to_string(),
        names: item.names.clone(),
        not_after: None,
        days_left: None,
        issuer: None,
        state: CertState::Error.as_str().to_owned(),
        managed,
        monitored,
        error: None,
        chain_only: item.chain_only,
        certbot: certbot_lineage(&item.path),
        key: item.key,
        config_names: item.names,
    };
    match file {
        Ok(file) => {
            let leaf = &file.leaf;
            if finding.names.is_empty() && !item.chain_only {
                finding.names = leaf.names();
            }
            finding.not_after = Some(leaf.not_after);
            finding.days_left = Some(policy::days_left(leaf.not_after, now));
            finding.issuer = Some(leaf.issuer.clone());
            finding.state = policy::expiry_state(leaf.not_before, leaf.not_after, thresholds, now)
                .as_str()
                .to_owned();
            if finding.config_names.is_empty() && !item.chain_only {
                finding.config_names = leaf.dns_names.clone();
            }
        }
        Err(err) => finding.error = Some(err.to_string()),
    }
    finding
}

/// `discover` as the command runs it: the configured servers (or the usual ones), read and
/// assessed.
pub fn run(config: Option<&Config>, sources: &Sources, now: OffsetDateTime) -> Report {
    let thresholds = config.map_or_else(Thresholds::default, |config| config.renewal.thresholds);
    assess(config, sources, discover(sources), thresholds, now)
}

/// The discovered certificates `status` and `check` add as monitored, when the configuration
/// has `[discover]`: every served file not already among `known` (managed certificates and
/// monitors), and an error entry for each configuration that does not parse. Not resolvable
/// ones are left to `discover`, which lists them: they cannot be checked without the server.
pub fn monitor_entries(
    config: &Config,
    known: &[crate::report::Entry],
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Vec<crate::report::Entry> {
    let Some(sources) = &config.discover else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    let mut seen: Vec<PathBuf> = known
        .iter()
        .filter_map(|entry| entry.path.as_deref().map(PathBuf::from))
        .collect();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for (server, result) in discover(sources) {
        match result {
            Ok(discovery) => {
                for item in discovery.served {
                    if seen.iter().any(|path| same_file(path, &item.path)) {
                        continue;
                    }
                    seen.push(item.path.clone());
                    let name = item.names.first().map_or_else(
                        || item.path.display().to_string(),
                        |name| format!("{server} {name}"),
                    );
                    files.push((name, item.path));
                }
            }
            Err(err) => entries.push(crate::report::error_entry(
                format!("discover {server}"),
                err.to_string(),
            )),
        }
    }
    let mut found = inventory::parallel_map(&files, |(name, path)| {
        crate::report::file_entry(
            name.clone(),
            path,
            inventory::read_cert_file(path),
            thresholds,
            now,
        )
    });
    found.append(&mut entries);
    found
}

/// The configuration with a `[[monitor]]` for every certificate `[discover]`'s servers serve
/// that it does not already manage or monitor: what the agent watches, alerts on and exports
/// as metrics. A server whose configuration does not parse adds nothing here (`status` and
/// `check` report it, and the log says so).
pub fn with_monitors(config: Config) -> Config {
    let Some(sources) = config.discover.clone() else {
        return config;
    };
    let mut live = Live::new(sources);
    live.refresh();
    live.apply(config)
}

// ---------------------------------------------------------------------------------------------
// Rendering.

/// The table printed by `discover`.
pub fn render_table(report: &Report) -> String {
    let rows: Vec<[String; 8]> = report
        .findings
        .iter()
        .map(|finding| {
            let names = match finding.names.len() {
                0 => "-".to_owned(),
                1 => finding.names[0].clone(),
                n => format!("{} (+{})", finding.names[0], n - 1),
            };
            [
                finding.server.to_string(),
                finding.config.clone(),
                finding.path.clone(),
                names,
                finding.not_after.map_or_else(
                    || "-".to_owned(),
                    |at| format!("{} {:02}:{:02}", at.date(), at.hour(), at.minute()),
                ),
                finding
                    .days_left
                    .map_or_else(|| "-".to_owned(), |days| format!("{:.0}", days.floor())),
                finding.state.clone(),
                match (finding.managed, finding.monitored) {
                    (true, _) => "managed".to_owned(),
                    (false, true) => "monitored".to_owned(),
                    (false, false) => "NOT WATCHED".to_owned(),
                },
            ]
        })
        .collect();
    let mut out = crate::report::columns(
        &[
            "SERVER",
            "CONFIG",
            "PATH",
            "NAMES",
            "EXPIRES (UTC)",
            "DAYS",
            "STATE",
            "EVERCERT",
        ],
        &rows,
    );
    for finding in &report.findings {
        if let Some(error) = &finding.error {
            let _ = writeln!(out, "  {} ({}): {error}", finding.path, finding.config);
        }
        if let Some(certbot) = &finding.certbot {
            let _ = writeln!(
                out,
                "  {}: certbot lineage {} in {}: `evercert import certbot --from {}` takes it over",
                finding.path,
                certbot.lineage,
                certbot.dir.display(),
                certbot.dir.display()
            );
        }
    }
    for error in &report.errors {
        let _ = writeln!(out, "error: {error}");
    }
    if report.findings.is_empty() && report.errors.is_empty() {
        out.push_str("(no certificates found)\n");
    }
    out
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The configuration fragment of `--write`: a `[[monitor]]` for every certificate evercert
/// does not watch yet, and commented `[[certificate]]` proposals for those with names an ACME
/// CA could issue. It holds no other table, so it can be appended to a configuration or used
/// on its own.
pub fn render_fragment(report: &Report) -> String {
    let mut out = String::new();
    out.push_str(
        "# Certificates the web servers serve, found by `evercert discover`.\n\
         # Each [[monitor]] makes evercert watch one for expiry; the commented [[certificate]]\n\
         # proposals would have evercert renew it instead (fill in the TODOs, then uncomment it\n\
         # and remove its [[monitor]]). Check the result with `evercert config check -c FILE`.\n",
    );
    let mut monitor_names: HashSet<String> = HashSet::new();
    let mut certificate_names: HashSet<String> = HashSet::new();
    let mut certbot_dirs: BTreeMap<PathBuf, Option<crate::import::Import>> = BTreeMap::new();
    for finding in &report.findings {
        out.push('\n');
        let _ = writeln!(
            out,
            "# {} serves {} ({}): {}",
            finding.server,
            finding.path,
            finding.config,
            if finding.names.is_empty() {
                "no names".to_owned()
            } else {
                finding.names.join(", ")
            }
        );
        if finding.state == "unresolvable" {
            let _ = writeln!(
                out,
                "# not resolvable: {}; add a [[monitor]] with the files it names, or an endpoint",
                finding.error.as_deref().unwrap_or_default()
            );
            continue;
        }
        if finding.managed {
            out.push_str("# already managed by evercert\n");
            continue;
        }
        if finding.monitored {
            out.push_str("# already monitored by evercert\n");
        } else {
            let base = finding.names.first().map_or_else(
                || finding.path.clone(),
                |name| format!("{} {name}", finding.server),
            );
            let name = unique(&base, &mut monitor_names);
            let _ = writeln!(
                out,
                "[[monitor]]\nname = {}\npath = {}",
                toml_string(&name),
                toml_string(&finding.path)
            );
        }
        if finding.chain_only {
            continue;
        }
        if let Some(certbot) = &finding.certbot {
            let import = certbot_dirs.entry(certbot.dir.clone()).or_insert_with(|| {
                crate::import::read_certbot(&certbot.dir)
                    .ok()
                    .map(|read| crate::import::translate(&read))
            });
            let translated = import.as_ref().and_then(|import| {
                import
                    .certificates
                    .iter()
                    .find(|cert| cert.lineage == certbot.lineage)
            });
            let _ = writeln!(
                out,
                "# certbot lineage {} in {}: `evercert import certbot --from {}` takes it over with this:",
                certbot.lineage,
                certbot.dir.display(),
                certbot.dir.display()
            );
            if let Some(cert) = translated {
                let mut block = String::new();
                crate::import::render_certificate(&mut block, cert);
                for line in block.lines() {
                    let _ = writeln!(out, "# {line}");
                }
            }
            continue;
        }
        propose(&mut out, finding, &mut certificate_names);
    }
    for error in &report.errors {
        let _ = writeln!(out, "\n# error: {error}");
    }
    out
}

fn unique(base: &str, used: &mut HashSet<String>) -> String {
    let mut name = base.to_owned();
    let mut counter = 2;
    while used.contains(&name) {
        name = format!("{base}-{counter}");
        counter += 1;
    }
    used.insert(name.clone());
    name
}

/// A commented `[[certificate]]` for a finding whose names an ACME CA could issue.
fn propose(out: &mut String, finding: &Finding, used: &mut HashSet<String>) {
    let mut domains: Vec<String> = Vec::new();
    for name in &finding.config_names {
        let name = name.to_ascii_lowercase();
        if acme_issuable(&name) && !domains.contains(&name) {
            domains.push(name);
        }
    }
    if domains.is_empty() {
        out.push_str("# no names an ACME CA could issue: no [[certificate]] proposal\n");
        return;
    }
    let name = unique(domains[0].trim_start_matches("*."), used);
    let wildcard = domains.iter().any(|domain| domain.starts_with("*."));
    let mut block = String::new();
    let _ = writeln!(
        block,
        "[[certificate]]   # proposal: evercert renews it\nname = {}\ndomains = [{}]\ncert_path = {}",
        toml_string(&name),
        domains
            .iter()
            .map(|domain| toml_string(domain))
            .collect::<Vec<_>>()
            .join(", "),
        toml_string(&finding.path)
    );
    match &finding.key {
        Some(key) => {
            let _ = writeln!(
                block,
                "key_path = {}",
                toml_string(&key.display().to_string())
            );
        }
        None => {
            let _ = writeln!(
                block,
                "key_path = {}   # TODO: the server reads the key from the certificate file; evercert writes it apart",
                toml_string(&format!("{}.key", finding.path))
            );
        }
    }
    let _ = writeln!(block, "reload = {}", toml_string(finding.server.reload()));
    if wildcard {
        let _ = writeln!(
            block,
            "[certificate.dns01]   # TODO: a wildcard needs dns-01: the hook that sets the TXT record\nhook = {}",
            toml_string(crate::import::PLACEHOLDER_DNS_HOOK)
        );
    } else {
        block.push_str(
            "[certificate.http01]\nwebroot = \"/var/www/html\"   # TODO: the directory the server serves /.well-known/acme-challenge/ from\n",
        );
    }
    for line in block.lines() {
        let _ = writeln!(out, "# {line}");
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Writes `text` to `dir/name` (creating directories) and returns the path.
    pub(in crate::discover) fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn discovered_certificates_become_monitors_once() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "nginx.conf",
            "events {}\nhttp {\n  server { server_name a.example.com; ssl_certificate /tls/a.pem; }\n  server { server_name b.example.com; ssl_certificate /tls/b.pem; }\n  server { server_name c.example.com; ssl_certificate /tls/a.pem; }\n}\n",
        );
        let text = format!(
            "[[monitor]]\npath = \"/tls/b.pem\"\n[discover]\nnginx = {:?}\n",
            main.display().to_string()
        );
        let config = crate::config::parse(&text, &dir.path().join("evercert.toml")).unwrap();
        let config = with_monitors(config);
        let monitors: Vec<(&str, &MonitorTarget)> = config
            .monitors
            .iter()
            .map(|monitor| (monitor.name.as_str(), &monitor.target))
            .collect();
        assert_eq!(
            monitors,
            vec![
                ("/tls/b.pem", &MonitorTarget::File("/tls/b.pem".into())),
                (
                    "nginx a.example.com",
                    &MonitorTarget::File("/tls/a.pem".into())
                ),
            ]
        );
    }

    #[test]
    fn fnmatch_follows_glob_rules() {
        assert!(fnmatch("*.conf", "shop.conf"));
        assert!(!fnmatch("*.conf", "shop.conf.bak"));
        assert!(!fnmatch("*.conf", ".hidden.conf"));
        assert!(fnmatch(".*", ".hidden"));
        assert!(fnmatch("site-?.conf", "site-1.conf"));
        assert!(fnmatch("site-[0-9].conf", "site-7.conf"));
        assert!(!fnmatch("site-[!0-9].conf", "site-7.conf"));
        assert!(fnmatch("*", "anything"));
        assert!(!fnmatch("a*b", "ac"));
    }

    #[test]
    fn issuable_names_are_public_dns_names() {
        for name in ["shop.example.com", "*.example.org", "a-b.example.net."] {
            assert!(acme_issuable(name), "{name}");
        }
        for name in [
            "localhost",
            "_",
            "192.0.2.1",
            "intranet",
            "printer.local",
            "db.internal",
            "~^www\\.(.+)$",
            "shop.test",
            "-bad.example.com",
        ] {
            assert!(!acme_issuable(name), "{name}");
        }
    }

    #[test]
    fn glob_lists_sorted_matches_and_the_directories_it_read() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.conf", "a.conf", "c.txt", ".x.conf"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let mut listed = Vec::new();
        let found = glob(&dir.path().join("*.conf"), &mut listed);
        assert_eq!(
            found,
            vec![dir.path().join("a.conf"), dir.path().join("b.conf")]
        );
        assert_eq!(listed, vec![dir.path().to_owned()]);
        assert!(glob(&dir.path().join("none-*.conf"), &mut listed).is_empty());
    }
}
