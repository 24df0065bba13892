//! Noticing certificate files changed by hand, by certbot, or by Kubernetes.
//!
//! The *parent directories* of every certificate, key and monitored file are watched
//! (non-recursive): renames over a file, symlink swaps and `..data` flips all show up there,
//! while a watch on the file itself would follow the old inode and go silent. Events only
//! say "look again": the agent re-reads and re-decides, it never trusts the event kind.
//! When inotify watches run out, the agent falls back to frequent rescans.

use std::collections::{BTreeSet, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{Config, MonitorTarget};

/// The file watcher; dropping it stops watching.
pub struct Watcher {
    inner: Option<notify::RecommendedWatcher>,
    /// Directories watched so far; the others are tried again after every wake-up (a
    /// certificate directory appears with the first issuance).
    watched: HashSet<PathBuf>,
    names: Arc<std::sync::RwLock<HashSet<OsString>>>,
    /// Directories where any file is relevant (those a web server's include glob lists).
    any_in: Arc<std::sync::RwLock<HashSet<PathBuf>>>,
    /// Some directory could not be watched: rely on rescans.
    pub degraded: bool,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("degraded", &self.degraded)
            .finish()
    }
}

impl Watcher {
    /// A watcher that sends the path of each relevant change to `events`.
    pub fn new(events: UnboundedSender<PathBuf>) -> Self {
        let names: Arc<std::sync::RwLock<HashSet<OsString>>> = Arc::default();
        let wanted = names.clone();
        let any_in: Arc<std::sync::RwLock<HashSet<PathBuf>>> = Arc::default();
        let listed = any_in.clone();
        let handler = move |result: notify::Result<notify::Event>| {
            let Ok(event) = result else { return };
            // Reading a file (ours, every scan, or the web server's) is not a change: acting
            // on opens and closes would make each scan trigger the next.
            use notify::event::{AccessKind, AccessMode, EventKind};
            match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
                EventKind::Access(_) => return,
                _ => {}
            }
            let (Ok(wanted), Ok(listed)) = (wanted.read(), listed.read()) else {
                return;
            };
            for path in event.paths {
                let Some(name) = path.file_name() else {
                    continue;
                };
                // Our files, or a Kubernetes-style `..data` flip beside them.
                let relevant = wanted.contains(name)
                    || name.to_string_lossy().starts_with("..")
                    || path.parent().is_some_and(|dir| listed.contains(dir));
                if relevant {
                    let _ = events.send(path);
                }
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(inner) => Self {
                inner: Some(inner),
                watched: HashSet::new(),
                names,
                any_in,
                degraded: false,
            },
            Err(err) => {
                tracing::warn!("cannot watch files ({err}); relying on periodic rescans");
                Self {
                    inner: None,
                    watched: HashSet::new(),
                    names,
                    any_in,
                    degraded: true,
                }
            }
        }
    }

    /// Watches the directories of every file the configuration names; returns how many
    /// directories are newly watched.
    pub fn watch_config(&mut self, config: &Config) -> usize {
        let mut files: Vec<&Path> = Vec::new();
        for cert in &config.certificates {
            files.push(&cert.cert_path);
            files.push(&cert.key_path);
        }
        for monitor in &config.monitors {
            if let MonitorTarget::File(path) = &monitor.target {
                files.push(path);
            }
        }
        self.watch_files(&files)
    }

    /// Watches the web servers' configuration for `[discover]`: `files` like certificate
    /// files (their directories, for their names), and `dirs` for any file in them (a new
    /// include). Returns how many directories are newly watched.
    pub fn watch_inputs(&mut self, files: &[&Path], dirs: &[&Path]) -> usize {
        if let Ok(mut any_in) = self.any_in.write() {
            any_in.extend(dirs.iter().map(|dir| dir.to_path_buf()));
        }
        self.watch_dirs(dirs.iter().map(|dir| dir.to_path_buf()).collect())
            + self.watch_files(files)
    }

    /// Watches the parent directories of `files`; returns how many are newly watched.
    pub fn watch_files(&mut self, files: &[&Path]) -> usize {
        let mut dirs = BTreeSet::new();
        if let Ok(mut names) = self.names.write() {
            for file in files {
                if let Some(name) = file.file_name() {
                    names.insert(name.to_owned());
                }
                if let Some(dir) = file.parent() {
                    dirs.insert(dir.to_owned());
                }
            }
        }
        self.watch_dirs(dirs)
    }

    fn watch_dirs(&mut self, dirs: BTreeSet<PathBuf>) -> usize {
        let Some(inner) = self.inner.as_mut() else {
            return 0;
        };
        let mut added = 0;
        for dir in dirs {
            if self.watched.contains(&dir) || !dir.exists() {
                continue;
            }
            match inner.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                    added += 1;
                }
                // Running out of inotify watches is worth saying; rescans cover for it.
                Err(err) if !self.degraded => {
                    tracing::warn!(
                        "cannot watch {}: {err}; changes there are noticed by the periodic rescan (raise fs.inotify.max_user_watches)",
                        dir.display()
                    );
                    self.degraded = true;
                }
                Err(_) => {}
            }
        }
        added
    }
}
