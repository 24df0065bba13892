//! Fleet mode: several hosts behind one load balancer share their certificates through etcd.
//!
//! Only used when the configuration has `[cluster]`; without it no etcd connection is made
//! and nothing here runs. The fleet orders once per certificate (a lock bound to the holder's
//! lease, its revision the fencing token of every write), every host answers the CA's http-01
//! challenges, and every host installs the same version through its own atomic store.
//!
//! Keys under `[cluster] prefix` (P):
//! - `P/account/<ca>`: the shared ACME account, sealed with the fleet key.
//! - `P/lock/<cert>`: the renewal lock, bound to the holder's lease.
//! - `P/certs/<cert>/current`: the generation number that is live.
//! - `P/certs/<cert>/<generation>/meta`, `…/chain`, `…/key` (sealed): one version.
//! - `P/hosts/<host>`: a host's heartbeat, bound to its lease.
//! - `P/applied/<cert>/<host>`: what a host installed and verified.
//! - `P/http01/<token>` and `P/ack/<token>/<host>`: the challenge fan-out.
//!
//! Secrets (private keys, the account key) are sealed by [`crypto`] before they reach etcd.

pub mod cli;
pub mod config;
pub mod crypto;
pub mod etcd;

pub use config::ClusterSettings;

pub mod account;
pub mod agent;
pub mod apply;
pub mod backends;
pub mod fanout;
pub mod lag;
pub mod lock;
pub mod state;
pub mod status;
pub mod store;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::{CertificateSettings, Config};
use crypto::{CryptoError, FleetKey};
use etcd::{Etcd, EtcdError};

/// Why fleet mode could not start or act.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    #[error(transparent)]
    Key(#[from] CryptoError),
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    #[error("cannot start fleet mode's I/O thread: {0}")]
    Runtime(String),
}

/// This host's membership in the fleet: the etcd client, the fleet key, the session lease
/// (kept alive in the background; the host's heartbeat and every lock it takes are bound to
/// it), and the locks it holds with their fencing tokens.
///
/// Fleet I/O runs on a runtime of its own, so that the synchronous store, lock and state
/// traits can wait for etcd from inside the pipeline's runtime (`block`).
pub struct Fleet {
    pub settings: ClusterSettings,
    pub etcd: Arc<Etcd>,
    pub key: Arc<FleetKey>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The session lease; replaced when it expired (a paused process, etcd lost).
    lease: Mutex<i64>,
    /// Certificate name → fencing token (the lock key's create_revision) of locks held now.
    held: Mutex<HashMap<String, i64>>,
    /// The managed certificates, to apply versions published by others.
    certs: Vec<CertificateSettings>,
    state_dir: std::path::PathBuf,
    /// Serialises applying versions (the watcher and the lock's re-read).
    applying: tokio::sync::Mutex<()>,
    /// The host's `[alerts]` channels (command, webhook), for the fleet's own alerts.
    alerter: Arc<crate::alerts::Alerter>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("name", &self.settings.name)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

/// The name of the fleet runtime's threads (its worker and its blocking pool).
const RUNTIME_THREAD: &str = "evercert-fleet";

/// How long leaving the fleet may hold up a process that exits.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(1);

impl Drop for Fleet {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.take() else {
            return;
        };
        // Leave: ending the lease removes this host's heartbeat (and anything else bound to
        // it) at once, so a holder does not wait for the acknowledgements of a process that
        // has exited. Bounded; when it fails the lease runs out within lease_ttl anyway.
        // Waited on from a thread of its own: blocking inside another runtime panics.
        let lease = self.lease();
        // Dropped on the fleet runtime's own thread (a background task held the last
        // reference), block_on from a helper thread would wait for a runtime whose only
        // worker is this blocked thread: no revoke then; the lease runs out by itself.
        let on_own_runtime = std::thread::current().name() == Some(RUNTIME_THREAD);
        if lease != 0 && !on_own_runtime {
            let etcd = self.etcd.clone();
            std::thread::scope(|scope| {
                let _ = scope
                    .spawn(|| {
                        runtime.block_on(async {
                            let _ = tokio::time::timeout(LEAVE_TIMEOUT, etcd.revoke(lease)).await;
                        });
                    })
                    .join();
            });
        }
        runtime.shutdown_background();
    }
}

fn lock_std<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    /// Loads the fleet key, joins etcd (a session lease and this host's heartbeat) and keeps
    /// the lease alive in the background. Fails when etcd cannot be reached.
    pub fn start(config: &Config, settings: &ClusterSettings) -> Result<Arc<Self>, FleetError> {
        let key = FleetKey::load(&settings.secret_key_file)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(RUNTIME_THREAD)
            .enable_all()
            .build()
            .map_err(|err| FleetError::Runtime(err.to_string()))?;
        let etcd = Arc::new(Etcd::new(settings)?);
        let fleet = Arc::new(Self {
            settings: settings.clone(),
            etcd,
            key: Arc::new(key),
            runtime: Some(runtime),
            lease: Mutex::new(0),
            held: Mutex::new(HashMap::new()),
            certs: config.certificates.clone(),
            state_dir: config.state_dir.clone(),
            applying: tokio::sync::Mutex::new(()),
            alerter: Arc::new(crate::alerts::Alerter::new(config.alerts.clone())),
        });
        fleet.block(fleet.join())?;
        let keeper = Arc::downgrade(&fleet);
        fleet.spawn(async move { keep_alive(keeper).await });
        // Every process in the fleet serves the holder's http-01 tokens while it runs.
        fleet.spawn(fanout::serve(Arc::downgrade(&fleet)));
        Ok(fleet)
    }

    /// Runs `future` on the fleet's runtime and waits for it, from any thread (also from
    /// inside another runtime: it waits on a thread of its own).
    pub fn block<T: Send>(&self, future: impl Future<Output = T> + Send) -> T {
        let Some(runtime) = self.runtime.as_ref() else {
            unreachable!("the runtime lives as long as the fleet")
        };
        std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(future))
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs `future` in the background on the fleet's runtime.
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = self.runtime.as_ref() {
            runtime.spawn(future);
        }
    }

    /// Runs `future` on the fleet's runtime (where its etcd clients live) and awaits it from
    /// the caller's runtime, which never drives the fleet's connections itself.
    pub async fn run_on<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        let Some(handle) = self.handle() else {
            return Err("fleet mode has stopped".into());
        };
        handle
            .spawn(future)
            .await
            .unwrap_or_else(|err| Err(format!("the fleet's task failed: {err}")))
    }

    pub fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.handle().clone())
    }

    /// A key under the prefix: `key(&["certs", "shop", "current"])`.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut key = self.settings.prefix.clone();
        for part in parts {
            key.push('/');
            key.push_str(part);
        }
        key
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn lease(&self) -> i64 {
        *lock_std(&self.lease)
    }

    /// A new session lease and this host's heartbeat bound to it.
    async fn join(&self) -> Result<(), EtcdError> {
        let lease = self.etcd.grant(self.settings.lease_ttl).await?;
        let heartbeat = serde_json::json!({
            "host": self.settings.name,
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
        });
        self.etcd
            .put(
                &self.key(&["hosts", &self.settings.name]),
                heartbeat.to_string().as_bytes(),
                Some(lease),
            )
            .await?;
        *lock_std(&self.lease) = lease;
        Ok(())
    }

    /// The fencing token of the lock held on `name`, if this host holds it.
    pub fn token(&self, name: &str) -> Option<i64> {
        lock_std(&self.held).get(name).copied()
    }

    fn hold(&self, name: &str, token: i64) {
        lock_std(&self.held).insert(name.to_owned(), token);
    }

    fn let_go(&self, name: &str, token: i64) {
        let mut held = lock_std(&self.held);
        if held.get(name) == Some(&token) {
            held.remove(name);
        }
    }

    pub fn certificate(&self, name: &str) -> Option<&CertificateSettings> {
        self.certs.iter().find(|cert| cert.name == name)
    }

    pub fn certificates(&self) -> &[CertificateSettings] {
        &self.certs
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }
}

/// Renews the session lease every third of its TTL. When it expired anyway (the process was
/// paused, etcd was unreachable for longer than the TTL) every lock bound to it is gone:
/// forget them (their fencing tokens would be refused anyway) and join again.
async fn keep_alive(fleet: std::sync::Weak<Fleet>) {
    loop {
        let Some(interval) = fleet.upgrade().map(|f| f.settings.lease_ttl / 3) else {
            return;
        };
        tokio::time::sleep(interval.max(Duration::from_millis(500))).await;
        let Some(fleet) = fleet.upgrade() else { return };
        match fleet.etcd.keep_alive(fleet.lease()).await {
            Ok(ttl) if ttl > 0 => {}
            Ok(_) => {
                tracing::warn!(
                    "fleet: this host's etcd lease expired (paused or cut off for longer than lease_ttl {:?}); locks it held are lost, joining again",
                    fleet.settings.lease_ttl
                );
                lock_std(&fleet.held).clear();
                if let Err(err) = fleet.join().await {
                    tracing::warn!("fleet: cannot join again: {err}");
                }
            }
            Err(err) => tracing::warn!("fleet: cannot keep the lease alive: {err}"),
        }
    }
}
