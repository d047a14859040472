//! Time, as the engine reads it: the system clock in production, a manual one in tests and the
//! demo (hours of reminders in seconds).

use chrono::{DateTime, Utc};

/// A source of time, so tests and the demo can run hours of reminders in seconds.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
