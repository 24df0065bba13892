//! The fleet's renewal lock: `P/lock/NAME`, created only if absent and bound to the holder's
//! session lease, so a holder that dies or is paused past `lease_ttl` loses it to the next
//! host. The key's create_revision is the fencing token: every write the holder makes
//! (`store::FleetStore::install`) is a transaction that compares it, so a holder that wakes up
//! after losing the lock cannot publish.
//!
//! After taking the lock the holder re-reads the fleet's current version: when another host
//! published one this host has not applied yet, or this host's files are no longer the version
//! it installed, it installs the fleet's first and keeps the lock with a note saying what it
//! did, so the pipeline looks at the certificate again and finds it current.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};

use super::Fleet;
use super::etcd::EtcdError;
use crate::lock::{LockError, LockGuard, RenewLock};

const POLL: Duration = Duration::from_millis(200);

/// [`RenewLock`] on etcd.
#[derive(Debug, Clone)]
pub struct FleetLock {
    fleet: Arc<Fleet>,
}

impl FleetLock {
    pub fn new(fleet: Arc<Fleet>) -> Self {
        Self { fleet }
    }
}

/// One attempt at the lock.
#[derive(Debug)]
pub enum Attempt {
    Taken { token: i64 },
    Busy { holder: String },
}

impl Fleet {
    /// Tries once to take the lock on `name`.
    pub async fn try_lock(&self, name: &str) -> Result<Attempt, EtcdError> {
        let key = self.key(&["lock", name]);
        let lease = self.lease();
        let holder = format!("{} (pid {})", self.name(), std::process::id());
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                holder.as_str(),
                Some(etcd_client::PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let response = self.etcd.txn(&format!("take the lock {key}"), txn).await?;
        if response.succeeded() {
            let token = response
                .header()
                .map_or(0, etcd_client::ResponseHeader::revision);
            return Ok(Attempt::Taken { token });
        }
        let current = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
            _ => None,
        });
        match current {
            // Ours already: an earlier attempt applied but its answer was lost.
            Some(kv) if kv.lease() == lease && kv.value() == holder.as_bytes() => {
                Ok(Attempt::Taken {
                    token: kv.create_revision(),
                })
            }
            Some(kv) => Ok(Attempt::Busy {
                holder: String::from_utf8_lossy(kv.value()).into_owned(),
            }),
            // Released between the compare and the get: try again.
            None => Ok(Attempt::Busy {
                holder: "another host".into(),
            }),
        }
    }

    /// Deletes the lock on `name` if it is still the one with `token`.
    pub async fn unlock(&self, name: &str, token: i64) -> Result<(), EtcdError> {
        let key = self.key(&["lock", name]);
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                token,
            )])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        self.etcd
            .txn(&format!("release the lock {key}"), txn)
            .await
            .map(drop)
    }
}

impl FleetLock {
    /// The guard of the lock on `name` this host took with `token`.
    fn held(&self, name: &str, token: i64) -> LockGuard {
        self.fleet.hold(name, token);
        let fleet = self.fleet.clone();
        let owned = name.to_owned();
        let release = Box::new(move || {
            fleet.let_go(&owned, token);
            let inner = fleet.clone();
            fleet.spawn(async move {
                if let Err(err) = inner.unlock(&owned, token).await {
                    // The lease ends it anyway within lease_ttl.
                    tracing::warn!("{owned}: {err}");
                }
            });
        });
        LockGuard::held_elsewhere(name, release)
    }
}

impl RenewLock for FleetLock {
    fn acquire(&self, name: &str, wait: Duration) -> Result<LockGuard, LockError> {
        let started = Instant::now();
        let fleet_error = |err: EtcdError| LockError::Fleet {
            name: name.to_owned(),
            message: err.to_string(),
        };
        loop {
            let busy = match self.fleet.block(self.fleet.try_lock(name)) {
                Ok(Attempt::Taken { token }) => {
                    // Re-read: has the fleet a version this host has not applied yet?
                    match self.fleet.block(self.fleet.catch_up_before_order(name)) {
                        Ok(super::apply::CaughtUp::AlreadyCurrent) => {
                            return Ok(self.held(name, token));
                        }
                        // Keeps the lock: the pipeline looks at the certificate again, finds
                        // the version just installed, and says what happened.
                        Ok(super::apply::CaughtUp::Applied(installed)) => {
                            let note = installed.describe(self.fleet.name());
                            return Ok(self.held(name, token).with_note(note));
                        }
                        Err(err) => {
                            let _ = self.fleet.block(self.fleet.unlock(name, token));
                            return Err(LockError::Fleet {
                                name: name.to_owned(),
                                message: err,
                            });
                        }
                    }
                }
                Ok(Attempt::Busy { holder }) => holder,
                Err(err) => return Err(fleet_error(err)),
            };
            let waited = started.elapsed();
            if waited >= wait {
                tracing::debug!("{name}: fleet lock busy ({busy})");
                return Err(LockError::Busy {
                    name: name.to_owned(),
                    holder_pid: None,
                    waited,
                });
            }
            std::thread::sleep(POLL.min(wait - waited));
        }
    }
}
