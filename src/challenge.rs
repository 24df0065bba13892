//! Proving control of a name to the CA: http-01 (webroot or evercert's own responder),
//! dns-01 (an operator's hook, or RFC 2136 updates through [`crate::dns01`]) and tls-alpn-01
//! (evercert's own responder).
//!
//! Responders are shared per listen address within one run, so twenty certificates renewed
//! together use one port-80 listener; it is bound only while a run needs it and closed when
//! the last user drops it. Whatever is presented is cleaned up, on success and on failure.
//!
//! In a fleet the CA may ask any host behind the load balancer: a [`ChallengeFanout`] makes
//! each http-01 token available on the other hosts too, and waits until they serve it, before
//! the CA is told to validate. A single host has none, and nothing changes for it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::ChallengeSettings;
use crate::dns01::{self, AddedRecord, Dns01Error, Rfc2136Challenge, journal};
use crate::hooks;
use crate::listener;

/// How many clients one responder serves at once. A CA validates from a handful of vantage
/// points; over this, the oldest connection still waiting for its request (or handshake) is
/// closed to make room (see [`crate::listener`]).
pub const MAX_CONNECTIONS: usize = 256;

/// What the CA asks for one identifier, computed by the ACME module.
#[derive(Debug, Clone)]
pub struct ChallengeResponse {
    /// The identifier without a wildcard prefix (`example.com` for `*.example.com`).
    pub domain: String,
    pub token: String,
    /// For http-01: served at `/.well-known/acme-challenge/TOKEN`.
    pub key_authorization: String,
    /// For dns-01: the TXT value.
    pub dns_value: String,
    /// For tls-alpn-01: SHA-256 of the key authorization, put in the acmeIdentifier extension.
    pub alpn_digest: Vec<u8>,
}

/// The three challenge kinds evercert can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Http01,
    Dns01,
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http01 => "http-01",
            Self::Dns01 => "dns-01",
            Self::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChallengeError {
    #[error(
        "cannot write the http-01 token {path}: {message}; is the webroot writable by evercert?"
    )]
    Webroot { path: PathBuf, message: String },
    #[error(
        "cannot listen on {addr} for {kind}: {message}; is another server bound there (stop it, or use a webroot)?"
    )]
    Bind {
        addr: SocketAddr,
        kind: &'static str,
        message: String,
    },
    #[error("dns-01 hook failed for {domain}: {message}")]
    Hook { domain: String, message: String },
    #[error("dns-01 for {domain}: {source}")]
    Dns01 {
        domain: String,
        source: Box<Dns01Error>,
    },
    #[error("dns-01: {0}")]
    Propagation(Box<Dns01Error>),
    #[error("cannot build the tls-alpn-01 certificate for {domain}: {message}")]
    AlpnCertificate { domain: String, message: String },
    #[error(
        "cannot share the http-01 token with the fleet: {message}; the CA was not asked to validate, the next attempt orders again"
    )]
    Fanout { message: String },
    /// Serving another host's token; that host decides what happens next (it asks the CA
    /// anyway), so nothing is said here about ordering again.
    #[error("cannot serve the fleet's http-01 token here: {message}")]
    CannotServeShared { message: String },
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Makes this host's http-01 tokens available on every other host of a fleet (the etcd
/// backend is `crate::fleet::fanout`), so the CA may ask any host behind the load balancer.
pub trait ChallengeFanout: Send + Sync + std::fmt::Debug {
    /// Publishes the token of `response` for certificate `name`; every other host serves it.
    fn publish<'a>(
        &'a self,
        name: &'a str,
        response: &'a ChallengeResponse,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Waits, bounded, until every live host answered that it serves `tokens` (or could
    /// not); a line saying who serves them, for the progress output.
    fn await_acks<'a>(
        &'a self,
        name: &'a str,
        tokens: &'a [String],
    ) -> BoxFuture<'a, Result<String, String>>;
    /// Withdraws `token` from every host. Failures are logged (the token dies with the
    /// holder's lease anyway).
    fn withdraw<'a>(&'a self, token: &'a str) -> BoxFuture<'a, ()>;
}

impl ChallengeError {
    /// Whether trying again in the same run cannot help: the configuration or the DNS
    /// server's set-up must change first (a refused update, a wrong TSIG key, a bad key file).
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Dns01 { source, .. } => source.is_permanent(),
            _ => false,
        }
    }
}

/// Something presented that must be removed afterwards.
#[derive(Debug)]
pub enum Presented {
    WebrootFile(PathBuf),
    ResponderToken {
        responder: Arc<HttpResponder>,
        token: String,
    },
    DnsRecord {
        hook: String,
        domain: String,
        record: String,
        value: String,
    },
    /// A TXT value added with an RFC 2136 update.
    Rfc2136Record {
        settings: Box<Rfc2136Challenge>,
        journal: Option<journal::Journal>,
        record: AddedRecord,
        entry: Option<journal::Entry>,
    },
    AlpnCert {
        responder: Arc<AlpnResponder>,
        domain: String,
    },
    /// An http-01 token shared with the other hosts of a fleet.
    Shared {
        fanout: Arc<dyn ChallengeFanout>,
        token: String,
    },
}

/// Shared responders of one run, keyed by listen address. They stay bound until the run
/// drops this: releasing a port as soon as one order is done would race the next order's
/// bind (EADDRINUSE while the old listener is still closing).
#[derive(Debug, Default)]
pub struct Responders {
    http: Mutex<HashMap<SocketAddr, Arc<HttpResponder>>>,
    alpn: Mutex<HashMap<SocketAddr, Arc<AlpnResponder>>>,
    /// Where RFC 2136 updates are noted until deleted (`state_dir/dns01`).
    dns_journal: Option<journal::Journal>,
    /// In a fleet: shares http-01 tokens with the other hosts.
    fanout: Option<Arc<dyn ChallengeFanout>>,
}

/// The http-01 responders bound in this process, by address: the fleet's token watcher and
/// a renewal in the same process share one listener instead of failing each other's bind.
static HTTP_RESPONDERS: Mutex<Vec<(SocketAddr, Weak<HttpResponder>)>> = Mutex::new(Vec::new());

impl Responders {
    /// Responders whose RFC 2136 records are noted in `state_dir`, so that a killed run's
    /// records are removed by the next one.
    pub fn with_state_dir(state_dir: &Path) -> Self {
        Self {
            dns_journal: Some(journal::Journal::in_state_dir(state_dir)),
            ..Self::default()
        }
    }

    /// These responders, sharing http-01 tokens through `fanout` when given.
    pub fn with_fanout(mut self, fanout: Option<Arc<dyn ChallengeFanout>>) -> Self {
        self.fanout = fanout;
        self
    }

    async fn http(&self, addr: SocketAddr) -> Result<Arc<HttpResponder>, ChallengeError> {
        if let Some(existing) = lock(&self.http).get(&addr) {
            return Ok(existing.clone());
        }
        let shared = {
            let mut bound = lock(&HTTP_RESPONDERS);
            bound.retain(|(_, responder)| responder.strong_count() > 0);
            bound
                .iter()
                .find(|(bound_addr, _)| *bound_addr == addr)
                .and_then(|(_, responder)| responder.upgrade())
        };
        let responder = match shared {
            Some(responder) => responder,
            None => {
                let responder = Arc::new(HttpResponder::bind(addr).await?);
                lock(&HTTP_RESPONDERS).push((addr, Arc::downgrade(&responder)));
                responder
            }
        };
        // Another order may have bound it meanwhile; either one serves.
        Ok(lock(&self.http).entry(addr).or_insert(responder).clone())
    }

    async fn alpn(&self, addr: SocketAddr) -> Result<Arc<AlpnResponder>, ChallengeError> {
        if let Some(existing) = lock(&self.alpn).get(&addr) {
            return Ok(existing.clone());
        }
        let responder = Arc::new(AlpnResponder::bind(addr).await?);
        Ok(lock(&self.alpn).entry(addr).or_insert(responder).clone())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How one certificate's challenges are answered.
pub fn kind_of(settings: &ChallengeSettings) -> ChallengeKind {
    match settings {
        ChallengeSettings::Http01Webroot(_) | ChallengeSettings::Http01Listen(_) => {
            ChallengeKind::Http01
        }
        ChallengeSettings::Dns01 { .. } | ChallengeSettings::Dns01Rfc2136(_) => {
            ChallengeKind::Dns01
        }
        ChallengeSettings::TlsAlpn01 { .. } => ChallengeKind::TlsAlpn01,
    }
}

/// Makes the response to one challenge available.
pub async fn present(
    settings: &ChallengeSettings,
    responders: &Responders,
    response: &ChallengeResponse,
) -> Result<Presented, ChallengeError> {
    match settings {
        ChallengeSettings::Http01Webroot(webroot) => {
            write_token(webroot, &response.token, &response.key_authorization)
        }
        ChallengeSettings::Http01Listen(addr) => {
            let responder = responders.http(*addr).await?;
            responder.add(&response.token, &response.key_authorization);
            Ok(Presented::ResponderToken {
                responder,
                token: response.token.clone(),
            })
        }
        ChallengeSettings::Dns01 { hook, .. } => {
            let record = format!("_acme-challenge.{}", response.domain);
            hooks::run_dns_hook(
                hook,
                "present",
                &response.domain,
                &record,
                &response.dns_value,
            )
            .await
            .map_err(|err| ChallengeError::Hook {
                domain: response.domain.clone(),
                message: err.to_string(),
            })?;
            Ok(Presented::DnsRecord {
                hook: hook.clone(),
                domain: response.domain.clone(),
                record,
                value: response.dns_value.clone(),
            })
        }
        ChallengeSettings::Dns01Rfc2136(settings) => {
            let journal = responders.dns_journal.as_ref();
            let (record, entry) =
                dns01::present(settings, journal, &response.domain, &response.dns_value)
                    .await
                    .map_err(|source| ChallengeError::Dns01 {
                        domain: response.domain.clone(),
                        source: Box::new(source),
                    })?;
            Ok(Presented::Rfc2136Record {
                settings: settings.clone(),
                journal: journal.cloned(),
                record,
                entry,
            })
        }
        ChallengeSettings::TlsAlpn01 { listen } => {
            let responder = responders.alpn(*listen).await?;
            responder.add(&response.domain, &response.alpn_digest)?;
            Ok(Presented::AlpnCert {
                responder,
                domain: response.domain.clone(),
            })
        }
    }
}

/// Removes what `present` made; failures are logged, never fatal (the order's outcome is
/// what matters, and a leftover token is harmless).
pub async fn cleanup(presented: Presented) {
    match presented {
        Presented::WebrootFile(path) => {
            if let Err(err) = std::fs::remove_file(&path)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("cannot remove the http-01 token {}: {err}", path.display());
            }
        }
        Presented::ResponderToken { responder, token } => responder.remove(&token),
        Presented::DnsRecord {
            hook,
            domain,
            record,
            value,
        } => {
            if let Err(err) = hooks::run_dns_hook(&hook, "cleanup", &domain, &record, &value).await
            {
                tracing::warn!(
                    "dns-01 cleanup for {domain} failed: {err}; remove the TXT record {record} by hand"
                );
            }
        }
        Presented::Rfc2136Record {
            settings,
            journal,
            record,
            entry,
        } => {
            if let Err(err) =
                dns01::cleanup(&settings, journal.as_ref(), &record, entry.as_ref()).await
            {
                tracing::warn!(
                    "dns-01 cleanup of {} failed: {err}; evercert retries on its next run, or remove the TXT value by hand",
                    record.target
                );
            }
        }
        Presented::AlpnCert { responder, domain } => responder.remove(&domain),
        Presented::Shared { fanout, token } => fanout.withdraw(&token).await,
    }
}

/// In a fleet, shares this order's http-01 tokens with the other hosts and waits until they
/// serve them; what was shared is added to `presented` (withdrawn by [`cleanup`]). Returns the
/// fan-out's summary, `None` when there is nothing to share (one host, another challenge).
pub async fn fan_out(
    settings: &ChallengeSettings,
    responders: &Responders,
    name: &str,
    responses: &[ChallengeResponse],
    presented: &mut Vec<Presented>,
) -> Result<Option<String>, ChallengeError> {
    let Some(fanout) = &responders.fanout else {
        return Ok(None);
    };
    if kind_of(settings) != ChallengeKind::Http01 || responses.is_empty() {
        return Ok(None);
    }
    let mut tokens = Vec::new();
    for response in responses {
        fanout
            .publish(name, response)
            .await
            .map_err(|message| ChallengeError::Fanout { message })?;
        presented.push(Presented::Shared {
            fanout: fanout.clone(),
            token: response.token.clone(),
        });
        tokens.push(response.token.clone());
    }
    fanout
        .await_acks(name, &tokens)
        .await
        .map(Some)
        .map_err(|message| ChallengeError::Fanout { message })
}

/// Serves one http-01 token for another host of the fleet, through this host's own way of
/// answering http-01 for the certificate (`settings`): its webroot or its built-in responder.
pub async fn serve_shared_token(
    settings: &ChallengeSettings,
    responders: &Responders,
    domain: &str,
    token: &str,
    key_authorization: &str,
) -> Result<Presented, ChallengeError> {
    let kind = kind_of(settings);
    if kind != ChallengeKind::Http01 {
        return Err(ChallengeError::CannotServeShared {
            message: format!("this host answers {} for it, not http-01", kind.as_str()),
        });
    }
    let response = ChallengeResponse {
        domain: domain.to_owned(),
        token: token.to_owned(),
        key_authorization: key_authorization.to_owned(),
        dns_value: String::new(),
        alpn_digest: Vec::new(),
    };
    present(settings, responders, &response).await
}

/// Waits until every authoritative server serves the dns-01 records just presented, for the
/// built-in updater always and for a hook when `propagation_timeout` is set. Returns how
/// long that took (`None`: nothing to check).
pub async fn await_propagation(
    settings: &ChallengeSettings,
    presented: &[Presented],
) -> Result<Option<std::time::Duration>, ChallengeError> {
    let (propagation, expected) = match settings {
        ChallengeSettings::Dns01Rfc2136(settings) => {
            let expected = presented
                .iter()
                .filter_map(|item| match item {
                    Presented::Rfc2136Record { record, .. } => Some(dns01::Expected {
                        target: record.target.clone(),
                        zone: record.zone.clone(),
                        value: record.value.clone(),
                    }),
                    _ => None,
                })
                .collect::<Vec<_>>();
            (&settings.propagation, expected)
        }
        ChallengeSettings::Dns01 {
            propagation: Some(propagation),
            ..
        } => {
            let mut expected = Vec::new();
            for item in presented {
                if let Presented::DnsRecord { domain, value, .. } = item {
                    expected.push(
                        dns01::expected_for_hook(propagation, domain, value)
                            .await
                            .map_err(|source| ChallengeError::Dns01 {
                                domain: domain.clone(),
                                source: Box::new(source),
                            })?,
                    );
                }
            }
            (propagation, expected)
        }
        _ => return Ok(None),
    };
    if expected.is_empty() {
        return Ok(None);
    }
    dns01::propagation::wait_until_served(&expected, propagation)
        .await
        .map(Some)
        .map_err(|err| ChallengeError::Propagation(Box::new(err)))
}

fn write_token(
    webroot: &Path,
    token: &str,
    key_authorization: &str,
) -> Result<Presented, ChallengeError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // The token comes from the CA: refuse anything that could escape the directory.
    let safe = !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let dir = webroot.join(".well-known").join("acme-challenge");
    let path = dir.join(token);
    let error = |message: String| ChallengeError::Webroot {
        path: path.clone(),
        message,
    };
    if !safe {
        return Err(error(format!("the CA sent an unsafe token {token:?}")));
    }
    // Modes are set explicitly, not only at creation: the service runs with UMask=0077,
    // which would leave the token unreadable to a web server running as another user.
    let well_known = webroot.join(".well-known");
    let missing: Vec<PathBuf> = [&well_known, &dir]
        .into_iter()
        .filter(|path| !path.exists())
        .cloned()
        .collect();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|err| error(err.to_string()))?;
    for created in missing {
        std::fs::set_permissions(
            &created,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|err| error(err.to_string()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .map_err(|err| error(err.to_string()))?;
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(|err| error(err.to_string()))?;
    file.write_all(key_authorization.as_bytes())
        .map_err(|err| error(err.to_string()))?;
    Ok(Presented::WebrootFile(path))
}

/// evercert's own http-01 responder: answers `/.well-known/acme-challenge/TOKEN` and
/// nothing else.
#[derive(Debug)]
pub struct HttpResponder {
    tokens: Arc<Mutex<HashMap<String, String>>>,
    task: JoinHandle<()>,
}

impl HttpResponder {
    async fn bind(addr: SocketAddr) -> Result<Self, ChallengeError> {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|err| ChallengeError::Bind {
                addr,
                kind: "http-01",
                message: err.to_string(),
            })?;
        let tokens: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = tokens.clone();
        let task = tokio::spawn(listener::serve(
            socket,
            "http-01 responder",
            MAX_CONNECTIONS,
            move |stream, slot| {
                let _ = stream.set_nodelay(true);
                let served = served.clone();
                async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        slot.busy();
                        let answer = request
                            .uri()
                            .path()
                            .strip_prefix("/.well-known/acme-challenge/")
                            .and_then(|token| lock(&served).get(token).cloned());
                        async move {
                            Ok::<_, std::convert::Infallible>(match answer {
                                Some(body) => Response::new(Full::new(Bytes::from(body))),
                                None => {
                                    let mut response = Response::new(Full::new(
                                        Bytes::from_static(b"not found\n"),
                                    ));
                                    *response.status_mut() = StatusCode::NOT_FOUND;
                                    response
                                }
                            })
                        }
                    });
                    let _ = listener::http1_builder()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            },
        ));
        Ok(Self { tokens, task })
    }

    fn add(&self, token: &str, key_authorization: &str) {
        lock(&self.tokens).insert(token.to_owned(), key_authorization.to_owned());
    }

    fn remove(&self, token: &str) {
        lock(&self.tokens).remove(token);
    }
}

impl Drop for HttpResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// evercert's own tls-alpn-01 responder (RFC 8737): a TLS listener that, for ALPN
/// `acme-tls/1`, presents a self-signed certificate carrying the acmeIdentifier extension.
#[derive(Debug)]
pub struct AlpnResponder {
    certs: Arc<AlpnCerts>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct AlpnCerts(Mutex<HashMap<String, Arc<CertifiedKey>>>);

impl ResolvesServerCert for AlpnCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        lock(&self.0).get(&name).cloned()
    }
}

impl AlpnResponder {
    async fn bind(addr: SocketAddr) -> Result<Self, ChallengeError> {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|err| ChallengeError::Bind {
                addr,
                kind: "tls-alpn-01",
                message: err.to_string(),
            })?;
        let certs = Arc::new(AlpnCerts::default());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
            .map_err(|err| ChallengeError::Bind {
                addr,
                kind: "tls-alpn-01",
                message: err.to_string(),
            })?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"acme-tls/1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(listener::serve(
            socket,
            "tls-alpn-01 responder",
            MAX_CONNECTIONS,
            move |stream, slot| {
                let acceptor = acceptor.clone();
                async move {
                    // The validation is the handshake itself; the connection is then closed.
                    // A client that stalls mid-handshake stays evictable until it completes.
                    if let Ok(Ok(_)) =
                        tokio::time::timeout(listener::HEADER_TIMEOUT, acceptor.accept(stream))
                            .await
                    {
                        slot.busy();
                    }
                }
            },
        ));
        Ok(Self { certs, task })
    }

    fn add(&self, domain: &str, digest: &[u8]) -> Result<(), ChallengeError> {
        let error = |message: String| ChallengeError::AlpnCertificate {
            domain: domain.to_owned(),
            message,
        };
        let key = rcgen::KeyPair::generate().map_err(|err| error(err.to_string()))?;
        let mut params = rcgen::CertificateParams::new(vec![domain.to_owned()])
            .map_err(|err| error(err.to_string()))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::new_acme_identifier(digest));
        let cert = params
            .self_signed(&key)
            .map_err(|err| error(err.to_string()))?;
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        // `CertifiedKey::from_der` would parse the certificate with webpki, which refuses the
        // critical acmeIdentifier extension; the key is ours, so no consistency check needed.
        let signing_key = rustls::crypto::aws_lc_rs::default_provider()
            .key_provider
            .load_private_key(key_der)
            .map_err(|err| error(err.to_string()))?;
        let certified = CertifiedKey::new(vec![cert.der().clone()], signing_key);
        lock(&self.certs.0).insert(domain.to_ascii_lowercase(), Arc::new(certified));
        Ok(())
    }

    fn remove(&self, domain: &str) {
        lock(&self.certs.0).remove(&domain.to_ascii_lowercase());
    }
}

impl Drop for AlpnResponder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
