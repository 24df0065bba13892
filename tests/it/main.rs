//! evercert's integration tests: one test binary, one module per area.

#![allow(clippy::unwrap_used)]

mod cli_inventory;
mod pebble_smoke;
mod renew_smoke;
mod support;
