#![cfg_attr(test, allow(clippy::unwrap_used))]
//! evercert: an ACME certificate renewal agent.
//!
//! The layers, from the inside out:
//!
//! - **Pure core** — facts, settings and `now` in, a decision out; no I/O, no clock:
//!   `policy` (renew_at), `decision` (the one renewal decision), `schedule`, `window`,
//!   `names`, `units`. Time comes in through a `clock::Clock`.
//! - **I/O** — each talks to one outside thing, with deadlines and size caps: `config`
//!   (the file), `fsread`, `inventory` (certificates on disk), `probe` (served certificates),
//!   `store`, `links`, `state` and `lock` (the state directory), `acme` (the only module that
//!   speaks to `instant_acme`), `ari`, `challenge` (responders), `hooks`, `alerts` and
//!   `alert_queue`, `metrics`, `listener`, `watch`, `logging`, `safety`, `discover`, `import`.
//! - **Pipeline** — `renew`: decide → lock → order → check → store → deploy (reload, verify)
//!   → record, one module per phase; `renew` and the agent both run it.
//! - **Agent** — `agent` decides *when* to run the pipeline (its `Clock`), watches files and
//!   feeds systemd; `fleet` shares certificates between hosts through etcd.
//! - **CLI** — `cli` maps commands to the above; `report` and `status_page` present results;
//!   `generate` writes the man page and completions. `main.rs` only hands over the exit code.

pub mod acme;
pub mod agent;
pub mod alert_queue;
pub mod alerts;
pub mod ari;
pub mod challenge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decision;
pub mod discover;
pub mod dns01;
pub mod fallback;
pub mod fleet;
pub mod fsread;
pub mod generate;
pub mod hooks;
pub mod import;
pub mod inventory;
pub mod links;
pub mod listener;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod names;
pub mod policy;
pub mod probe;
pub mod renew;
pub mod report;
pub mod safety;
pub mod schedule;
pub mod state;
pub mod status_page;
pub mod store;
pub mod units;
pub mod watch;
pub mod window;
