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
