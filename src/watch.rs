//! Noticing certificate files changed by hand, by certbot, or by Kubernetes.
//!
//! The *parent directories* of every certificate, key and monitored file are watched
//! (non-recursive): renames over a file, symlink swaps and `..data` flips all show up there,
//! while a watch on the file itself would follow the old inode and go silent. Events only
//! say "look again": the agent re-reads and re-decides, it never trusts the event kind.
//! When inotify watches run out, the agent falls back to frequent rescans.
//!
//! Once evercert manages a pair, `cert_path` is a symlink that never changes: what changes is
//! what it resolves through (`links`). So `STATE/live/` (each certificate's link), the
//! certificate's `archive/NAME/` and its live version's directory are watched too: a
//! mistyped rollback, a removed version, or a renewal made by another process (the timer
//! unit, a `renew` by hand) is seen at once, like any file change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use crate::config::{Config, MonitorTarget};

/// Which entries of a watched directory matter.
#[derive(Debug, Clone, Default)]
struct Interest {
    /// These names (and Kubernetes-style `..data` flips beside them).
    names: HashSet<OsString>,
    /// Every entry but staging names (`.tmp-…`, `.NAME.….tmp`): a version directory, or a
    /// certificate's archive.
    any: bool,
    /// Every entry (a directory a web server's include glob lists).
    all: bool,
}

impl Interest {
    fn wants(&self, name: &std::ffi::OsStr) -> bool {
        let text = name.to_string_lossy();
        if self.all {
            return true;
        }
        if self.any {
            return !text.starts_with('.') || text.starts_with("..");
        }
        self.names.contains(name) || text.starts_with("..")
    }
}

/// The file watcher; dropping it stops watching.
pub struct Watcher {
    inner: Option<notify::RecommendedWatcher>,
    /// Directories watched so far; the others are tried again after every wake-up (a
    /// certificate directory appears with the first issuance).
    watched: HashSet<PathBuf>,
    interests: Arc<std::sync::RwLock<HashMap<PathBuf, Interest>>>,
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
        let interests: Arc<std::sync::RwLock<HashMap<PathBuf, Interest>>> = Arc::default();
        let wanted = interests.clone();
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
            let Ok(wanted) = wanted.read() else { return };
            for path in event.paths {
                let (Some(name), Some(dir)) = (path.file_name(), path.parent()) else {
                    continue;
                };
                // Our files, or a Kubernetes-style `..data` flip beside them.
                let relevant = wanted.get(dir).is_some_and(|interest| interest.wants(name));
                if relevant {
                    let _ = events.send(path);
                }
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(inner) => Self {
                inner: Some(inner),
                watched: HashSet::new(),
                interests,
                degraded: false,
            },
            Err(err) => {
                tracing::warn!("cannot watch files ({err}); relying on periodic rescans");
                Self {
                    inner: None,
                    watched: HashSet::new(),
                    interests,
                    degraded: true,
                }
            }
        }
    }

    /// Watches the directories of every file the configuration names, and what the managed
    /// paths resolve through; returns how many directories are newly watched.
    pub fn watch_config(&mut self, config: &Config) -> usize {
        let mut files: Vec<&Path> = Vec::new();
        for cert in &config.certificates {
            files.push(&cert.cert_path);
            files.push(&cert.key_path);
            if let Some(bundle) = &cert.bundle_path {
                files.push(bundle);
            }
        }
        for monitor in &config.monitors {
            if let MonitorTarget::File(path) = &monitor.target {
                files.push(path);
            }
        }
        let mut wanted = by_directory(&files);
        for cert in &config.certificates {
            let dirs = crate::links::watched_dirs(&config.state_dir, cert);
            for (index, dir) in dirs.into_iter().enumerate() {
                let interest = wanted.entry(dir).or_default();
                if index == 0 {
                    // `live/`: this certificate's link.
                    interest.names.insert(OsString::from(&cert.name));
                } else {
                    interest.any = true;
                }
            }
        }
        self.watch_dirs(wanted)
    }

    /// Watches the web servers' configuration for `[discover]`: `files` like certificate
    /// files (their directories, for their names), and `dirs` for any file in them (a new
    /// include). Returns how many directories are newly watched.
    pub fn watch_inputs(&mut self, files: &[&Path], dirs: &[&Path]) -> usize {
        let mut wanted = by_directory(files);
        for dir in dirs {
            wanted.entry(dir.to_path_buf()).or_default().all = true;
        }
        self.watch_dirs(wanted)
    }

    /// Watches the parent directories of `files`; returns how many are newly watched.
    pub fn watch_files(&mut self, files: &[&Path]) -> usize {
        self.watch_dirs(by_directory(files))
    }

    fn watch_dirs(&mut self, wanted: BTreeMap<PathBuf, Interest>) -> usize {
        if let Ok(mut interests) = self.interests.write() {
            for (dir, interest) in &wanted {
                let known = interests.entry(dir.clone()).or_default();
                known.names.extend(interest.names.iter().cloned());
                known.any |= interest.any;
                known.all |= interest.all;
            }
        }
        let Some(inner) = self.inner.as_mut() else {
            return 0;
        };
        let mut added = 0;
        for dir in wanted.into_keys() {
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

/// The parent directories of `files`, each wanting its files' names.
fn by_directory(files: &[&Path]) -> BTreeMap<PathBuf, Interest> {
    let mut wanted: BTreeMap<PathBuf, Interest> = BTreeMap::new();
    for file in files {
        if let (Some(name), Some(dir)) = (file.file_name(), file.parent()) {
            wanted
                .entry(dir.to_owned())
                .or_default()
                .names
                .insert(name.to_owned());
        }
    }
    wanted
}
