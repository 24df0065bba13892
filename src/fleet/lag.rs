//! The lag alert: a live host that has not applied the fleet's current version of a
//! certificate `lag_alert` after it was published raises `fleet_host_lagging`, through the
//! same `[alerts]` channels (command, webhook) as every other alert.
//!
//! A host that lags often cannot say so itself (its evercert hangs, its watch is stuck), so
//! the agents watch each other through `cluster status`'s view of etcd. One of them reports,
//! not all: per certificate, the first live host by name that is not lagging itself (the
//! lagging host when it is alone), once per lagging host and generation.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use time::OffsetDateTime;

use super::Fleet;
use super::status::{self, CertState};
use crate::units::rfc3339;

/// (certificate, host, generation) already alerted.
pub type Alerted = BTreeSet<(String, String, u64)>;

/// One lag to alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lagging {
    pub name: String,
    pub host: String,
    pub generation: u64,
    pub message: String,
}

/// The lags `me` reports now, given the fleet's state and what was already alerted.
pub fn to_report(certs: &[CertState], me: &str, alerted: &Alerted) -> Vec<Lagging> {
    let mut lags = Vec::new();
    for cert in certs {
        let Some(generation) = cert.generation else {
            continue;
        };
        let lagging: Vec<_> = cert.hosts.iter().filter(|host| host.lagging).collect();
        if lagging.is_empty() {
            continue;
        }
        // Hosts are sorted by name.
        let reporter = cert
            .hosts
            .iter()
            .find(|host| host.alive && !host.lagging)
            .or_else(|| cert.hosts.iter().find(|host| host.alive));
        if reporter.is_none_or(|reporter| reporter.host != me) {
            continue;
        }
        for host in lagging {
            let key = (cert.name.clone(), host.host.clone(), generation);
            if alerted.contains(&key) {
                continue;
            }
            let has = match (host.generation, host.ok) {
                (None, _) => "has applied no version yet".to_owned(),
                (Some(applied), Some(false)) => format!(
                    "last tried generation {applied}, which failed: {}",
                    host.error.as_deref().unwrap_or("no error recorded")
                ),
                (Some(applied), _) => format!("is still on generation {applied}"),
            };
            lags.push(Lagging {
                name: cert.name.clone(),
                host: host.host.clone(),
                generation,
                message: format!(
                    "{}: fleet host {} has not applied generation {generation} (serial {}), published by {} at {}, and {has}; it is alive, so look at that host: can its evercert write the files and reload the server? `evercert cluster status` shows every host's last error",
                    cert.name,
                    host.host,
                    cert.serial.as_deref().unwrap_or("?"),
                    cert.published_by.as_deref().unwrap_or("?"),
                    cert.published_at.map(rfc3339).unwrap_or_default(),
                ),
            });
        }
    }
    lags
}

/// The agent's lag check, every quarter of `lag_alert` (between 1 s and a minute).
pub async fn watch(fleet: Weak<Fleet>) {
    let mut alerted = Alerted::new();
    loop {
        let Some(strong) = fleet.upgrade() else {
            return;
        };
        let interval =
            (strong.settings.lag_alert / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let names: Vec<String> = strong
            .certificates()
            .iter()
            .map(|cert| cert.name.clone())
            .collect();
        let now = OffsetDateTime::now_utc();
        match status::gather(&strong.etcd, &strong.settings, &names, now).await {
            Ok(certs) => {
                for lag in to_report(&certs, strong.name(), &alerted) {
                    strong
                        .alert(&lag.name, "fleet_host_lagging", &lag.message)
                        .await;
                    alerted.insert((lag.name, lag.host, lag.generation));
                }
                // A host that caught up is alerted again if it lags again.
                alerted.retain(|(name, host, generation)| {
                    certs.iter().any(|cert| {
                        cert.name == *name
                            && cert.generation == Some(*generation)
                            && cert.hosts.iter().any(|h| h.host == *host && h.lagging)
                    })
                });
            }
            Err(err) => tracing::debug!("fleet: lag check: {err}"),
        }
        drop(strong);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::status::HostState;

    fn host(name: &str, alive: bool, generation: Option<u64>, lagging: bool) -> HostState {
        HostState {
            host: name.into(),
            alive,
            generation,
            serial: generation.map(|g| format!("serial-{g}")),
            applied_at: None,
            ok: generation.map(|_| true),
            error: None,
            lagging,
        }
    }

    fn cert(hosts: Vec<HostState>) -> CertState {
        CertState {
            name: "shop".into(),
            generation: Some(2),
            serial: Some("serial-2".into()),
            not_after: None,
            published_by: Some("web-2".into()),
            published_at: None,
            lock_holder: None,
            hosts,
        }
    }

    #[test]
    fn the_first_live_host_that_is_current_reports_each_lag_once() {
        let certs = [cert(vec![
            host("web-1", true, Some(1), true),
            host("web-2", true, Some(2), false),
            host("web-3", true, Some(2), false),
            // Not alive: never lagging, and never the reporter.
            host("web-0", false, Some(1), false),
        ])];
        assert!(to_report(&certs, "web-3", &Alerted::new()).is_empty());
        assert!(to_report(&certs, "web-1", &Alerted::new()).is_empty());
        let lags = to_report(&certs, "web-2", &Alerted::new());
        assert_eq!(lags.len(), 1);
        assert_eq!(lags[0].host, "web-1");
        assert_eq!(lags[0].generation, 2);
        assert!(
            lags[0].message.contains("still on generation 1"),
            "{lags:?}"
        );
        let alerted: Alerted = [("shop".to_owned(), "web-1".to_owned(), 2)].into();
        assert!(to_report(&certs, "web-2", &alerted).is_empty());
    }

    #[test]
    fn a_lagging_host_alone_reports_itself_and_nothing_lags_without_a_version() {
        let certs = [cert(vec![host("web-1", true, None, true)])];
        let lags = to_report(&certs, "web-1", &Alerted::new());
        assert_eq!(lags.len(), 1);
        assert!(lags[0].message.contains("no version yet"), "{lags:?}");
        let mut none = cert(vec![host("web-1", true, None, false)]);
        none.generation = None;
        assert!(to_report(&[none], "web-1", &Alerted::new()).is_empty());
    }
}
