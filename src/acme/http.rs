//! The HTTP client instant-acme sends every request through.
//!
//! Built here rather than taken from instant-acme: its built-in client leaves TCP_NODELAY
//! off, and each signed POST then waits ~40 ms for a delayed ACK (about 330 ms per issuance
//! against a local CA instead of under 10). It also bounds every request in time and size,
//! and turns every failed answer into a [`CaAnswered`] carrying the HTTP status, the problem
//! document and the Retry-After of that very answer — instant-acme 0.8.5 keeps none of the
//! three (its `Problem` has only the body, and `Account::deactivate` ignores the status).
//!
//! Two more workarounds for instant-acme 0.8.5 live here, so the rest of evercert never sees
//! them: the body of the account's own URL is kept for the caller that asked
//! ([`Shared::watch_account`]: instant-acme has no POST-as-GET of the account and discards the
//! answer to a deactivation), and a CA that accepts `replaces` without echoing it in the
//! order (acme2certifier 0.46) gets the echo added, because instant-acme otherwise rejects an
//! order the CA has already created and a second order would be placed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::error::AcmeError;
use crate::config::AcmeSettings;

/// The largest body accepted from the CA. The biggest ACME objects are a certificate chain
/// (a few KiB) and an order with many authorizations (tens of KiB): 4 MiB is ample, and a CA
/// (or a proxy in front of it) streaming an endless body costs at most this much memory.
pub const MAX_CA_BODY: usize = 4 * 1024 * 1024;

/// What the client shares with the [`super::AcmeClient`] that owns it.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The account URL whose successful answers are kept, and the last one kept.
    watch: Mutex<Option<(String, Option<Bytes>)>>,
}

impl Shared {
    /// From now on, keep the body of the next successful answer from `url`.
    pub(crate) fn watch_account(&self, url: &str) {
        *self.watch.lock().unwrap_or_else(PoisonError::into_inner) = Some((url.to_owned(), None));
    }

    /// The body kept since [`Self::watch_account`], if any; stops watching.
    pub(crate) fn take_account_answer(&self) -> Option<Bytes> {
        self.watch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .and_then(|(_, body)| body)
    }

    fn keep(&self, uri: &str, body: &Bytes) {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((url, kept)) = watch.as_mut()
            && url == uri
        {
            *kept = Some(body.clone());
        }
    }
}

/// Bounds every request to the CA in time (headers and body) and size, and turns 429, 5xx,
/// every other failed answer (except the badNonce that instant-acme retries itself) and
/// failed GETs/HEADs into errors that carry the Retry-After of that very answer.
///
/// instant-acme reads bodies itself, without a limit: the body is read here, whole, under
/// the same deadline as the headers, and handed over already in memory.
#[derive(Clone)]
pub(crate) struct CaHttp {
    timeout: Duration,
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    pub(crate) shared: Arc<Shared>,
}

impl HttpClient for CaHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let uri = req.uri().to_string();
        let method = req.method().clone();
        let inner = self.inner.clone();
        let timeout = self.timeout;
        let shared = self.shared.clone();
        Box::pin(async move {
            let net = |message: String| instant_acme::Error::Other(Box::new(NetError(message)));
            // The body is bytes already in memory (instant-acme's signed JWS).
            let (parts, body) = req.into_parts();
            let sent = body
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes);
            let sent = match sent {
                Ok(sent) => sent,
                Err(never) => match never {},
            };
            let replaces = requested_replaces(&method, &sent);
            let req = Request::from_parts(parts, BodyWrapper::from(sent.to_vec()));
            let seconds = timeout.as_secs_f64();
            let deadline = tokio::time::Instant::now() + timeout;
            let response = match tokio::time::timeout_at(deadline, inner.request(req)).await {
                Ok(Ok(response)) => response,
                Ok(Err(err)) => return Err(net(describe_net(&err))),
                Err(_) => {
                    return Err(net(format!(
                        "no answer from {uri} within {seconds} s ([acme] timeout)"
                    )));
                }
            };
            let (mut parts, body) = response.into_parts();
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
            if !(status.is_success() || status.is_redirection() || status.is_informational()) {
                let problem = serde_json::from_slice::<instant_acme::Problem>(&body).ok();
                let garbled = problem.is_none() && garbled_json(&parts.headers, &body);
                // instant-acme retries a badNonce itself, from the 400 it sees.
                let bad_nonce = status == http::StatusCode::BAD_REQUEST
                    && problem.as_ref().and_then(|p| p.r#type.as_deref())
                        == Some("urn:ietf:params:acme:error:badNonce");
                if !bad_nonce {
                    let throttled =
                        status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    let retry_after = parts
                        .headers
                        .get(http::header::RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(parse_retry_after)
                        .filter(|_| throttled);
                    return Err(instant_acme::Error::Other(Box::new(CaAnswered {
                        uri,
                        method,
                        status,
                        problem,
                        garbled,
                        retry_after,
                    })));
                }
            }
            let body = match replaces {
                Some(replaces) if status.is_success() => {
                    echo_replaces(&uri, body, &replaces, &mut parts.headers)
                }
                _ => body,
            };
            if status.is_success() {
                shared.keep(&uri, &body);
            }
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// The `replaces` of a newOrder request (read from the JWS payload), if it has one.
fn requested_replaces(method: &http::Method, sent: &[u8]) -> Option<serde_json::Value> {
    if method != http::Method::POST {
        return None;
    }
    let jws: serde_json::Value = serde_json::from_slice(sent).ok()?;
    let payload = jws.get("payload")?.as_str()?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let payload: serde_json::Value = serde_json::from_slice(&payload).ok()?;
    payload.get("identifiers")?;
    payload.get("replaces").cloned()
}

/// RFC 9773 §5 says the CA MUST echo `replaces` in the order; acme2certifier 0.46 does not,
/// and instant-acme 0.8.5 then refuses an order that already exists at the CA. The order is
/// the one asked for either way, so the echo is added and the order used.
fn echo_replaces(
    uri: &str,
    body: Bytes,
    replaces: &serde_json::Value,
    headers: &mut http::HeaderMap,
) -> Bytes {
    let Ok(serde_json::Value::Object(mut order)) = serde_json::from_slice(&body) else {
        return body;
    };
    if order.contains_key("replaces") || !order.contains_key("status") {
        return body;
    }
    tracing::debug!("{uri}: the CA accepted `replaces` without echoing it; using the order");
    order.insert("replaces".to_owned(), replaces.clone());
    match serde_json::to_vec(&order) {
        Ok(rewritten) => {
            headers.remove(http::header::CONTENT_LENGTH);
            Bytes::from(rewritten)
        }
        Err(_) => body,
    }
}

/// The CA answered 429, a server error, any other failure (but a retried badNonce), or a
/// failed GET/HEAD (directory, newNonce, ARI).
#[derive(Debug)]
pub(crate) struct CaAnswered {
    pub(crate) uri: String,
    pub(crate) method: http::Method,
    pub(crate) status: http::StatusCode,
    /// The problem document of the answer, if it had one.
    pub(crate) problem: Option<instant_acme::Problem>,
    /// The body was meant to be JSON but does not parse ([`garbled_json`]): cut short or
    /// damaged on the way, so what the CA said is unknown.
    pub(crate) garbled: bool,
    /// Retry-After of this answer (429 and 5xx only).
    pub(crate) retry_after: Option<SystemTime>,
}

impl fmt::Display for CaAnswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} answered {}", self.uri, self.status)?;
        if let Some(problem) = &self.problem {
            if let Some(detail) = &problem.detail {
                write!(f, ": {detail}")?;
            }
            if let Some(kind) = &problem.r#type {
                write!(f, " ({kind})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for CaAnswered {}

/// Whether `body` claims to be JSON (by its content type, or by starting like an object)
/// but ends mid-value: an answer cut short (a connection dropped mid-body, a proxy that
/// truncates). An empty body, a JSON value that is not a problem document, an HTML error
/// page, or text that is not JSON at all (a proxy's own refusal) are readable answers: a
/// refusal stays a refusal.
pub(crate) fn garbled_json(headers: &http::HeaderMap, body: &[u8]) -> bool {
    let text = body.trim_ascii_start();
    if text.is_empty() {
        return false;
    }
    let claims_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.to_ascii_lowercase().contains("json"))
        || text.starts_with(b"{");
    claims_json
        && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_err_and(|err| err.is_eof())
}

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

pub(crate) fn build_http(settings: &AcmeSettings, directory: &str) -> Result<CaHttp, AcmeError> {
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
        shared: Arc::new(Shared::default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let soon = parse_retry_after("120").unwrap();
        let delta = soon.duration_since(SystemTime::now()).unwrap();
        assert!(delta > Duration::from_secs(100) && delta <= Duration::from_secs(120));
        assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert!(parse_retry_after("soon").is_none());
    }

    fn jws(payload: &serde_json::Value) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(payload).unwrap());
        serde_json::to_vec(&serde_json::json!({
            "protected": "e30",
            "payload": encoded,
            "signature": "c2ln",
        }))
        .unwrap()
    }

    #[test]
    fn a_missing_replaces_echo_is_added_and_nothing_else_changes() {
        let order = serde_json::json!({
            "identifiers": [{"type": "dns", "value": "a.test"}],
            "replaces": "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        });
        let method = http::Method::POST;
        let replaces = requested_replaces(&method, &jws(&order)).unwrap();
        assert_eq!(replaces, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
        // Not an order, not a POST, not a JWS: nothing to echo.
        let other = serde_json::json!({"status": "deactivated"});
        assert!(requested_replaces(&method, &jws(&other)).is_none());
        assert!(requested_replaces(&http::Method::GET, &jws(&order)).is_none());
        assert!(requested_replaces(&method, b"not json").is_none());

        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "10".parse().unwrap());
        let answered = Bytes::from_static(br#"{"status":"pending","authorizations":[]}"#);
        let echoed = echo_replaces("u", answered, &replaces, &mut headers);
        let echoed: serde_json::Value = serde_json::from_slice(&echoed).unwrap();
        assert_eq!(echoed["replaces"], replaces);
        assert_eq!(echoed["status"], "pending");
        assert!(headers.get(http::header::CONTENT_LENGTH).is_none());
        // An echo that is there is left alone, even if it differs.
        let own = Bytes::from_static(br#"{"status":"pending","replaces":"other"}"#);
        let kept = echo_replaces("u", own.clone(), &replaces, &mut http::HeaderMap::new());
        assert_eq!(kept, own);
    }

    #[test]
    fn a_json_answer_cut_short_is_garbled_and_nothing_else_is() {
        let json = |kind: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, kind.parse().unwrap());
            headers
        };
        let problem = br#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce","status":400}"#;
        let problem_json = json("application/problem+json");
        assert!(!garbled_json(&problem_json, problem));
        // Pebble's badNonce cut in half by the fault proxy (the soak's "truncated body").
        assert!(garbled_json(&problem_json, &problem[..problem.len() / 2]));
        // Starting like an object is enough, whatever the content type says.
        assert!(garbled_json(&http::HeaderMap::new(), &problem[..10]));
        // Readable answers: nothing, a JSON value that is no problem, an HTML page.
        assert!(!garbled_json(&problem_json, b""));
        assert!(!garbled_json(&problem_json, b"null"));
        assert!(!garbled_json(
            &json("text/html"),
            b"<html><body>403 Forbidden</body></html>"
        ));
        // A proxy's refusal labelled JSON but in plain words, or a problem with a byte-order
        // mark, is complete: a refusal, not an answer cut short.
        assert!(!garbled_json(&problem_json, b"Forbidden by policy"));
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(problem);
        assert!(!garbled_json(&problem_json, &with_bom));
    }

    #[test]
    fn the_watched_account_answer_is_kept_once() {
        let shared = Shared::default();
        shared.keep("https://ca/acct/1", &Bytes::from_static(b"unwatched"));
        assert!(shared.take_account_answer().is_none());
        shared.watch_account("https://ca/acct/1");
        shared.keep("https://ca/order/1", &Bytes::from_static(b"other url"));
        shared.keep("https://ca/acct/1", &Bytes::from_static(b"{}"));
        assert_eq!(shared.take_account_answer().as_deref(), Some(&b"{}"[..]));
        assert!(shared.take_account_answer().is_none());
    }
}
