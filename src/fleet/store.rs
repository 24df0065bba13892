//! [`CertStore`] for a fleet: the holder's `install` publishes the new version to etcd and
//! flips the fleet's current pointer in one transaction guarded by its fencing token, then
//! installs it locally through the file store. Everything else is the local store's.
//!
//! A version is `P/certs/NAME/GEN/{meta,chain,key}`: the chain in clear, the key sealed with
//! the fleet key and bound to its etcd key and generation, the metadata with both hashes.
//! `P/certs/NAME/current` holds the live generation; the previous one is kept (a host that
//! is still applying it can finish), older ones are deleted in the same transaction.
//!
//! Test-only: when `EVERCERT_TEST_FLEET_PUBLISH_DELAY_MS` is set, `install` sleeps that many
//! milliseconds after reading its fencing token and before publishing, so tests can pause or
//! kill the holder there. Never set it in production.

use std::sync::Arc;

use etcd_client::{Compare, CompareOp, DeleteOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::Fleet;
use super::etcd::EtcdError;
use crate::store::{CertStore, FsStore, Installed, NewPair, StoreError, Target, VersionId};

const PUBLISH_DELAY_ENV: &str = "EVERCERT_TEST_FLEET_PUBLISH_DELAY_MS";

/// What `P/certs/NAME/GEN/meta` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub generation: u64,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub domains: Vec<String>,
    pub chain_sha256: String,
    pub key_sha256: String,
    pub published_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::inventory::hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// The file store, publishing through etcd first.
#[derive(Debug, Clone)]
pub struct FleetStore {
    fleet: Arc<Fleet>,
    local: FsStore,
}

impl FleetStore {
    pub fn new(fleet: Arc<Fleet>, local: FsStore) -> Self {
        Self { fleet, local }
    }
}

/// Why a publish did not happen.
#[derive(Debug)]
pub enum PublishError {
    /// The lock is no longer this host's: another host took over.
    Fenced {
        token: i64,
    },
    Etcd(EtcdError),
}

impl Fleet {
    pub fn cert_key(&self, name: &str, generation: u64, part: &str) -> String {
        self.key(&["certs", name, &generation.to_string(), part])
    }

    /// The fleet's current generation of `name` and the pointer's mod_revision (0, 0: none).
    pub async fn current(&self, name: &str) -> Result<(u64, i64), EtcdError> {
        let pointer = self.key(&["certs", name, "current"]);
        Ok(match self.etcd.get(&pointer).await? {
            Some(kv) => (
                std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .unwrap_or(0),
                kv.mod_revision(),
            ),
            None => (0, 0),
        })
    }

    /// Publishes `pair` as the next generation of `name` and makes it current, if the lock
    /// with `token` is still held. Returns the generation.
    pub async fn publish(
        &self,
        name: &str,
        pair: &NewPair<'_>,
        token: i64,
        now: OffsetDateTime,
    ) -> Result<u64, PublishError> {
        let (current, pointer_revision) = self.current(name).await.map_err(PublishError::Etcd)?;
        let generation = current + 1;
        let key_key = self.cert_key(name, generation, "key");
        let meta = Meta {
            generation,
            serial: pair.serial.to_owned(),
            not_after: pair.not_after,
            domains: pair.domains.to_vec(),
            chain_sha256: sha256_hex(pair.chain_pem),
            key_sha256: sha256_hex(pair.key_pem),
            published_by: self.name().to_owned(),
            published_at: now,
        };
        let meta_json = serde_json::to_vec(&meta).unwrap_or_default();
        let sealed = self.key.seal(&key_key, generation, pair.key_pem);
        let lock = self.key(&["lock", name]);
        let pointer = self.key(&["certs", name, "current"]);
        let mut ops = vec![
            TxnOp::put(self.cert_key(name, generation, "meta"), meta_json, None),
            TxnOp::put(
                self.cert_key(name, generation, "chain"),
                pair.chain_pem,
                None,
            ),
            TxnOp::put(key_key.as_str(), sealed, None),
            TxnOp::put(pointer.as_str(), generation.to_string(), None),
        ];
        // Keep the previous generation; the one before goes.
        if generation > 2 {
            let old = self.key(&["certs", name, &(generation - 2).to_string(), ""]);
            ops.push(TxnOp::delete(old, Some(DeleteOptions::new().with_prefix())));
        }
        let txn = Txn::new()
            .when([
                Compare::create_revision(lock.as_str(), CompareOp::Equal, token),
                Compare::mod_revision(pointer.as_str(), CompareOp::Equal, pointer_revision),
            ])
            .and_then(ops);
        let response = self
            .etcd
            .txn(&format!("publish {name} generation {generation}"), txn)
            .await
            .map_err(PublishError::Etcd)?;
        if response.succeeded() {
            return Ok(generation);
        }
        // Applied by an earlier try whose answer was lost?
        if let Ok(Some(kv)) = self
            .etcd
            .get(&self.cert_key(name, generation, "meta"))
            .await
            && serde_json::from_slice::<Meta>(kv.value()).is_ok_and(|m| m.serial == pair.serial)
            && self
                .current(name)
                .await
                .is_ok_and(|(now_current, _)| now_current == generation)
        {
            return Ok(generation);
        }
        Err(PublishError::Fenced { token })
    }
}

impl CertStore for FleetStore {
    fn recover(&self, target: &Target<'_>) -> Result<(), StoreError> {
        self.local.recover(target)
    }

    fn install(&self, target: &Target<'_>, pair: &NewPair<'_>) -> Result<Installed, StoreError> {
        let name = target.name;
        let fleet_error = |message: String| StoreError::Fleet {
            name: name.to_owned(),
            message,
        };
        let Some(token) = self.fleet.token(name) else {
            return Err(fleet_error(
                "this host no longer holds the fleet's renewal lock (its lease expired); nothing was published or installed, the host that holds it now renews".into(),
            ));
        };
        // Test-only: a pause between the order and the publish, so tests can stop or kill the
        // holder there. Never set it in production.
        if let Some(delay) = std::env::var(PUBLISH_DELAY_ENV)
            .ok()
            .and_then(|ms| ms.parse::<u64>().ok())
        {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        let now = OffsetDateTime::now_utc();
        let generation = self
            .fleet
            .block(self.fleet.publish(name, pair, token, now))
            .map_err(|err| match err {
                PublishError::Fenced { token } => fleet_error(format!(
                    "the fleet refused the publish: the lock's fencing token {token} is no longer current (this host was paused or cut off past lease_ttl and another host took over); nothing was published or installed"
                )),
                PublishError::Etcd(err) => fleet_error(format!(
                    "cannot publish the new version: {err}; nothing was installed, the next attempt orders again"
                )),
            })?;
        tracing::info!(
            "{name}: published generation {generation} (serial {}) to the fleet",
            pair.serial
        );
        let installed = self.local.install(target, pair)?;
        super::apply::record_local(
            self.fleet.state_dir(),
            name,
            &super::apply::LocalApplied {
                generation,
                serial: pair.serial.to_owned(),
                refused: None,
            },
        );
        Ok(installed)
    }

    fn rollback(&self, target: &Target<'_>, to: &VersionId) -> Result<(), StoreError> {
        self.local.rollback(target, to)
    }

    fn current(&self, name: &str) -> Result<Option<VersionId>, StoreError> {
        self.local.current(name)
    }

    fn versions(&self, name: &str) -> Result<Vec<VersionId>, StoreError> {
        self.local.versions(name)
    }

    fn preflight(&self, target: &Target<'_>) -> Result<(), StoreError> {
        self.local.preflight(target)
    }

    fn prune(
        &self,
        name: &str,
        keep: usize,
        installed: &Installed,
    ) -> Result<Vec<VersionId>, StoreError> {
        self.local.prune(name, keep, installed)
    }

    fn read_version(
        &self,
        name: &str,
        version: &VersionId,
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        self.local.read_version(name, version)
    }
}
