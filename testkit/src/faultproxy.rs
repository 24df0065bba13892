//! A fault-injecting HTTPS proxy between evercert and Pebble.
//!
//! Why a proxy: Pebble 2.4 can reject nonces and refuse identifiers, but it cannot answer 429
//! with `Retry-After`, answer 5xx, stall, delay or drop a connection. Those are what a real CA
//! does on a bad day, so the proxy injects them while everything else reaches the real Pebble.
//!
//! How: it listens on 127.0.0.1 and terminates TLS itself with a `localhost`/`127.0.0.1` leaf
//! signed by the same test root that evercert trusts for Pebble (`ca_bundle`), offering only
//! `http/1.1` in ALPN so one HTTP/1.1 keep-alive connection carries the whole order. Each
//! request is either answered with the fault its rule says, or forwarded to Pebble over TLS.
//! The `Host` header is forwarded unchanged, so Pebble builds every URL it returns (orders,
//! authorizations, nonces) and checks every JWS `url` against the proxy's address; as a safety
//! net the directory body and `Location`/`Link` headers are also rewritten from Pebble's base
//! URL to the proxy's. Nothing else in a body is touched.
//!
//! Faults are switched at run time ([`FaultProxy::set_fault`], [`FaultProxy::add_rule`]) and
//! every request is logged ([`FaultProxy::count`]) so a test can assert "no hot loop".
//!
//! The proxy runs on a thread with its own tokio runtime; dropping it stops the thread and
//! drops every connection, including stalled ones.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use super::pebble::{Pebble, bind_loopback_listener};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Upstream = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What the proxy does to a request instead of (or before) forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait, then forward.
    Delay(Duration),
    /// Close the connection without answering.
    Reset,
    /// Answer this status (500, 503, …) with an ACME problem document (`serverInternal`).
    Status(u16),
    /// Answer 429 with `Retry-After: SECS` and a `rateLimited` problem document.
    RateLimited { retry_after_secs: u64 },
    /// Accept the request and never answer.
    Stall,
    /// The inner fault for the first `n` matching requests, then forward normally.
    FailFirst(u32, Box<Self>),
    /// One of these per request, at random by weight (`Delay(ZERO)` forwards untouched);
    /// see `support::chaos`.
    Mix(Vec<(u32, Self)>),
    /// Forward, then answer with only the first half of Pebble's body (status and headers
    /// kept, the length header made to fit): a CA whose answer was cut short.
    Truncate,
    /// Answer this status with exactly this body (`{}`: step-ca 0.19's answer for an account
    /// its database lost), no problem type, no detail.
    Body(u16, &'static str),
}

impl Fault {
    /// [`Fault::FailFirst`] without the `Box::new`.
    pub fn fail_first(times: u32, fault: Self) -> Self {
        Self::FailFirst(times, Box::new(fault))
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Requests whose path starts with this (`None`: every request).
    pub path_prefix: Option<String>,
    pub fault: Fault,
    /// How often the rule's fault was applied (for [`Fault::FailFirst`]).
    applied: u32,
}

impl Rule {
    pub fn every_request(fault: Fault) -> Self {
        Self {
            path_prefix: None,
            fault,
            applied: 0,
        }
    }

    pub fn path(prefix: &str, fault: Fault) -> Self {
        Self {
            path_prefix: Some(prefix.to_owned()),
            fault,
            applied: 0,
        }
    }

    fn matches(&self, path: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|prefix| path.starts_with(prefix))
    }
}

/// One request the proxy saw, and what it did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The fault applied, or `None` when forwarded untouched.
    pub fault: Option<Fault>,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        match &self.fault {
            Some(fault) => write!(f, " -> {fault:?}"),
            None => write!(f, " -> forwarded"),
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    /// The state of the random choices of [`Fault::Mix`].
    rng: Mutex<u64>,
}

impl Shared {
    /// The fault for this request (consuming a [`Fault::FailFirst`] budget), logged.
    fn decide(&self, method: &str, path: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        let mut chosen = None;
        for rule in rules.iter_mut().filter(|rule| rule.matches(path)) {
            match &rule.fault {
                Fault::FailFirst(times, inner) => {
                    if rule.applied < *times {
                        rule.applied += 1;
                        chosen = Some(flatten(inner));
                        break;
                    }
                    // Exhausted: later rules may still apply.
                }
                fault => {
                    rule.applied += 1;
                    chosen = Some(fault.clone());
                    break;
                }
            }
        }
        drop(rules);
        let chosen = chosen.map(|fault| self.resolve(fault));
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                method: method.to_owned(),
                path: path.to_owned(),
                fault: chosen.clone(),
            });
        chosen
    }
}

impl Shared {
    /// A [`Fault::Mix`] becomes one of its faults; a forward (`Delay(ZERO)`) is logged as such.
    fn resolve(&self, fault: Fault) -> Fault {
        let Fault::Mix(choices) = fault else {
            return fault;
        };
        let total: u64 = choices.iter().map(|(weight, _)| u64::from(*weight)).sum();
        let mut roll = {
            let mut state = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            super::chaos::next_random(&mut state) % total.max(1)
        };
        for (weight, fault) in choices {
            if roll < u64::from(weight) {
                return self.resolve(flatten(&fault));
            }
            roll -= u64::from(weight);
        }
        Fault::Delay(Duration::ZERO)
    }
}

/// A nested `FailFirst` inside `FailFirst` counts as its inner fault.
fn flatten(fault: &Fault) -> Fault {
    match fault {
        Fault::FailFirst(_, inner) => flatten(inner),
        other => other.clone(),
    }
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    directory: Value,
    directory_path: String,
    upstream_base: String,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `pebble`'s ACME port, forwarding everything until a fault is set.
    pub fn start(pebble: &Pebble) -> Self {
        let upstream_directory = pebble.directory_url();
        let upstream_base = base_of(&upstream_directory);
        let directory = pebble.get(&upstream_directory).json();

        let (cert_pem, key_pem) = pebble.mint_https_leaf();
        let mut server = super::tls::server_config(&cert_pem, &key_pem);
        // HTTP/1.1 only: one request at a time per connection, simple to fault.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*pebble.tls_client_config()).clone())
            .https_only()
            .enable_http1()
            .wrap_connector(connector);

        let listener = bind_loopback_listener();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let directory_path = path_of(&upstream_directory, &upstream_base);
        let context = Arc::new(Context {
            shared: shared.clone(),
            upstream_base: upstream_base.clone(),
            proxy_base: format!("https://{addr}"),
            directory_path: directory_path.clone(),
            // hyper-util spawns its pool tasks onto the runtime it is used in: the proxy's.
            upstream: Client::builder(TokioExecutor::new()).build(https),
        });
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || serve(listener, &acceptor, &context, stop))
            .expect("spawn the fault proxy thread");
        Self {
            addr,
            directory,
            directory_path,
            upstream_base,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The directory URL to give evercert: `https://127.0.0.1:PROXY/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://{}{}", self.addr, self.directory_path)
    }

    /// The directory's path (`/dir`), for rules and counts.
    pub fn directory_path(&self) -> &str {
        &self.directory_path
    }

    /// The path of one of Pebble's directory resources (`newOrder`, `newNonce`, …), for
    /// rules and counts.
    pub fn resource_path(&self, resource: &str) -> String {
        let url = self.directory[resource]
            .as_str()
            .unwrap_or_else(|| panic!("Pebble's directory has no {resource}: {}", self.directory));
        path_of(url, &self.upstream_base)
    }

    /// Applies `fault` to every request from now on (replacing all rules).
    pub fn set_fault(&self, fault: Fault) {
        *self.rules() = vec![Rule::every_request(fault)];
    }

    /// Applies `fault` to requests whose path starts with `prefix` (replacing all rules).
    pub fn set_fault_on(&self, prefix: &str, fault: Fault) {
        *self.rules() = vec![Rule::path(prefix, fault)];
    }

    /// Adds a rule after the existing ones (the first matching rule wins).
    pub fn add_rule(&self, rule: Rule) {
        self.rules().push(rule);
    }

    /// Forwards everything from now on.
    pub fn clear_faults(&self) {
        self.rules().clear();
    }

    fn rules(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        self.shared
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests so far whose path starts with `prefix` (`""`: all).
    pub fn count(&self, prefix: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.path.starts_with(prefix))
            .count()
    }

    /// Every request so far, one per line, for assertion messages.
    pub fn describe(&self) -> String {
        let lines: Vec<String> = self.seen().iter().map(ToString::to_string).collect();
        lines.join("\n")
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `https://HOST:PORT` of a URL.
fn base_of(url: &str) -> String {
    let rest = url.strip_prefix("https://").expect("an https URL");
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("https://{authority}")
}

fn path_of(url: &str, base: &str) -> String {
    let path = url.strip_prefix(base).unwrap_or(url);
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

struct Context {
    shared: Arc<Shared>,
    upstream_base: String,
    proxy_base: String,
    directory_path: String,
    upstream: Upstream,
}

impl Context {
    fn rewrite(&self, text: &str) -> String {
        text.replace(&self.upstream_base, &self.proxy_base)
    }
}

fn serve(
    listener: std::net::TcpListener,
    acceptor: &tokio_rustls::TlsAcceptor,
    context: &Arc<Context>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("fault proxy runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let context = context.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(stream).await else { return };
                        let service = service_fn(move |request| {
                            let context = context.clone();
                            handle(context, request)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        }
    });
    // Dropping the runtime drops every connection task, stalled ones included.
    drop(runtime);
}

async fn handle(
    context: Arc<Context>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    match context.shared.decide(&method, &path) {
        None => forward(&context, request).await,
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            forward(&context, request).await
        }
        // An error from the service makes hyper close the connection without a response.
        Some(Fault::Reset) => Err(BoxError::from("fault proxy: connection reset")),
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Ok(problem(
                status,
                "serverInternal",
                &format!("fault proxy: injected {code} for {method} {path}"),
                None,
            ))
        }
        Some(Fault::Body(code, body)) => {
            let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *response.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        Some(Fault::RateLimited { retry_after_secs }) => Ok(problem(
            StatusCode::TOO_MANY_REQUESTS,
            "rateLimited",
            "fault proxy: too many new orders recently, see Retry-After",
            Some(retry_after_secs),
        )),
        Some(Fault::Stall) => std::future::pending().await,
        Some(Fault::Truncate) => {
            let answer = forward(&context, request).await?;
            let (mut parts, body) = answer.into_parts();
            let body = body.collect().await?.to_bytes();
            parts.headers.remove(header::CONTENT_LENGTH);
            Ok(Response::from_parts(
                parts,
                Full::new(body.slice(..body.len() / 2)),
            ))
        }
        Some(Fault::FailFirst(..) | Fault::Mix(_)) => {
            unreachable!("flattened and resolved by Shared::decide")
        }
    }
}

fn problem(
    status: StatusCode,
    kind: &str,
    detail: &str,
    retry_after_secs: Option<u64>,
) -> Response<Full<Bytes>> {
    let body = json!({
        "type": format!("urn:ietf:params:acme:error:{kind}"),
        "detail": detail,
        "status": status.as_u16(),
    });
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if let Some(secs) = retry_after_secs {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            to.append(name.clone(), value.clone());
        }
    }
}

async fn forward(
    context: &Context,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    let mut upstream = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path_and_query}", context.upstream_base))
        .body(Full::new(body))?;
    // Host included: Pebble then builds its URLs, and checks JWS `url`s, for the proxy.
    copy_end_to_end(&parts.headers, upstream.headers_mut());

    let response = match context.upstream.request(upstream).await {
        Ok(response) => response,
        Err(err) => {
            return Ok(problem(
                StatusCode::BAD_GATEWAY,
                "serverInternal",
                &format!("fault proxy: Pebble did not answer: {err}"),
                None,
            ));
        }
    };
    let (parts, body) = response.into_parts();
    let mut body = body.collect().await?.to_bytes();
    if parts.status.is_success() && path_and_query == context.directory_path {
        body = Bytes::from(context.rewrite(&String::from_utf8_lossy(&body)));
    }
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = parts.status;
    copy_end_to_end(&parts.headers, answer.headers_mut());
    for name in [header::LOCATION, header::LINK] {
        let rewritten: Vec<HeaderValue> = answer
            .headers()
            .get_all(&name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .filter_map(|value| HeaderValue::from_str(&context.rewrite(value)).ok())
            .collect();
        if !rewritten.is_empty() {
            answer.headers_mut().remove(&name);
            for value in rewritten {
                answer.headers_mut().append(&name, value);
            }
        }
    }
    Ok(answer)
}
