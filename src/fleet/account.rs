//! One ACME account per CA for the whole fleet, at `P/account/ID`, sealed with the fleet key.
//! Hosts that each registered their own account would fail each other's authorizations
//! (ClickHouse#96144) and spread the CA's rate limits over several accounts.
//!
//! Created once: the first host takes the account lock, registers (or uses the account it
//! already has), and publishes it only if no other host did (a transaction on the key's
//! version); every other host writes the fleet's account into its own `state_dir` before
//! ordering.

use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::Fleet;
use super::lock::Attempt;
use crate::acme::{AcmeClient, account_dir};
use crate::config::Config;

/// The account is sealed as generation 1 of its key: it never changes.
const ACCOUNT_GENERATION: u64 = 1;
const ACCOUNT_LOCK_WAIT: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
struct SharedAccount {
    credentials: String,
    info: String,
}

impl Fleet {
    /// Makes `state_dir` hold the fleet's account for `directory`, creating and publishing
    /// it when the fleet has none.
    pub async fn sync_account(&self, config: &Config, directory: &str) -> Result<(), String> {
        let dir = account_dir(&config.state_dir, directory);
        let id = dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "ca".into());
        let key = self.key(&["account", &id]);
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
        let result = self.create_account(config, directory, &key, &dir).await;
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
        directory: &str,
        key: &str,
        dir: &std::path::Path,
    ) -> Result<(), String> {
        if self.install_account(key, dir).await? {
            return Ok(());
        }
        // Registers, or loads the account this host already has.
        AcmeClient::connect(
            &config.acme,
            directory,
            &config.state_dir,
            &crate::renew::save_secret,
        )
        .await
        .map_err(|err| err.message)?;
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
