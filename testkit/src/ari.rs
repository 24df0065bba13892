//! A stand-in for a CA's ACME Renewal Information (RFC 9773), because Debian's Pebble 2.4
//! has none (`/renewal-info/` answers 404). It serves Pebble's own directory with a
//! `renewalInfo` URL added that points here, and answers `GET /renewal-info/ID` with the
//! window a test sets. Every other ACME request goes straight to Pebble.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::pebble::Pebble;
use super::serve::Background;

#[derive(Debug, Clone)]
struct Window {
    start: OffsetDateTime,
    end: OffsetDateTime,
    retry_after_secs: u64,
}

/// The running stand-in; stops when dropped.
pub struct AriServer {
    addr: SocketAddr,
    window: Arc<Mutex<Window>>,
    hits: Arc<AtomicUsize>,
    bundle: PathBuf,
    _server: Background,
}

impl AriServer {
    /// Starts in front of `pebble`; writes into `dir` a CA bundle trusting both Pebble's
    /// HTTPS root and this server's own (use it as `ca_bundle`).
    pub fn start(pebble: &Pebble, dir: &Path, start: OffsetDateTime, end: OffsetDateTime) -> Self {
        let root_params = {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "evercert test ARI root");
            params
        };
        let root = CertifiedIssuer::self_signed(root_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &root)
            .unwrap();
        let bundle = dir.join("ca-bundle-with-ari.pem");
        let pebble_root = std::fs::read_to_string(pebble.ca_bundle_path()).unwrap();
        std::fs::write(&bundle, format!("{pebble_root}\n{}", root.pem())).unwrap();

        let directory: serde_json::Value = pebble.get(&pebble.directory_url()).json();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut directory = directory;
        directory["renewalInfo"] =
            serde_json::Value::String(format!("https://{addr}/renewal-info"));
        let directory = Arc::new(serde_json::to_vec(&directory).unwrap());

        let window = Arc::new(Mutex::new(Window {
            start,
            end,
            retry_after_secs: 3600,
        }));
        let hits = Arc::new(AtomicUsize::new(0));
        let config = super::tls::server_config(&leaf.pem(), &leaf_key.serialize_pem());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (served_window, served_hits) = (window.clone(), hits.clone());
        let server = Background::spawn("ari-stand-in", listener, move |stream| {
            let acceptor = acceptor.clone();
            let (directory, window, hits) = (
                directory.clone(),
                served_window.clone(),
                served_hits.clone(),
            );
            async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let path = request.uri().path().to_owned();
                    let response = if path == "/dir" {
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(directory.as_ref().clone())))
                    } else if path.starts_with("/renewal-info/") {
                        hits.fetch_add(1, Ordering::SeqCst);
                        let window = window.lock().unwrap().clone();
                        let body = serde_json::json!({"suggestedWindow": {
                            "start": window.start.format(&Rfc3339).unwrap(),
                            "end": window.end.format(&Rfc3339).unwrap(),
                        }});
                        Response::builder()
                            .header("content-type", "application/json")
                            .header("retry-after", window.retry_after_secs.to_string())
                            .body(Full::new(Bytes::from(body.to_string())))
                    } else {
                        Response::builder()
                            .status(404)
                            .body(Full::new(Bytes::new()))
                    };
                    async move { response }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        });
        Self {
            addr,
            window,
            hits,
            bundle,
            _server: server,
        }
    }

    /// The directory URL to configure: Pebble's directory plus `renewalInfo`.
    pub fn directory_url(&self) -> String {
        format!("https://{}/dir", self.addr)
    }

    /// A CA bundle trusting Pebble and this server.
    pub fn ca_bundle(&self) -> &Path {
        &self.bundle
    }

    pub fn set_window(&self, start: OffsetDateTime, end: OffsetDateTime) {
        let mut window = self.window.lock().unwrap();
        window.start = start;
        window.end = end;
    }

    /// How many renewal-info requests were answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}
