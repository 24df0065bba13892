//! Helpers shared by the integration tests.

// Each test module uses a different subset of the helpers.
#![allow(unreachable_pub, dead_code)]

pub mod a2c;
pub mod ari;
pub mod bind;
pub mod certbot;
pub mod certs;
pub mod chaos;
pub mod etcd;
pub mod faultproxy;
pub mod hostile;
pub mod nginx;
pub mod pebble;
pub mod setup;
pub mod webroot;
pub mod webserver;
