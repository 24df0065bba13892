//! What evercert remembers between runs about each certificate: the last success, the
//! current failure streak, the CA's Retry-After. Kept behind a small trait so that a fleet
//! can share it (etcd) later; the file backend writes one JSON file per certificate.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::acme::FailureKind;
use crate::decision::Reason;
use crate::renew::Step;

/// One certificate's renewal history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CertHistory {
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_success: Option<OffsetDateTime>,
    pub last_serial: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_failure: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub failure_kind: Option<FailureKind>,
    /// The pipeline step that failed (`order`, `reload`, `verify`, …).
    #[serde(default)]
    pub failure_step: Option<Step>,
    /// Failures since the last success.
    #[serde(default)]
    pub failures: u32,
    /// The CA asked not to come back before this.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub retry_after: Option<OffsetDateTime>,
    #[serde(default)]
    pub renewals: u64,
    /// Why the live certificate was ordered (ARI distrust needs to know: `decision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed_for: Option<Reason>,
    /// A version that was issued and stored but never deployed (its reload or verification
    /// failed and the previous pair was restored): the next attempt deploys it rather than
    /// ordering again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// The serial `evercert revoke` revoked: while it is the live certificate, it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_serial: Option<String>,
    /// When the current failure streak began (`fallback::choose`).
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub failing_since: Option<OffsetDateTime>,
    /// The directory URL of the CA the last attempt ordered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ca: Option<String>,
    /// The fallback CA tried last in this failure streak (the next one takes its turn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fallback: Option<String>,
    /// The CA that issued the live certificate (`status` shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_by: Option<String>,
    /// Certificates issued by a fallback CA so far, and why the last one was (the primary's
    /// error): the agent alerts once for each.
    #[serde(default)]
    pub fallback_renewals: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Times an order of this certificate found that the CA no longer knew evercert's account
    /// (lost or deactivated), so a new one was registered, and what happened the last time:
    /// the agent alerts once for each.
    #[serde(default)]
    pub new_accounts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_account_reason: Option<String>,
    /// When a fallback CA becomes the next attempt's choice, which the primary's backoff and
    /// Retry-After do not hold back (`decision::decide`).
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fallback_at: Option<OffsetDateTime>,
}

/// An issued version waiting in the archive to be deployed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub version: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl CertHistory {
    pub fn record_success(&mut self, serial: &str, now: OffsetDateTime) {
        self.last_success = Some(now);
        self.last_serial = Some(serial.to_owned());
        self.failures = 0;
        self.failure_kind = None;
        self.failure_step = None;
        self.last_error = None;
        self.retry_after = None;
        self.renewals += 1;
        self.pending = None;
        self.revoked_serial = None;
        self.failing_since = None;
        self.last_fallback = None;
        self.fallback_at = None;
    }

    pub fn record_failure(
        &mut self,
        kind: FailureKind,
        step: Step,
        error: &str,
        retry_after: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) {
        if self.failures == 0 {
            self.failing_since = Some(now);
        }
        self.last_failure = Some(now);
        self.last_error = Some(error.to_owned());
        self.failure_kind = Some(kind);
        self.failure_step = Some(step);
        self.failures = self.failures.saturating_add(1);
        self.retry_after = retry_after;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot save renewal history to {path}: {message}; check that state_dir is writable")]
pub struct StateError {
    pub path: String,
    pub message: String,
}

/// Where histories are kept.
pub trait StateStore: Send + Sync {
    /// The history of a certificate; empty when none was recorded (or it is unreadable:
    /// a damaged history must never stop a renewal, it is moved aside and logged).
    fn load(&self, name: &str) -> CertHistory;
    fn save(&self, name: &str, history: &CertHistory) -> Result<(), StateError>;
}

/// `STATE_DIR/state/NAME.json`.
#[derive(Debug, Clone)]
pub struct FileState {
    dir: PathBuf,
}

impl FileState {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("state"),
        }
    }
}

impl StateStore for FileState {
    fn load(&self, name: &str) -> CertHistory {
        load_json(&self.dir.join(format!("{name}.json"))).unwrap_or_default()
    }

    fn save(&self, name: &str, history: &CertHistory) -> Result<(), StateError> {
        let path = self.dir.join(format!("{name}.json"));
        let error = |message: String| StateError {
            path: path.display().to_string(),
            message,
        };
        // Exactly 0755 whatever the umask (create_dir_all under umask 0 would make it 0777,
        // and the permission check would then refuse every later run).
        crate::store::ensure_dir(&self.dir).map_err(|(_, err)| error(err.to_string()))?;
        let json = serde_json::to_vec_pretty(history).map_err(|err| error(err.to_string()))?;
        crate::store::write_atomic(&path, &json, 0o600).map_err(|err| error(err.to_string()))
    }
}

/// Reads a JSON state file (a history, `alerts.json`); `None` when there is none. One that
/// cannot be used (damaged JSON, not a regular file, too large) is renamed to
/// `PATH.corrupt-TIMESTAMP` and logged: starting afresh must not silently erase what an
/// operator may need to see (a failure streak, a Retry-After, alerts already sent).
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Option<T> {
    use crate::fsread::{self, Problem};
    let problem = match fsread::read(path, fsread::SMALL_FILE_MAX) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(value) => return Some(value),
            Err(err) => format!("damaged JSON ({err})"),
        },
        Err(err) => match err.problem {
            Problem::NotFound => return None,
            Problem::NotRegular(_) | Problem::TooLarge { .. } => err.problem.to_string(),
            // Nothing wrong with the file itself: leave it where it is.
            _ => {
                tracing::warn!(
                    "cannot read {err}; going on without it (check the permissions of {})",
                    path.display()
                );
                return None;
            }
        },
    };
    match move_aside(path, OffsetDateTime::now_utc()) {
        Ok(aside) => tracing::warn!(
            "{}: {problem}; moved it to {} and started afresh",
            path.display(),
            aside.display()
        ),
        Err(err) => tracing::warn!(
            "{}: {problem}; going on without it, and cannot move it aside: {err}",
            path.display()
        ),
    }
    None
}

/// Renames `path` to `path.corrupt-20261130T111500Z` (`-2`, `-3`… if taken).
fn move_aside(path: &Path, now: OffsetDateTime) -> std::io::Result<PathBuf> {
    let stamp = now
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "unknown".to_owned());
    let mut base = path.as_os_str().to_owned();
    base.push(format!(".corrupt-{stamp}"));
    let mut aside = PathBuf::from(&base);
    for n in 2.. {
        match std::fs::symlink_metadata(&aside) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => break,
            Err(err) => return Err(err),
            Ok(_) => {
                let mut next = base.clone();
                next.push(format!("-{n}"));
                aside = PathBuf::from(next);
            }
        }
    }
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trips_and_streaks_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileState::new(dir.path());
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut history = store.load("shop");
        assert_eq!(history, CertHistory::default());
        history.record_failure(FailureKind::Transient, Step::Order, "down", None, now);
        history.record_failure(FailureKind::Transient, Step::Order, "down", None, now);
        store.save("shop", &history).unwrap();
        let mut loaded = store.load("shop");
        assert_eq!(loaded.failures, 2);
        loaded.record_success("abcd", now);
        assert_eq!(loaded.failures, 0);
        assert_eq!(loaded.renewals, 1);
        std::fs::write(dir.path().join("state/broken.json"), b"{not json").unwrap();
        // A history written before steps were an enum (strings) still loads.
        std::fs::write(
            dir.path().join("state/old.json"),
            br#"{"last_success":null,"last_serial":null,"last_failure":"2026-11-01T00:00:00Z","last_error":"x","failure_kind":"permanent","failure_step":"verify","failures":1,"retry_after":null,"renewals":3}"#,
        )
        .unwrap();
        let old = store.load("old");
        assert_eq!(old.failure_step, Some(Step::Verify));
        assert_eq!((old.failures, old.renewals, old.pending), (1, 3, None));
        assert_eq!(store.load("broken"), CertHistory::default());
    }

    #[test]
    fn a_corrupt_state_file_is_moved_aside_not_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileState::new(dir.path());
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        for round in 0..2 {
            std::fs::write(state.join("shop.json"), b"{\"failures\": 3,").unwrap();
            assert_eq!(store.load("shop"), CertHistory::default(), "round {round}");
            assert!(!state.join("shop.json").exists());
        }
        // A FIFO in its place is moved aside too, without blocking.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            state.join("shop.json"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert_eq!(store.load("shop"), CertHistory::default());
        let mut aside: Vec<String> = std::fs::read_dir(&state)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        aside.sort();
        assert_eq!(aside.len(), 3, "{aside:?}");
        for name in &aside {
            assert!(name.starts_with("shop.json.corrupt-"), "{aside:?}");
        }
        let kept = std::fs::read(state.join(&aside[0])).unwrap();
        assert_eq!(kept, b"{\"failures\": 3,");
        // A missing file is simply none.
        assert_eq!(load_json::<CertHistory>(&state.join("none.json")), None);
    }
}
