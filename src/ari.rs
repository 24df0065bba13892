//! The CA's renewal information (ARI, RFC 9773), cached in `STATE_DIR/ari/NAME.json` so that
//! the one-shot `renew` (a timer every 12 h, cron) and the agent share one answer and never
//! ask more often than the CA's Retry-After allows (kept inside `schedule::ARI_POLL_MIN` and
//! `ARI_POLL_MAX`). An entry belongs to one certificate (serial) at one CA (directory URL);
//! anything else is stale.

use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use futures_util::stream;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::acme::AcmeClient;
use crate::decision::Window;
use crate::schedule;

/// How many renewal-information requests run at once.
pub const CONCURRENT_POLLS: usize = 8;
/// After a failed poll, the next try.
pub const RETRY_FAILED_POLL: Duration = Duration::HOUR;
/// A cache file larger than this is not ours.
const MAX_CACHE_BYTES: u64 = 64 * 1024;

/// What the CA last said about one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    /// The CA asked (its directory URL).
    pub directory: String,
    /// The certificate asked about.
    pub serial: String,
    /// The suggested window; `None` when the CA offers no ARI or no answer came yet.
    pub window: Option<Window>,
    /// Whether the CA's directory offers renewal information at all.
    pub supported: bool,
    /// Not before this may the CA be asked again (its Retry-After, bounded).
    #[serde(with = "time::serde::rfc3339")]
    pub next_poll: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_url: Option<String>,
}

impl Cached {
    /// The entry answers for this certificate at this CA until `next_poll`.
    pub fn is_fresh(&self, directory: &str, serial: &str, now: OffsetDateTime) -> bool {
        self.directory == directory && self.serial == serial && now < self.next_poll
    }

    /// The window, when it is about this certificate at this CA (even past `next_poll`: an old
    /// answer is better than none while the CA cannot be asked).
    pub fn window_for(&self, directory: &str, serial: &str) -> Option<Window> {
        (self.directory == directory && self.serial == serial)
            .then_some(self.window)
            .flatten()
    }
}

pub fn cache_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("ari").join(format!("{name}.json"))
}

/// The cached answer; `None` when there is none, or it is unreadable (then the CA is asked
/// again: a damaged cache must never stop a renewal).
pub fn load(state_dir: &Path, name: &str) -> Option<Cached> {
    let bytes = crate::fsread::read(&cache_path(state_dir, name), MAX_CACHE_BYTES).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn save(state_dir: &Path, name: &str, cached: &Cached) -> Result<(), String> {
    let path = cache_path(state_dir, name);
    let dir = state_dir.join("ari");
    crate::store::ensure_dir(&dir).map_err(|(_, err)| {
        format!(
            "cannot create {}: {err}; check that state_dir is writable",
            dir.display()
        )
    })?;
    let json = serde_json::to_vec_pretty(cached).map_err(|err| err.to_string())?;
    crate::store::write_atomic(&path, &json, 0o644).map_err(|err| err.to_string())
}

/// One certificate to ask about.
#[derive(Debug, Clone)]
pub struct Question {
    pub name: String,
    pub serial: String,
    pub cert_pem: Vec<u8>,
    pub previous: Option<Cached>,
}

impl Question {
    /// The question for a managed certificate on disk; `None` when there is no readable one.
    pub fn about(
        status: &crate::inventory::ManagedStatus,
        previous: Option<Cached>,
    ) -> Option<Self> {
        let file = status.file.as_ref()?;
        let cert_pem =
            crate::fsread::read(&status.cert_path, crate::fsread::SMALL_FILE_MAX).ok()?;
        Some(Self {
            name: status.name.clone(),
            serial: file.leaf.serial.clone(),
            cert_pem,
            previous,
        })
    }
}

/// Asks the CA about each certificate, [`CONCURRENT_POLLS`] at a time, and caches the answers.
/// A failed poll keeps the previous window of the same certificate and is tried again after
/// [`RETRY_FAILED_POLL`]. Returns the new entries by name.
pub async fn poll_all(
    client: &AcmeClient,
    state_dir: &Path,
    questions: Vec<Question>,
    now: OffsetDateTime,
) -> Vec<(String, Cached)> {
    let directory = client.directory().to_owned();
    let polls = questions.into_iter().map(|question| {
        let directory = directory.clone();
        async move {
            let answer = client.renewal_info(&question.cert_pem).await;
            let cached = match answer {
                Ok(Some(window)) => {
                    let retry = Duration::try_from(window.retry_after).unwrap_or(Duration::HOUR);
                    if window.end <= now {
                        tracing::warn!(
                            "{}: the CA's renewal window is in the past (revoked or to be replaced): renewing now",
                            question.name
                        );
                    }
                    Cached {
                        directory,
                        serial: question.serial.clone(),
                        window: Some(Window {
                            start: window.start,
                            end: window.end,
                        }),
                        supported: true,
                        next_poll: schedule::next_ari_poll(now, retry),
                        explanation_url: window.explanation_url,
                    }
                }
                Ok(None) => Cached {
                    directory,
                    serial: question.serial.clone(),
                    window: None,
                    supported: false,
                    next_poll: now + schedule::ARI_POLL_MAX,
                    explanation_url: None,
                },
                Err(err) => {
                    tracing::warn!(
                        "{}: asking the CA for renewal information failed: {err}; trying again in an hour",
                        question.name
                    );
                    let window = question
                        .previous
                        .as_ref()
                        .and_then(|previous| previous.window_for(&directory, &question.serial));
                    Cached {
                        directory,
                        serial: question.serial.clone(),
                        window,
                        supported: true,
                        next_poll: now + RETRY_FAILED_POLL,
                        explanation_url: None,
                    }
                }
            };
            if let Err(err) = save(state_dir, &question.name, &cached) {
                tracing::warn!("{}: cannot cache renewal information: {err}", question.name);
            }
            (question.name, cached)
        }
    });
    stream::iter(polls)
        .buffer_unordered(CONCURRENT_POLLS)
        .collect()
        .await
}
