//! What evercert remembers between runs about each certificate: the last success, the
//! current failure streak, the CA's Retry-After. Kept behind a small trait so that a fleet
//! can share it (etcd) later; the file backend writes one JSON file per certificate.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::acme::FailureKind;

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
    pub failure_step: Option<String>,
    /// Failures since the last success.
    #[serde(default)]
    pub failures: u32,
    /// The CA asked not to come back before this.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub retry_after: Option<OffsetDateTime>,
    #[serde(default)]
    pub renewals: u64,
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
    }

    pub fn record_failure(
        &mut self,
        kind: FailureKind,
        step: &str,
        error: &str,
        retry_after: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) {
        self.last_failure = Some(now);
        self.last_error = Some(error.to_owned());
        self.failure_kind = Some(kind);
        self.failure_step = Some(step.to_owned());
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
    /// a damaged history must never stop a renewal).
    fn load(&self, name: &str) -> CertHistory;
    fn save(&self, name: &str, history: &CertHistory) -> Result<(), StateError>;
}

/// `STATE_DIR/state/NAME.json`.
#[derive(Debug, Clone)]
pub struct FileState {
    dir: PathBuf,
}

impl FileState {
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self {
            dir: state_dir.join("state"),
        }
    }
}

impl StateStore for FileState {
    fn load(&self, name: &str) -> CertHistory {
        std::fs::read(self.dir.join(format!("{name}.json")))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
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
        history.record_failure(FailureKind::Transient, "order", "down", None, now);
        history.record_failure(FailureKind::Transient, "order", "down", None, now);
        store.save("shop", &history).unwrap();
        let mut loaded = store.load("shop");
        assert_eq!(loaded.failures, 2);
        loaded.record_success("abcd", now);
        assert_eq!(loaded.failures, 0);
        assert_eq!(loaded.renewals, 1);
        std::fs::write(dir.path().join("state/broken.json"), b"{not json").unwrap();
        assert_eq!(store.load("broken"), CertHistory::default());
    }
}
