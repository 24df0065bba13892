#![cfg_attr(test, allow(clippy::unwrap_used))]
//! evercert: an ACME certificate renewal agent.
//!
//! The pure core decides (`policy`, `units`); the modules around it do I/O (`config`,
//! `inventory`, `probe`, `report`) and `cli` maps commands to them.

pub mod acme;
pub mod agent;
pub mod alert_queue;
pub mod alerts;
pub mod ari;
pub mod challenge;
pub mod cli;
pub mod config;
pub mod decision;
pub mod discover;
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
