//! Alert delivery off the agent's loop: a bounded queue and a task that delivers from it,
//! several at once, each with a deadline.
//!
//! Why: an alert command that hangs or a webhook that stalls must delay neither the scan
//! (the next alert, the next renewal) nor the other alerts. The loop only decides and
//! enqueues (and writes the alert to the log at once); the delivery task runs up to
//! [`MAX_CONCURRENT`] deliveries side by side, so one hung channel holds one slot until its
//! deadline, not the queue.
//!
//! When the queue is full (the channels are hung and alerts keep coming), the *oldest*
//! waiting alert is dropped, with a log line naming it: the newest alert describes the
//! certificate's current state (an `expired` after a `warning`), which is what the operator
//! must see first. Every alert was already written to the log when it was decided.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use crate::alerts::{Alert, Alerter};

/// Alerts waiting for delivery at most; beyond, the oldest is dropped.
pub const CAPACITY: usize = 1024;
/// Deliveries in flight at once.
pub const MAX_CONCURRENT: usize = 8;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One thing to deliver.
pub trait Delivery: Send + 'static {
    /// Delivers to every channel.
    fn deliver(self) -> BoxFuture<()>;
    /// Given up on after this (the channels have their own timeouts; this bounds the sum).
    fn deadline(&self) -> Duration;
    /// For log lines: which alert.
    fn describe(&self) -> String;
}

/// An alert and the channels configured when it was decided (a reload does not redirect
/// alerts already queued).
#[derive(Debug)]
pub struct AlertDelivery {
    pub alerter: Arc<Alerter>,
    pub alert: Alert,
}

impl Delivery for AlertDelivery {
    fn deliver(self) -> BoxFuture<()> {
        Box::pin(async move { self.alerter.deliver(&self.alert).await })
    }

    fn deadline(&self) -> Duration {
        self.alerter.delivery_deadline()
    }

    fn describe(&self) -> String {
        format!("the {:?} alert for {}", self.alert.event, self.alert.name).to_lowercase()
    }
}

struct Shared<D> {
    waiting: Mutex<VecDeque<D>>,
    wake: Notify,
    /// Alerts queued or being delivered.
    pending: AtomicUsize,
}

/// The queue and its delivery task; dropping it stops the task and every delivery in flight.
pub struct AlertQueue<D: Delivery = AlertDelivery> {
    shared: Arc<Shared<D>>,
    capacity: usize,
    concurrency: usize,
    worker: Option<JoinHandle<()>>,
}

impl<D: Delivery> std::fmt::Debug for AlertQueue<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertQueue")
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

impl<D: Delivery> Default for AlertQueue<D> {
    fn default() -> Self {
        Self::new(CAPACITY, MAX_CONCURRENT)
    }
}

impl<D: Delivery> AlertQueue<D> {
    /// A queue holding up to `capacity` waiting alerts, delivering `concurrency` at once. The
    /// task starts with the first alert (so that a queue can be made outside a runtime).
    pub fn new(capacity: usize, concurrency: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                waiting: Mutex::new(VecDeque::new()),
                wake: Notify::new(),
                pending: AtomicUsize::new(0),
            }),
            capacity: capacity.max(1),
            concurrency: concurrency.max(1),
            worker: None,
        }
    }

    /// Queues `delivery`; never waits. Must be called inside a tokio runtime.
    pub fn push(&mut self, delivery: D) {
        {
            let mut waiting = self
                .shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if waiting.len() >= self.capacity
                && let Some(dropped) = waiting.pop_front()
            {
                tracing::error!(
                    "{} alerts are waiting for delivery (the alert command or webhook is slow or hung): dropping the oldest, {}, to keep the newest; it is in this log",
                    self.capacity,
                    dropped.describe()
                );
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
            }
            waiting.push_back(delivery);
            self.shared.pending.fetch_add(1, Ordering::SeqCst);
        }
        if self.worker.is_none() {
            let shared = self.shared.clone();
            let concurrency = self.concurrency;
            self.worker = Some(tokio::spawn(deliver_all(shared, concurrency)));
        }
        self.shared.wake.notify_one();
    }

    /// Waits until every queued alert is delivered (or given up on), for at most `within`;
    /// returns how many were still pending. For a stop: an alert decided just before
    /// SIGTERM is recorded as sent, so it should get its chance to go out.
    pub async fn flush(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let pending = self.shared.pending.load(Ordering::SeqCst);
            if pending == 0 || tokio::time::Instant::now() >= deadline {
                return pending;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Alerts waiting (not counting those being delivered).
    pub fn waiting(&self) -> usize {
        self.shared
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<D: Delivery> Drop for AlertQueue<D> {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.abort();
        }
    }
}

/// Decrements a counter when dropped.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The delivery task: starts waiting deliveries while fewer than `concurrency` run.
async fn deliver_all<D: Delivery>(shared: Arc<Shared<D>>, concurrency: usize) {
    let mut running = JoinSet::new();
    loop {
        while running.len() < concurrency {
            let next = shared
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(delivery) = next else { break };
            let deadline = delivery.deadline();
            let what = delivery.describe();
            let shared = shared.clone();
            running.spawn(async move {
                // Counted down however the delivery ends (done, given up, aborted).
                let _done = Done(&shared.pending);
                if tokio::time::timeout(deadline, delivery.deliver())
                    .await
                    .is_err()
                {
                    tracing::error!(
                        "gave up delivering {what} after {} s: the alert command or webhook hangs",
                        deadline.as_secs()
                    );
                }
            });
        }
        tokio::select! {
            () = shared.wake.notified() => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery that takes `took` (forever: `None`) and records when it finished.
    struct Fake {
        id: u32,
        took: Option<Duration>,
        done: Arc<Mutex<Vec<(u32, tokio::time::Instant)>>>,
    }

    impl Delivery for Fake {
        fn deliver(self) -> BoxFuture<()> {
            Box::pin(async move {
                match self.took {
                    Some(took) => tokio::time::sleep(took).await,
                    None => std::future::pending().await,
                }
                self.done
                    .lock()
                    .unwrap()
                    .push((self.id, tokio::time::Instant::now()));
            })
        }

        fn deadline(&self) -> Duration {
            Duration::from_secs(30)
        }

        fn describe(&self) -> String {
            format!("alert {}", self.id)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_delivery_does_not_delay_the_others() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut queue = AlertQueue::new(16, 4);
        let start = tokio::time::Instant::now();
        queue.push(Fake {
            id: 0,
            took: None,
            done: done.clone(),
        });
        for id in 1..=5 {
            queue.push(Fake {
                id,
                took: Some(Duration::from_millis(100)),
                done: done.clone(),
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let finished = done.lock().unwrap().clone();
        let ids: Vec<u32> = finished.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 5, "{ids:?}");
        assert!(!ids.contains(&0));
        // Three slots beside the hung one: the fifth waits for one of the first three.
        assert!(
            finished
                .iter()
                .all(|(_, at)| *at - start <= Duration::from_millis(250)),
            "{finished:?}"
        );
        assert_eq!(queue.waiting(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn hung_deliveries_are_given_up_at_their_deadline() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut queue = AlertQueue::new(16, 1);
        queue.push(Fake {
            id: 0,
            took: None,
            done: done.clone(),
        });
        queue.push(Fake {
            id: 1,
            took: Some(Duration::ZERO),
            done: done.clone(),
        });
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(31)).await;
        let finished = done.lock().unwrap().clone();
        assert_eq!(finished.len(), 1, "{finished:?}");
        assert_eq!(finished[0].0, 1);
        // One slot: the second went out once the first was given up on, after 30 s.
        assert_eq!(finished[0].1 - start, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn flush_waits_for_deliveries_but_not_for_a_hung_one() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut queue = AlertQueue::new(16, 4);
        for id in 0..3 {
            queue.push(Fake {
                id,
                took: Some(Duration::from_millis(300)),
                done: done.clone(),
            });
        }
        assert_eq!(queue.flush(Duration::from_secs(2)).await, 0);
        assert_eq!(done.lock().unwrap().len(), 3);
        queue.push(Fake {
            id: 9,
            took: None,
            done: done.clone(),
        });
        let start = tokio::time::Instant::now();
        assert_eq!(queue.flush(Duration::from_secs(2)).await, 1);
        assert!(tokio::time::Instant::now() - start <= Duration::from_millis(2100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_the_oldest_waiting_alert() {
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut queue = AlertQueue::new(2, 1);
        // The one slot is held by a hung delivery; then 0..=3 arrive for a queue of two.
        queue.push(Fake {
            id: 100,
            took: None,
            done: done.clone(),
        });
        tokio::task::yield_now().await;
        for id in 0..=3 {
            queue.push(Fake {
                id,
                took: Some(Duration::ZERO),
                done: done.clone(),
            });
        }
        assert_eq!(queue.waiting(), 2);
        tokio::time::sleep(Duration::from_secs(31)).await;
        let ids: Vec<u32> = done.lock().unwrap().iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [2, 3]);
    }
}
