//! A round-robin TCP balancer: the load balancer in front of a fleet's web hosts, put on
//! Pebble's http-01 port so that the CA's validation may reach any host. Each connection goes
//! to the next backend in turn (a stand-in for HAProxy or a cloud balancer: the tests only need
//! "any host may be asked"). It notes which backend took each connection and the status line
//! that backend answered, so a test can see that every host served a token.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Every read and connect has a deadline: a stuck side never holds a test.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection the balancer passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub backend: usize,
    /// The first line the backend answered (`HTTP/1.1 200 OK`), or why there was none.
    pub status: String,
}

pub struct Balancer {
    listen: SocketAddr,
    /// Backends taken out of the rotation (as a health check would after a host died).
    retired: Arc<Mutex<Vec<usize>>>,
    routed: Arc<Mutex<Vec<Routed>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Balancer {
    /// Listens on 127.0.0.1:`port` and passes each connection to the next of `backends`.
    pub fn start(port: u16, backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|err| panic!("balancer: cannot listen on port {port}: {err}"));
        let listen = listener.local_addr().unwrap();
        let routed: Arc<Mutex<Vec<Routed>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let next = AtomicUsize::new(0);
        let retired: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (log, stopped, out) = (routed.clone(), stop.clone(), retired.clone());
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let in_rotation: Vec<usize> = (0..backends.len())
                    .filter(|index| !out.lock().unwrap().contains(index))
                    .collect();
                if in_rotation.is_empty() {
                    continue;
                }
                let backend = in_rotation[next.fetch_add(1, Ordering::SeqCst) % in_rotation.len()];
                let addr = backends[backend];
                let log = log.clone();
                std::thread::spawn(move || {
                    let note =
                        |status: String| log.lock().unwrap().push(Routed { backend, status });
                    relay(client, addr, note);
                });
            }
        });
        Self {
            listen,
            retired,
            routed,
            stop,
            thread: Some(thread),
        }
    }

    /// The connections passed on so far, in the order their backends answered.
    pub fn routed(&self) -> Vec<Routed> {
        self.routed.lock().unwrap().clone()
    }

    /// Takes backend `index` out of the rotation.
    pub fn retire(&self, index: usize) {
        self.retired.lock().unwrap().push(index);
    }

    pub fn addr(&self) -> SocketAddr {
        self.listen
    }
}

/// Copies both ways between `client` and the backend at `addr`; notes the backend's first
/// line as soon as it is read (or why there was none).
fn relay(client: TcpStream, addr: SocketAddr, note: impl FnOnce(String)) {
    let backend = match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
        Ok(backend) => backend,
        Err(err) => return note(format!("cannot connect to {addr}: {err}")),
    };
    for stream in [&client, &backend] {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_nodelay(true);
    }
    let (mut upstream_in, mut upstream_out) =
        (client.try_clone().unwrap(), backend.try_clone().unwrap());
    let forward = std::thread::spawn(move || {
        let _ = std::io::copy(&mut upstream_in, &mut upstream_out);
        let _ = upstream_out.shutdown(Shutdown::Write);
    });
    let (mut from_backend, mut to_client) = (backend, client);
    let mut note = Some(note);
    let mut buffer = [0u8; 8192];
    loop {
        match from_backend.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                if let Some(note) = note.take() {
                    let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
                    note(text.lines().next().unwrap_or_default().to_owned());
                }
                if to_client.write_all(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    }
    if let Some(note) = note.take() {
        note("no answer".to_owned());
    }
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = forward.join();
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
