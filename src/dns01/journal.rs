//! Records evercert added with the built-in updater, kept in `state_dir/dns01/` until they
//! are deleted again, so that a run killed between the two (SIGKILL, power loss, an order
//! timing out in a cancelled task) does not leave TXT records behind for ever: the next run
//! that updates the same server with the same key removes them first.
//!
//! An entry belongs to a live run while its process is alive (same boot, same pid) and, in
//! this process, while its record is still presented; only other entries are leftovers.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{AddedRecord, Rfc2136Challenge, Rfc2136Settings, tsig, update};

/// An entry is a few hundred bytes.
const ENTRY_MAX: u64 = 64 << 10;
/// Entries looked at per run; more means something else is writing there.
const MAX_ENTRIES: usize = 1000;

/// Entries of this process whose records are presented right now.
static LIVE: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn live<R>(f: impl FnOnce(&mut HashSet<PathBuf>) -> R) -> R {
    let mut guard = LIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(guard.get_or_insert_with(HashSet::new))
}

/// The journal directory of one `state_dir`.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

/// One journal entry on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    boot_id: String,
    pid: u32,
    server: String,
    key_name: String,
    zone: String,
    target: String,
    challenge_name: String,
    value: String,
}

impl Journal {
    /// The journal in `state_dir/dns01`.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("dns01"),
        }
    }

    /// Notes that `record` is about to be added; `None` (with a warning) when the journal
    /// cannot be written, which only loses the clean-up after a crash.
    pub fn record(&self, settings: &Rfc2136Settings, record: &AddedRecord) -> Option<Entry> {
        let stored = Stored {
            boot_id: boot_id(),
            pid: std::process::id(),
            server: settings.server.clone(),
            key_name: settings.key_name.clone(),
            zone: record.zone.clone(),
            target: record.target.clone(),
            challenge_name: record.challenge_name.clone(),
            value: record.value.clone(),
        };
        let path = self
            .dir
            .join(format!("{:016x}.json", rand::random::<u64>()));
        let written = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .and_then(|()| {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                file.write_all(&serde_json::to_vec(&stored).map_err(std::io::Error::other)?)?;
                file.sync_all()
            });
        match written {
            Ok(()) => {
                live(|set| set.insert(path.clone()));
                Some(Entry { path })
            }
            Err(err) => {
                tracing::warn!(
                    "cannot note the dns-01 record {} in {}: {err}; if evercert is killed before it removes the record, remove it by hand",
                    record.target,
                    self.dir.display()
                );
                None
            }
        }
    }

    /// The record is gone (or was never added): drop its entry.
    pub fn forget(&self, entry: &Entry) {
        live(|set| set.remove(&entry.path));
        if let Err(err) = std::fs::remove_file(&entry.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("cannot remove {}: {err}", entry.path.display());
        }
    }

    /// The record could not be deleted: leave its entry for a later run to retry.
    pub fn keep_for_later(&self, entry: &Entry) {
        live(|set| set.remove(&entry.path));
    }

    /// Deletes the records of earlier runs that went to the same server with the same key.
    pub async fn clean_leftovers(&self, settings: &Rfc2136Challenge) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let own_boot = boot_id();
        let paths: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .take(MAX_ENTRIES)
            .collect();
        for path in paths {
            if live(|set| set.contains(&path)) {
                continue;
            }
            let stored = match crate::fsread::read(&path, ENTRY_MAX)
                .map_err(|err| err.to_string())
                .and_then(|bytes| {
                    serde_json::from_slice::<Stored>(&bytes).map_err(|err| err.to_string())
                }) {
                Ok(stored) => stored,
                Err(err) => {
                    // Only a write cut short leaves this, and the update is sent after the
                    // entry is complete: no record to remove.
                    tracing::warn!(
                        "removing the unreadable dns-01 journal entry {}: {err}",
                        path.display()
                    );
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
            };
            let running = stored.boot_id == own_boot
                && stored.pid != std::process::id()
                && process_alive(stored.pid);
            if running
                || stored.server != settings.update.server
                || stored.key_name != settings.update.key_name
            {
                continue;
            }
            let record = AddedRecord {
                challenge_name: stored.challenge_name,
                target: stored.target,
                zone: stored.zone,
                value: stored.value,
            };
            let deleted = match tsig::load_secret(&settings.update.key_secret_file) {
                Ok(secret) => update::delete(&settings.update, &secret, &record).await,
                Err(err) => Err(err),
            };
            match deleted {
                Ok(()) => {
                    tracing::info!(
                        "dns-01: removed the TXT record {} an interrupted earlier run left in zone {}",
                        record.target,
                        record.zone
                    );
                    let _ = std::fs::remove_file(&path);
                }
                Err(err) => tracing::warn!(
                    "dns-01: cannot remove the TXT record {} an interrupted earlier run left: {err}; will try again next time",
                    record.target
                ),
            }
        }
    }
}

/// This boot's id: a pid from before a reboot says nothing about the process now using it.
fn boot_id() -> String {
    crate::fsread::read_to_string(Path::new("/proc/sys/kernel/random/boot_id"), 4096)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default()
}

fn process_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(pid) {
        Ok(()) => true,
        // It exists but belongs to another user.
        Err(err) => err == rustix::io::Errno::PERM,
    }
}
