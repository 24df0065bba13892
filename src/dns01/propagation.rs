//! Waiting until every authoritative server of the zone serves the TXT value, so the CA is
//! told to validate only then: a CA's resolver may ask any of them, and a secondary that
//! has not transferred the zone yet would fail the validation.
//!
//! The servers are the zone's NS records (found through the resolvers), asked directly
//! without recursion, so no cache in between can answer for them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_proto::rr::{RData, RecordType};
use tokio::time::Instant;

use super::{Dns01Error, Expected, PropagationSettings, net, zone};

/// The first pause between two rounds of questions; it doubles up to [`MAX_POLL_DELAY`].
const FIRST_POLL_DELAY: Duration = Duration::from_millis(50);
const MAX_POLL_DELAY: Duration = Duration::from_secs(2);
/// More NS records than this is a broken zone, not a reason to send hundreds of queries.
const MAX_SERVERS: usize = 32;

/// How long to pause after `round` rounds (0 for the pause after the first): short at
/// first, since a primary that took the update serves it at once, longer while waiting for
/// secondaries. Pure, for the tests.
pub fn poll_delay(round: u32) -> Duration {
    FIRST_POLL_DELAY
        .saturating_mul(2u32.saturating_pow(round.min(16)))
        .min(MAX_POLL_DELAY)
}

/// One authoritative server of a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The NS record's name (`ns1.example.com.`).
    pub name: String,
    pub addr: SocketAddr,
}

/// Waits until every authoritative server of each record's zone serves its value, or
/// `settings.timeout` passes. Returns how long it took.
pub async fn wait_until_served(
    expected: &[Expected],
    settings: &PropagationSettings,
) -> Result<Duration, Dns01Error> {
    let started = Instant::now();
    let deadline = started + settings.timeout;
    let resolvers = net::resolvers(&settings.resolvers)?;
    let mut authorities: BTreeMap<&str, Vec<Authority>> = BTreeMap::new();
    for record in expected {
        if !authorities.contains_key(record.zone.as_str()) {
            let found =
                authorities_of(&resolvers, &record.zone, settings.authoritative_port).await?;
            authorities.insert(&record.zone, found);
        }
    }
    // (record, server) pairs still to see the value, with what the server last said.
    let mut pending: Vec<(&Expected, &Authority, String)> = expected
        .iter()
        .flat_map(|record| {
            authorities[record.zone.as_str()]
                .iter()
                .map(move |authority| (record, authority, "not asked yet".to_owned()))
        })
        .collect();
    let mut round = 0;
    loop {
        let answers = futures_util::future::join_all(
            pending
                .iter()
                .map(|(record, authority, _)| serves(authority.addr, record)),
        )
        .await;
        let mut still = Vec::new();
        for ((record, authority, _), answer) in pending.into_iter().zip(answers) {
            if let Err(why) = answer {
                still.push((record, authority, why));
            }
        }
        pending = still;
        if pending.is_empty() {
            let took = started.elapsed();
            tracing::debug!("dns-01: every authoritative server serves the records after {took:?}");
            return Ok(took);
        }
        let now = Instant::now();
        if now >= deadline {
            let (record, _, _) = pending[0];
            let missing = pending
                .iter()
                .map(|(record, authority, why)| {
                    format!(
                        "{} ({}) for {}: {why}",
                        authority.name, authority.addr, record.target
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Dns01Error::NotPropagated {
                record: record.target.clone(),
                zone: record.zone.clone(),
                timeout_secs: settings.timeout.as_secs(),
                missing,
            });
        }
        tokio::time::sleep(poll_delay(round).min(deadline - now)).await;
        round += 1;
    }
}

/// Whether the server answers the value at the record's name (among any others there).
async fn serves(server: SocketAddr, record: &Expected) -> Result<(), String> {
    let name = net::fqdn(&record.target)?;
    let response = net::query(server, &name, RecordType::TXT, false).await?;
    let values: Vec<Vec<u8>> = response
        .answers
        .iter()
        .filter_map(|answer| match &answer.data {
            // A long value is split into several strings of at most 255 bytes.
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .flat_map(|part| part.iter().copied())
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    if values.iter().any(|value| value == record.value.as_bytes()) {
        return Ok(());
    }
    Err(match values.len() {
        0 => format!("no TXT record yet ({})", response.metadata.response_code),
        count => format!("{count} other TXT value(s), not this one yet"),
    })
}

/// The zone's NS records and their addresses (from the NS answer's additional section, or
/// looked up), on `port`.
pub async fn authorities_of(
    resolvers: &[SocketAddr],
    zone_name: &str,
    port: u16,
) -> Result<Vec<Authority>, Dns01Error> {
    let zone_fqdn = net::fqdn(zone_name).map_err(|message| Dns01Error::Lookup {
        name: zone_name.to_owned(),
        message,
    })?;
    let response = net::resolve(resolvers, &zone_fqdn, RecordType::NS).await?;
    let mut names: Vec<String> = response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::NS(ns) => Some(zone::normalize(&ns.0.to_ascii())),
            _ => None,
        })
        .collect();
    names.sort();
    names.dedup();
    names.truncate(MAX_SERVERS);
    if names.is_empty() {
        return Err(Dns01Error::Lookup {
            name: format!("NS {zone_name}"),
            message: "the zone has no NS records; are `resolvers` answering for it?".into(),
        });
    }
    let mut authorities = Vec::new();
    for name in names {
        let mut addrs: Vec<IpAddr> = response
            .additionals
            .iter()
            .filter(|record| zone::normalize(&record.name.to_ascii()) == name)
            .filter_map(|record| ip_of(&record.data))
            .collect();
        if addrs.is_empty() {
            addrs = addresses(resolvers, &name).await;
        }
        if addrs.is_empty() {
            return Err(Dns01Error::Lookup {
                name: name.clone(),
                message: format!(
                    "the authoritative server {name} of {zone_name} has no address, so it cannot be checked; fix its A/AAAA records"
                ),
            });
        }
        addrs.sort();
        addrs.dedup();
        authorities.extend(addrs.into_iter().map(|ip| Authority {
            name: name.clone(),
            addr: SocketAddr::new(ip, port),
        }));
    }
    Ok(authorities)
}

async fn addresses(resolvers: &[SocketAddr], name: &str) -> Vec<IpAddr> {
    let Ok(query) = net::fqdn(name) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for record_type in [RecordType::A, RecordType::AAAA] {
        if let Ok(response) = net::resolve(resolvers, &query, record_type).await {
            found.extend(
                response
                    .answers
                    .iter()
                    .filter_map(|record| ip_of(&record.data)),
            );
        }
    }
    found
}

fn ip_of(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_starts_fast_and_backs_off_to_two_seconds() {
        assert_eq!(poll_delay(0), Duration::from_millis(50));
        assert_eq!(poll_delay(1), Duration::from_millis(100));
        assert_eq!(poll_delay(3), Duration::from_millis(400));
        assert_eq!(poll_delay(6), Duration::from_secs(2));
        assert_eq!(poll_delay(u32::MAX), Duration::from_secs(2));
        for round in 0..40 {
            assert!(poll_delay(round) <= poll_delay(round + 1));
        }
    }
}
