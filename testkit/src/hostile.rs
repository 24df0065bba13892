//! A hostile HTTP/1.1 server on loopback, over TLS (a stand-in CA) or plain (a webhook).
//!
//! Why a stand-in: Pebble and the fault proxy answer whole bodies. A CA, or a proxy in front
//! of it, can also send the headers and then stall in the middle of the body, or stream a
//! body that never ends; a webhook can answer 200 and never finish its body. Only the bytes
//! on the wire matter for that, so this server writes them by hand: each route answers with
//! a complete response, a stall after half the body, or an endless chunked body.
//!
//! For a stand-in CA, [`HostileServer::acme`] serves a directory whose resources all point
//! back at the server and a working newNonce; a test then routes the request it wants to go
//! wrong. Every request is logged. The server runs on a thread with its own tokio runtime;
//! dropping it drops every connection, stalled ones included.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::serve::Background;

/// How a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A complete response.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// The status line and headers (`content-length: 4096`), 100 bytes of body, then silence
    /// with the connection held open.
    StallMidBody { status: u16 },
    /// The status line and headers, then a chunked body that never ends, written as fast as
    /// the client reads it.
    Endless { status: u16 },
}

impl Answer {
    /// A complete JSON answer.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// 429 with `Retry-After: SECS` and a `rateLimited` problem document (none for HEAD,
    /// whose answers have no body).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::Full {
            status: 429,
            headers: vec![
                ("content-type".into(), "application/problem+json".into()),
                ("retry-after".into(), retry_after_secs.to_string()),
            ],
            body: serde_json::json!({
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "hostile stand-in: slow down",
                "status": 429,
            })
            .to_string()
            .into_bytes(),
        }
    }
}

#[derive(Debug)]
struct Route {
    method: String,
    path: String,
    answer: Answer,
    /// Answers this many more requests (`None`: all), then lets later routes answer.
    left: Option<u32>,
}

#[derive(Debug, Default)]
struct Shared {
    routes: Mutex<Vec<Route>>,
    seen: Mutex<Vec<String>>,
    /// Bytes of endless bodies written so far.
    streamed: AtomicU64,
}

impl Shared {
    fn answer(&self, method: &str, path: &str) -> Answer {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{method} {path}"));
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        for route in routes.iter_mut() {
            if route.method != method || route.path != path || route.left == Some(0) {
                continue;
            }
            if let Some(left) = &mut route.left {
                *left -= 1;
            }
            return route.answer.clone();
        }
        Answer::json(404, &serde_json::json!({"detail": "no such route"}))
    }
}

/// The running server; stops when dropped.
pub struct HostileServer {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    _server: Background,
}

impl HostileServer {
    /// Over TLS with this certificate chain and key (e.g. `Pebble::mint_https_leaf`, which
    /// evercert trusts through the test's `ca_bundle`).
    pub fn https(chain_pem: &str, key_pem: &str) -> Self {
        let mut config = super::tls::server_config(chain_pem, key_pem);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::start(
            "https",
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
    }

    /// Plain HTTP.
    pub fn http() -> Self {
        Self::start("http", None)
    }

    fn start(scheme: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        let server = Background::spawn("hostile-server", listener, move |stream| {
            let _ = stream.set_nodelay(true);
            let shared = serving.clone();
            let tls = tls.clone();
            async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            serve(stream, &shared).await;
                        }
                    }
                    None => serve(stream, &shared).await,
                }
            }
        });
        Self {
            addr,
            scheme,
            shared,
            _server: server,
        }
    }

    /// `SCHEME://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers `method path` (query ignored) with `answer`, after the routes added before.
    pub fn route(&self, method: &str, path: &str, answer: Answer) {
        self.add(method, path, answer, None);
    }

    /// Like [`Self::route`] for the next `times` matching requests only.
    pub fn route_times(&self, method: &str, path: &str, times: u32, answer: Answer) {
        self.add(method, path, answer, Some(times));
    }

    fn add(&self, method: &str, path: &str, answer: Answer, left: Option<u32>) {
        self.shared
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Route {
                method: method.to_owned(),
                path: path.to_owned(),
                answer,
                left,
            });
    }

    /// A stand-in ACME CA: `GET /dir` answers a directory pointing at this server, and
    /// `HEAD /nonce` a fresh nonce. Every other resource (`/new-acct`, `/new-order`, …) is
    /// for the test to route. Returns the directory URL. Routes added before this win.
    pub fn acme(&self) -> String {
        let directory = serde_json::json!({
            "newNonce": self.url("/nonce"),
            "newAccount": self.url("/new-acct"),
            "newOrder": self.url("/new-order"),
            "revokeCert": self.url("/revoke"),
            "keyChange": self.url("/key-change"),
        });
        self.route("GET", "/dir", Answer::json(200, &directory));
        self.route(
            "HEAD",
            "/nonce",
            Answer::Full {
                status: 200,
                headers: vec![("replay-nonce".into(), "hostile-nonce".into())],
                body: Vec::new(),
            },
        );
        self.url("/dir")
    }

    /// Every request so far, `METHOD PATH`, in arrival order.
    pub fn seen(&self) -> Vec<String> {
        self.shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Bytes of endless bodies written so far (what the client read, give or take the
    /// socket buffers).
    pub fn streamed(&self) -> u64 {
        self.shared.streamed.load(Ordering::Relaxed)
    }
}

/// Requests on one keep-alive connection, until the client goes or an answer ends it.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, shared: &Shared) {
    let mut buffer = Vec::new();
    loop {
        let Some((method, path, consumed)) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        buffer.drain(..consumed);
        let head_only = method == "HEAD";
        match shared.answer(&method, &path) {
            Answer::Full {
                status,
                headers,
                body,
            } => {
                let mut head = status_line(status);
                for (name, value) in &headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
                let mut bytes = head.into_bytes();
                if !head_only {
                    bytes.extend_from_slice(&body);
                }
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Answer::StallMidBody { status } => {
                let head = format!(
                    "{}content-type: application/json\r\ncontent-length: 4096\r\n\r\n{{\"status\":\"valid\",\"padding\":\"",
                    status_line(status)
                );
                let mut bytes = head.into_bytes();
                bytes.resize(bytes.len() + 70, b'x');
                let _ = stream.write_all(&bytes).await;
                let _ = stream.flush().await;
                std::future::pending::<()>().await;
            }
            Answer::Endless { status } => {
                let head = format!(
                    "{}content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                    status_line(status)
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = format!("{:x}\r\n", 64 * 1024).into_bytes();
                chunk.resize(chunk.len() + 64 * 1024, b' ');
                chunk.extend_from_slice(b"\r\n");
                while stream.write_all(&chunk).await.is_ok() {
                    shared.streamed.fetch_add(64 * 1024, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    format!("HTTP/1.1 {status} {reason}\r\n")
}

/// Reads one request (head and `content-length` body) into `buffer`: `(method, path without
/// query, bytes used)`, or `None` when the client closed or sent nonsense.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &mut Vec<u8>,
) -> Option<(String, String, usize)> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let mut words = head.split_whitespace();
            let method = words.next()?.to_owned();
            let target = words.next()?;
            let path = target.split('?').next().unwrap_or(target).to_owned();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + length;
            while buffer.len() < total {
                let read = stream.read(&mut chunk).await.ok()?;
                if read == 0 {
                    return None;
                }
                buffer.extend_from_slice(&chunk[..read]);
            }
            return Some((method, path, total));
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
