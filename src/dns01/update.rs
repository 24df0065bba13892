//! RFC 2136 dynamic updates signed with TSIG (RFC 8945): add one TXT value to the RRset at
//! the challenge name, and later delete exactly that value, so that a wildcard and its apex
//! (two values at one name) and a concurrent run for another name never remove each other's.

use hickory_proto::op::{ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{RData, Record, RecordSet, TSigner};

use super::tsig::{self, Secret};
use super::{AddedRecord, Dns01Error, KeyAlgorithm, RECORD_TTL, Rfc2136Settings, net};

/// How far the clocks of evercert and the server may differ (BIND's default too).
const FUDGE_SECS: u16 = 300;

/// Adds `record.value` to the TXT RRset at `record.target`.
pub async fn add(
    settings: &Rfc2136Settings,
    secret: &Secret,
    record: &AddedRecord,
) -> Result<(), Dns01Error> {
    send(settings, secret, record, Action::Add).await
}

/// Deletes `record.value` (and only it) from the TXT RRset at `record.target`.
pub async fn delete(
    settings: &Rfc2136Settings,
    secret: &Secret,
    record: &AddedRecord,
) -> Result<(), Dns01Error> {
    send(settings, secret, record, Action::Delete).await
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Add,
    Delete,
}

async fn send(
    settings: &Rfc2136Settings,
    secret: &Secret,
    record: &AddedRecord,
    action: Action,
) -> Result<(), Dns01Error> {
    let error_of = |message: String, refused: bool| Dns01Error::Update {
        server: settings.server.clone(),
        zone: record.zone.clone(),
        record: record.target.clone(),
        message,
        refused,
    };
    let error = |message: String| error_of(message, true);
    tsig::check_algorithm(secret, settings.key_algorithm, &settings.key_secret_file)?;
    let zone = net::fqdn(&record.zone).map_err(error)?;
    let name = net::fqdn(&record.target).map_err(error)?;
    if !zone.zone_of(&name) {
        return Err(error(format!(
            "{} is not inside zone {}; fix `zone` in [certificate.dns01]",
            record.target, record.zone
        )));
    }
    let key_name = net::fqdn(&settings.key_name).map_err(error)?;
    let signer = TSigner::new(
        secret.bytes().to_vec(),
        algorithm(settings.key_algorithm),
        key_name,
        FUDGE_SECS,
    )
    .map_err(|err| error(format!("cannot sign with the TSIG key: {err}")))?;
    let txt = Record::from_rdata(
        name,
        RECORD_TTL,
        RData::TXT(TXT::new(vec![record.value.clone()])),
    );
    let rrset = RecordSet::from(txt);
    let message = match action {
        Action::Add => update_message::append(rrset, zone, false, true),
        Action::Delete => update_message::delete_by_rdata(rrset, zone, true),
    };
    let server = net::server_addr(&settings.server)
        .await
        .map_err(|message| error_of(message, false))?;
    let response = net::send_update(server, signer, message)
        .await
        .map_err(|message| {
            let (message, refused) = explain_transport(&message, settings);
            error_of(message, refused)
        })?;
    match response.metadata.response_code {
        ResponseCode::NoError => Ok(()),
        code => Err(error_of(
            explain_refusal(code, settings, &record.zone),
            code != ResponseCode::ServFail,
        )),
    }
}

fn algorithm(algorithm: KeyAlgorithm) -> TsigAlgorithm {
    match algorithm {
        KeyAlgorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
        KeyAlgorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
        KeyAlgorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
    }
}

/// A server that does not know the key (BADKEY) or finds the signature wrong (BADSIG)
/// answers unsigned, which hickory reports as a failed verification of the answer.
fn explain_transport(message: &str, settings: &Rfc2136Settings) -> (String, bool) {
    if message.contains("HMAC") || message.contains("TSIG") || message.contains("Tsig") {
        let explained = format!(
            "the server did not accept the TSIG key {} ({}): its answer was not signed with it, \
             which is how a server answers an unknown key name (BADKEY) or a wrong secret or algorithm (BADSIG); \
             check that key_name, key_algorithm and the secret in {} match the server's key",
            settings.key_name,
            settings.key_algorithm,
            settings.key_secret_file.display()
        );
        (explained, true)
    } else {
        let explained = format!(
            "{message}; is {} the primary server of the zone, and reachable?",
            settings.server
        );
        (explained, false)
    }
}

fn explain_refusal(code: ResponseCode, settings: &Rfc2136Settings, zone: &str) -> String {
    let fix = match code {
        ResponseCode::Refused => format!(
            "the server does not let key {} update {zone}: allow it (BIND: allow-update {{ key \"{}\"; }}; or an update-policy; \
             Knot: an ACL with action update; PowerDNS: TSIG-ALLOW-DNSUPDATE and ALLOW-DNSUPDATE-FROM)",
            settings.key_name, settings.key_name
        ),
        ResponseCode::NotAuth => format!(
            "the server is not authoritative for {zone} or rejected the TSIG key {}; point `server` at the zone's primary and check the key",
            settings.key_name
        ),
        ResponseCode::NotZone => {
            format!("the record is outside zone {zone}; set `zone` in [certificate.dns01]")
        }
        ResponseCode::ServFail => {
            "the server failed (SERVFAIL); see its log (is the zone directory writable for its journal?)"
                .to_owned()
        }
        _ => "see the server's log".to_owned(),
    };
    format!("the server answered {code}: {fix}")
}
