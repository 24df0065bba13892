//! Where a challenge record really goes: the end of a CNAME chain at `_acme-challenge.NAME`
//! (the acme-dns pattern: the real zone stays read-only and delegates the challenge name to
//! a small zone that takes updates), and the zone holding that name, from its SOA.

use std::net::SocketAddr;

use hickory_proto::rr::{RData, RecordType};

use super::{Dns01Error, net};

/// CNAME hops followed before giving up (a loop, or a chain nobody should run).
const MAX_CNAME_HOPS: usize = 8;

/// Follows CNAMEs from `name` and returns the final name (fully qualified, lower case).
pub async fn follow_cname(resolvers: &[SocketAddr], name: &str) -> Result<String, Dns01Error> {
    let mut current = normalize(name);
    for _ in 0..=MAX_CNAME_HOPS {
        let query = net::fqdn(&current).map_err(|message| lookup_error(&current, message))?;
        let response = net::resolve(resolvers, &query, RecordType::CNAME).await?;
        let next = response
            .answers
            .iter()
            .find_map(|record| match &record.data {
                RData::CNAME(target) if normalize(&record.name.to_ascii()) == current => {
                    Some(normalize(&target.0.to_ascii()))
                }
                _ => None,
            });
        match next {
            Some(target) => {
                tracing::debug!("dns-01: {current} is a CNAME to {target}");
                current = target;
            }
            None => return Ok(current),
        }
    }
    Err(lookup_error(
        name,
        format!(
            "more than {MAX_CNAME_HOPS} CNAMEs in a row (a loop?); point it straight at the delegated zone"
        ),
    ))
}

/// The zone that holds `name`: the owner of the SOA a resolver returns for it (in the
/// answer at a zone apex, in the authority section below one), walking up a label at a
/// time when neither carries one.
pub async fn find_zone(resolvers: &[SocketAddr], name: &str) -> Result<String, Dns01Error> {
    let mut current = normalize(name);
    loop {
        let query = net::fqdn(&current).map_err(|message| lookup_error(name, message))?;
        let response = net::resolve(resolvers, &query, RecordType::SOA).await?;
        let soa_owner = response
            .answers
            .iter()
            .chain(response.authorities.iter())
            .find(|record| record.record_type() == RecordType::SOA)
            .map(|record| normalize(&record.name.to_ascii()));
        if let Some(zone) = soa_owner
            && is_within(name, &zone)
        {
            return Ok(zone);
        }
        match current.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => current = parent.to_owned(),
            _ => {
                return Err(lookup_error(
                    name,
                    "no SOA found for it or any parent; set `zone` in [certificate.dns01]".into(),
                ));
            }
        }
    }
}

/// A configured `zone`, which must hold the name to update.
pub fn configured_zone(zone: &str, name: &str) -> Result<String, Dns01Error> {
    let zone = normalize(zone);
    if is_within(name, &zone) {
        Ok(zone)
    } else {
        Err(lookup_error(
            name,
            format!(
                "it is not inside the configured zone {zone}; fix `zone` in [certificate.dns01] (or remove it to find the zone from the SOA)"
            ),
        ))
    }
}

fn lookup_error(name: &str, message: String) -> Dns01Error {
    Dns01Error::Lookup {
        name: name.to_owned(),
        message,
    }
}

/// Lower case with one trailing dot.
pub(super) fn normalize(name: &str) -> String {
    format!(
        "{}.",
        name.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

/// Whether `name` is `zone` or below it (both normalized, or normalizable).
pub(super) fn is_within(name: &str, zone: &str) -> bool {
    let (name, zone) = (normalize(name), normalize(zone));
    zone == "." || name == zone || name.ends_with(&format!(".{zone}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_inside_zones() {
        assert!(is_within("_acme-challenge.a.dns.test.", "dns.test"));
        assert!(is_within("DNS.test", "dns.test."));
        assert!(!is_within("_acme-challenge.notdns.test.", "dns.test."));
        assert!(is_within("anything.", "."));
        assert_eq!(
            configured_zone("Dns.Test", "_acme-challenge.dns.test.").unwrap(),
            "dns.test."
        );
        let err = configured_zone("other.test", "_acme-challenge.dns.test.")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not inside the configured zone other.test."),
            "{err}"
        );
    }
}
