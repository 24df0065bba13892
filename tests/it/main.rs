//! evercert's integration tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod agent;
mod agent_hardening;
mod cli_inventory;
mod concurrency;
mod config_warnings;
mod crash;
mod decision;
mod discover;
mod discover_agent;
mod dns01;
mod docs;
mod fallback;
mod fleet;
mod fuzz;
mod hostile_clients;
mod hostile_files;
mod hostile_net;
mod import_certbot;
mod interop;
mod journald;
mod links;
mod pebble_smoke;
mod promtool;
mod renew_faults;
mod renew_paths;
mod renew_smoke;
mod secrets;
mod soak;
mod status_explains;
mod status_page;
use evercert_testkit as support;
mod systemd_e2e;
mod systemd_units;
mod verify_sticks;
