//! The one module that talks to `instant_acme`: accounts, orders, challenges, finalization,
//! revocation and renewal information. Everything else speaks evercert's own types, so the
//! next instant-acme release touches this file only.
//!
//! The HTTP client is built here rather than taken from instant-acme: its built-in client
//! leaves TCP_NODELAY off, and each signed POST then waits ~40 ms for a delayed ACK (about
//! 330 ms per issuance against a local CA instead of under 10). It also records Retry-After
//! of 429/503 answers, which instant-acme's problem type does not carry, and bounds every
//! request so a stalled CA becomes a clear timeout instead of a hung renewal.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
    RevocationReason, RevocationRequest,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};

use crate::challenge::{self, ChallengeKind, ChallengeResponse, Responders};
use crate::config::{AcmeSettings, ChallengeSettings, KeyType};

/// instant-acme sends a request up to three times when the CA rejects its nonce; at the 20 %
/// rejection rate CI runs Pebble with, ~1 % of requests still fail, ~6 % of orders. Accounts
/// and orders are tried again from the start this many times in all (a new order reuses the
/// CA's pending authorizations).
const BAD_NONCE_ATTEMPTS: u32 = 4;
/// How long an order may take from "challenges ready" to a downloaded certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// What kind of failure, for deciding when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Network trouble, timeouts, 5xx, badNonce: try again soon, with backoff.
    Transient,
    /// The CA asked us to slow down; `retry_after` says until when.
    RateLimited,
    /// The CA refused (unauthorized, rejectedIdentifier, caa, dns, …) or the configuration is
    /// wrong: retrying soon will not help and may get the account paused.
    Permanent,
}

/// An ACME failure with the CA's words and what to do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AcmeError {
    pub kind: FailureKind,
    pub message: String,
    pub retry_after: Option<SystemTime>,
    /// The CA rejected a nonce even after instant-acme's retries: trying the same step again
    /// at once is expected to work.
    pub bad_nonce: bool,
}

impl AcmeError {
    /// The CA no longer knows our account (a private CA was reset, the account was
    /// deactivated elsewhere): a new registration, not a retry, is what helps.
    pub fn account_gone(&self) -> bool {
        self.message.contains("(accountDoesNotExist)")
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Permanent,
            message: message.into(),
            retry_after: None,
            bad_nonce: false,
        }
    }
}

/// The largest body accepted from the CA. The biggest ACME objects are a certificate chain
/// (a few KiB) and an order with many authorizations (tens of KiB): 4 MiB is ample, and a CA
/// (or a proxy in front of it) streaming an endless body costs at most this much memory.
pub const MAX_CA_BODY: usize = 4 * 1024 * 1024;

/// Bounds every request to the CA in time (headers and body) and size, and turns 429, 5xx
/// and failed GETs/HEADs into errors that carry the Retry-After of that very answer.
///
/// instant-acme reads bodies itself, without a limit: the body is read here, whole, under
/// the same deadline as the headers, and handed over already in memory.
struct CaHttp {
    timeout: Duration,
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl HttpClient for CaHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().to_string();
        let method = req.method().clone();
        let fut = self.inner.request(req);
        let timeout = self.timeout;
        Box::pin(async move {
            let net = |message: String| instant_acme::Error::Other(Box::new(NetError(message)));
            let seconds = timeout.as_secs_f64();
            let deadline = tokio::time::Instant::now() + timeout;
            let response = match tokio::time::timeout_at(deadline, fut).await {
                Ok(Ok(response)) => response,
                Ok(Err(err)) => return Err(net(describe_net(&err))),
                Err(_) => {
                    return Err(net(format!(
                        "no answer from {uri} within {seconds} s ([acme] timeout)"
                    )));
                }
            };
            let (parts, body) = response.into_parts();
            let limited = http_body_util::Limited::new(body, MAX_CA_BODY);
            let body = match tokio::time::timeout_at(deadline, limited.collect()).await {
                Ok(Ok(body)) => body.to_bytes(),
                Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                    return Err(net(format!(
                        "the answer from {uri} is larger than {} MiB, more than any ACME object; is [acme] directory an ACME CA, and is nothing in between rewriting its answers?",
                        MAX_CA_BODY / (1024 * 1024)
                    )));
                }
                Ok(Err(err)) => {
                    return Err(net(format!("reading the answer from {uri} failed: {err}")));
                }
                Err(_) => {
                    return Err(net(format!(
                        "{uri} answered {} but did not send the whole body within {seconds} s ([acme] timeout)",
                        parts.status
                    )));
                }
            };
            let status = parts.status;
            let throttled =
                status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            // instant-acme parses the directory (GET) without looking at the status, reports a
            // failed newNonce (HEAD) without it, and drops Retry-After from problems: say what
            // the CA answered, with the retry time of this answer.
            let failed_read = !status.is_success()
                && (method == http::Method::GET || method == http::Method::HEAD);
            if throttled || failed_read {
                let retry_after = parts
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(parse_retry_after)
                    .filter(|_| throttled);
                let problem = serde_json::from_slice::<instant_acme::Problem>(&body).ok();
                return Err(instant_acme::Error::Other(Box::new(CaAnswered {
                    uri,
                    status,
                    problem,
                    retry_after,
                })));
            }
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// The CA answered 429, a server error, or a failed GET/HEAD (directory, newNonce, ARI).
#[derive(Debug)]
struct CaAnswered {
    uri: String,
    status: http::StatusCode,
    /// The problem document of the answer, if it had one.
    problem: Option<instant_acme::Problem>,
    /// Retry-After of this answer (429 and 5xx only).
    retry_after: Option<SystemTime>,
}

impl CaAnswered {
    /// `: DETAIL (TYPE)` of the problem document, or nothing.
    fn problem_text(&self) -> String {
        let Some(problem) = &self.problem else {
            return String::new();
        };
        let kind = problem
            .r#type
            .as_deref()
            .map(|kind| kind.trim_start_matches("urn:ietf:params:acme:error:"));
        match (problem.detail.as_deref(), kind) {
            (Some(detail), Some(kind)) => format!(": {detail} ({kind})"),
            (Some(detail), None) => format!(": {detail}"),
            (None, Some(kind)) => format!(" ({kind})"),
            (None, None) => String::new(),
        }
    }
}

impl fmt::Display for CaAnswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} answered {}{}",
            self.uri,
            self.status,
            self.problem_text()
        )
    }
}

impl std::error::Error for CaAnswered {}

/// A network failure, already described for the operator.
#[derive(Debug)]
struct NetError(String);

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NetError {}

fn describe_net(err: &hyper_util::client::legacy::Error) -> String {
    use std::error::Error as _;
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The longest wait a CA's Retry-After can impose. Let's Encrypt's longest rate-limit window
/// is a week; a longer one is a bug or hostile, and a time past the year 9999 would make
/// `OffsetDateTime::from` panic where the retry time is recorded and printed.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// `Retry-After: 120` or an HTTP date, at most [`MAX_RETRY_AFTER`] from now.
pub fn parse_retry_after(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    let now = SystemTime::now();
    let when = match value.parse::<u64>() {
        Ok(seconds) => now + Duration::from_secs(seconds).min(MAX_RETRY_AFTER),
        Err(_) => httpdate::parse_http_date(value).ok()?,
    };
    Some(when.min(now + MAX_RETRY_AFTER))
}

/// Where an account's credentials for one directory live: `STATE_DIR/accounts/HOST-HASH/`.
pub fn account_dir(state_dir: &Path, directory_url: &str) -> PathBuf {
    let host: String = directory_url
        .trim_start_matches("https://")
        .split(['/', '?'])
        .next()
        .unwrap_or("ca")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Two directories on one host (production and staging of a private CA) get separate
    // accounts: the hash tells them apart.
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, directory_url.as_bytes());
    let short = crate::inventory::hex(&digest.as_ref()[..4]);
    state_dir.join("accounts").join(format!("{host}-{short}"))
}

/// Moves the stored account for `directory` aside (`DIR.gone-TIMESTAMP`), so that the next
/// connection registers a new one. Returns where it went.
pub fn forget_account(state_dir: &Path, directory: &str) -> std::io::Result<PathBuf> {
    let dir = account_dir(state_dir, directory);
    let aside = dir.with_extension(format!("gone-{}", now_compact()));
    std::fs::rename(&dir, &aside)?;
    Ok(aside)
}

/// What is stored about an account besides instant-acme's credentials.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountInfo {
    pub directory: String,
    pub id: String,
    pub contact: Vec<String>,
    pub created_at: String,
}

/// A connection to one CA with one account.
pub struct AcmeClient {
    account: Account,
    directory: String,
    pub info: AccountInfo,
}

impl fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory", &self.directory)
            .field("account", &self.info.id)
            .finish()
    }
}

/// Saves credentials (a secret) with mode 0600; a closure so the store module stays the one
/// place that knows how to write atomically.
pub type SaveSecret<'a> = &'a (dyn Fn(&Path, &[u8]) -> Result<(), String> + Sync);

fn build_http(settings: &AcmeSettings, directory: &str) -> Result<CaHttp, AcmeError> {
    let mut extra = Vec::new();
    if let Some(bundle) = &settings.ca_bundle {
        // Read like every outside file (regular, capped), then parsed from memory.
        let certs: Result<Vec<CertificateDer<'static>>, _> =
            crate::fsread::read(bundle, crate::fsread::SMALL_FILE_MAX)
                .map_err(|err| err.problem.to_string())
                .and_then(|pem| {
                    CertificateDer::pem_slice_iter(&pem)
                        .collect::<Result<_, _>>()
                        .map_err(|err| err.to_string())
                });
        match certs {
            Ok(certs) if !certs.is_empty() => extra = certs,
            Ok(_) => {
                return Err(AcmeError::permanent(format!(
                    "ca_bundle {} holds no certificate; point it at the PEM root of the CA at {directory}",
                    bundle.display()
                )));
            }
            Err(err) => {
                return Err(AcmeError::permanent(format!(
                    "cannot read ca_bundle {}: {err}",
                    bundle.display()
                )));
            }
        }
    }
    let roots = crate::probe::system_roots(&extra);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| AcmeError::permanent(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector);
    let client = HyperClient::builder(TokioExecutor::new()).build(https);
    Ok(CaHttp {
        timeout: settings.timeout.unsigned_abs(),
        inner: client,
    })
}

impl AcmeClient {
    /// Loads the account for `directory` from `state_dir`, or creates one (agreeing to the
    /// CA's terms) and saves its credentials before using them.
    pub async fn connect(
        settings: &AcmeSettings,
        directory: &str,
        state_dir: &Path,
        save: SaveSecret<'_>,
    ) -> Result<Self, AcmeError> {
        let mut attempt = 1;
        loop {
            match Self::connect_once(settings, directory, state_dir, save).await {
                Err(err) if err.bad_nonce && attempt < BAD_NONCE_ATTEMPTS => attempt += 1,
                result => return result,
            }
        }
    }

    async fn connect_once(
        settings: &AcmeSettings,
        directory: &str,
        state_dir: &Path,
        save: SaveSecret<'_>,
    ) -> Result<Self, AcmeError> {
        let http = build_http(settings, directory)?;
        let dir = account_dir(state_dir, directory);
        let credentials_path = dir.join("credentials.json");
        let info_path = dir.join("account.json");
        let classify =
            |err: instant_acme::Error| classify(err, directory, settings.ca_bundle.is_some());
        match crate::fsread::read(&credentials_path, crate::fsread::SMALL_FILE_MAX) {
            Ok(bytes) => {
                let credentials: AccountCredentials = serde_json::from_slice(&bytes).map_err(|err| {
                    AcmeError::permanent(format!(
                        "account credentials {} are damaged ({err}); move the directory {} aside to create a new account",
                        credentials_path.display(),
                        dir.display()
                    ))
                })?;
                let account = Account::builder_with_http(Box::new(http))
                    .from_credentials(credentials)
                    .await
                    .map_err(classify)?;
                let info = crate::fsread::read(&info_path, crate::fsread::SMALL_FILE_MAX)
                    .ok()
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or_else(|| AccountInfo {
                        directory: directory.to_owned(),
                        id: account.id().to_owned(),
                        contact: settings.contact.clone(),
                        created_at: String::new(),
                    });
                Ok(Self {
                    account,
                    directory: directory.to_owned(),
                    info,
                })
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
                let eab = settings
                    .eab
                    .as_ref()
                    .map(|eab| ExternalAccountKey::new(eab.kid.clone(), &eab.hmac_key));
                let (account, credentials) = Account::builder_with_http(Box::new(http))
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        directory.to_owned(),
                        eab.as_ref(),
                    )
                    .await
                    .map_err(classify)?;
                let info = AccountInfo {
                    directory: directory.to_owned(),
                    id: account.id().to_owned(),
                    contact: settings.contact.clone(),
                    created_at: now_rfc3339(),
                };
                let credentials_json = serde_json::to_vec_pretty(&credentials)
                    .map_err(|err| AcmeError::permanent(err.to_string()))?;
                save(&credentials_path, &credentials_json).map_err(|err| {
                    AcmeError::permanent(format!(
                        "cannot save the new account's credentials to {}: {err}",
                        credentials_path.display()
                    ))
                })?;
                if let Ok(json) = serde_json::to_vec_pretty(&info) {
                    let _ = save(&info_path, &json);
                }
                tracing::info!("created ACME account {} at {directory}", info.id);
                Ok(Self {
                    account,
                    directory: directory.to_owned(),
                    info,
                })
            }
            Err(err) => Err(AcmeError::permanent(format!(
                "cannot read account credentials {}: {}; evercert must run as the owner of state_dir",
                credentials_path.display(),
                err.problem
            ))),
        }
    }

    pub fn directory(&self) -> &str {
        &self.directory
    }

    fn classify(&self, err: instant_acme::Error) -> AcmeError {
        classify(err, &self.directory, false)
    }

    /// Whether the CA offers ACME Renewal Information.
    pub async fn renewal_info(&self, cert_pem: &[u8]) -> Result<Option<RenewalWindow>, AcmeError> {
        let Some(der) = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .and_then(Result::ok)
        else {
            return Err(AcmeError::permanent(
                "no certificate to ask renewal information for",
            ));
        };
        let id = instant_acme::CertificateIdentifier::try_from(&der).map_err(|err| {
            AcmeError::permanent(format!("cannot identify the certificate for ARI: {err}"))
        })?;
        match self.account.renewal_info(&id).await {
            Ok((info, retry)) => Ok(Some(RenewalWindow {
                start: info.suggested_window.start,
                end: info.suggested_window.end,
                retry_after: retry,
                explanation_url: info.explanation_url,
            })),
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(err) => Err(self.classify(err)),
        }
    }

    /// Runs one order to the end: authorizations, challenges, finalization, download.
    /// Whatever was presented for the challenges is removed again, on every path.
    pub async fn issue(
        &self,
        request: &OrderRequest<'_>,
        responders: &Responders,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Issued, AcmeError> {
        let mut attempt = 1;
        loop {
            match self.issue_once(request, responders, progress).await {
                Err(err) if err.bad_nonce && attempt < BAD_NONCE_ATTEMPTS => {
                    attempt += 1;
                    progress("the CA rejected a nonce again; ordering again");
                }
                result => return result,
            }
        }
    }

    async fn issue_once(
        &self,
        request: &OrderRequest<'_>,
        responders: &Responders,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Issued, AcmeError> {
        let identifiers: Vec<Identifier> = request
            .domains
            .iter()
            .map(|domain| match domain.parse::<IpAddr>() {
                Ok(ip) => Identifier::Ip(ip),
                Err(_) => Identifier::Dns(domain.clone()),
            })
            .collect();
        let new_order = || {
            let order = NewOrder::new(&identifiers);
            match request.profile {
                Some(profile) => order.profile(profile),
                None => order,
            }
        };
        let replaces = request
            .replaces
            .and_then(|pem| {
                CertificateDer::pem_slice_iter(pem)
                    .next()
                    .and_then(Result::ok)
            })
            .and_then(|der| instant_acme::CertificateIdentifier::try_from(&der).ok())
            .map(instant_acme::CertificateIdentifier::into_owned);
        let mut order = match replaces {
            Some(replaces) => {
                match self
                    .account
                    .new_order(&new_order().replaces(replaces))
                    .await
                {
                    Ok(order) => order,
                    // The CA may refuse `replaces` (already replaced, or not ours after an
                    // account change): the renewal matters more than the hint.
                    Err(err) => {
                        tracing::info!(
                            "{}: CA refused `replaces` ({err}); ordering without it",
                            request.name
                        );
                        self.account
                            .new_order(&new_order())
                            .await
                            .map_err(|err| self.classify(err))?
                    }
                }
            }
            None => self
                .account
                .new_order(&new_order())
                .await
                .map_err(|err| self.classify(err))?,
        };
        let kind = challenge::kind_of(request.challenge);
        let wanted = match kind {
            ChallengeKind::Http01 => ChallengeType::Http01,
            ChallengeKind::Dns01 => ChallengeType::Dns01,
            ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
        };
        let mut presented = Vec::new();
        let result = self
            .validate(
                &mut order,
                request,
                wanted,
                kind,
                responders,
                &mut presented,
                progress,
            )
            .await;
        for item in presented {
            challenge::cleanup(item).await;
        }
        result?;

        progress("finalizing");
        let key = generate_key(request.key_type, request.reuse_key)?;
        let mut params = rcgen::CertificateParams::new(request.domains.to_vec())
            .map_err(|err| AcmeError::permanent(format!("cannot build the CSR: {err}")))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(|err| AcmeError::permanent(format!("cannot sign the CSR: {err}")))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|err| self.classify(err))?;
        let chain_pem = order
            .poll_certificate(&poll_policy())
            .await
            .map_err(|err| self.classify(err))?;
        Ok(Issued {
            key_pem: key.serialize_pem(),
            chain_pem,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn validate(
        &self,
        order: &mut instant_acme::Order,
        request: &OrderRequest<'_>,
        wanted: ChallengeType,
        kind: ChallengeKind,
        responders: &Responders,
        presented: &mut Vec<challenge::Presented>,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), AcmeError> {
        if order.state().status == OrderStatus::Ready {
            return Ok(());
        }
        let mut pending = 0;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|err| self.classify(err))?;
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                status => {
                    return Err(AcmeError::permanent(format!(
                        "{}: the CA's authorization for {} is {status:?}",
                        request.name,
                        authorization.identifier()
                    )));
                }
            }
            let identifier = authorization.identifier().identifier.clone();
            let domain = match &identifier {
                Identifier::Dns(name) => name.clone(),
                Identifier::Ip(ip) => ip.to_string(),
                other => format!("{other:?}"),
            };
            let Some(challenge) = authorization.challenge(wanted.clone()) else {
                return Err(AcmeError::permanent(format!(
                    "{}: the CA offers no {} challenge for {domain}; configure another challenge type for this certificate",
                    request.name,
                    kind.as_str()
                )));
            };
            let key_authorization = challenge.key_authorization();
            let response = ChallengeResponse {
                domain: domain.clone(),
                token: challenge.token.clone(),
                key_authorization: key_authorization.as_str().to_owned(),
                dns_value: key_authorization.dns_value(),
                alpn_digest: key_authorization.digest().as_ref().to_vec(),
            };
            let item = challenge::present(request.challenge, responders, &response)
                .await
                .map_err(|err| AcmeError {
                    kind: FailureKind::Transient,
                    message: format!("{}: {err}", request.name),
                    retry_after: None,
                    bad_nonce: false,
                })?;
            presented.push(item);
            pending += 1;
        }
        if pending == 0 {
            return Ok(());
        }
        progress(&format!(
            "validating ({}, {pending} name{})",
            kind.as_str(),
            if pending == 1 { "" } else { "s" }
        ));
        if let ChallengeSettings::Dns01 { wait, .. } = request.challenge
            && wait.is_positive()
        {
            tokio::time::sleep(wait.unsigned_abs()).await;
        }
        // Tell the CA only now, so that dns-01 records had their propagation wait.
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|err| self.classify(err))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            if let Some(mut challenge) = authorization.challenge(wanted.clone()) {
                challenge
                    .set_ready()
                    .await
                    .map_err(|err| self.classify(err))?;
            }
        }
        let status = match order.poll_ready(&poll_policy()).await {
            Ok(status) => status,
            // instant-acme turns an invalid order's `error` into Err(Api): that is a failed
            // validation, to be explained with the challenge's hint, not a CA refusal.
            Err(instant_acme::Error::Api(_)) if order.state().status == OrderStatus::Invalid => {
                OrderStatus::Invalid
            }
            Err(err) => return Err(self.classify(err)),
        };
        if status == OrderStatus::Ready {
            return Ok(());
        }
        Err(self.challenge_failure(order, request, kind).await)
    }

    /// The CA's own words for a failed validation, plus what usually causes it.
    async fn challenge_failure(
        &self,
        order: &mut instant_acme::Order,
        request: &OrderRequest<'_>,
        kind: ChallengeKind,
    ) -> AcmeError {
        let mut details = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authorization)) = authorizations.next().await {
            let _ = authorization.refresh().await;
            let identifier = authorization.identifier().to_string();
            for challenge in &authorization.challenges {
                if let Some(problem) = &challenge.error {
                    details.push(format!(
                        "{identifier}: {}",
                        problem
                            .detail
                            .clone()
                            .unwrap_or_else(|| problem.to_string())
                    ));
                }
            }
        }
        let hint = match request.challenge {
            ChallengeSettings::Http01Webroot(webroot) => format!(
                "is port 80 of every name reachable from the CA, and does the web server serve {}/.well-known/acme-challenge/ at http://NAME/.well-known/acme-challenge/?",
                webroot.display()
            ),
            ChallengeSettings::Http01Listen(addr) => format!(
                "is port 80 of every name reachable from the CA and forwarded to evercert's responder on {addr}?"
            ),
            ChallengeSettings::Dns01 { .. } => "did the hook publish the TXT record _acme-challenge.NAME at the authoritative DNS servers? raise [certificate.dns01] wait if they are slow to update".to_owned(),
            ChallengeSettings::TlsAlpn01 { listen } => format!(
                "is port 443 of every name reachable from the CA and forwarded to evercert's responder on {listen}?"
            ),
        };
        AcmeError::permanent(format!(
            "{}: {} validation failed: {}; {hint}",
            request.name,
            kind.as_str(),
            if details.is_empty() {
                "the order became invalid".to_owned()
            } else {
                details.join("; ")
            }
        ))
    }

    /// Revokes a certificate (PEM chain; the leaf is revoked).
    pub async fn revoke(
        &self,
        cert_pem: &[u8],
        reason: Option<RevocationReasonName>,
    ) -> Result<(), AcmeError> {
        let Some(der) = CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .and_then(Result::ok)
        else {
            return Err(AcmeError::permanent(
                "the certificate file holds no certificate to revoke",
            ));
        };
        self.account
            .revoke(&RevocationRequest {
                certificate: &der,
                reason: reason.map(RevocationReasonName::to_acme),
            })
            .await
            .map_err(|err| self.classify(err))
    }

    /// Replaces the account key; the new credentials are saved before the old key is
    /// forgotten, so a crash cannot leave us with a key the CA no longer knows.
    pub async fn rollover(
        &mut self,
        state_dir: &Path,
        save: SaveSecret<'_>,
    ) -> Result<(), AcmeError> {
        let credentials = self
            .account
            .update_key()
            .await
            .map_err(|err| self.classify(err))?;
        let path = account_dir(state_dir, &self.directory).join("credentials.json");
        let json = serde_json::to_vec_pretty(&credentials)
            .map_err(|err| AcmeError::permanent(err.to_string()))?;
        save(&path, &json).map_err(|err| {
            AcmeError::permanent(format!(
                "the CA now knows the new account key but it could not be saved to {}: {err}; the account is lost, create a new one",
                path.display()
            ))
        })
    }

    /// Deactivates the account at the CA and moves its local files aside.
    pub async fn deactivate(self, state_dir: &Path) -> Result<PathBuf, AcmeError> {
        let dir = account_dir(state_dir, &self.directory);
        self.account
            .clone()
            .deactivate()
            .await
            .map_err(|err| classify(err, &self.directory, false))?;
        let aside = dir.with_extension(format!("deactivated-{}", now_compact()));
        std::fs::rename(&dir, &aside).map_err(|err| {
            AcmeError::permanent(format!(
                "the account was deactivated but {} could not be moved aside: {err}; remove it by hand",
                dir.display()
            ))
        })?;
        Ok(aside)
    }
}

/// What to order.
#[derive(Debug)]
pub struct OrderRequest<'a> {
    pub name: &'a str,
    pub domains: &'a [String],
    pub key_type: KeyType,
    /// The current key's PEM, when `reuse_key` is set and it exists.
    pub reuse_key: Option<&'a str>,
    pub profile: Option<&'a str>,
    /// The certificate being replaced (PEM), for ARI's `replaces`.
    pub replaces: Option<&'a [u8]>,
    pub challenge: &'a ChallengeSettings,
}

/// A freshly issued certificate and its key, both PEM. The key is a secret.
pub struct Issued {
    pub key_pem: String,
    pub chain_pem: String,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("key_pem", &"<redacted>")
            .field("chain_pem_len", &self.chain_pem.len())
            .finish()
    }
}

/// A CA's suggested renewal window (RFC 9773).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalWindow {
    pub start: time::OffsetDateTime,
    pub end: time::OffsetDateTime,
    /// When to ask again.
    pub retry_after: Duration,
    pub explanation_url: Option<String>,
}

/// Revocation reasons by the names operators type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationReasonName {
    Unspecified,
    KeyCompromise,
    Superseded,
    CessationOfOperation,
    AffiliationChanged,
}

impl RevocationReasonName {
    pub const NAMES: [&'static str; 5] = [
        "unspecified",
        "keyCompromise",
        "superseded",
        "cessationOfOperation",
        "affiliationChanged",
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "unspecified" => Self::Unspecified,
            "keyCompromise" => Self::KeyCompromise,
            "superseded" => Self::Superseded,
            "cessationOfOperation" => Self::CessationOfOperation,
            "affiliationChanged" => Self::AffiliationChanged,
            _ => return None,
        })
    }

    fn to_acme(self) -> RevocationReason {
        match self {
            Self::Unspecified => RevocationReason::Unspecified,
            Self::KeyCompromise => RevocationReason::KeyCompromise,
            Self::Superseded => RevocationReason::Superseded,
            Self::CessationOfOperation => RevocationReason::CessationOfOperation,
            Self::AffiliationChanged => RevocationReason::AffiliationChanged,
        }
    }
}

/// Short first delays that grow: a local CA validates within a millisecond or two, a
/// public one within seconds; Retry-After from the CA always wins inside instant-acme.
fn poll_policy() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(2))
        .backoff(1.6)
        .timeout(ORDER_TIMEOUT)
}

fn generate_key(key_type: KeyType, reuse: Option<&str>) -> Result<rcgen::KeyPair, AcmeError> {
    if let Some(pem) = reuse {
        return rcgen::KeyPair::from_pem(pem).map_err(|err| {
            AcmeError::permanent(format!(
                "reuse_key is set but the current key cannot be loaded: {err}"
            ))
        });
    }
    use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, RsaKeySize};
    let generated = match key_type {
        KeyType::EcdsaP256 => rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyType::EcdsaP384 => rcgen::KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyType::Rsa2048 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => rcgen::KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
    };
    generated
        .map_err(|err| AcmeError::permanent(format!("cannot generate a {key_type} key: {err}")))
}

/// Sorts instant-acme's errors into what to do next, with the CA's own detail. A retry time
/// comes only from the answer that failed (carried in [`CaAnswered`]), never from another
/// request running at the same time.
fn classify(err: instant_acme::Error, directory: &str, has_ca_bundle: bool) -> AcmeError {
    match err {
        instant_acme::Error::Api(problem) => refused(&problem, directory),
        instant_acme::Error::Timeout(next) => AcmeError {
            kind: FailureKind::Transient,
            message: format!(
                "the CA at {directory} did not finish the order in time; it will be retried"
            ),
            retry_after: next.map(|at| {
                SystemTime::now() + at.saturating_duration_since(std::time::Instant::now())
            }),
            bad_nonce: false,
        },
        instant_acme::Error::Other(inner) => match inner.downcast::<CaAnswered>() {
            Ok(answer) => answered(&answer, directory),
            Err(inner) => {
                let text = inner.to_string();
                let tls = text.contains("certificate")
                    || text.contains("UnknownIssuer")
                    || text.contains("invalid peer");
                let hint = if tls && !has_ca_bundle {
                    "; if this CA uses a private or test root, set [acme] ca_bundle = \"/path/to/root.pem\""
                } else if tls {
                    "; check that [acme] ca_bundle holds the root that signed the CA's TLS certificate"
                } else {
                    "; is the CA reachable from this host (DNS, firewall, proxy)?"
                };
                AcmeError {
                    kind: FailureKind::Transient,
                    message: format!("cannot reach the CA at {directory}: {text}{hint}"),
                    retry_after: None,
                    bad_nonce: false,
                }
            }
        },
        other => AcmeError {
            kind: FailureKind::Transient,
            message: format!("ACME request to {directory} failed: {other}"),
            retry_after: None,
            bad_nonce: false,
        },
    }
}

/// A problem document instant-acme returned (a 4xx to a POST, or an order's `error`).
fn refused(problem: &instant_acme::Problem, directory: &str) -> AcmeError {
    let kind_name = problem
        .r#type
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches("urn:ietf:params:acme:error:")
        .to_owned();
    let detail = problem.detail.clone().unwrap_or_default();
    let (kind, advice) = match kind_name.as_str() {
        "rateLimited" => (FailureKind::RateLimited, ""),
        "badNonce" | "serverInternal" => (FailureKind::Transient, ""),
        "externalAccountRequired" => (
            FailureKind::Permanent,
            "; this CA requires external account binding: set [acme] eab = { kid = \"…\", hmac_key = \"…\" }",
        ),
        "rejectedIdentifier" => (
            FailureKind::Permanent,
            "; the CA will not issue for this name: remove it from `domains`",
        ),
        "caa" => (
            FailureKind::Permanent,
            "; a CAA record forbids this CA: add it to the domain's CAA records",
        ),
        "accountDoesNotExist" | "unauthorized" => (FailureKind::Permanent, ""),
        _ if problem.status.is_some_and(|status| status >= 500) => (FailureKind::Transient, ""),
        _ => (FailureKind::Permanent, ""),
    };
    AcmeError {
        kind,
        message: format!(
            "the CA at {directory} refused: {detail} ({}){advice}",
            if kind_name.is_empty() {
                "no problem type"
            } else {
                &kind_name
            }
        ),
        retry_after: None,
        bad_nonce: kind_name == "badNonce",
    }
}

/// A 429, a server error, or a failed GET/HEAD, with the Retry-After of that answer.
fn answered(answer: &CaAnswered, directory: &str) -> AcmeError {
    let when = answer.retry_after.map_or_else(String::new, |when| {
        format!("; the CA asks to retry after {}", rfc3339(when))
    });
    let (kind, message) = if answer.status == http::StatusCode::TOO_MANY_REQUESTS {
        (
            FailureKind::RateLimited,
            format!(
                "the CA at {directory} rate limited this client: {answer}{}",
                if when.is_empty() {
                    "; it gave no retry time, evercert backs off".to_owned()
                } else {
                    when
                }
            ),
        )
    } else if answer.status.is_server_error() {
        (
            FailureKind::Transient,
            format!(
                "the CA at {directory} reports a server error (an outage or maintenance): {answer}{when}; it will be retried"
            ),
        )
    } else {
        (
            FailureKind::Permanent,
            format!(
                "the CA at {directory} cannot be used: {answer}; check [acme] directory: it must be the CA's ACME directory URL"
            ),
        )
    };
    AcmeError {
        kind,
        message,
        retry_after: answer.retry_after,
        bad_nonce: false,
    }
}

fn rfc3339(when: SystemTime) -> String {
    time::OffsetDateTime::from(when)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

fn now_compact() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_separate_per_directory() {
        let state = Path::new("/var/lib/evercert");
        let production = account_dir(state, "https://acme-v02.api.letsencrypt.org/directory");
        let staging = account_dir(
            state,
            "https://acme-staging-v02.api.letsencrypt.org/directory",
        );
        let private_a = account_dir(state, "https://ca.internal:9000/acme/a/directory");
        let private_b = account_dir(state, "https://ca.internal:9000/acme/b/directory");
        assert_ne!(production, staging);
        assert_ne!(private_a, private_b);
        assert!(production.starts_with("/var/lib/evercert/accounts"));
        assert!(
            production
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("acme-v02.api.letsencrypt.org-")
        );
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let soon = parse_retry_after("120").unwrap();
        let delta = soon.duration_since(SystemTime::now()).unwrap();
        assert!(delta > Duration::from_secs(100) && delta <= Duration::from_secs(120));
        assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert!(parse_retry_after("soon").is_none());
    }

    #[test]
    fn problems_are_classified() {
        let problem = |kind: &str, status: u16| {
            instant_acme::Error::Api(
                serde_json::from_value(serde_json::json!({
                    "type": format!("urn:ietf:params:acme:error:{kind}"),
                    "detail": "because",
                    "status": status,
                }))
                .unwrap(),
            )
        };
        assert_eq!(
            classify(problem("rateLimited", 429), "u", false).kind,
            FailureKind::RateLimited
        );
        assert_eq!(
            classify(problem("badNonce", 400), "u", false).kind,
            FailureKind::Transient
        );
        assert_eq!(
            classify(problem("serverInternal", 500), "u", false).kind,
            FailureKind::Transient
        );
        let refused = classify(problem("rejectedIdentifier", 400), "https://ca/dir", false);
        assert_eq!(refused.kind, FailureKind::Permanent);
        assert!(refused.message.contains("https://ca/dir"));
        assert!(refused.message.contains("remove it from `domains`"));
    }

    fn answer(status: u16, retry_in: Option<u64>, body: serde_json::Value) -> instant_acme::Error {
        instant_acme::Error::Other(Box::new(CaAnswered {
            uri: "https://ca/acme/x".to_owned(),
            status: http::StatusCode::from_u16(status).unwrap(),
            problem: serde_json::from_value(body).ok(),
            retry_after: retry_in.map(|secs| SystemTime::now() + Duration::from_secs(secs)),
        }))
    }

    #[test]
    fn a_429_on_the_directory_or_nonce_says_rate_limited_with_its_retry_time() {
        let limited = classify(
            answer(429, Some(600), serde_json::json!("not a problem")),
            "https://ca/dir",
            false,
        );
        assert_eq!(limited.kind, FailureKind::RateLimited);
        assert!(
            limited.message.contains("rate limited"),
            "{}",
            limited.message
        );
        assert!(
            limited.message.contains("https://ca/acme/x"),
            "{}",
            limited.message
        );
        assert!(
            limited.message.contains("retry after"),
            "{}",
            limited.message
        );
        assert!(
            !limited.message.contains("server error"),
            "{}",
            limited.message
        );
        let when = limited.retry_after.unwrap();
        let wait = when.duration_since(SystemTime::now()).unwrap();
        assert!(wait > Duration::from_secs(500), "{wait:?}");

        let outage = classify(
            answer(503, None, serde_json::json!({})),
            "https://ca/dir",
            false,
        );
        assert_eq!(outage.kind, FailureKind::Transient);
        assert!(
            outage.message.contains("server error"),
            "{}",
            outage.message
        );
        let wrong = classify(
            answer(404, None, serde_json::json!({})),
            "https://ca/dir",
            false,
        );
        assert_eq!(wrong.kind, FailureKind::Permanent);
    }

    #[test]
    fn each_error_carries_the_retry_time_of_its_own_answer() {
        // Two orders limited at once: neither sees the other's Retry-After.
        let problem = serde_json::json!({
            "type": "urn:ietf:params:acme:error:rateLimited",
            "detail": "too many orders",
            "status": 429,
        });
        let short = classify(answer(429, Some(60), problem.clone()), "u", false);
        let long = classify(answer(429, Some(3600), problem), "u", false);
        let wait = |err: &AcmeError| {
            err.retry_after
                .unwrap()
                .duration_since(SystemTime::now())
                .unwrap()
        };
        assert!(wait(&short) <= Duration::from_secs(60));
        assert!(wait(&long) > Duration::from_secs(3000));
        assert!(short.message.contains("(rateLimited)"), "{}", short.message);
        // A 429 without a retry time, after one with: none is invented.
        let bare = classify(answer(429, None, serde_json::json!({})), "u", false);
        assert_eq!(bare.retry_after, None);
        assert_eq!(bare.kind, FailureKind::RateLimited);
    }
}
