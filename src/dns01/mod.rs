//! dns-01 against the operator's own DNS: RFC 2136 dynamic updates signed with TSIG
//! ([`update`]), a propagation check that asks every authoritative server of the zone
//! instead of sleeping a fixed time ([`propagation`]), CNAME delegation and zone discovery
//! ([`zone`]), and a journal in `state_dir` so that records of a killed run are removed by
//! the next one ([`journal`]).
//!
//! Why not a fixed wait: too short fails the validation (and counts against the CA's
//! failed-validation limit), too long wastes minutes on every renewal. certbot's rfc2136
//! plugin sleeps a fixed 60 s; lego asks every authoritative server, as done here.
//!
//! All DNS messages are built and parsed by hickory; nothing here touches wire format.

pub mod journal;
mod net;
pub mod propagation;
pub mod tsig;
pub mod update;
pub mod zone;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The TSIG algorithms evercert signs with (those hickory implements; HMAC-MD5 and SHA-1
/// are obsolete, RFC 8945 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl KeyAlgorithm {
    pub const ALL: [Self; 3] = [Self::HmacSha256, Self::HmacSha384, Self::HmacSha512];

    /// The name as written in the configuration and in BIND's `algorithm` clause.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::HmacSha384 => "hmac-sha384",
            Self::HmacSha512 => "hmac-sha512",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
        Self::ALL.into_iter().find(|alg| alg.as_str() == text)
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `rfc2136 = { server, key_name, key_algorithm, key_secret_file }`. The secret itself is
/// read when it is needed (see [`tsig::load_secret`]), so it never sits in the configuration
/// structs that get logged or printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136Settings {
    /// `HOST:PORT` of the primary server that accepts updates.
    pub server: String,
    /// The TSIG key's name, lower case, as a fully qualified name (`evercert.`).
    pub key_name: String,
    pub key_algorithm: KeyAlgorithm,
    pub key_secret_file: PathBuf,
}

/// How records are checked before the CA is told to validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationSettings {
    /// Give up when some authoritative server still lacks the record after this long.
    pub timeout: Duration,
    /// Where the zone's SOA, NS and CNAME records are looked up; empty: the system's
    /// resolvers from `/etc/resolv.conf`.
    pub resolvers: Vec<SocketAddr>,
    /// The port the zone's authoritative servers answer on (53 everywhere but in labs).
    pub authoritative_port: u16,
}

/// The default `propagation_timeout`: secondaries usually catch up within seconds of the
/// primary's NOTIFY; a few minutes covers a slow transfer.
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);
/// The TTL of the TXT records evercert writes: short, since they live for one validation.
pub const RECORD_TTL: u32 = 60;

/// The built-in updater of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfc2136Challenge {
    pub update: Rfc2136Settings,
    /// The zone to update; `None`: found from the SOA of the record's name.
    pub zone: Option<String>,
    pub propagation: PropagationSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum Dns01Error {
    #[error("TSIG key file {path}: {message}")]
    KeyFile { path: PathBuf, message: String },
    #[error("cannot look up {name}: {message}")]
    Lookup { name: String, message: String },
    #[error("the DNS update of {record} in zone {zone} at {server} failed: {message}")]
    Update {
        server: String,
        zone: String,
        record: String,
        message: String,
        /// The server answered and said no (REFUSED, NOTAUTH, a TSIG error), as opposed to
        /// not answering.
        refused: bool,
    },
    #[error(
        "the TXT record {record} was not served by every authoritative server of {zone} within {timeout_secs} s: {missing}; \
         are the secondaries getting the zone from the primary (NOTIFY, allow-transfer)? raise propagation_timeout if they are just slow"
    )]
    NotPropagated {
        record: String,
        zone: String,
        timeout_secs: u64,
        missing: String,
    },
}

impl Dns01Error {
    /// A refusal by the server or a broken key file: retrying in the same run only repeats it.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::KeyFile { .. } => true,
            Self::Update { refused, .. } => *refused,
            Self::Lookup { .. } | Self::NotPropagated { .. } => false,
        }
    }
}

/// One TXT value evercert put in a zone and must take out again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedRecord {
    /// The name the CA queries, `_acme-challenge.NAME.`
    pub challenge_name: String,
    /// Where the value really lives: the same name, or the end of its CNAME chain.
    pub target: String,
    pub zone: String,
    pub value: String,
}

/// Where a TXT value must appear before the CA may look: the name (the end of any CNAME
/// chain) and the zone whose authoritative servers are asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub target: String,
    pub zone: String,
    pub value: String,
}

/// `_acme-challenge.NAME.` for an identifier (`example.com` for `*.example.com` as the ACME
/// module already strips the wildcard).
pub fn challenge_name(domain: &str) -> String {
    let domain = domain.trim_start_matches("*.").trim_end_matches('.');
    format!("_acme-challenge.{domain}.")
}

/// Adds the TXT value for `domain` with the built-in updater: follows a CNAME at the
/// challenge name, finds the zone, writes the journal entry, then sends the signed update.
pub async fn present(
    settings: &Rfc2136Challenge,
    journal: Option<&journal::Journal>,
    domain: &str,
    value: &str,
) -> Result<(AddedRecord, Option<journal::Entry>), Dns01Error> {
    if let Some(journal) = journal {
        journal.clean_leftovers(settings).await;
    }
    let resolvers = net::resolvers(&settings.propagation.resolvers)?;
    let challenge_name = challenge_name(domain);
    let target = zone::follow_cname(&resolvers, &challenge_name).await?;
    let zone = match &settings.zone {
        Some(zone) => zone::configured_zone(zone, &target)?,
        None => zone::find_zone(&resolvers, &target).await?,
    };
    let secret = tsig::load_secret(&settings.update.key_secret_file)?;
    let record = AddedRecord {
        challenge_name,
        target,
        zone,
        value: value.to_owned(),
    };
    // Journal first: a run killed between the two leaves an entry whose delete is a no-op,
    // never a record nobody knows about.
    let entry = journal.and_then(|journal| journal.record(&settings.update, &record));
    let added = update::add(&settings.update, &secret, &record).await;
    if let Err(err) = added {
        if let (Some(journal), Some(entry)) = (journal, &entry) {
            journal.forget(entry);
        }
        return Err(err);
    }
    Ok((record, entry))
}

/// Deletes a value [`present`] added, then its journal entry. A failure keeps the entry, so
/// the next run tries again.
pub async fn cleanup(
    settings: &Rfc2136Challenge,
    journal: Option<&journal::Journal>,
    record: &AddedRecord,
    entry: Option<&journal::Entry>,
) -> Result<(), Dns01Error> {
    let deleted = match tsig::load_secret(&settings.update.key_secret_file) {
        Ok(secret) => update::delete(&settings.update, &secret, record).await,
        Err(err) => Err(err),
    };
    if let (Some(journal), Some(entry)) = (journal, entry) {
        match &deleted {
            Ok(()) => journal.forget(entry),
            Err(_) => journal.keep_for_later(entry),
        }
    }
    deleted
}

/// For a hook: where its record must show up (following a CNAME at the challenge name, as
/// the CA will).
pub async fn expected_for_hook(
    settings: &PropagationSettings,
    domain: &str,
    value: &str,
) -> Result<Expected, Dns01Error> {
    let resolvers = net::resolvers(&settings.resolvers)?;
    let target = zone::follow_cname(&resolvers, &challenge_name(domain)).await?;
    let zone = zone::find_zone(&resolvers, &target).await?;
    Ok(Expected {
        target,
        zone,
        value: value.to_owned(),
    })
}
