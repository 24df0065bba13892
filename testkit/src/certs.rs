//! Certificate fixtures minted at test time, with the validity each test needs.
//!
//! Committed PEMs expire and then fail a test years later for no reason; here a throwaway CA
//! (a root and, by default, an intermediate) issues leaves whose `not_before`/`not_after` are
//! chosen relative to now. [`TlsServer`] serves such a leaf on loopback for `check HOST:PORT`
//! and for verify steps.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, RsaKeySize, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use tokio::io::AsyncReadExt;

use super::serve::Background;

/// Common names of the fixture CA, so tests can recognise the `issuer` field.
pub const ROOT_CN: &str = "evercert test root";
pub const INTERMEDIATE_CN: &str = "evercert test intermediate";

/// The key types evercert's config knows, as far as the tests need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
}

impl KeyType {
    /// A fresh key pair of this type.
    pub fn generate(self) -> KeyPair {
        match self {
            Self::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Self::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Self::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        }
        .unwrap()
    }
}

/// `now`, truncated to whole seconds as X.509 times are.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

/// `(not_before, not_after)` of a certificate with this lifetime and this much time left;
/// `left` may be negative for an expired certificate.
pub fn validity(lifetime: Duration, left: Duration) -> (OffsetDateTime, OffsetDateTime) {
    let not_after = now() + left;
    (not_after - lifetime, not_after)
}

/// A 90-day certificate (Let's Encrypt's lifetime) with `days` days left (negative: expired).
pub fn days_left(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    validity(Duration::days(90), Duration::days(days))
}

/// Distinct serial numbers within a run, and across runs in practice.
fn next_serial() -> Vec<u8> {
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    // A first byte below 0x80 keeps the DER INTEGER positive without a padding byte.
    let mut serial = vec![0x1e];
    serial.extend_from_slice(&count.to_be_bytes()[4..]);
    serial.extend_from_slice(&nanos.to_be_bytes()[2..]);
    serial
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn ca_params(common_name: &str, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = now();
    params.not_before = now - Duration::days(365);
    params.not_after = now + Duration::days(3650);
    params.serial_number = Some(SerialNumber::from_slice(&next_serial()));
    params
}

/// A throwaway CA: a root, and an intermediate that issues the leaves unless built with
/// [`TestCa::root_only`].
pub struct TestCa {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: Option<CertifiedIssuer<'static, KeyPair>>,
}

impl TestCa {
    /// A root and an intermediate; leaves are issued by the intermediate.
    pub fn new() -> Self {
        let root =
            CertifiedIssuer::self_signed(ca_params(ROOT_CN, 1), KeyType::EcdsaP256.generate())
                .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(INTERMEDIATE_CN, 0),
            KeyType::EcdsaP256.generate(),
            &root,
        )
        .unwrap();
        Self {
            root,
            intermediate: Some(intermediate),
        }
    }

    /// A root that issues the leaves itself.
    pub fn root_only() -> Self {
        let root =
            CertifiedIssuer::self_signed(ca_params(ROOT_CN, 0), KeyType::EcdsaP256.generate())
                .unwrap();
        Self {
            root,
            intermediate: None,
        }
    }

    /// The root certificate, for a client that should trust this CA.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The common name of whoever issues the leaves.
    pub fn issuer_cn(&self) -> &'static str {
        if self.intermediate.is_some() {
            INTERMEDIATE_CN
        } else {
            ROOT_CN
        }
    }

    /// A leaf for `domains` (DNS names or IP addresses), valid from `not_before` to
    /// `not_after`, with a fresh key of `key_type`.
    pub fn leaf(
        &self,
        domains: &[&str],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        key_type: KeyType,
    ) -> Leaf {
        let names: Vec<String> = domains.iter().map(|name| (*name).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(first) = domains.first() {
            params.distinguished_name.push(DnType::CommonName, *first);
        }
        params.not_before = not_before;
        params.not_after = not_after;
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if key_type == KeyType::Rsa2048 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = key_type.generate();
        let issuer = self.intermediate.as_ref().unwrap_or(&self.root);
        let cert = params.signed_by(&key, issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            chain_pem: self
                .intermediate
                .as_ref()
                .map(CertifiedIssuer::pem)
                .unwrap_or_default(),
            der: cert.der().to_vec(),
            serial_hex: hex(&serial),
            not_before,
            not_after,
            domains: names,
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A leaf from a fresh CA with an intermediate: `(cert PEM, key PEM, chain PEM)` and more.
pub fn leaf(
    domains: &[&str],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    key_type: KeyType,
) -> Leaf {
    TestCa::new().leaf(domains, not_before, not_after, key_type)
}

/// An issued leaf certificate and what tests compare it with.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The leaf alone.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The issuing chain after the leaf (the intermediate; empty when the root issued it).
    pub chain_pem: String,
    pub der: Vec<u8>,
    /// Lower-case hex, as evercert reports it.
    pub serial_hex: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub domains: Vec<String>,
}

impl Leaf {
    /// Leaf first, then the chain: what a web server is given.
    pub fn fullchain_pem(&self) -> String {
        format!("{}{}", self.cert_pem, self.chain_pem)
    }

    /// The chain first and the leaf last: the classic out-of-order bundle.
    pub fn reversed_chain_pem(&self) -> String {
        assert!(
            !self.chain_pem.is_empty(),
            "a reversed chain needs an intermediate"
        );
        format!("{}{}", self.chain_pem, self.cert_pem)
    }

    /// Writes the full chain to `path` and returns it.
    pub fn write_fullchain(&self, path: &Path) -> PathBuf {
        write(path, self.fullchain_pem())
    }

    /// Writes the private key to `path` and returns it.
    pub fn write_key(&self, path: &Path) -> PathBuf {
        write(path, &self.key_pem)
    }

    /// Writes the chain in reverse order (leaf last) to `path`.
    pub fn write_reversed(&self, path: &Path) -> PathBuf {
        write(path, self.reversed_chain_pem())
    }

    /// Writes the leaf alone as DER to `path`.
    pub fn write_der(&self, path: &Path) -> PathBuf {
        write(path, &self.der)
    }

    /// Writes `<stem>.fullchain.pem` and `<stem>.key.pem` under `dir`; returns both paths.
    pub fn write_pair(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.write_fullchain(&dir.join(format!("{stem}.fullchain.pem"))),
            self.write_key(&dir.join(format!("{stem}.key.pem"))),
        )
    }
}

/// A private key PEM that belongs to no certificate the tests issued (for key mismatches).
pub fn other_key_pem(key_type: KeyType) -> String {
    key_type.generate().serialize_pem()
}

/// Writes `contents` to `path` (creating parent directories) and returns the path.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> PathBuf {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, contents).unwrap();
    path.to_owned()
}

/// A file that is not a certificate in any encoding.
pub fn write_garbage(path: &Path) -> PathBuf {
    write(
        path,
        "this is not a certificate\n\x01\x02 garbage from a failed copy\n",
    )
}

/// An empty file (a truncated write).
pub fn write_empty(path: &Path) -> PathBuf {
    write(path, "")
}

/// A TLS server on 127.0.0.1 serving one certificate chain, on a background thread with its
/// own tokio runtime. It accepts connections until dropped.
pub struct TlsServer {
    addr: SocketAddr,
    _server: Background,
}

impl TlsServer {
    /// Serves `leaf` with its chain (leaf first).
    pub fn start(leaf: &Leaf) -> Self {
        Self::serve(&leaf.fullchain_pem(), &leaf.key_pem)
    }

    /// Serves the certificates of `chain_pem` in file order, with the key `key_pem`.
    pub fn serve(chain_pem: &str, key_pem: &str) -> Self {
        let config = super::tls::server_config(chain_pem, key_pem);
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        // Bound here, so the port is known (and listening) before `start` returns.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Background::spawn("tls-server", listener, move |stream| {
            let acceptor = acceptor.clone();
            async move {
                // Handshake, then hold the connection until the client closes
                // it (bounded, so a stuck client cannot pin a task).
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let _ = tokio::time::timeout(StdDuration::from_secs(5), async {
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        });
        Self {
            addr,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, as given to `evercert check`.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }
}

/// A loopback `HOST:PORT` where nothing listens (bound, then released).
pub fn closed_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr.to_string()
}
