//! `[discover]` inside the agent: what the web servers serve, kept current while they run.
//!
//! A vhost added to nginx next month is the certificate nobody watches, so the agent reads
//! the servers' configuration again whenever one of the files it read (or a directory a glob
//! listed, where a new include file appears) changes, and at every safety rescan in case an
//! event was missed. A configuration caught half-edited — it does not parse — keeps the
//! certificates found the last time it did: a typo must not silently stop the monitoring.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::config::{Config, MonitorSettings, MonitorTarget};

use super::{Server, Sources, discover, same_file};

/// The certificates `[discover]`'s servers serve, as the agent last read them.
#[derive(Debug, Clone, Default)]
pub struct Live {
    sources: Sources,
    /// Per server, what its configuration named the last time it could be read.
    found: BTreeMap<Server, Vec<MonitorSettings>>,
    /// Configuration files read (and the files their symlinks point to).
    files: BTreeSet<PathBuf>,
    /// Directories a glob listed: any file appearing there may be a new include.
    dirs: BTreeSet<PathBuf>,
    /// The error last logged per server, so that a broken configuration is logged once per
    /// change rather than at every rescan.
    errors: BTreeMap<Server, String>,
}

impl Live {
    pub fn new(sources: Sources) -> Self {
        Self {
            sources,
            ..Self::default()
        }
    }

    /// Reads every server's configuration again.
    pub fn refresh(&mut self) {
        let mut files = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        for (server, result) in discover(&self.sources) {
            match result {
                Ok(discovery) => {
                    if self.errors.remove(&server).is_some() {
                        tracing::info!("{server}: the configuration can be read again");
                    }
                    for input in discovery.inputs {
                        if input.is_dir() {
                            dirs.insert(input);
                        } else {
                            // Debian's sites-enabled/X is a link to sites-available/X,
                            // which is the file an editor writes.
                            if let Ok(target) = std::fs::canonicalize(&input)
                                && target != input
                            {
                                files.insert(target);
                            }
                            files.insert(input);
                        }
                    }
                    let monitors = discovery
                        .served
                        .into_iter()
                        .map(|item| MonitorSettings {
                            name: item.names.first().map_or_else(
                                || item.path.display().to_string(),
                                |name| format!("{server} {name}"),
                            ),
                            target: MonitorTarget::File(item.path),
                        })
                        .collect();
                    self.found.insert(server, monitors);
                }
                Err(err) => {
                    let message = err.to_string();
                    if self.errors.get(&server) != Some(&message) {
                        let kept = self.found.get(&server).map_or(0, Vec::len);
                        tracing::error!(
                            "{message}; the {kept} certificate(s) found before stay monitored"
                        );
                        self.errors.insert(server, message);
                    }
                    // Still watch the main file, so that the fix is noticed.
                    if let Some(main) = self.main_file(server) {
                        files.insert(main.to_owned());
                    }
                }
            }
        }
        self.files = files;
        self.dirs = dirs;
    }

    fn main_file(&self, server: Server) -> Option<&Path> {
        match server {
            Server::Nginx => self.sources.nginx.as_deref(),
            Server::Apache => self.sources.apache.as_deref(),
            Server::Haproxy => self.sources.haproxy.as_deref(),
        }
    }

    /// `base` with a `[[monitor]]` for every discovered certificate it does not already
    /// manage or monitor.
    pub fn apply(&self, mut base: Config) -> Config {
        let mut known: Vec<PathBuf> = base
            .certificates
            .iter()
            .map(|cert| cert.cert_path.clone())
            .chain(
                base.monitors
                    .iter()
                    .filter_map(|monitor| match &monitor.target {
                        MonitorTarget::File(path) => Some(path.clone()),
                        MonitorTarget::Endpoint(_) => None,
                    }),
            )
            .collect();
        for monitor in self.found.values().flatten() {
            let MonitorTarget::File(path) = &monitor.target else {
                continue;
            };
            if known.iter().any(|other| same_file(other, path)) {
                continue;
            }
            known.push(path.clone());
            base.monitors.push(monitor.clone());
        }
        base
    }

    /// Whether a change at `path` may change what the servers serve.
    pub fn touches(&self, path: &Path) -> bool {
        self.files.contains(path) || path.parent().is_some_and(|dir| self.dirs.contains(dir))
    }

    /// The files and directories to watch.
    pub fn inputs(&self) -> (Vec<&Path>, Vec<&Path>) {
        (
            self.files.iter().map(PathBuf::as_path).collect(),
            self.dirs.iter().map(PathBuf::as_path).collect(),
        )
    }
}
