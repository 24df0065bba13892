//! One ACME account per CA for the whole fleet, at `P/account/ID`, sealed with the fleet key.
//! Hosts that each registered their own account would fail each other's authorizations
//! (ClickHouse#96144) and spread the CA's rate limits over several accounts.
//!
//! Created once: the first host takes the account lock, registers (or uses the account it
//! already has), and publishes it only if no other host did (a transaction on the key's
//! version); every other host writes the fleet's account into its own `state_dir` before
//! ordering. The same holds for each `[[acme.fallback]]` CA, except that its account is
//! registered only by the first host that falls back, and published after that run.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::Fleet;
use super::lock::Attempt;
use crate::acme::{AcmeClient, account_dir};
use crate::config::{AcmeSettings, Config};

/// The account is sealed as generation 1 of its key: it never changes.
const ACCOUNT_GENERATION: u64 = 1;
const ACCOUNT_LOCK_WAIT: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct SharedAccount {
    credentials: String,
    info: String,
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
            let (key, dir) = self.account_place(config, &fallback.directory);
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
            let (key, dir) = self.account_place(config, &fallback.directory);
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
    fn account_place(&self, config: &Config, directory: &str) -> (String, std::path::PathBuf) {
        let dir = account_dir(&config.state_dir, directory);
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
        let (key, dir) = self.account_place(config, directory);
        let id = dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ca".into());
        if self.install_account(&key, &dir).await? {
            return Ok(());
        }
        // None yet: one host creates it.
        let lock_name = format!("account:{id}");
        let started = Instant::now();
        let token = loop {
            match self
                .try_lock(&lock_name)
                .await
                .map_err(|err| err.to_string())?
            {
                Attempt::Taken { token } => break token,
                Attempt::Busy { .. } if started.elapsed() < ACCOUNT_LOCK_WAIT => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if self.install_account(&key, &dir).await? {
                        return Ok(());
                    }
                }
                Attempt::Busy { holder } => {
                    return Err(format!(
                        "{holder} has been creating the fleet's ACME account for {}s; try again later",
                        ACCOUNT_LOCK_WAIT.as_secs()
                    ));
                }
            }
        };
        let result = self
            .create_account(config, settings, directory, &key, &dir)
            .await;
        let _ = self.unlock(&lock_name, token).await;
        result
    }

    /// Writes the fleet's account into `dir`; `false` when the fleet has none.
    async fn install_account(&self, key: &str, dir: &std::path::Path) -> Result<bool, String> {
        let Some(kv) = self.etcd.get(key).await.map_err(|err| err.to_string())? else {
            return Ok(false);
        };
        let plain = self
            .key
            .open(key, ACCOUNT_GENERATION, kv.value())
            .map_err(|err| err.to_string())?;
        let shared: SharedAccount = serde_json::from_slice(&plain)
            .map_err(|err| format!("the fleet's account at {key} is damaged: {err}"))?;
        let credentials = dir.join("credentials.json");
        let current = crate::fsread::read(&credentials, crate::fsread::SMALL_FILE_MAX).ok();
        if current.as_deref() != Some(shared.credentials.as_bytes()) {
            crate::renew::save_secret(&credentials, shared.credentials.as_bytes())?;
            crate::renew::save_secret(&dir.join("account.json"), shared.info.as_bytes())?;
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
        let read = |file: &str| {
            crate::fsread::read_to_string(&dir.join(file), crate::fsread::SMALL_FILE_MAX)
                .map_err(|err| err.to_string())
        };
        let shared = SharedAccount {
            credentials: read("credentials.json")?,
            info: read("account.json").unwrap_or_default(),
        };
        let plain = serde_json::to_vec(&shared).map_err(|err| err.to_string())?;
        let sealed = self.key.seal(key, ACCOUNT_GENERATION, &plain);
        let txn = Txn::new()
            .when([Compare::version(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, sealed, None)]);
        let response = self
            .etcd
            .txn(&format!("publish the fleet's account at {key}"), txn)
            .await
            .map_err(|err| err.to_string())?;
        if !response.succeeded() {
            // Another host published first (it did not wait for the lock): use theirs.
            self.install_account(key, dir).await?;
        } else {
            tracing::info!("published this host's ACME account as the fleet's at {key}");
        }
        Ok(())
    }
}
