//! The accept loop of the in-process test servers (the hostile server, the ARI stand-in,
//! [`super::certs::TlsServer`]): a thread of its own with a current-thread tokio runtime, one
//! task per connection, stopped and joined when dropped. Dropping the runtime drops every
//! connection, stalled ones included, so a test never leaves a server behind.

use std::future::Future;
use std::thread::JoinHandle;

/// A running accept loop; stops when dropped.
pub struct Background {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Accepts on `listener` (already bound, so its port is known before this returns) and
    /// runs `on_connection` as a task for each connection. A failed accept is skipped.
    pub fn spawn<F, Fut>(name: &str, listener: std::net::TcpListener, on_connection: F) -> Self
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        listener
            .set_nonblocking(true)
            .expect("a nonblocking listener for the test server");
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the test server");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("a tokio listener for the test server");
                    loop {
                        tokio::select! {
                            _ = &mut stop => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                tokio::spawn(on_connection(stream));
                            }
                        }
                    }
                });
                drop(runtime);
            })
            .expect("spawn the test server's thread");
        Self {
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
