#![cfg_attr(test, allow(clippy::unwrap_used))]
//! evercert: an ACME certificate renewal agent.
//!
//! The pure core decides (`policy`, `units`); the modules around it do I/O (`config`,
//! `inventory`, `probe`, `report`) and `cli` maps commands to them.

pub mod cli;
pub mod config;
pub mod inventory;
pub mod policy;
pub mod probe;
pub mod report;
pub mod units;
