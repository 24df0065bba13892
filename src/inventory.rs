//! Reading certificate and key files into facts: who the certificate is for, who issued it,
//! when it expires, whether the chain is in order and whether the key belongs to it.
//!
//! Every failure is its own error kind with the file's path and the next step, because
//! "cannot parse certificate" at 3 a.m. sends people down the wrong path (the postmortem's
//! first hour was spent on a DDoS theory).

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::config::{CertificateSettings, Config};
use crate::decision::{self, Decision, Facts, Window};
use crate::policy::{self, Assessment, OnDisk, RenewBefore, Thresholds};
use crate::state::{CertHistory, FileState, Pending, StateStore as _};

/// What evercert knows of one certificate (the leaf of a file or of a served chain).
#[derive(Debug, Clone, PartialEq)]
pub struct CertFacts {
    pub subject: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub issuer: String,
    /// Lower-case hex, no separators, as `openssl x509 -serial` prints it (but lower case).
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// `ecdsa-p256`, `rsa2048`, … in the config's vocabulary where it has a name.
    pub key_algorithm: String,
    pub authority_key_id: Option<String>,
    /// The public key's bytes, compared with the private key's to prove they match.
    pub public_key: Vec<u8>,
}

impl CertFacts {
    /// The names on the certificate: DNS names then IP addresses, as text.
    pub fn names(&self) -> Vec<String> {
        let mut names = self.dns_names.clone();
        names.extend(self.ip_addresses.iter().map(ToString::to_string));
        names
    }

    /// Configured identifiers the certificate does not cover.
    pub fn uncovered<'a>(&self, domains: &'a [String]) -> Vec<&'a str> {
        domains
            .iter()
            .filter(|domain| !self.covers(domain))
            .map(String::as_str)
            .collect()
    }

    fn covers(&self, domain: &str) -> bool {
        if let Ok(ip) = domain.parse::<IpAddr>() {
            return self.ip_addresses.contains(&ip);
        }
        let domain = domain.to_ascii_lowercase();
        self.dns_names.iter().any(|name| {
            let name = name.to_ascii_lowercase();
            if name == domain {
                return true;
            }
            // A wildcard SAN covers exactly one extra label, and a configured wildcard must be
            // on the certificate literally.
            match name.strip_prefix("*.") {
                Some(base) if !domain.starts_with("*.") => domain
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
                _ => false,
            }
        })
    }
}

/// A certificate file: its leaf and the subjects of the chain after it.
#[derive(Debug, Clone, PartialEq)]
pub struct CertFile {
    pub leaf: CertFacts,
    /// Subjects of the certificates after the leaf, in file order.
    pub chain: Vec<String>,
}

/// Why a certificate file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertFileError {
    #[error("{path}: certificate file not found")]
    Missing { path: PathBuf },
    #[error(
        "{path}: permission denied reading the certificate; run evercert as a user that can read it"
    )]
    PermissionDenied { path: PathBuf },
    #[error("{path}: cannot read the certificate: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: the certificate file is empty; restore it from the archive or renew it")]
    Empty { path: PathBuf },
    #[error("{path}: not a certificate: {detail}")]
    NotACertificate { path: PathBuf, detail: String },
    #[error(
        "{path}: the chain is out of order: {detail}; write the leaf first, then the certificate that issued it, and so on"
    )]
    ChainOutOfOrder { path: PathBuf, detail: String },
}

/// Why a key file could not be used with its certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: key file not found")]
    Missing { path: PathBuf },
    #[error("{path}: permission denied reading the key; run evercert as the key's owner")]
    PermissionDenied { path: PathBuf },
    #[error("{path}: cannot read the key: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: not a private key in PEM (PKCS#8, PKCS#1 or SEC1)")]
    NotAKey { path: PathBuf },
    #[error("{path}: the private key does not match the certificate {cert}")]
    Mismatch { path: PathBuf, cert: PathBuf },
}

/// Regular files only, and at most `SMALL_FILE_MAX`: a FIFO, a device or a 2 GB file at a
/// certificate's path is an error naming the path, not a hang or an exhausted memory.
fn read_file(path: &Path) -> Result<Vec<u8>, (io::ErrorKind, String)> {
    crate::fsread::read(path, crate::fsread::SMALL_FILE_MAX)
        .map_err(|err| (err.kind(), err.problem.to_string()))
}

/// Reads a certificate file: PEM (leaf first, chain after) or a single DER certificate.
pub fn read_cert_file(path: &Path) -> Result<CertFile, CertFileError> {
    let bytes = read_file(path).map_err(|(kind, message)| match kind {
        io::ErrorKind::NotFound => CertFileError::Missing {
            path: path.to_owned(),
        },
        io::ErrorKind::PermissionDenied => CertFileError::PermissionDenied {
            path: path.to_owned(),
        },
        _ => CertFileError::Io {
            path: path.to_owned(),
            message,
        },
    })?;
    parse_cert_bytes(&bytes).map_err(|problem| match problem {
        Problem::Empty => CertFileError::Empty {
            path: path.to_owned(),
        },
        Problem::NotACertificate(detail) => CertFileError::NotACertificate {
            path: path.to_owned(),
            detail,
        },
        Problem::ChainOutOfOrder(detail) => CertFileError::ChainOutOfOrder {
            path: path.to_owned(),
            detail,
        },
    })
}

/// Whether `bytes` are certificates and nothing else: PEM with only CERTIFICATE sections that
/// parse, or one DER certificate. The order of the chain does not matter here.
pub fn holds_only_certificates(bytes: &[u8]) -> bool {
    let parses = |der: &[u8]| X509Certificate::from_der(der).is_ok();
    // Sections of unknown kinds are skipped by the PEM reader: look for keys by their label.
    if holds_private_key(bytes) {
        return false;
    }
    if !bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        return parses(bytes);
    }
    let mut any = false;
    for item in <(pem::SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes) {
        match item {
            Ok((pem::SectionKind::Certificate, der)) if parses(&der) => any = true,
            _ => return false,
        }
    }
    any
}

/// Whether `bytes` hold a private key in PEM, of any kind (PKCS#8, RSA, EC, encrypted,
/// OpenSSH), among anything else.
pub fn holds_private_key(bytes: &[u8]) -> bool {
    bytes
        .windows(16)
        .any(|window| window == b"PRIVATE KEY-----")
}

enum Problem {
    Empty,
    NotACertificate(String),
    ChainOutOfOrder(String),
}

fn parse_cert_bytes(bytes: &[u8]) -> Result<CertFile, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::Empty);
    }
    let ders = if bytes.windows(11).any(|window| window == b"-----BEGIN ") {
        let mut ders = Vec::new();
        let mut other_sections = Vec::new();
        for item in <(pem::SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(bytes) {
            match item {
                Ok((pem::SectionKind::Certificate, der)) => ders.push(CertificateDer::from(der)),
                Ok((kind, _)) => other_sections.push(format!("{kind:?}")),
                Err(err) => {
                    return Err(Problem::NotACertificate(pem_problem(&err)));
                }
            }
        }
        if ders.is_empty() {
            let detail = if other_sections.is_empty() {
                "no CERTIFICATE section in the PEM".to_owned()
            } else {
                format!(
                    "the PEM holds {} but no CERTIFICATE (is this the key file?)",
                    other_sections.join(", ")
                )
            };
            return Err(Problem::NotACertificate(detail));
        }
        ders
    } else {
        vec![CertificateDer::from(bytes.to_vec())]
    };
    facts_of_chain(&ders).map_err(|problem| match problem {
        ChainProblem::Parse(_, detail) if ders.len() == 1 => Problem::NotACertificate(format!(
            "not PEM (no -----BEGIN line) and not a DER certificate: {detail}"
        )),
        ChainProblem::Parse(index, detail) => Problem::NotACertificate(format!(
            "certificate #{} cannot be parsed: {detail}",
            index + 1
        )),
        ChainProblem::Order(detail) => Problem::ChainOutOfOrder(detail),
    })
}

/// What is wrong with bytes that should be one DER certificate, in the operator's words:
/// x509-parser's own errors name its parser's internals (`Parsing Error: NomError(Eof)`).
pub fn der_problem(der: &[u8]) -> String {
    let Some((&tag, rest)) = der.split_first() else {
        return "it is empty".into();
    };
    if tag != 0x30 {
        return format!("it starts with byte 0x{tag:02x}, a DER certificate with 0x30");
    }
    // The outer SEQUENCE's length: short form, or 0x81..0x84 and that many length bytes.
    let declared = match rest.split_first() {
        None => None,
        Some((&first, _)) if first < 0x80 => Some(2 + usize::from(first)),
        Some((&first, more)) if (0x81..=0x84).contains(&first) => {
            let count = usize::from(first & 0x7f);
            more.get(..count).map(|bytes| {
                2 + count
                    + bytes
                        .iter()
                        .fold(0usize, |length, &byte| (length << 8) | usize::from(byte))
            })
        }
        Some(_) => return "its DER length is malformed".into(),
    };
    match declared {
        None => format!("it is truncated at byte {}", der.len()),
        Some(total) if der.len() < total => format!(
            "it is truncated at byte {} of the {total} its header announces",
            der.len()
        ),
        Some(_) => "its DER structure is damaged (not a valid X.509 certificate)".into(),
    }
}

/// A PEM reading error in the operator's words (the library's shows the END marker as a
/// list of byte values).
fn pem_problem(err: &pem::Error) -> String {
    match err {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "the PEM is truncated: no `-----END {}-----` line after its BEGIN line",
            String::from_utf8_lossy(end_marker)
        ),
        pem::Error::IllegalSectionStart { .. } => "a malformed -----BEGIN line in the PEM".into(),
        pem::Error::Base64Decode(_) => {
            "the base64 between a BEGIN and an END line is damaged".into()
        }
        other => format!("unreadable PEM ({other})"),
    }
}

/// Why a chain of DER certificates is not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// Certificate at this index does not parse.
    Parse(usize, String),
    /// The certificates are not leaf-first.
    Order(String),
}

/// Facts of the leaf and the chain's order, from DER certificates (a file or a served chain).
pub fn facts_of_chain(ders: &[CertificateDer<'_>]) -> Result<CertFile, ChainProblem> {
    let mut parsed = Vec::with_capacity(ders.len());
    for (index, der) in ders.iter().enumerate() {
        match X509Certificate::from_der(der.as_ref()) {
            Ok((_, cert)) => parsed.push(cert),
            Err(_) => return Err(ChainProblem::Parse(index, der_problem(der.as_ref()))),
        }
    }
    let Some(leaf) = parsed.first() else {
        return Err(ChainProblem::Parse(0, "no certificate".into()));
    };
    check_order(&parsed).map_err(ChainProblem::Order)?;
    Ok(CertFile {
        leaf: facts(leaf),
        chain: parsed[1..]
            .iter()
            .map(|cert| cert.subject().to_string())
            .collect(),
    })
}

fn check_order(chain: &[X509Certificate<'_>]) -> Result<(), String> {
    let issued_by_next = |i: usize| chain[i].issuer().as_raw() == chain[i + 1].subject().as_raw();
    if (0..chain.len().saturating_sub(1)).all(issued_by_next) {
        return Ok(());
    }
    let reversed =
        (0..chain.len() - 1).all(|i| chain[i + 1].issuer().as_raw() == chain[i].subject().as_raw());
    if reversed {
        return Err(format!(
            "the {} certificates are in reverse order (the leaf \"{}\" is last)",
            chain.len(),
            chain[chain.len() - 1].subject()
        ));
    }
    let broken = (0..chain.len() - 1)
        .find(|&i| !issued_by_next(i))
        .unwrap_or_default();
    Err(format!(
        "certificate #{} (\"{}\") was not issued by certificate #{} (\"{}\")",
        broken + 1,
        chain[broken].subject(),
        broken + 2,
        chain[broken + 1].subject()
    ))
}

fn facts(cert: &X509Certificate<'_>) -> CertFacts {
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    let mut authority_key_id = None;
    for extension in cert.extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from_bytes(bytes) {
                                ip_addresses.push(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                authority_key_id = aki.key_identifier.as_ref().map(|id| hex(id.0));
            }
            _ => {}
        }
    }
    let validity = cert.validity();
    CertFacts {
        subject: cert.subject().to_string(),
        dns_names,
        ip_addresses,
        issuer: cert.issuer().to_string(),
        serial: hex(cert.raw_serial()).trim_start_matches("00").to_owned(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        key_algorithm: key_algorithm(cert),
        authority_key_id,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    }
}

fn key_algorithm(cert: &X509Certificate<'_>) -> String {
    match cert.public_key().parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("rsa{}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => "ecdsa-p256".into(),
            384 => "ecdsa-p384".into(),
            bits => format!("ecdsa-{bits}"),
        },
        Ok(other) => format!("{other:?}")
            .split('(')
            .next()
            .unwrap_or("unknown")
            .to_ascii_lowercase(),
        Err(_) => cert.public_key().algorithm.algorithm.to_id_string(),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Lower-case hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Reads a private key and checks that it belongs to the certificate `cert`.
pub fn check_key_file(
    key_path: &Path,
    cert_path: &Path,
    cert: &CertFacts,
) -> Result<(), KeyFileError> {
    let bytes = read_file(key_path).map_err(|(kind, message)| match kind {
        io::ErrorKind::NotFound => KeyFileError::Missing {
            path: key_path.to_owned(),
        },
        io::ErrorKind::PermissionDenied => KeyFileError::PermissionDenied {
            path: key_path.to_owned(),
        },
        _ => KeyFileError::Io {
            path: key_path.to_owned(),
            message,
        },
    })?;
    let public_key = public_key_of_pem(&bytes).ok_or_else(|| KeyFileError::NotAKey {
        path: key_path.to_owned(),
    })?;
    if public_key == cert.public_key {
        Ok(())
    } else {
        Err(KeyFileError::Mismatch {
            path: key_path.to_owned(),
            cert: cert_path.to_owned(),
        })
    }
}

/// The raw public key of a PEM private key, as it appears in a certificate's SPKI.
pub fn public_key_of_pem(pem: &[u8]) -> Option<Vec<u8>> {
    let key = PrivateKeyDer::from_pem_slice(pem).ok()?;
    // An EC key carries its public key: reading it costs no arithmetic, which matters when
    // `status` checks ten thousand keys.
    if let Some(public) = embedded_public_key(&key) {
        return Some(public);
    }
    let pair = rcgen::KeyPair::try_from(&key).ok()?;
    Some(pair.public_key_raw().to_vec())
}

/// A managed certificate as found on disk, and what the policy makes of it.
#[derive(Debug, Clone)]
pub struct ManagedStatus {
    pub name: String,
    pub cert_path: PathBuf,
    pub domains: Vec<String>,
    pub file: Option<CertFile>,
    /// The defect or error in words, when there is one.
    pub problem: Option<String>,
    pub assessment: Assessment,
    /// Due or not, when and why, with the history and the CA's window taken into account
    /// (`inspect_all`); the lifetime rule alone from `inspect_managed`.
    pub decision: Decision,
    /// The CA's renewal window for the certificate on disk, when known.
    pub ari_window: Option<Window>,
    /// An issued version waiting to be deployed.
    pub pending: Option<Pending>,
    /// The directory URL of the CA that issued the live certificate, when evercert knows it.
    pub issued_by: Option<String>,
}

impl ManagedStatus {
    /// Decides again with what was remembered: the renewal history and the CA's window.
    pub fn decide(
        &mut self,
        history: &CertHistory,
        ari_window: Option<Window>,
        windows: &crate::window::Windows,
        now: OffsetDateTime,
    ) {
        let facts = Facts {
            name: &self.name,
            assessment: &self.assessment,
            leaf: self.file.as_ref().map(|file| &file.leaf),
        };
        self.decision = decision::decide(&facts, history, ari_window, windows, now);
        self.ari_window = ari_window;
        self.pending = history.pending.clone();
        self.issued_by = history.issued_by.clone();
    }
}

/// Inspects one managed certificate: reads its files and applies the renewal policy.
pub fn inspect_managed(
    cert: &CertificateSettings,
    renew_before: RenewBefore,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> ManagedStatus {
    let (file, on_disk) = match read_cert_file(&cert.cert_path) {
        Err(CertFileError::Missing { .. }) => (None, OnDisk::Missing),
        Err(err @ (CertFileError::PermissionDenied { .. } | CertFileError::Io { .. })) => {
            (None, OnDisk::Unreadable(err.to_string()))
        }
        // A chain out of order leaves which certificate is the leaf a guess: the file is
        // reported as broken, like garbage, and renewal replaces it.
        Err(err) => (None, OnDisk::Broken(err.to_string())),
        Ok(file) => match check_key_file(&cert.key_path, &cert.cert_path, &file.leaf) {
            Err(err @ (KeyFileError::PermissionDenied { .. } | KeyFileError::Io { .. })) => {
                (Some(file), OnDisk::Unreadable(err.to_string()))
            }
            key => {
                let on_disk = OnDisk::Present {
                    not_before: file.leaf.not_before,
                    not_after: file.leaf.not_after,
                    defect: defect(cert, &file, key.err()),
                };
                (Some(file), on_disk)
            }
        },
    };
    let assessment = policy::assess(&on_disk, renew_before, thresholds, now);
    let mut status = ManagedStatus {
        name: cert.name.clone(),
        cert_path: cert.cert_path.clone(),
        domains: cert.domains.clone(),
        file,
        problem: assessment.reason.clone(),
        decision: Decision {
            due: assessment.due,
            renew_at: assessment.renew_at,
            reason: decision::Reason::Lifetime,
            ari: decision::AriUse::None,
            next_window: None,
        },
        assessment,
        ari_window: None,
        pending: None,
        issued_by: None,
    };
    status.decide(
        &CertHistory::default(),
        None,
        &crate::window::Windows::default(),
        now,
    );
    status
}

/// The CA's window for this certificate from the ARI cache, when ARI is on.
pub fn cached_ari_window(config: &Config, status: &ManagedStatus) -> Option<Window> {
    if !config.renewal.ari {
        return None;
    }
    let file = status.file.as_ref()?;
    crate::ari::load(&config.state_dir, &status.name)?
        .window_for(&config.acme.directory, &file.leaf.serial)
}

/// What makes a readable certificate due at once: a key that is missing or does not match,
/// or configured names it does not cover.
fn defect(
    cert: &CertificateSettings,
    file: &CertFile,
    key: Option<KeyFileError>,
) -> Option<String> {
    if let Some(err) = key {
        return Some(err.to_string());
    }
    let uncovered = file.leaf.uncovered(&cert.domains);
    if uncovered.is_empty() {
        None
    } else {
        Some(format!(
            "{}: the certificate does not cover {} (it has {})",
            cert.cert_path.display(),
            uncovered.join(", "),
            file.leaf.names().join(", ")
        ))
    }
}

/// Inspects every managed certificate of a configuration, in parallel for large fleets.
/// `thresholds` are the config's, or those given on the command line (`check --warn`).
pub fn inspect_all(
    config: &Config,
    thresholds: Thresholds,
    now: OffsetDateTime,
) -> Vec<ManagedStatus> {
    let state = FileState::new(&config.state_dir);
    parallel_map(&config.certificates, |cert| {
        let mut status = inspect_managed(cert, config.renew_before(cert), thresholds, now);
        let window = cached_ari_window(config, &status);
        status.decide(
            &state.load(&cert.name),
            window,
            &config.renewal.windows,
            now,
        );
        status
    })
}

/// Maps `items` on up to as many threads as there are cores; order is kept. Reading and
/// parsing ten thousand certificates is CPU-bound, and each is independent.
pub fn parallel_map<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    const SERIAL_BELOW: usize = 64;
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(8);
    if items.len() < SERIAL_BELOW || threads == 1 {
        return items.iter().map(work).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&work).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(results) => results,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// One DER TLV: (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The public key an EC private key carries (RFC 5915 `publicKey`), from PKCS#8 or SEC1,
/// without any key arithmetic; None when it is absent or the key is not EC.
fn embedded_public_key(key: &PrivateKeyDer<'_>) -> Option<Vec<u8>> {
    let ec_private_key = match key {
        PrivateKeyDer::Pkcs8(der) => {
            let (_, info, _) = der_tlv(der.secret_pkcs8_der())?; // PrivateKeyInfo
            let (_, _, rest) = der_tlv(info)?; // version
            let (_, _, rest) = der_tlv(rest)?; // algorithm
            let (tag, octets, _) = der_tlv(rest)?; // privateKey
            if tag != 0x04 {
                return None;
            }
            octets
        }
        PrivateKeyDer::Sec1(der) => der.secret_sec1_der(),
        _ => return None,
    };
    let (tag, body, _) = der_tlv(ec_private_key)?; // ECPrivateKey
    if tag != 0x30 {
        return None;
    }
    let (tag, version, rest) = der_tlv(body)?;
    if tag != 0x02 || version != [1] {
        return None;
    }
    let (_, _, mut rest) = der_tlv(rest)?; // privateKey
    while !rest.is_empty() {
        let (tag, contents, next) = der_tlv(rest)?;
        if tag == 0xa1 {
            let (tag, bits, _) = der_tlv(contents)?;
            if tag != 0x03 || bits.first() != Some(&0) {
                return None;
            }
            return Some(bits[1..].to_vec());
        }
        rest = next;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages an operator meets for a damaged certificate file, in one place.
    #[test]
    fn damaged_certificates_are_described_without_parser_internals() {
        let cases: [(&[u8], &str); 6] = [
            (b"", "it is empty"),
            (
                b"hello world",
                "it starts with byte 0x68, a DER certificate with 0x30",
            ),
            (&[0x30, 0x82, 0x01], "it is truncated at byte 3"),
            (
                &[0x30, 0x82, 0x01, 0x00, 0x30],
                "it is truncated at byte 5 of the 260 its header announces",
            ),
            (&[0x30, 0x80, 0x00, 0x00], "its DER length is malformed"),
            (
                &[0x30, 0x03, 0x02, 0x01, 0x00],
                "its DER structure is damaged (not a valid X.509 certificate)",
            ),
        ];
        for (bytes, expected) in cases {
            assert_eq!(der_problem(bytes), expected, "{bytes:?}");
        }
        let Err(Problem::NotACertificate(detail)) =
            parse_cert_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n")
        else {
            panic!("a PEM without END parsed");
        };
        assert_eq!(
            detail,
            "the PEM is truncated: no `-----END CERTIFICATE-----` line after its BEGIN line"
        );
        let Err(Problem::NotACertificate(detail)) = parse_cert_bytes(&[0x30, 0x82, 0x05, 0x00, 1])
        else {
            panic!("a truncated DER parsed");
        };
        assert_eq!(
            detail,
            "not PEM (no -----BEGIN line) and not a DER certificate: it is truncated at byte 5 of the 1284 its header announces"
        );
    }

    fn facts_with(dns: &[&str], ips: &[&str]) -> CertFacts {
        CertFacts {
            subject: String::new(),
            dns_names: dns.iter().map(|s| (*s).to_owned()).collect(),
            ip_addresses: ips.iter().map(|s| s.parse().unwrap()).collect(),
            issuer: String::new(),
            serial: String::new(),
            not_before: OffsetDateTime::UNIX_EPOCH,
            not_after: OffsetDateTime::UNIX_EPOCH,
            key_algorithm: String::new(),
            authority_key_id: None,
            public_key: Vec::new(),
        }
    }

    #[test]
    fn coverage_follows_wildcard_rules() {
        let cert = facts_with(&["example.com", "*.shop.example.com"], &["192.0.2.1"]);
        let domains: Vec<String> = [
            "example.com",
            "www.shop.example.com",
            "a.b.shop.example.com",
            "shop.example.com",
            "*.shop.example.com",
            "192.0.2.1",
            "192.0.2.2",
            "EXAMPLE.COM",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(
            cert.uncovered(&domains),
            vec!["a.b.shop.example.com", "shop.example.com", "192.0.2.2"]
        );
    }

    #[test]
    fn garbage_empty_and_key_files_are_told_apart() {
        assert!(matches!(parse_cert_bytes(b"  \n"), Err(Problem::Empty)));
        assert!(matches!(
            parse_cert_bytes(b"hello world"),
            Err(Problem::NotACertificate(_))
        ));
        let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
        match parse_cert_bytes(key.as_bytes()) {
            Err(Problem::NotACertificate(detail)) => {
                assert!(detail.contains("is this the key file?"), "{detail}");
            }
            _ => panic!("a key is not a certificate"),
        }
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x1f]), "00ab1f");
    }
}
