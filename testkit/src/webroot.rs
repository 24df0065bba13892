//! A stand-in for the web server in front of an http-01 webroot: a tiny static HTTP/1.1
//! server on 127.0.0.1 that serves the files below one directory (GET only, one request per
//! connection) and records every request, so tests can see what the CA's validator fetched.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub path: String,
    pub status: u16,
    /// The body sent (empty for errors).
    pub body: String,
}

/// The running server; stops when dropped.
pub struct WebrootServer {
    addr: SocketAddr,
    served: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebrootServer {
    /// Serves `root` on `127.0.0.1:port` (port 0: any free port).
    pub fn start(root: &Path, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|err| panic!("bind 127.0.0.1:{port} for the webroot server: {err}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let served: Arc<Mutex<Vec<Served>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping, root) = (served.clone(), stop.clone(), root.to_owned());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (log, root) = (log.clone(), root.clone());
                        std::thread::spawn(move || answer(stream, &root, &log));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
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

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request answered so far.
    pub fn served(&self) -> Vec<Served> {
        self.served
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for WebrootServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(mut stream: TcpStream, root: &Path, log: &Mutex<Vec<Served>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut parts = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let file = (method == "GET").then(|| local_path(root, path)).flatten();
    let (status, body) = match file.map(std::fs::read) {
        Some(Ok(bytes)) => (200, bytes),
        _ => (404, Vec::new()),
    };
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let mut response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let _ = stream.write_all(&response);
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Served {
            path: path.to_owned(),
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
}

/// `root` + the URL path, refusing anything that could leave `root`.
fn local_path(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.split('?').next()?.strip_prefix('/')?);
    relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)))
        .then(|| root.join(relative))
}
