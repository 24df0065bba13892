//! The accept loop shared by evercert's small servers (`/metrics`, the http-01 and
//! tls-alpn-01 responders): it must keep answering when clients are slow, many, or both.
//!
//! - Every connection has a deadline ([`CONNECTION_DEADLINE`]); HTTP servers also get a
//!   header-read timeout ([`HEADER_TIMEOUT`], see [`http1_builder`]).
//! - At most `max_connections` are open at once. Over the cap, the *oldest connection that
//!   has not yet sent a complete request* is closed to make room (a slowloris client holds a
//!   slot only until newer clients need it); when every slot is busy answering a request, the
//!   new connection is closed at once. Waiting instead would queue a scrape or a CA's
//!   validation behind every idle client in the listen backlog; refusing the newcomer
//!   instead would let a few hundred idle sockets lock out the real clients until the
//!   header timeout.
//! - Accept errors from exhausted resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) pause the loop
//!   for [`ACCEPT_BACKOFF`] and are logged once per episode, instead of retrying in a tight
//!   loop that spins a core; dropping idle connections frees descriptors meanwhile.
//!
//! Connections are tasks of the loop's own [`JoinSet`]: aborting the loop's task (the agent
//! stopping or rebinding on SIGHUP) closes them all.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may stay open at all, whatever it does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// The pause after an accept error caused by exhausted resources.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections waiting for their request, oldest first, with the signal that closes them.
type Idle = Arc<Mutex<BTreeMap<u64, oneshot::Sender<()>>>>;

/// Handed to a connection's handler: [`Slot::busy`] marks the connection as serving a
/// request, so that it is no longer closed to make room for newer ones. Keep it for the
/// connection's life: dropping it counts as [`Slot::busy`].
#[derive(Debug)]
pub struct Slot {
    id: u64,
    idle: Idle,
}

impl Slot {
    /// The request has arrived: keep this connection until it is answered.
    pub fn busy(&self) {
        // Dropping the sender disables the eviction branch without firing it.
        lock(&self.idle).remove(&self.id);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.idle).remove(&self.id);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An HTTP/1 server builder with the header-read timeout on (hyper ignores it without a
/// timer) and one request per connection, so that a connection is either waiting for its
/// request (and may be closed to make room) or answering it.
pub fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(false);
    builder
}

/// Whether an accept error means "out of descriptors or memory" (wait, then retry) rather
/// than "this one connection failed" (retry at once).
fn is_exhaustion(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
            || code == rustix::io::Errno::NOBUFS.raw_os_error()
            || code == rustix::io::Errno::NOMEM.raw_os_error()
    ) || err.kind() == ErrorKind::OutOfMemory
}

/// Accepts connections on `listener` forever, running `handle` for each under the limits
/// above. `what` names the server in log lines ("metrics", "http-01 responder").
pub async fn serve<H, F>(
    listener: TcpListener,
    what: &'static str,
    max_connections: usize,
    handle: H,
) where
    H: Fn(TcpStream, Slot) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let idle: Idle = Arc::default();
    let mut connections = JoinSet::new();
    let mut next_id: u64 = 0;
    let mut exhausted = false;
    let mut full_logged = false;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) if is_exhaustion(&err) => {
                if !exhausted {
                    tracing::warn!(
                        "{what} on {}: cannot accept connections: {err}; pausing accepts, \
                         closing idle clients (raise LimitNOFILE= if this persists)",
                        listen_addr(&listener)
                    );
                    exhausted = true;
                }
                evict_oldest(&idle);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            // A client that reset before being accepted, and the like: only that one failed.
            Err(_) => continue,
        };
        if exhausted {
            tracing::info!("{what}: accepting connections again");
            exhausted = false;
        }
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !full_logged {
                    tracing::warn!(
                        "{what} on {}: {max_connections} connections open; closing the \
                         oldest idle ones to make room",
                        listen_addr(&listener)
                    );
                    full_logged = true;
                }
                if !evict_oldest(&idle) {
                    // Every slot is answering a request: this client tries again later.
                    continue;
                }
                // The evicted connection releases its permit as soon as its task sees the
                // signal; a second is ample even on a loaded machine.
                match tokio::time::timeout(Duration::from_secs(1), permits.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        tracing::debug!("{what}: no connection slot freed within 1 s");
                        continue;
                    }
                }
            }
        };
        if permits.available_permits() > max_connections / 2 {
            full_logged = false;
        }
        let id = next_id;
        next_id += 1;
        let (evict, evicted) = oneshot::channel();
        lock(&idle).insert(id, evict);
        let slot = Slot {
            id,
            idle: idle.clone(),
        };
        let connection = handle(stream, slot);
        connections.spawn(async move {
            let _permit = permit;
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_DEADLINE, connection) => {}
                // Only a sent signal closes; a dropped sender (the request arrived) does not.
                Ok(()) = evicted => {}
            }
        });
    }
}

/// Signals the oldest connection still waiting for its request to close; false when none is.
fn evict_oldest(idle: &Idle) -> bool {
    loop {
        let Some((_, evict)) = lock(idle).pop_first() else {
            return false;
        };
        // A connection that ended meanwhile has dropped its receiver: try the next.
        if evict.send(()).is_ok() {
            return true;
        }
    }
}

fn listen_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |addr| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server that answers "ok" once a line has arrived, marking the slot busy then.
    async fn start(max: usize) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            "test",
            max,
            |mut stream, slot| async move {
                let mut byte = [0u8; 1];
                loop {
                    match stream.read(&mut byte).await {
                        Ok(1) if byte[0] == b'\n' => break,
                        Ok(1) => {}
                        _ => return,
                    }
                }
                slot.busy();
                let _ = stream.write_all(b"ok").await;
            },
        ));
        addr
    }

    #[tokio::test]
    async fn idle_clients_over_the_cap_make_room_for_a_real_one() {
        let addr = start(8).await;
        let mut idle = Vec::new();
        for _ in 0..40 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"GET /hal").await.unwrap();
            idle.push(stream);
        }
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /\n").await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer))
            .await
            .expect("answered while 40 idle clients compete for 8 slots")
            .unwrap();
        assert_eq!(answer, b"ok");
        // The oldest idle clients were closed to make room.
        let mut closed = 0;
        for stream in &mut idle {
            let mut buf = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buf)).await
            {
                closed += 1;
            }
        }
        assert!(closed >= 32, "only {closed} of 40 idle clients were closed");
    }

    #[tokio::test]
    async fn a_busy_connection_is_not_closed_for_a_newcomer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (release, released) = tokio::sync::watch::channel(false);
        tokio::spawn(serve(listener, "test", 1, move |mut stream, slot| {
            let mut released = released.clone();
            async move {
                slot.busy();
                let _ = released.wait_for(|done| *done).await;
                let _ = stream.write_all(b"done").await;
            }
        }));
        let mut first = TcpStream::connect(addr).await.unwrap();
        // Let the first connection be accepted and marked busy.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        // The newcomer is closed: the only slot is busy.
        tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut buf))
            .await
            .expect("the newcomer is closed")
            .ok();
        assert!(buf.is_empty());
        release.send(true).unwrap();
        let mut answer = Vec::new();
        first.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"done");
    }

    #[test]
    fn descriptor_exhaustion_is_told_apart_from_a_failed_connection() {
        let emfile = std::io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error());
        let enfile = std::io::Error::from_raw_os_error(rustix::io::Errno::NFILE.raw_os_error());
        let aborted =
            std::io::Error::from_raw_os_error(rustix::io::Errno::CONNABORTED.raw_os_error());
        assert!(is_exhaustion(&emfile));
        assert!(is_exhaustion(&enfile));
        assert!(!is_exhaustion(&aborted));
    }
}
