//! Connecting to a TLS endpoint to see which certificate it really serves.
//!
//! Used by `check HOST:PORT` (expiry of what clients get, trusted or not) and by the pipeline's
//! verify step (did the reload make the server serve the new certificate). Trust is recorded,
//! not enforced: an expired or self-signed certificate is exactly what must be reported.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::config::Endpoint;
use crate::inventory::{self, CertFile};

/// What an endpoint served.
#[derive(Debug, Clone)]
pub struct Served {
    pub file: CertFile,
    /// `Ok` when the chain verifies against the trusted roots for the name; else why not.
    pub trusted: Result<(), String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("{endpoint}: cannot connect: {message}; is the server running and the port open?")]
    Connect { endpoint: String, message: String },
    #[error("{endpoint}: no TLS handshake within {seconds} s")]
    Timeout { endpoint: String, seconds: u64 },
    #[error("{endpoint}: TLS handshake failed: {message}")]
    Handshake { endpoint: String, message: String },
    #[error("{endpoint}: the server sent no certificate")]
    NoCertificate { endpoint: String },
    #[error("{endpoint}: the served certificate cannot be parsed: {message}")]
    Unparsable { endpoint: String, message: String },
}

/// The system's trusted roots (what browsers on this host would trust), plus `extra`.
pub fn system_roots(extra: &[CertificateDer<'static>]) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(loaded.certs);
    roots.add_parsable_certificates(extra.iter().cloned());
    roots
}

/// At most this many probes run at once in the whole process. `check` of 1,500 endpoints once
/// opened a socket for each at the same time and, under the usual limit of 1,024 open files,
/// reported 487 reachable endpoints CRITICAL ("Too many open files").
pub const MAX_CONCURRENT_PROBES: usize = 64;

static PROBE_SLOTS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_PROBES);

/// Connects to `endpoint`, sends SNI `server_name` (none for an IP address), and returns the
/// served chain's facts and whether it is trusted.
pub async fn probe(
    endpoint: &Endpoint,
    server_name: &str,
    roots: Arc<RootCertStore>,
    timeout: Duration,
) -> Result<Served, ProbeError> {
    let label = endpoint.to_string();
    // Waiting for a slot is not the endpoint's fault: its deadline (connect, handshake and
    // everything after) starts once it has one. The semaphore is never closed.
    let _slot = PROBE_SLOTS.acquire().await.ok();
    match tokio::time::timeout(timeout, probe_inner(endpoint, server_name, roots)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout {
            endpoint: label,
            seconds: timeout.as_secs(),
        }),
    }
}

async fn probe_inner(
    endpoint: &Endpoint,
    server_name: &str,
    roots: Arc<RootCertStore>,
) -> Result<Served, ProbeError> {
    let label = endpoint.to_string();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(RecordingVerifier::new(roots, provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ProbeError::Handshake {
            endpoint: label.clone(),
            message: err.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name =
        ServerName::try_from(server_name.to_owned()).map_err(|err| ProbeError::Handshake {
            endpoint: label.clone(),
            message: format!("\"{server_name}\" is not a valid server name: {err}"),
        })?;
    let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|err| ProbeError::Connect {
            endpoint: label.clone(),
            message: err.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|err| ProbeError::Handshake {
            endpoint: label.clone(),
            message: err.to_string(),
        })?;
    let (_, connection) = tls.get_ref();
    let chain = connection
        .peer_certificates()
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| ProbeError::NoCertificate {
            endpoint: label.clone(),
        })?
        .to_vec();
    let file = inventory::facts_of_chain(&chain).or_else(|problem| match problem {
        // A server that sends its chain out of order still serves a leaf: report its expiry.
        inventory::ChainProblem::Order(_) => {
            inventory::facts_of_chain(&chain[..1]).map_err(|_| problem)
        }
        other => Err(other),
    });
    let file = file.map_err(|problem| ProbeError::Unparsable {
        endpoint: label,
        message: format!("{problem:?}"),
    })?;
    let trusted = verifier.outcome();
    Ok(Served { file, trusted })
}

/// Accepts any chain but remembers whether the normal WebPKI check would have passed.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
    outcome: std::sync::Mutex<Option<Result<(), String>>>,
}

impl RecordingVerifier {
    fn new(roots: Arc<RootCertStore>, provider: Arc<CryptoProvider>) -> Self {
        let inner = if roots.is_empty() {
            None
        } else {
            WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .ok()
        };
        Self {
            inner,
            provider,
            outcome: std::sync::Mutex::new(None),
        }
    }

    fn outcome(&self) -> Result<(), String> {
        self.outcome
            .lock()
            .ok()
            .and_then(|guard| guard.clone())
            .unwrap_or_else(|| Err("not verified".into()))
    }
}

/// rustls' verification error in the operator's words: its own text shows times as raw
/// UNIX seconds (`verification time 1796035182 (UNIX)`) and issuers as enum names.
pub fn trust_problem(err: &rustls::Error) -> String {
    use rustls::CertificateError as E;
    let stamp = |at: UnixTime| {
        i64::try_from(at.as_secs())
            .ok()
            .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok())
            .map_or_else(|| "?".to_owned(), crate::units::rfc3339)
    };
    match err {
        rustls::Error::InvalidCertificate(cert) => match cert {
            E::ExpiredContext { time, not_after } => format!(
                "the certificate expired at {} (checked at {})",
                stamp(*not_after),
                stamp(*time)
            ),
            E::NotValidYetContext { time, not_before } => format!(
                "the certificate is not valid before {} (checked at {})",
                stamp(*not_before),
                stamp(*time)
            ),
            E::UnknownIssuer => "issued by a CA this host does not trust".into(),
            E::NotValidForNameContext { expected, .. } => {
                format!("the certificate is not valid for {}", expected.to_str())
            }
            other => format!("invalid certificate: {other}"),
        },
        other => other.to_string(),
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let outcome = match &self.inner {
            Some(verifier) => verifier
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|err| trust_problem(&err)),
            None => Err("no trusted root certificates on this host".into()),
        };
        if let Ok(mut slot) = self.outcome.lock() {
            *slot = Some(outcome);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustls' errors as an operator reads them: times in RFC 3339, never UNIX seconds.
    #[test]
    fn trust_errors_read_as_dates() {
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(1_796_035_182)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_795_900_000)),
        });
        assert_eq!(
            trust_problem(&expired),
            "the certificate expired at 2026-11-28T21:06:40Z (checked at 2026-11-30T10:39:42Z)"
        );
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert_eq!(
            trust_problem(&unknown),
            "issued by a CA this host does not trust"
        );
    }
}
