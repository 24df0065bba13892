//! One ACME account per CA for the whole fleet, at `P/account/ID`, sealed with the fleet key.
//! Hosts that each registered their own account would fail each other's authorizations
//! (ClickHouse#96144) and spread the CA's rate limits over several accounts.
//!
//! Created once: the first host takes the account lock, registers (or uses the account it
//! already has), and publishes it only if no other host did (a transaction on the key's
//! version); every other host writes the fleet's account into its own `state_dir` before
//! ordering. The same holds for each `[[acme.fallback]]` CA, except that its account is
//! registered only by the first host that falls back, and published after that run.
//!
//! Replaced when the CA forgot it ([`FleetAccount`], the pipeline's `NewAccount` round): the
//! host that meets the loss takes the same account lock, and registers only if the fleet's
//! account is still the forgotten one; it publishes the new one with a transaction on the
//! old value's mod_revision (and its lock), so a host whose turn ran out cannot overwrite a
//! replacement another host made. The others install the new one before their next run, or
//! take it instead of registering when they meet the loss themselves. A replacement that
//! could not be published (etcd gone at that moment) is noted in the account's directory
//! and published at the next run, unless another host replaced the account meanwhile.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::Fleet;
use super::lock::Attempt;
use crate::acme::{AcmeClient, account_dir};
use crate::config::{AcmeSettings, Config};
use crate::renew::{BoxFuture, Claim, Published, SharedAccount};

/// The account is sealed as generation 1 of its key. It changes only when the CA forgot it;
/// a replayed older value would only bring back an account the CA no longer knows, which the
/// next order replaces again.
const ACCOUNT_GENERATION: u64 = 1;
const ACCOUNT_LOCK_WAIT: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct Record {
    credentials: String,
    info: String,
    /// The host that registered it (absent in accounts published before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
}

impl Record {
    /// The account's URL at the CA.
    fn id(&self) -> Option<String> {
        let id_in = |json: &str| {
            serde_json::from_str::<serde_json::Value>(json)
                .ok()?
                .get("id")?
                .as_str()
                .map(str::to_owned)
        };
        id_in(&self.info).or_else(|| id_in(&self.credentials))
    }
}

impl Fleet {
    /// Before a run: the primary CA's account (created when the fleet has none), and the
    /// fallback CAs' accounts the fleet has. A fallback's account is only created when a
    /// fallback is used ([`Self::share_new_accounts`] publishes it after the run), so a
    /// fallback CA that is down never stops a renewal from the primary, and with fallbacks
    /// configured a primary that is down does not stop the run either: its certificates go
    /// to a fallback, as on a single host.
    pub async fn sync_accounts(&self, config: &Config) -> Result<(), String> {
        let primary = self
            .sync_account(config, &config.acme, &config.acme.directory)
            .await;
        if let Err(err) = primary {
            if config.acme.fallbacks.is_empty() {
                return Err(err);
            }
            tracing::warn!(
                "fleet: cannot share the account at {}: {err}; the fallback CAs may order",
                config.acme.directory
            );
        }
        for fallback in &config.acme.fallbacks {
            let (key, dir) = self.place(&fallback.directory);
            if let Err(err) = self.install_account(&key, &dir).await {
                tracing::warn!(
                    "fleet: cannot install the fleet's account at the fallback CA {}: {err}",
                    fallback.directory
                );
            }
        }
        Ok(())
    }

    /// After a run: publishes the account this host registered at a fallback CA, when the
    /// fleet has none there yet (the first host that fell back); when another host was
    /// first, the next run installs the fleet's.
    pub async fn share_new_accounts(&self, config: &Config) {
        for fallback in &config.acme.fallbacks {
            let (key, dir) = self.place(&fallback.directory);
            if !dir.join("credentials.json").is_file() {
                continue;
            }
            if let Err(err) = self.publish_account(&key, &dir).await {
                tracing::warn!(
                    "fleet: cannot share the account at the fallback CA {}: {err}",
                    fallback.directory
                );
            }
        }
    }

    /// The etcd key and the local directory of the account at `directory`.
    fn place(&self, directory: &str) -> (String, std::path::PathBuf) {
        let dir = account_dir(self.state_dir(), directory);
        let id = dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ca".into());
        (self.key(&["account", &id]), dir)
    }

    /// Makes `state_dir` hold the fleet's account for `directory` (reached with `settings`),
    /// creating and publishing it when the fleet has none.
    pub async fn sync_account(
        &self,
        config: &Config,
        settings: &AcmeSettings,
        directory: &str,
    ) -> Result<(), String> {
        let (key, dir) = self.place(directory);
        if self.install_account(&key, &dir).await? {
            return Ok(());
        }
        // None yet: one host creates it.
        let lock_name = lock_name(&dir);
        let started = Instant::now();
        let token = loop {
            if let Some(token) = self.account_lock(&lock_name, started, "creating").await? {
                break token;
            }
            if self.install_account(&key, &dir).await? {
                return Ok(());
            }
        };
        let result = self
            .create_account(config, settings, directory, &key, &dir)
            .await;
        let _ = self.unlock(&lock_name, token).await;
        result
    }

    /// One attempt at the account lock `lock_name`: its fencing token, or `None` after a
    /// short pause when another host holds it; an error once it has been busy for
    /// [`ACCOUNT_LOCK_WAIT`] since `started` (the holder is `doing` the account).
    async fn account_lock(
        &self,
        lock_name: &str,
        started: Instant,
        doing: &str,
    ) -> Result<Option<i64>, String> {
        match self
            .try_lock(lock_name)
            .await
            .map_err(|err| err.to_string())?
        {
            Attempt::Taken { token } => Ok(Some(token)),
            Attempt::Busy { .. } if started.elapsed() < ACCOUNT_LOCK_WAIT => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                Ok(None)
            }
            Attempt::Busy { holder } => Err(format!(
                "{holder} has been {doing} the fleet's ACME account for {}s; try again later",
                ACCOUNT_LOCK_WAIT.as_secs()
            )),
        }
    }

    /// The fleet's account at `key` and the revision it was last written at.
    async fn read_account(&self, key: &str) -> Result<Option<(Record, i64)>, String> {
        let Some(kv) = self.etcd.get(key).await.map_err(|err| err.to_string())? else {
            return Ok(None);
        };
        let plain = self
            .key
            .open(key, ACCOUNT_GENERATION, kv.value())
            .map_err(|err| err.to_string())?;
        let record: Record = serde_json::from_slice(&plain)
            .map_err(|err| format!("the fleet's account at {key} is damaged: {err}"))?;
        Ok(Some((record, kv.mod_revision())))
    }

    /// Writes the fleet's account into `dir`; `false` when the fleet has none. An account
    /// this host registered in place of a forgotten one, and could not publish then, is
    /// published now instead, unless another host replaced the forgotten one meanwhile.
    async fn install_account(&self, key: &str, dir: &std::path::Path) -> Result<bool, String> {
        let Some((record, revision)) = self.read_account(key).await? else {
            return Ok(false);
        };
        if let Some(replaced) = unshared(dir) {
            let local = local_id(dir);
            if local.is_some() && record.id() == local {
                // Published after all (the answer was lost, or the account was created anew).
                let _ = std::fs::remove_file(dir.join(UNSHARED));
            } else if record.id().as_deref() == Some(replaced.as_str()) {
                let published = self
                    .publish_guarded(key, dir, Guard::Revision(revision), None)
                    .await?;
                if published {
                    let _ = std::fs::remove_file(dir.join(UNSHARED));
                    tracing::info!(
                        "published the account this host registered in place of {replaced} as the fleet's at {key}"
                    );
                    return Ok(true);
                }
                // Replaced meanwhile: the next look finds it replaced.
                return Box::pin(self.install_account(key, dir)).await;
            } else {
                set_aside_superseded(key, dir);
            }
        }
        let credentials = dir.join("credentials.json");
        let current = crate::fsread::read(&credentials, crate::fsread::SMALL_FILE_MAX).ok();
        if current.as_deref() != Some(record.credentials.as_bytes()) {
            crate::renew::save_secret(&credentials, record.credentials.as_bytes())?;
            crate::renew::save_secret(&dir.join("account.json"), record.info.as_bytes())?;
            tracing::info!("using the fleet's ACME account from {key}");
        }
        Ok(true)
    }

    async fn create_account(
        &self,
        config: &Config,
        settings: &AcmeSettings,
        directory: &str,
        key: &str,
        dir: &std::path::Path,
    ) -> Result<(), String> {
        if self.install_account(key, dir).await? {
            return Ok(());
        }
        // Registers, or loads the account this host already has.
        AcmeClient::connect(
            settings,
            directory,
            &config.state_dir,
            &crate::renew::save_secret,
        )
        .await
        .map_err(|err| err.message)?;
        self.publish_account(key, dir).await
    }

    /// Publishes the account in `dir` at `key` unless the fleet has one there; then this
    /// host uses the fleet's.
    async fn publish_account(&self, key: &str, dir: &std::path::Path) -> Result<(), String> {
        if self.publish_guarded(key, dir, Guard::Absent, None).await? {
            tracing::info!("published this host's ACME account as the fleet's at {key}");
        } else {
            // Another host published first (it did not wait for the lock): use theirs.
            self.install_account(key, dir).await?;
        }
        Ok(())
    }

    /// Puts the account in `dir` at `key` if `guard` holds (and, with `fence`, the lock
    /// `(name, token)` is still this host's); `false` when it did not.
    async fn publish_guarded(
        &self,
        key: &str,
        dir: &std::path::Path,
        guard: Guard,
        fence: Option<(&str, i64)>,
    ) -> Result<bool, String> {
        let read = |file: &str| {
            crate::fsread::read_to_string(&dir.join(file), crate::fsread::SMALL_FILE_MAX)
                .map_err(|err| err.to_string())
        };
        let record = Record {
            credentials: read("credentials.json")?,
            info: read("account.json").unwrap_or_default(),
            host: Some(self.name().to_owned()),
        };
        let plain = serde_json::to_vec(&record).map_err(|err| err.to_string())?;
        let sealed = self.key.seal(key, ACCOUNT_GENERATION, &plain);
        let mut compares = vec![match guard {
            Guard::Absent => Compare::version(key, CompareOp::Equal, 0),
            Guard::Revision(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
        }];
        if let Some((name, token)) = fence {
            compares.push(Compare::create_revision(
                self.key(&["lock", name]),
                CompareOp::Equal,
                token,
            ));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::put(key, sealed, None)]);
        let response = self
            .etcd
            .txn(&format!("publish the fleet's account at {key}"), txn)
            .await
            .map_err(|err| err.to_string())?;
        Ok(response.succeeded())
    }

    /// The CA forgot the fleet's account `old` at `directory`: this host's turn to replace
    /// it, or the replacement another host already published (installed in `state_dir`).
    /// The turn is the account lock, as when the account was first created: one host
    /// registers, the others wait and take its account.
    async fn claim_replacement(
        &self,
        directory: &str,
        old: &str,
    ) -> Result<(Claim, Option<Turn>), String> {
        let (key, dir) = self.place(directory);
        let lock_name = lock_name(&dir);
        let started = Instant::now();
        let adopted = |record: &Record| Claim::Adopted {
            account: record.id().unwrap_or_else(|| "(unknown)".into()),
            by: record.host.clone(),
        };
        let token = loop {
            if let Some((record, _)) = self.read_account(&key).await?
                && record.id().as_deref() != Some(old)
            {
                self.install_account(&key, &dir).await?;
                return Ok((adopted(&record), None));
            }
            if let Some(token) = self.account_lock(&lock_name, started, "replacing").await? {
                break token;
            }
        };
        // Under the lock: read again (the holder before us may just have published).
        let guard = match self.read_account(&key).await {
            Ok(Some((record, _))) if record.id().as_deref() != Some(old) => {
                let installed = self.install_account(&key, &dir).await;
                let _ = self.unlock(&lock_name, token).await;
                installed?;
                return Ok((adopted(&record), None));
            }
            Ok(Some((_, revision))) => Guard::Revision(revision),
            Ok(None) => Guard::Absent,
            Err(err) => {
                let _ = self.unlock(&lock_name, token).await;
                return Err(err);
            }
        };
        let turn = Turn {
            key,
            dir,
            lock_name,
            token,
            guard,
            old: old.to_owned(),
        };
        Ok((Claim::Register, Some(turn)))
    }

    /// Ends `turn`: publishes the account this host registered (`registered`) in place of
    /// the forgotten one, unless another host replaced it first.
    async fn publish_replacement(&self, turn: Turn, registered: bool) -> Result<Published, String> {
        let result = if registered {
            let fence = Some((turn.lock_name.as_str(), turn.token));
            match self
                .publish_guarded(&turn.key, &turn.dir, turn.guard, fence)
                .await
            {
                Ok(true) => Ok(Published::Shared {
                    place: turn.key.clone(),
                    host: self.name().to_owned(),
                }),
                Ok(false) => match self.read_account(&turn.key).await {
                    // Ours is there: the transaction was applied, but its answer was lost and
                    // the resend to another member failed the compare it had itself changed.
                    Ok(Some((record, _)))
                        if record.id().is_some() && record.id() == local_id(&turn.dir) =>
                    {
                        Ok(Published::Shared {
                            place: turn.key.clone(),
                            host: self.name().to_owned(),
                        })
                    }
                    Ok(Some((record, _))) if record.id().as_deref() != Some(turn.old.as_str()) => {
                        Ok(Published::Lost {
                            account: record.id().unwrap_or_else(|| "(unknown)".into()),
                        })
                    }
                    // Not replaced by anyone, only our turn was lost: try without the fence.
                    Ok(Some((_, revision))) => self
                        .publish_guarded(&turn.key, &turn.dir, Guard::Revision(revision), None)
                        .await
                        .and_then(|done| {
                            done.then(|| Published::Shared {
                                place: turn.key.clone(),
                                host: self.name().to_owned(),
                            })
                            .ok_or_else(|| {
                                format!("{} changed while this host published", turn.key)
                            })
                        }),
                    Ok(None) => Err(format!("{} vanished while this host published", turn.key)),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            }
        } else {
            Ok(Published::Released)
        };
        if registered && result.is_err() {
            // Published at the next run (`install_account`), unless replaced meanwhile.
            if let Err(err) =
                crate::renew::save_secret(&turn.dir.join(UNSHARED), turn.old.as_bytes())
            {
                tracing::warn!(
                    "cannot note that the account in {} is unshared: {err}",
                    turn.dir.display()
                );
            }
        }
        let _ = self.unlock(&turn.lock_name, turn.token).await;
        result
    }
}

/// The name of the account lock for the account in `dir`.
fn lock_name(dir: &std::path::Path) -> String {
    let id = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ca".into());
    format!("account:{id}")
}

/// A file in an account's directory: this host registered it in place of the forgotten
/// account named inside, and could not publish it yet.
const UNSHARED: &str = "unshared";

/// The account an unshared account in `dir` replaces.
fn unshared(dir: &std::path::Path) -> Option<String> {
    crate::fsread::read_to_string(&dir.join(UNSHARED), crate::fsread::SMALL_FILE_MAX)
        .ok()
        .map(|old| old.trim().to_owned())
        .filter(|old| !old.is_empty())
}

/// Another host replaced the forgotten account before this host could publish its own
/// replacement: this host's stays aside, unused.
fn set_aside_superseded(key: &str, dir: &std::path::Path) {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".superseded-{}",
        crate::units::compact_stamp(time::OffsetDateTime::now_utc())
    ));
    let aside = dir.with_file_name(name);
    match std::fs::rename(dir, &aside) {
        Ok(()) => tracing::warn!(
            "another host replaced the fleet's account at {key}; the account this host registered is unused, moved to {} (deactivate it at the CA)",
            aside.display()
        ),
        Err(err) => tracing::warn!(
            "cannot move the unshared account {} aside: {err}",
            dir.display()
        ),
    }
}

/// The URL of the account stored in `dir`.
fn local_id(dir: &std::path::Path) -> Option<String> {
    let read = |file: &str| {
        crate::fsread::read_to_string(&dir.join(file), crate::fsread::SMALL_FILE_MAX)
            .unwrap_or_default()
    };
    Record {
        credentials: read("credentials.json"),
        info: read("account.json"),
        host: None,
    }
    .id()
}

/// What a publish of the account compares.
#[derive(Debug, Clone, Copy)]
enum Guard {
    /// The fleet has no account there yet.
    Absent,
    /// The account there is still the one written at this revision.
    Revision(i64),
}

/// A host's turn to replace a forgotten account: the account lock it holds and what the
/// publish compares.
struct Turn {
    key: String,
    dir: std::path::PathBuf,
    lock_name: String,
    token: i64,
    guard: Guard,
    /// The forgotten account.
    old: String,
}

/// [`SharedAccount`] over the fleet: a new account replaces the fleet's in etcd.
pub struct FleetAccount {
    fleet: Arc<Fleet>,
    turn: Mutex<Option<Turn>>,
}

impl FleetAccount {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self {
            fleet,
            turn: Mutex::new(None),
        }
    }
}

/// A turn claimed but never ended: the run was cancelled between `claim` and `publish` (the
/// agent's deadline for a run, say). The lock lives on the session lease, which this process
/// keeps alive: left alone it would make every other host wait for it until this one exits.
impl Drop for FleetAccount {
    fn drop(&mut self) {
        let turn = self
            .turn
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(turn) = turn {
            let fleet = self.fleet.clone();
            self.fleet.spawn(async move {
                if let Err(err) = fleet.unlock(&turn.lock_name, turn.token).await {
                    tracing::warn!(
                        "cannot release the fleet's account lock {}: {err}; it ends with this host's lease",
                        turn.lock_name
                    );
                }
            });
        }
    }
}

impl std::fmt::Debug for FleetAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetAccount").finish_non_exhaustive()
    }
}

impl SharedAccount for FleetAccount {
    fn claim<'a>(
        &'a self,
        directory: &'a str,
        old: &'a str,
    ) -> BoxFuture<'a, Result<Claim, String>> {
        Box::pin(async move {
            let fleet = self.fleet.clone();
            let (directory, old) = (directory.to_owned(), old.to_owned());
            let (claim, turn) = self
                .fleet
                .run_on(async move { fleet.claim_replacement(&directory, &old).await })
                .await?;
            *self.turn.lock().unwrap_or_else(PoisonError::into_inner) = turn;
            Ok(claim)
        })
    }

    fn publish<'a>(
        &'a self,
        _directory: &'a str,
        registered: bool,
    ) -> BoxFuture<'a, Result<Published, String>> {
        Box::pin(async move {
            let turn = self
                .turn
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            let Some(turn) = turn else {
                return Ok(Published::Released);
            };
            let fleet = self.fleet.clone();
            self.fleet
                .run_on(async move { fleet.publish_replacement(turn, registered).await })
                .await
        })
    }
}
