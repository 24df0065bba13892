//! A stand-in for nginx: a TLS server on loopback that serves whatever key and certificate
//! are at two paths. `Reload::OnEveryHandshake` re-reads them for each connection (like a
//! server reloaded at once); `Reload::Never` keeps what it read at start (a reload that did
//! not take, for testing evercert's verify-and-roll-back); `Reload::Lingering` alternates the
//! pair it read at start and the new one on successive connections once the files change,
//! like the old workers of a graceful nginx reload, until it settles (or never).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    OnEveryHandshake,
    Never,
    /// Once the files hold another pair, connections alternate between the pair read at
    /// start and the new one (the first gets the old one), for `settle_after` connections
    /// (`None`: forever); after that only the new one is served.
    Lingering {
        settle_after: Option<usize>,
    },
}

/// Which pair one connection got, in `Reload::Lingering` mode, after the files changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Old,
    New,
}

#[derive(Debug)]
struct FileResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    fixed: Option<Arc<CertifiedKey>>,
    lingering: Option<Lingering>,
}

#[derive(Debug)]
struct Lingering {
    old: Arc<CertifiedKey>,
    settle_after: Option<usize>,
    served: Arc<Mutex<Vec<Served>>>,
}

impl Lingering {
    fn choose(&self, new: Arc<CertifiedKey>) -> Arc<CertifiedKey> {
        if new.cert == self.old.cert {
            return new;
        }
        let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        let n = served.len();
        let settled = self.settle_after.is_some_and(|settle| n >= settle);
        let pick = if settled || n % 2 == 1 {
            Served::New
        } else {
            Served::Old
        };
        served.push(pick);
        match pick {
            Served::New => new,
            Served::Old => self.old.clone(),
        }
    }
}

fn load(cert_path: &Path, key_path: &Path) -> Option<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .ok()?
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_file(key_path).ok()?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    CertifiedKey::from_der(chain, key, &provider)
        .ok()
        .map(Arc::new)
}

impl ResolvesServerCert for FileResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match (&self.fixed, &self.lingering) {
            (Some(fixed), _) => Some(fixed.clone()),
            (None, Some(lingering)) => {
                load(&self.cert_path, &self.key_path).map(|new| lingering.choose(new))
            }
            (None, None) => load(&self.cert_path, &self.key_path),
        }
    }
}

/// The running server; stops when dropped.
pub struct FileTlsServer {
    addr: SocketAddr,
    served: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileTlsServer {
    pub fn start(cert_path: &Path, key_path: &Path, reload: Reload) -> Self {
        let initial = || load(cert_path, key_path).expect("the initial pair must load");
        let served = Arc::new(Mutex::new(Vec::new()));
        let (fixed, lingering) = match reload {
            Reload::Never => (Some(initial()), None),
            Reload::OnEveryHandshake => (None, None),
            Reload::Lingering { settle_after } => {
                let lingering = Lingering {
                    old: initial(),
                    settle_after,
                    served: served.clone(),
                };
                (None, Some(lingering))
            }
        };
        let resolver = Arc::new(FileResolver {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            fixed,
            lingering,
        });
        let config = super::tls::server_builder().with_cert_resolver(resolver);
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                        let Ok(mut connection) = rustls::ServerConnection::new(config.clone())
                        else {
                            continue;
                        };
                        // Only the handshake matters: the client reads the certificate.
                        while connection.is_handshaking() {
                            if connection.complete_io(&mut stream).is_err() {
                                break;
                            }
                        }
                        connection.send_close_notify();
                        let _ = connection.complete_io(&mut stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            addr,
            served,
            stop,
            thread: Some(thread),
        }
    }

    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// `Reload::Lingering`: which pair each connection got since the files changed.
    pub fn served_after_change(&self) -> Vec<Served> {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for FileTlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
