//! Every host installs the fleet's current version of each certificate: from a watch on the
//! certificates' keys in the agent, at start (a host that joins late or was down catches up
//! from the current pointer), and when a host takes the renewal lock (`lock`).
//!
//! Before anything is written the version is checked: both hashes match the metadata, the
//! key decrypts with the fleet key for exactly this etcd key and generation, the key matches
//! the chain, the chain covers the configured names and has not expired. A version that fails
//! is refused (the files stay as they are), remembered so it is not tried again, alerted and
//! reported to the fleet. The files are written through the local atomic store; the reload
//! runs after a random delay (`reload_jitter`) so the fleet does not reload at once; then the
//! verify endpoints are checked and the outcome recorded at `P/applied/NAME/HOST`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::WatchOptions;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Fleet;
use super::store::{Meta, sha256_hex};
use crate::config::CertificateSettings;
use crate::links::target;
use crate::store::{CertStore, FsStore, NewPair};

/// What this host last installed from the fleet, in `STATE_DIR/fleet/NAME.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalApplied {
    pub generation: u64,
    pub serial: String,
    /// A generation that failed its checks here: not tried again.
    #[serde(default)]
    pub refused: Option<u64>,
}

/// What this host reports to the fleet at `P/applied/NAME/HOST`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub host: String,
    pub generation: u64,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Installed, reloaded and (where `verify` is configured) served.
    pub ok: bool,
    pub error: Option<String>,
}

/// The outcome of [`Fleet::catch_up`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaughtUp {
    /// This host already has the fleet's current version (or the fleet has none).
    AlreadyCurrent,
    /// It installed the fleet's current version.
    Applied(Installed),
}

/// The fleet's version a host installed, and why, for what it tells the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub generation: u64,
    pub serial: String,
    /// The host that issued it and published it to the fleet.
    pub published_by: String,
    pub published_at: OffsetDateTime,
    /// This host had installed that version before: its files were put back, replaced or
    /// deleted since, and the version was restored (nobody renewed anything).
    pub restored: bool,
}

impl Installed {
    /// What happened, in the operator's words; `me` is this host's name.
    pub fn describe(&self, me: &str) -> String {
        let by = if self.published_by == me {
            format!("this host ({me})")
        } else {
            format!("host {}", self.published_by)
        };
        let issued = format!(
            "generation {}, serial {}, issued by {by} at {}",
            self.generation,
            self.serial,
            crate::units::rfc3339(self.published_at)
        );
        if self.restored {
            format!(
                "restored the fleet's current version ({issued}): the files on disk were no longer that version, which this host had installed"
            )
        } else if self.published_by == me {
            format!(
                "installed the fleet's current version ({issued}), which this host had not installed yet"
            )
        } else {
            format!("{by} renewed it: installed the fleet's current version ({issued})")
        }
    }
}

fn local_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("fleet").join(format!("{name}.json"))
}

pub fn load_local(state_dir: &Path, name: &str) -> LocalApplied {
    crate::state::load_json(&local_path(state_dir, name)).unwrap_or_default()
}

pub fn record_local(state_dir: &Path, name: &str, applied: &LocalApplied) {
    let path = local_path(state_dir, name);
    let result = serde_json::to_vec_pretty(applied)
        .map_err(|err| err.to_string())
        .and_then(|json| crate::renew::save_secret(&path, &json));
    if let Err(err) = result {
        tracing::warn!(
            "{name}: cannot record the applied fleet version in {}: {err}",
            path.display()
        );
    }
}

/// A version fetched from etcd and checked.
struct Checked {
    meta: Meta,
    not_after: OffsetDateTime,
    chain: String,
    key: String,
}

impl Fleet {
    /// Installs the fleet's current version of `name` when it is newer than this host's.
    /// `Err` when the fleet cannot be asked or its version is refused here.
    pub async fn catch_up(&self, name: &str) -> Result<CaughtUp, String> {
        self.catch_up_checking(name, false).await
    }

    /// [`Self::catch_up`] before this host orders (under the lock): also when the files on
    /// disk are not the version this host last installed — put back from a backup, replaced
    /// or deleted by hand — the fleet's current version is installed again rather than a new
    /// one ordered for the whole fleet.
    pub async fn catch_up_before_order(&self, name: &str) -> Result<CaughtUp, String> {
        self.catch_up_checking(name, true).await
    }

    async fn catch_up_checking(&self, name: &str, check_files: bool) -> Result<CaughtUp, String> {
        let _one_at_a_time = self.applying.lock().await;
        let Some(cert) = self.certificate(name).cloned() else {
            return Ok(CaughtUp::AlreadyCurrent);
        };
        // This host holds the lock: its own pipeline is ordering or installing the version it
        // publishes. Installing that version from the watch at the same time raced with it
        // (two writers in one archive directory, one removing the other's temporary files).
        if self.token(name).is_some() {
            return Ok(CaughtUp::AlreadyCurrent);
        }
        let (generation, _) = self.current(name).await.map_err(|err| err.to_string())?;
        let local = load_local(self.state_dir(), name);
        let files_replaced = check_files
            && generation == local.generation
            && crate::inventory::read_cert_file(&cert.cert_path)
                .map_or(true, |file| file.leaf.serial != local.serial);
        if generation == 0 || (generation <= local.generation && !files_replaced) {
            return Ok(CaughtUp::AlreadyCurrent);
        }
        if files_replaced {
            tracing::info!(
                "{name}: {} is not the fleet's generation {generation} (serial {}) this host installed; installing it again instead of ordering",
                cert.cert_path.display(),
                local.serial
            );
        }
        if local.refused == Some(generation) {
            return Err(format!(
                "the fleet's generation {generation} of {name} was refused here; nothing is ordered until a valid version is published (see the earlier alert)"
            ));
        }
        let now = OffsetDateTime::now_utc();
        let checked = match self.fetch_and_check(&cert, generation, now).await {
            Ok(checked) => checked,
            Err(Refusal::Unreachable(message)) => return Err(message),
            // Installed here before, so not a bad version: it expired meanwhile. Order.
            Err(Refusal::Refused(why)) if files_replaced => {
                tracing::info!(
                    "{name}: the fleet's generation {generation} cannot be put back ({why}); ordering"
                );
                return Ok(CaughtUp::AlreadyCurrent);
            }
            Err(Refusal::Refused(why)) => {
                let message = format!(
                    "refused the fleet's generation {generation} of {name}: {why}; the current files are kept"
                );
                tracing::error!("{message}");
                record_local(
                    self.state_dir(),
                    name,
                    &LocalApplied {
                        refused: Some(generation),
                        ..local
                    },
                );
                self.report(name, generation, "", false, Some(message.clone()), now)
                    .await;
                self.alert(name, "fleet_version_refused", &message).await;
                return Err(message);
            }
        };
        let store = FsStore::new(self.state_dir());
        let pair = NewPair {
            key_pem: checked.key.as_bytes(),
            chain_pem: checked.chain.as_bytes(),
            serial: &checked.meta.serial,
            not_after: checked.not_after,
            domains: &cert.domains,
            issued_at: now,
        };
        let installed = store
            .recover(&target(&cert))
            .and_then(|()| store.install(&target(&cert), &pair));
        match installed {
            Ok(_) => {}
            Err(err) => {
                let message = format!("cannot install the fleet's generation {generation}: {err}");
                self.report(
                    name,
                    generation,
                    &checked.meta.serial,
                    false,
                    Some(message.clone()),
                    now,
                )
                .await;
                return Err(message);
            }
        }
        record_local(
            self.state_dir(),
            name,
            &LocalApplied {
                generation,
                serial: checked.meta.serial.clone(),
                refused: None,
            },
        );
        let installed = Installed {
            generation,
            serial: checked.meta.serial.clone(),
            published_by: checked.meta.published_by.clone(),
            published_at: checked.meta.published_at,
            restored: files_replaced,
        };
        tracing::info!("{name}: {}", installed.describe(self.name()));
        let outcome = self.reload_and_verify(&cert, &checked.meta.serial).await;
        let (ok, error) = match outcome {
            Ok(()) => (true, None),
            Err(message) => {
                self.alert(name, "fleet_apply_failed", &message).await;
                (false, Some(message))
            }
        };
        self.report(
            name,
            generation,
            &checked.meta.serial,
            ok,
            error,
            OffsetDateTime::now_utc(),
        )
        .await;
        Ok(CaughtUp::Applied(installed))
    }

    async fn fetch_and_check(
        &self,
        cert: &CertificateSettings,
        generation: u64,
        now: OffsetDateTime,
    ) -> Result<Checked, Refusal> {
        let name = &cert.name;
        let prefix = self.key(&["certs", name, &generation.to_string(), ""]);
        let (kvs, _) = self
            .etcd
            .get_prefix(&prefix)
            .await
            .map_err(|err| Refusal::Unreachable(err.to_string()))?;
        let part = |which: &str| {
            let key = self.cert_key(name, generation, which);
            kvs.iter()
                .find(|kv| kv.key() == key.as_bytes())
                .map(|kv| kv.value().to_vec())
                .ok_or_else(|| Refusal::Refused(format!("{key} is missing")))
        };
        let meta: Meta = serde_json::from_slice(&part("meta")?)
            .map_err(|err| Refusal::Refused(format!("its metadata is damaged ({err})")))?;
        if meta.generation != generation {
            return Err(Refusal::Refused(format!(
                "its metadata names generation {}",
                meta.generation
            )));
        }
        let chain = part("chain")?;
        if sha256_hex(&chain) != meta.chain_sha256 {
            return Err(Refusal::Refused(
                "the chain does not match its SHA-256 in the metadata".into(),
            ));
        }
        let key_key = self.cert_key(name, generation, "key");
        let key = self
            .key
            .open(&key_key, generation, &part("key")?)
            .map_err(|err| Refusal::Refused(err.to_string()))?;
        if sha256_hex(&key) != meta.key_sha256 {
            return Err(Refusal::Refused(
                "the key does not match its SHA-256 in the metadata".into(),
            ));
        }
        let (Ok(chain), Ok(key)) = (String::from_utf8(chain), String::from_utf8(key)) else {
            return Err(Refusal::Refused("the chain or key is not PEM text".into()));
        };
        let file = crate::renew::check_issued(&chain, &key, &cert.domains, now)
            .map_err(Refusal::Refused)?;
        if file.leaf.serial != meta.serial {
            return Err(Refusal::Refused(format!(
                "the chain's serial {} is not the metadata's {}",
                file.leaf.serial, meta.serial
            )));
        }
        Ok(Checked {
            meta,
            not_after: file.leaf.not_after,
            chain,
            key,
        })
    }

    /// Reloads after a random delay up to `reload_jitter`, then verifies.
    async fn reload_and_verify(
        &self,
        cert: &CertificateSettings,
        serial: &str,
    ) -> Result<(), String> {
        let jitter = self.settings.reload_jitter;
        if !jitter.is_zero() {
            let millis =
                rand::random_range(0..=jitter.as_millis().min(u128::from(u64::MAX)) as u64);
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        if let Some(command) = &cert.reload {
            let env = vec![
                ("EVERCERT_NAMES", cert.name.clone()),
                ("EVERCERT_NAME", cert.name.clone()),
                ("EVERCERT_DOMAINS", cert.domains.join(" ")),
                ("EVERCERT_SERIAL", serial.to_owned()),
            ];
            // The new files stay in place: the server keeps what it loaded before, and the
            // next reload that works picks them up. Putting the old files back would make this
            // host's next run order again for the whole fleet.
            if let Err(err) =
                crate::hooks::run(command, &[], &env, cert.reload_timeout.unsigned_abs()).await
            {
                return Err(format!(
                    "reload hook failed: {err}; the fleet's new files are in place but the server still serves what it loaded before: fix the server, then reload it"
                ));
            }
        }
        crate::renew::verify_served(cert, serial).await
    }

    /// Records this host's outcome for `name` at `P/applied/NAME/HOST`.
    async fn report(
        &self,
        name: &str,
        generation: u64,
        serial: &str,
        ok: bool,
        error: Option<String>,
        at: OffsetDateTime,
    ) {
        let applied = Applied {
            host: self.name().to_owned(),
            generation,
            serial: serial.to_owned(),
            at,
            ok,
            error,
        };
        let key = self.key(&["applied", name, self.name()]);
        let json = serde_json::to_vec(&applied).unwrap_or_default();
        if let Err(err) = self.etcd.put(&key, &json, None).await {
            tracing::warn!("{name}: cannot report to the fleet what was applied: {err}");
        }
    }

    /// Reports this host's state of `name` when the holder's own pipeline installed it.
    pub async fn report_holder(&self, name: &str) {
        let local = load_local(self.state_dir(), name);
        if local.generation > 0 {
            self.report(
                name,
                local.generation,
                &local.serial,
                true,
                None,
                OffsetDateTime::now_utc(),
            )
            .await;
        }
    }

    /// Catches up every certificate once; errors are logged.
    pub async fn catch_up_all(&self) {
        for cert in self.certificates() {
            match self.catch_up(&cert.name).await {
                Ok(_) => {}
                Err(message) => tracing::warn!("{}: fleet: {message}", cert.name),
            }
        }
    }

    /// Sends a fleet alert through the host's alert channels (`[alerts]` command and
    /// webhook), after logging it at error level.
    pub async fn alert(&self, name: &str, event: &str, message: &str) {
        tracing::error!("ALERT {event} {name}: {message}");
        let domains = self
            .certificate(name)
            .map(|cert| cert.domains.clone())
            .unwrap_or_default();
        let json = alert_json(event, name, &domains, message, self.name());
        self.alerter.deliver_json(name, &json).await;
    }
}

/// A fleet alert as the command and the webhook get it (docs/alerts.md, "Fleet events").
pub fn alert_json(
    event: &str,
    name: &str,
    domains: &[String],
    message: &str,
    host: &str,
) -> Vec<u8> {
    serde_json::json!({
        "event": event,
        "name": name,
        "kind": "fleet",
        "domains": domains,
        "message": message,
        "host": host,
        "time": crate::units::rfc3339(OffsetDateTime::now_utc()),
    })
    .to_string()
    .into_bytes()
}

enum Refusal {
    Unreachable(String),
    Refused(String),
}

/// The agent's background loop: catch up at start, then whenever a certificate's key
/// changes (a watch on `P/certs/`), and every few seconds in case a watch event was lost
/// or etcd was away.
pub async fn watch(fleet: std::sync::Weak<Fleet>) {
    const RESYNC: Duration = Duration::from_secs(10);
    loop {
        let Some(strong) = fleet.upgrade() else {
            return;
        };
        strong.catch_up_all().await;
        let prefix = strong.key(&["certs", ""]);
        let etcd = strong.etcd.clone();
        drop(strong);
        let watched = etcd
            .call("watch the fleet's certificates", |mut client| {
                let prefix = prefix.clone();
                async move {
                    client
                        .watch(prefix, Some(WatchOptions::new().with_prefix()))
                        .await
                }
            })
            .await;
        let Ok(mut stream) = watched else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        loop {
            match tokio::time::timeout(RESYNC, stream.message()).await {
                Ok(Ok(Some(response))) => {
                    if response.events().is_empty() {
                        continue;
                    }
                    let Some(strong) = fleet.upgrade() else {
                        return;
                    };
                    strong.catch_up_all().await;
                }
                // Quiet: look anyway (a member that lost its leader can leave a watch idle).
                Err(_) => {
                    let Some(strong) = fleet.upgrade() else {
                        return;
                    };
                    strong.catch_up_all().await;
                }
                // The member went away: watch through another one.
                Ok(_) => break,
            }
        }
    }
}
