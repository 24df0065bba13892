//! Where time comes from. The pipeline, the store and the agent read the time only through a
//! [`Clock`] handed to them, so tests can run days of schedules, Retry-After waits and retry
//! backoff in milliseconds (tokio's paused time) instead of reading the wall clock.

use time::OffsetDateTime;

/// Where time comes from: the wall clock in production; tokio's (pausable) clock in tests.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Wall time at creation plus tokio's elapsed time: under `tokio::time::pause` it moves only
/// when the test (or auto-advance) moves it. Unpaused, it is a monotonic clock anchored at
/// `wall`: a renewal run started at the agent's `now` keeps counting from there, and a step
/// of the system clock during the run does not make a wait negative.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: OffsetDateTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(wall: OffsetDateTime) -> Self {
        Self {
            wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.wall + elapsed
    }
}
