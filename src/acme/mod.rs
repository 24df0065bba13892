//! The one module that talks to `instant_acme`: accounts, orders, challenges, finalization,
//! revocation and renewal information. Everything else speaks evercert's own types, so the
//! next instant-acme release touches this folder only.
//!
//! - `http`: the bounded HTTP client every request goes through (and the instant-acme 0.8.5
//!   workarounds that need to see the wire);
//! - `error`: failures classified by operation, HTTP status and problem type together;
//! - `account`: registering, looking up, rolling over and deactivating the account;
//! - here: orders, from new order to downloaded certificate.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeStatus, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy, RevocationReason, RevocationRequest,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::challenge::{self, ChallengeKind, ChallengeResponse, Responders};
use crate::config::{ChallengeSettings, KeyType};

mod account;
mod error;
mod http;

pub use account::{AccountInfo, AccountStatus, account_dir, forget_account};
pub use error::{AcmeError, FailureKind, Operation, ProblemType};
pub use http::{MAX_CA_BODY, parse_retry_after};

use error::classify;
use http::CaHttp;

/// instant-acme sends a request up to three times when the CA rejects its nonce; at the 20 %
/// rejection rate CI runs Pebble with, ~1 % of requests still fail, ~6 % of orders. Accounts
/// and orders are tried again from the start this many times in all (a new order reuses the
/// CA's pending authorizations).
const BAD_NONCE_ATTEMPTS: u32 = 4;
/// How long an order may take from "challenges ready" to a downloaded certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// Polls of a pending order before its authorizations are looked at too: a CA that leaves
/// the order `pending` after a failed challenge (acme2certifier 0.46) is then caught in well
/// under a second instead of at [`ORDER_TIMEOUT`].
const POLLS_BEFORE_AUTHZ_CHECK: u32 = 3;

/// What is wrong when `profile` is set and the directory at `directory` does not offer it
/// (`offered`: the names in its `meta.profiles`); `None` when it does.
pub fn profile_not_offered(profile: &str, directory: &str, offered: &[&str]) -> Option<String> {
    if offered.contains(&profile) {
        return None;
    }
    let what = if offered.is_empty() {
        "offers no profiles".to_owned()
    } else {
        format!("offers only {}", offered.join(", "))
    };
    Some(format!(
        "[acme] profile = \"{profile}\" is set, but the CA at {directory} {what}; remove `profile` or set one the CA offers"
    ))
}

/// The profile names the CA's directory offers (`meta.profiles`), without an account: one
/// GET of the directory, bounded in time and size like every request to the CA. For
/// `config check`; orders read them from the directory instant-acme fetched.
pub async fn offered_profiles(
    settings: &crate::config::AcmeSettings,
    directory: &str,
) -> Result<Vec<String>, AcmeError> {
    use instant_acme::{BodyWrapper, HttpClient as _};
    let http = http::build_http(settings, directory)?;
    let has_bundle = settings.ca_bundle.is_some();
    let request = ::http::Request::get(directory)
        .body(BodyWrapper::from(Vec::new()))
        .map_err(|err| {
            AcmeError::permanent(format!(
                "[acme] directory {directory} is not a URL evercert can ask: {err}"
            ))
        })?;
    let mut response = http
        .request(request)
        .await
        .map_err(|err| classify(err, Operation::Directory, directory, has_bundle))?;
    // Already read (and capped) by `CaHttp`: this only hands the bytes over.
    let body = response.body.into_bytes().await.map_err(|err| {
        AcmeError::local(
            FailureKind::Transient,
            format!("reading the directory {directory} failed: {err}"),
        )
    })?;
    directory_profiles(&response.parts.headers, &body, directory)
}

/// The profile names in a directory document. An answer that is JSON cut short is a transient
/// failure (ask again), not a wrong URL: only a readable answer that is no ACME directory
/// says to check `[acme] directory`.
fn directory_profiles(
    headers: &::http::HeaderMap,
    body: &[u8],
    directory: &str,
) -> Result<Vec<String>, AcmeError> {
    let document: serde_json::Value = serde_json::from_slice(body).map_err(|err| {
        if http::garbled_json(headers, body) {
            AcmeError::local(
                FailureKind::Transient,
                format!(
                    "the answer from {directory} does not parse ({err}): it was cut short or damaged on the way; try again"
                ),
            )
        } else {
            AcmeError::permanent(format!(
                "the answer from {directory} is not an ACME directory ({err}); check [acme] directory"
            ))
        }
    })?;
    let mut names: Vec<String> = document
        .pointer("/meta/profiles")
        .and_then(serde_json::Value::as_object)
        .map(|profiles| profiles.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

/// A connection to one CA with one account.
pub struct AcmeClient {
    account: Account,
    directory: String,
    pub info: AccountInfo,
    http: CaHttp,
    /// The account key (PKCS#8 DER), to ask the CA whether it still knows it.
    key_pkcs8: Option<Vec<u8>>,
    has_ca_bundle: bool,
    /// One account lookup at a time: the HTTP layer keeps one account answer.
    lookup: tokio::sync::Mutex<()>,
}

impl fmt::Debug for AcmeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeClient")
            .field("directory", &self.directory)
            .field("account", &self.info.id)
            .finish_non_exhaustive()
    }
}

/// Saves credentials (a secret) with mode 0600; a closure so the store module stays the one
/// place that knows how to write atomically.
pub type SaveSecret<'a> = &'a (dyn Fn(&Path, &[u8]) -> Result<(), String> + Sync);

impl AcmeClient {
    fn new(
        account: Account,
        directory: &str,
        info: AccountInfo,
        http: CaHttp,
        key_pkcs8: Option<Vec<u8>>,
        has_ca_bundle: bool,
    ) -> Self {
        Self {
            account,
            directory: directory.to_owned(),
            info,
            http,
            key_pkcs8,
            has_ca_bundle,
            lookup: tokio::sync::Mutex::new(()),
        }
    }

    pub fn directory(&self) -> &str {
        &self.directory
    }

    fn classify(&self, err: instant_acme::Error, operation: Operation) -> AcmeError {
        classify(err, operation, &self.directory, self.has_ca_bundle)
    }

    /// A failure that may mean the account is gone is checked with one lookup of the account:
    /// if the CA no longer knows it or has deactivated it, the error says so and
    /// [`AcmeError::account_gone`] asks for a new registration.
    async fn confirm_account(&self, mut err: AcmeError) -> AcmeError {
        if !err.account_suspect() {
            return err;
        }
        if let Ok(status) = self.account_status().await
            && status.is_gone()
        {
            err.account_gone = true;
            err.message = format!(
                "{}; account {} is {status}: evercert registers a new account",
                err.message, self.info.id
            );
        }
        err
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
            Err(err) => Err(self.classify(err, Operation::RenewalInfo)),
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
                // Not after finalization (the certificate step retries itself): a new order
                // then would be a second issuance.
                Err(err)
                    if err.bad_nonce
                        && err.operation != Some(Operation::Certificate)
                        && attempt < BAD_NONCE_ATTEMPTS =>
                {
                    attempt += 1;
                    progress("the CA rejected a nonce again; ordering again");
                }
                Err(err) => return Err(self.confirm_account(err).await),
                result => return result,
            }
        }
    }

    /// A configured profile the directory does not offer is an error, never a silent
    /// default: the operator chose it for a reason (a lifetime, a key usage).
    fn check_profile(&self, request: &OrderRequest<'_>) -> Result<(), AcmeError> {
        let Some(profile) = request.profile else {
            return Ok(());
        };
        let offered: Vec<&str> = self.account.profiles().map(|meta| meta.name).collect();
        match profile_not_offered(profile, &self.directory, &offered) {
            None => Ok(()),
            Some(problem) => Err(AcmeError::permanent(format!("{}: {problem}", request.name))),
        }
    }

    async fn issue_once(
        &self,
        request: &OrderRequest<'_>,
        responders: &Responders,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Issued, AcmeError> {
        self.check_profile(request)?;
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
        let placed = match replaces {
            Some(replaces) => {
                match self
                    .account
                    .new_order(&new_order().replaces(replaces))
                    .await
                {
                    // instant-acme checks the directory before sending anything: no ARI at
                    // this CA, so no `replaces`, and nothing was refused.
                    Err(instant_acme::Error::Unsupported(_)) => {
                        self.account.new_order(&new_order()).await
                    }
                    Err(err) => {
                        let err = self.classify(err, Operation::NewOrder);
                        if err.kind != FailureKind::Permanent || err.account_suspect() {
                            return Err(err);
                        }
                        // The CA refused `replaces` (already replaced, or not ours after an
                        // account change): the renewal matters more than the hint.
                        tracing::info!(
                            "{}: the CA refused `replaces` ({err}); ordering without it",
                            request.name
                        );
                        self.account.new_order(&new_order()).await
                    }
                    placed => placed,
                }
            }
            None => self.account.new_order(&new_order()).await,
        };
        let mut order = placed.map_err(|err| self.classify(err, Operation::NewOrder))?;
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
            .map_err(|err| self.classify(err, Operation::Finalize))?;
        // The order is finalized: the CA issues (or has issued) its certificate. A rejected
        // nonce from here on asks again for that certificate; ordering again would have the
        // CA issue a second one.
        let mut attempt = 1;
        let chain_pem = loop {
            match order.poll_certificate(&poll_policy()).await {
                Ok(pem) => break pem,
                Err(err) => {
                    let err = self.classify(err, Operation::Certificate);
                    if !err.bad_nonce || attempt >= BAD_NONCE_ATTEMPTS {
                        return Err(err);
                    }
                    attempt += 1;
                    progress("the CA rejected a nonce; asking for the issued certificate again");
                }
            }
        };
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
        let mut responses = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|err| self.classify(err, Operation::Authorization))?;
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
                .map_err(|err| {
                    let kind = if err.is_permanent() {
                        FailureKind::Permanent
                    } else {
                        FailureKind::Transient
                    };
                    AcmeError::local(kind, format!("{}: {err}", request.name))
                })?;
            presented.push(item);
            responses.push(response);
            pending += 1;
        }
        if pending == 0 {
            return Ok(());
        }
        // In a fleet every host must serve the http-01 tokens before the CA asks any of them.
        if let Some(summary) = challenge::fan_out(
            request.challenge,
            responders,
            request.name,
            &responses,
            presented,
        )
        .await
        .map_err(|err| {
            AcmeError::local(FailureKind::Transient, format!("{}: {err}", request.name))
        })? {
            progress(&summary);
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
        if let Some(took) = challenge::await_propagation(request.challenge, presented)
            .await
            .map_err(|err| {
                AcmeError::local(FailureKind::Transient, format!("{}: {err}", request.name))
            })?
        {
            progress(&format!(
                "dns-01 records served by every authoritative server after {} ms",
                took.as_millis()
            ));
        }
        // Tell the CA only now, so that dns-01 records had their propagation wait.
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization =
                authorization.map_err(|err| self.classify(err, Operation::Authorization))?;
            if authorization.status != AuthorizationStatus::Pending {
                continue;
            }
            let identifier = authorization.identifier().to_string();
            if let Some(mut challenge) = authorization.challenge(wanted.clone()) {
                match challenge.set_ready().await {
                    Ok(()) => {}
                    // A CA that validates inside the challenge POST (step-ca) answers with
                    // the challenge's error at once: a failed validation, explained like one
                    // found by polling.
                    // A badNonce, a rate limit or a server error on that POST is not a
                    // validation result: it goes to the classification below (transient).
                    Err(instant_acme::Error::Api(problem)) if is_validation_answer(&problem) => {
                        let said = format!("{identifier}: {}", problem_words(&problem));
                        return Err(self.challenge_failure(order, request, kind, &[said]).await);
                    }
                    Err(err) => return Err(self.classify(err, Operation::Challenge)),
                }
            }
        }
        self.wait_ready(order, request, kind).await
    }

    /// Polls the order until it is ready. An order can stay `pending` after a challenge
    /// failed (acme2certifier 0.46 leaves it so): after a few polls the authorizations are
    /// looked at too, and a failed one ends the wait with the challenge's own error.
    async fn wait_ready(
        &self,
        order: &mut instant_acme::Order,
        request: &OrderRequest<'_>,
        kind: ChallengeKind,
    ) -> Result<(), AcmeError> {
        let deadline = tokio::time::Instant::now() + ORDER_TIMEOUT;
        let mut delay = Duration::from_millis(2);
        let mut polls = 0u32;
        loop {
            tokio::time::sleep(delay).await;
            delay = delay.mul_f64(1.6).min(Duration::from_secs(5));
            polls += 1;
            let state = order
                .refresh()
                .await
                .map_err(|err| self.classify(err, Operation::Order))?;
            match state.status {
                OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => return Ok(()),
                OrderStatus::Invalid => {
                    return Err(self.challenge_failure(order, request, kind, &[]).await);
                }
                OrderStatus::Pending => {}
            }
            if polls >= POLLS_BEFORE_AUTHZ_CHECK && self.authorization_failed(order).await? {
                return Err(self.challenge_failure(order, request, kind, &[]).await);
            }
            if tokio::time::Instant::now() >= deadline {
                let mut err = self.challenge_failure(order, request, kind, &[]).await;
                err.kind = FailureKind::Transient;
                err.message = format!(
                    "the CA at {} did not finish validating within {} s (the order is still pending); it will be retried. {}",
                    self.directory,
                    ORDER_TIMEOUT.as_secs(),
                    err.message
                );
                return Err(err);
            }
        }
    }

    /// Whether an authorization of the order (fetched afresh) or one of its challenges failed.
    async fn authorization_failed(
        &self,
        order: &mut instant_acme::Order,
    ) -> Result<bool, AcmeError> {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let authorization =
                authorization.map_err(|err| self.classify(err, Operation::Authorization))?;
            if authorization.status == AuthorizationStatus::Invalid
                || authorization
                    .challenges
                    .iter()
                    .any(|challenge| challenge.status == ChallengeStatus::Invalid)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The CA's own words for a failed validation, plus what usually causes it. `known` holds
    /// what the CA already said (the answer to the challenge POST).
    async fn challenge_failure(
        &self,
        order: &mut instant_acme::Order,
        request: &OrderRequest<'_>,
        kind: ChallengeKind,
        known: &[String],
    ) -> AcmeError {
        let mut details: Vec<String> = known.to_vec();
        if let Some(problem) = &order.state().error {
            details.push(problem_words(problem));
        }
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authorization)) = authorizations.next().await {
            let _ = authorization.refresh().await;
            let identifier = authorization.identifier().to_string();
            for challenge in &authorization.challenges {
                let said = match &challenge.error {
                    Some(problem) => format!("{identifier}: {}", problem_words(problem)),
                    // acme2certifier 0.46 marks the challenge invalid and gives no error.
                    None if challenge.status == ChallengeStatus::Invalid => format!(
                        "{identifier}: the CA marked the challenge invalid without giving a reason"
                    ),
                    None => continue,
                };
                if !details.iter().any(|known| known.starts_with(&said)) {
                    details.push(said);
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
            ChallengeSettings::Dns01Rfc2136(_) => "every authoritative server served the TXT record before the CA was asked; does the CA see the same servers (split-horizon DNS, a stale delegation at the parent zone)?".to_owned(),
            ChallengeSettings::Dns01 { .. } => "did the hook publish the TXT record _acme-challenge.NAME at the authoritative DNS servers? raise [certificate.dns01] wait if they are slow to update".to_owned(),
            ChallengeSettings::TlsAlpn01 { listen } => format!(
                "is port 443 of every name reachable from the CA and forwarded to evercert's responder on {listen}?"
            ),
        };
        AcmeError {
            operation: Some(Operation::Challenge),
            ..AcmeError::permanent(format!(
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
            .map_err(|err| self.classify(err, Operation::Revoke))
    }
}

/// A problem in the operator's words: its detail, else its type.
fn problem_words(problem: &instant_acme::Problem) -> String {
    match (&problem.detail, &problem.r#type) {
        (Some(detail), _) if !detail.trim().is_empty() => detail.clone(),
        (_, Some(kind)) => ProblemType::parse(kind).to_string(),
        _ => "no detail".to_owned(),
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

/// Whether an error answered to the challenge POST is the challenge's own validation result
/// (a CA that validates inline) rather than a request-level failure to retry.
fn is_validation_answer(problem: &instant_acme::Problem) -> bool {
    let kind = problem.r#type.as_deref().unwrap_or_default();
    let request_level = [":badNonce", ":rateLimited", ":serverInternal"]
        .iter()
        .any(|suffix| kind.ends_with(suffix));
    !request_level && problem.status.is_none_or(|status| status < 500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_cut_short_is_transient_and_a_web_page_is_the_wrong_url() {
        let dir = "https://ca.test/dir";
        let json = ::http::HeaderMap::new();
        let whole = br#"{"newOrder":"https://ca.test/new","meta":{"profiles":{"tlsserver":"","classic":""}}}"#;
        assert_eq!(
            directory_profiles(&json, whole, dir).unwrap(),
            ["classic", "tlsserver"]
        );
        let cut = directory_profiles(&json, &whole[..whole.len() / 2], dir).unwrap_err();
        assert_eq!(cut.kind, FailureKind::Transient, "{}", cut.message);
        assert!(cut.message.contains("cut short"), "{}", cut.message);
        let page = directory_profiles(&json, b"<html>welcome</html>", dir).unwrap_err();
        assert_eq!(page.kind, FailureKind::Permanent, "{}", page.message);
        assert!(
            page.message.contains("check [acme] directory"),
            "{}",
            page.message
        );
    }

    #[test]
    fn a_profile_is_checked_against_what_the_directory_offers() {
        let dir = "https://ca.test/dir";
        assert_eq!(
            profile_not_offered("tlsserver", dir, &["classic", "tlsserver"]),
            None
        );
        assert_eq!(
            profile_not_offered("shortlived", dir, &[]).as_deref(),
            Some(
                "[acme] profile = \"shortlived\" is set, but the CA at https://ca.test/dir offers no profiles; remove `profile` or set one the CA offers"
            )
        );
        assert!(
            profile_not_offered("shortlived", dir, &["classic", "tlsserver"])
                .is_some_and(|problem| problem.contains("offers only classic, tlsserver"))
        );
        // Names are compared exactly: a CA's profile names are case-sensitive.
        assert!(profile_not_offered("TLSServer", dir, &["tlsserver"]).is_some());
    }
}
