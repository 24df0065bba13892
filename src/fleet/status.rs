//! `evercert cluster status [--json]`: per certificate, the fleet's current version, who holds
//! its lock, and what every host has applied and verified; which hosts are alive.
//!
//! Reads etcd only: it does not join the fleet (no lease, no heartbeat) and needs no fleet
//! key (nothing secret is shown).

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use super::ClusterSettings;
use super::apply::Applied;
use super::etcd::{Etcd, EtcdError};
use super::store::Meta;
use crate::units::rfc3339;

/// One host's state of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct HostState {
    pub host: String,
    /// Its heartbeat is in etcd (its lease is alive).
    pub alive: bool,
    pub generation: Option<u64>,
    pub serial: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub applied_at: Option<OffsetDateTime>,
    /// Installed, reloaded and verified.
    pub ok: Option<bool>,
    pub error: Option<String>,
    /// Alive and behind the current generation for longer than `lag_alert`.
    pub lagging: bool,
}

/// One certificate in the fleet.
#[derive(Debug, Clone, Serialize)]
pub struct CertState {
    pub name: String,
    pub generation: Option<u64>,
    pub serial: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    pub published_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
    /// Who renews it now, if anyone.
    pub lock_holder: Option<String>,
    pub hosts: Vec<HostState>,
}

/// The fleet as etcd sees it, for the certificates `names` (and any other found there).
pub async fn gather(
    etcd: &Etcd,
    settings: &ClusterSettings,
    names: &[String],
    now: OffsetDateTime,
) -> Result<Vec<CertState>, EtcdError> {
    let prefix = format!("{}/", settings.prefix);
    let (kvs, _) = etcd.get_prefix(&prefix).await?;
    let mut alive = Vec::new();
    let mut locks = BTreeMap::new();
    let mut current: BTreeMap<String, u64> = BTreeMap::new();
    let mut metas: BTreeMap<(String, u64), Meta> = BTreeMap::new();
    let mut applied: BTreeMap<String, Vec<Applied>> = BTreeMap::new();
    for kv in &kvs {
        let Some(key) = kv.key_str().ok().and_then(|key| key.strip_prefix(&prefix)) else {
            continue;
        };
        let parts: Vec<&str> = key.split('/').collect();
        let value = String::from_utf8_lossy(kv.value()).into_owned();
        match parts.as_slice() {
            ["hosts", host] => alive.push((*host).to_owned()),
            ["lock", name] => {
                locks.insert((*name).to_owned(), value);
            }
            ["certs", name, "current"] => {
                if let Ok(generation) = value.trim().parse() {
                    current.insert((*name).to_owned(), generation);
                }
            }
            ["certs", name, generation, "meta"] => {
                if let (Ok(generation), Ok(meta)) = (
                    generation.parse(),
                    serde_json::from_slice::<Meta>(kv.value()),
                ) {
                    metas.insert(((*name).to_owned(), generation), meta);
                }
            }
            ["applied", name, _host] => {
                if let Ok(record) = serde_json::from_slice::<Applied>(kv.value()) {
                    applied.entry((*name).to_owned()).or_default().push(record);
                }
            }
            _ => {}
        }
    }
    let mut all: Vec<String> = names.to_vec();
    for name in current.keys() {
        if !all.contains(name) {
            all.push(name.clone());
        }
    }
    let lag = time::Duration::try_from(settings.lag_alert).unwrap_or(time::Duration::HOUR);
    Ok(all
        .into_iter()
        .map(|name| {
            let generation = current.get(&name).copied();
            let meta = generation.and_then(|g| metas.get(&(name.clone(), g)));
            let records = applied.remove(&name).unwrap_or_default();
            let mut hosts: Vec<String> = alive.clone();
            for record in &records {
                if !hosts.contains(&record.host) {
                    hosts.push(record.host.clone());
                }
            }
            hosts.sort();
            let hosts = hosts
                .into_iter()
                .map(|host| {
                    let record = records.iter().find(|r| r.host == host);
                    let is_alive = alive.contains(&host);
                    let behind = match (generation, record) {
                        (Some(current), Some(record)) => record.generation < current,
                        (Some(_), None) => true,
                        (None, _) => false,
                    };
                    let overdue = meta.is_some_and(|meta| now - meta.published_at > lag);
                    HostState {
                        alive: is_alive,
                        generation: record.map(|r| r.generation),
                        serial: record.map(|r| r.serial.clone()),
                        applied_at: record.map(|r| r.at),
                        ok: record.map(|r| r.ok),
                        error: record.and_then(|r| r.error.clone()),
                        lagging: is_alive && behind && overdue,
                        host,
                    }
                })
                .collect();
            CertState {
                generation,
                serial: meta.map(|m| m.serial.clone()),
                not_after: meta.map(|m| m.not_after),
                published_by: meta.map(|m| m.published_by.clone()),
                published_at: meta.map(|m| m.published_at),
                lock_holder: locks.get(&name).cloned(),
                hosts,
                name,
            }
        })
        .collect())
}

/// The table `cluster status` prints.
pub fn render(certs: &[CertState]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for cert in certs {
        let _ = match (cert.generation, &cert.serial) {
            (Some(generation), Some(serial)) => writeln!(
                out,
                "{}: generation {generation}, serial {serial}, expires {}, published by {} at {}{}",
                cert.name,
                cert.not_after.map(rfc3339).unwrap_or_default(),
                cert.published_by.as_deref().unwrap_or("?"),
                cert.published_at.map(rfc3339).unwrap_or_default(),
                cert.lock_holder
                    .as_deref()
                    .map(|holder| format!("; being renewed by {holder}"))
                    .unwrap_or_default()
            ),
            _ => writeln!(out, "{}: no version in the fleet yet", cert.name),
        };
        for host in &cert.hosts {
            let state = match (host.generation, host.ok) {
                (None, _) => "has applied nothing".to_owned(),
                (Some(generation), Some(true)) => format!(
                    "applied generation {generation} (serial {}), verified",
                    host.serial.as_deref().unwrap_or("?")
                ),
                (Some(generation), _) => format!(
                    "generation {generation} FAILED: {}",
                    host.error.as_deref().unwrap_or("unknown")
                ),
            };
            let _ = writeln!(
                out,
                "  {} ({}): {state}{}",
                host.host,
                if host.alive { "alive" } else { "not seen" },
                if host.lagging { " — LAGGING" } else { "" }
            );
        }
    }
    out
}
