//! [`StateStore`] for a fleet: the renewal history (failure streak, Retry-After, last
//! success) is shared at `P/state/NAME`, so the backoff after a failure on one host holds for
//! the whole fleet and the next holder does not hammer the CA again at once. The local file
//! is kept too: when etcd cannot be reached the history still loads.

use std::sync::Arc;

use super::Fleet;
use crate::state::{CertHistory, FileState, StateError, StateStore};

#[derive(Debug, Clone)]
pub struct FleetState {
    fleet: Arc<Fleet>,
    local: FileState,
}

impl FleetState {
    pub fn new(fleet: Arc<Fleet>, local: FileState) -> Self {
        Self { fleet, local }
    }
}

impl StateStore for FleetState {
    fn load(&self, name: &str) -> CertHistory {
        let key = self.fleet.key(&["state", name]);
        match self.fleet.block(self.fleet.etcd.get(&key)) {
            Ok(Some(kv)) => match serde_json::from_slice(kv.value()) {
                Ok(history) => history,
                Err(err) => {
                    tracing::warn!(
                        "{name}: the fleet's history at {key} is damaged ({err}); using this host's"
                    );
                    self.local.load(name)
                }
            },
            Ok(None) => self.local.load(name),
            Err(err) => {
                tracing::warn!("{name}: {err}; using this host's renewal history");
                self.local.load(name)
            }
        }
    }

    fn save(&self, name: &str, history: &CertHistory) -> Result<(), StateError> {
        self.local.save(name, history)?;
        let key = self.fleet.key(&["state", name]);
        let json = serde_json::to_vec(history).map_err(|err| StateError {
            path: key.clone(),
            message: err.to_string(),
        })?;
        self.fleet
            .block(self.fleet.etcd.put(&key, &json, None))
            .map_err(|err| StateError {
                path: key,
                message: err.to_string(),
            })
    }
}
