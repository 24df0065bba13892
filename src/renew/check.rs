//! Check: what the CA sent must hold before it may replace a working pair.

use std::path::Path;

use rustls::pki_types::pem::PemObject as _;
use time::OffsetDateTime;

use super::{Deps, Failure, Step};
use crate::acme::FailureKind;
use crate::config::CertificateSettings;
use crate::inventory::{self, CertFile};
use crate::units::rfc3339;

/// What must hold before a new pair may replace a working one.
pub fn check_issued(
    chain_pem: &str,
    key_pem: &str,
    domains: &[String],
    now: OffsetDateTime,
) -> Result<CertFile, String> {
    let ders: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|err| format!("the chain is not valid PEM: {err}"))?;
    if ders.is_empty() {
        return Err("the CA sent no certificate".into());
    }
    let file = inventory::facts_of_chain(&ders)
        .map_err(|problem| format!("the chain does not parse or is out of order: {problem:?}"))?;
    let public_key = inventory::public_key_of_pem(key_pem.as_bytes())
        .ok_or("the new private key cannot be read back")?;
    if public_key != file.leaf.public_key {
        return Err("the certificate is not for the new key".into());
    }
    let uncovered = file.leaf.uncovered(domains);
    if !uncovered.is_empty() {
        return Err(format!(
            "the certificate does not cover {}",
            uncovered.join(", ")
        ));
    }
    if file.leaf.not_after <= now {
        return Err(format!(
            "the certificate is already expired ({})",
            rfc3339(file.leaf.not_after)
        ));
    }
    Ok(file)
}

/// Dry run: the new pair goes to a scratch directory, is read back like a live one, and is
/// removed; nothing live is written and no hook runs.
pub(super) fn dry_run_check(
    cert: &CertificateSettings,
    chain_pem: &str,
    key_pem: &str,
    state_dir: &Path,
    deps: &Deps<'_>,
) -> Result<(), Failure> {
    let result = (|| -> Result<(), String> {
        // Fresh, private and under state_dir: never a predictable name in the shared /tmp.
        let dir = crate::store::ScratchDir::create(state_dir).map_err(|err| err.to_string())?;
        let scratch = dir.path();
        let cert_file = scratch.join("fullchain.pem");
        let key_file = scratch.join("privkey.pem");
        crate::store::write_atomic(&key_file, key_pem.as_bytes(), 0o600)
            .map_err(|err| err.to_string())?;
        crate::store::write_atomic(&cert_file, chain_pem.as_bytes(), 0o644)
            .map_err(|err| err.to_string())?;
        let file = inventory::read_cert_file(&cert_file).map_err(|err| err.to_string())?;
        inventory::check_key_file(&key_file, &cert_file, &file.leaf)
            .map_err(|err| err.to_string())?;
        Ok(())
    })();
    result.map_err(|message| Failure::new(Step::Check, FailureKind::Transient, message))?;
    (deps.progress)(
        &cert.name,
        &format!(
            "dry run: would write {} and {}{}",
            cert.cert_path.display(),
            cert.key_path.display(),
            cert.reload
                .as_deref()
                .map(|reload| format!(", then run `{reload}`"))
                .unwrap_or_default()
        ),
    );
    Ok(())
}
