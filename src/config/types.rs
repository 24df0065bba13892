//! The validated settings every command works from.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use time::Duration;

use super::{LETSENCRYPT, LETSENCRYPT_STAGING};
use crate::policy::{RenewBefore, Thresholds};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from; relative paths in it are resolved against its directory.
    pub source: PathBuf,
    pub state_dir: PathBuf,
    pub acme: AcmeSettings,
    pub renewal: RenewalSettings,
    pub certificates: Vec<CertificateSettings>,
    pub monitors: Vec<MonitorSettings>,
    pub alerts: AlertSettings,
    pub metrics: Option<MetricsSettings>,
    /// `[discover]`: the web servers whose certificates are monitored as if listed.
    pub discover: Option<crate::discover::Sources>,
    /// `[cluster]`: fleet mode through etcd; `None` for a single host.
    pub cluster: Option<crate::fleet::ClusterSettings>,
}

#[derive(Debug, Clone)]
pub struct AcmeSettings {
    /// The directory URL, aliases resolved.
    pub directory: String,
    /// What `--dry-run` uses.
    pub staging_directory: String,
    pub contact: Vec<String>,
    pub ca_bundle: Option<PathBuf>,
    pub eab: Option<ExternalAccountBinding>,
    pub profile: Option<String>,
    /// How long one request to the CA may take before it counts as stalled.
    pub timeout: Duration,
    /// `[[acme.fallback]]`: the CAs tried, in order, when the primary keeps failing
    /// (`fallback::choose`).
    pub fallbacks: Vec<FallbackCa>,
}

/// A second CA, with its own account.
#[derive(Debug, Clone)]
pub struct FallbackCa {
    pub directory: String,
    pub eab: Option<ExternalAccountBinding>,
    /// Extra roots for this CA's HTTPS; the primary's `ca_bundle` when not given.
    pub ca_bundle: Option<PathBuf>,
    /// How long the primary may keep failing before this CA is tried.
    pub fallback_after: Duration,
}

impl AcmeSettings {
    /// The settings to connect to `fallback` with: its directory, EAB and roots, the same
    /// contact and timeout, no profile (profiles are per CA).
    pub fn for_fallback(&self, fallback: &FallbackCa) -> Self {
        Self {
            directory: fallback.directory.clone(),
            staging_directory: fallback.directory.clone(),
            contact: self.contact.clone(),
            ca_bundle: fallback
                .ca_bundle
                .clone()
                .or_else(|| self.ca_bundle.clone()),
            eab: fallback.eab.clone(),
            profile: None,
            timeout: self.timeout,
            fallbacks: Vec::new(),
        }
    }
}

/// External account binding: the HMAC key is a secret and never printed.
#[derive(Clone)]
pub struct ExternalAccountBinding {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

impl fmt::Debug for ExternalAccountBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalAccountBinding")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct RenewalSettings {
    pub renew_before: RenewBefore,
    pub ari: bool,
    pub thresholds: Thresholds,
    /// How many versions of each certificate the archive keeps (the live one and the
    /// rollback target always stay, even beyond it).
    pub archive_keep: usize,
    /// When renewals may run (`windows`); empty: at any time.
    pub windows: crate::window::Windows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    pub const ALL: [Self; 5] = [
        Self::EcdsaP256,
        Self::EcdsaP384,
        Self::Rsa2048,
        Self::Rsa3072,
        Self::Rsa4096,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ecdsa-p256",
            Self::EcdsaP384 => "ecdsa-p384",
            Self::Rsa2048 => "rsa2048",
            Self::Rsa3072 => "rsa3072",
            Self::Rsa4096 => "rsa4096",
        }
    }

    pub(super) fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the CA is shown that we control a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeSettings {
    /// http-01, token files written below `webroot/.well-known/acme-challenge/`.
    Http01Webroot(PathBuf),
    /// http-01, answered by evercert's own responder bound while an order needs it.
    Http01Listen(SocketAddr),
    /// dns-01 through an operator's hook, then a wait for the record to propagate.
    Dns01 {
        hook: String,
        wait: Duration,
        propagation: Option<crate::dns01::PropagationSettings>,
    },
    /// dns-01 through evercert's own RFC 2136 updater.
    Dns01Rfc2136(Box<crate::dns01::Rfc2136Challenge>),
    /// tls-alpn-01, answered by evercert's own responder.
    TlsAlpn01 { listen: SocketAddr },
}

#[derive(Debug, Clone)]
pub struct CertificateSettings {
    pub name: String,
    /// Lower-cased DNS names (maybe `*.`-wildcards) and IP addresses, in configured order.
    pub domains: Vec<String>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// Key and full chain in one file, for HAProxy; optional.
    pub bundle_path: Option<PathBuf>,
    pub key_type: KeyType,
    pub reuse_key: bool,
    pub key_mode: u32,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub reload: Option<String>,
    pub reload_timeout: Duration,
    pub verify: Vec<Endpoint>,
    /// How long the verify endpoints may take to serve the new certificate.
    pub verify_timeout: Duration,
    /// How many fresh connections in a row must see the new certificate: a graceful reload
    /// leaves old workers accepting for a moment, and one lucky connection proves little.
    pub verify_consecutive: u32,
    /// Overrides `[renewal] renew_before` for this certificate.
    pub renew_before: Option<RenewBefore>,
    pub challenge: ChallengeSettings,
}

/// A `HOST:PORT` to connect to over TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:443`, `127.0.0.1:443` or `[::1]:443`.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return Some(Self {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let valid = !host.is_empty()
            && !host.contains(['/', ' ', '[', ']', ':'])
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
        valid.then(|| Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorTarget {
    File(PathBuf),
    Endpoint(Endpoint),
}

#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub name: String,
    pub target: MonitorTarget,
}

#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    pub command: Option<String>,
    pub webhook: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: SocketAddr,
}

impl Config {
    /// The certificate settings by name.
    pub fn certificate(&self, name: &str) -> Option<&CertificateSettings> {
        self.certificates.iter().find(|cert| cert.name == name)
    }

    /// The `renew_before` in force for a certificate.
    pub fn renew_before(&self, cert: &CertificateSettings) -> RenewBefore {
        cert.renew_before.unwrap_or(self.renewal.renew_before)
    }
}

/// Resolves `letsencrypt` / `letsencrypt-staging` to their URLs; anything else is kept.
pub fn resolve_directory(alias_or_url: &str) -> String {
    match alias_or_url {
        "letsencrypt" => LETSENCRYPT.to_owned(),
        "letsencrypt-staging" => LETSENCRYPT_STAGING.to_owned(),
        other => other.to_owned(),
    }
}
