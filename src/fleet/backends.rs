//! Which store, lock and history the pipeline uses: the local files for one host, or the
//! fleet's (etcd) when the configuration has `[cluster]`. The pipeline itself
//! (`renew::run`) is the same either way.

use std::sync::Arc;

use super::Fleet;
use super::account::FleetAccount;
use super::fanout::FleetFanout;
use super::lock::FleetLock;
use super::state::FleetState;
use super::store::FleetStore;
use crate::challenge::ChallengeFanout;
use crate::config::Config;
use crate::lock::{FileLock, RenewLock};
use crate::renew::{Outcome, RenewRequest, RunReport, SharedAccount};
use crate::state::{FileState, StateStore};
use crate::store::{CertStore, FsStore};

/// The pipeline's backends.
pub struct Backends {
    pub store: Box<dyn CertStore>,
    pub lock: Box<dyn RenewLock>,
    pub state: Box<dyn StateStore>,
    /// Shares http-01 tokens with the other hosts; set in fleet mode.
    pub fanout: Option<Arc<dyn ChallengeFanout>>,
    /// Replaces the fleet's account when the CA forgot it; set in fleet mode.
    pub shared_account: Option<Arc<dyn SharedAccount>>,
    /// Set in fleet mode.
    pub fleet: Option<Arc<Fleet>>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

impl Backends {
    /// The local files; no etcd.
    pub fn local(config: &Config) -> Self {
        Self {
            store: Box::new(FsStore::new(&config.state_dir)),
            lock: Box::new(FileLock::new(config.state_dir.join("locks"))),
            state: Box::new(FileState::new(&config.state_dir)),
            fanout: None,
            shared_account: None,
            fleet: None,
        }
    }

    /// The fleet's backends over a running [`Fleet`].
    pub fn fleet(config: &Config, fleet: Arc<Fleet>) -> Self {
        Self {
            store: Box::new(FleetStore::new(
                fleet.clone(),
                FsStore::new(&config.state_dir),
            )),
            lock: Box::new(FleetLock::new(fleet.clone())),
            state: Box::new(FleetState::new(
                fleet.clone(),
                FileState::new(&config.state_dir),
            )),
            fanout: Some(Arc::new(FleetFanout::new(fleet.clone()))),
            shared_account: Some(Arc::new(FleetAccount::new(fleet.clone()))),
            fleet: Some(fleet),
        }
    }

    /// Local backends without `[cluster]`; the fleet's with it (joining etcd: an error when
    /// it cannot be reached, and then nothing may be ordered).
    pub fn for_config(config: &Config) -> Result<Self, String> {
        match &config.cluster {
            None => Ok(Self::local(config)),
            Some(settings) => {
                let fleet = Fleet::start(config, settings).map_err(|err| {
                    format!(
                        "fleet mode: {err}; nothing is ordered and the current certificates stay in place"
                    )
                })?;
                Ok(Self::fleet(config, fleet))
            }
        }
    }

    /// Before a run: install what the fleet has that this host lacks (a late joiner, a host
    /// that was down), and share the ACME account.
    pub fn prepare(&self, config: &Config, request: &RenewRequest) -> Result<(), String> {
        let Some(fleet) = &self.fleet else {
            return Ok(());
        };
        fleet.block(fleet.catch_up_all());
        if request.dry_run {
            return Ok(());
        }
        fleet.block(fleet.sync_accounts(config))
    }

    /// After a run: the holder reports what it installed to the fleet, and shares an account
    /// it registered at a fallback CA.
    pub fn finish(&self, config: &Config, report: &RunReport) {
        let Some(fleet) = &self.fleet else { return };
        fleet.block(fleet.share_new_accounts(config));
        for (name, outcome) in &report.outcomes {
            if matches!(outcome, Outcome::Renewed { .. }) {
                fleet.block(fleet.report_holder(name));
            }
        }
    }
}
