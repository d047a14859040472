//! The one retry policy every connector uses: exponential backoff with jitter, a cap on attempts
//! and a cap on the total time spent waiting, below the runner's 60 s lease.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder, Retryable as _};

/// What a failed attempt says about trying again. Each connector derives it from its own error
/// table (`Error::kind()`), through [`Retryable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryHint {
    /// Retrying cannot help, or is not safe (a non-idempotent write without a key): stop.
    Stop,
    /// Nothing happened on the other side: try again, not before `after` when the server said so.
    Retry {
        /// The server's `Retry-After`, when it gave one.
        after: Option<Duration>,
    },
}

/// An error that can say whether the call that failed may be repeated.
pub trait Retryable {
    /// Whether, and how soon, to try again.
    fn retry_hint(&self) -> RetryHint;
}

/// Exponential backoff with jitter, bounded by attempts and by total waiting time.
///
/// The total cap keeps one logical call inside the runner's lease (60 s): the default allows 20 s
/// of waiting. A server's `Retry-After` is honoured, but never past the remaining budget: when the
/// server asks for longer, [`RetryPolicy::run`] stops at once and returns that (transient) error,
/// whose own `retry_after` lets the caller reschedule durably instead of holding the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    min_delay: Duration,
    max_delay: Duration,
    max_attempts: u32,
    max_total_wait: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    /// From 0.5 s doubling up to 5 s (jitter adds up to as much again), three attempts, at most
    /// 20 s of waiting in all.
    fn default() -> Self {
        Self::new()
    }
}

impl RetryPolicy {
    /// The default cap on total waiting: well below the runner's 60 s lease, leaving room for the
    /// attempts themselves.
    pub const DEFAULT_MAX_TOTAL_WAIT: Duration = Duration::from_secs(20);

    /// Exactly one attempt, never a retry: for an embedder that retries durably itself (retries
    /// in one layer, not two).
    pub const fn none() -> Self {
        Self::new().max_attempts(1).max_total_wait(Duration::ZERO)
    }

    /// The default policy, usable in a `const`: see [`RetryPolicy::default`].
    pub const fn new() -> Self {
        Self {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            max_attempts: 3,
            max_total_wait: Self::DEFAULT_MAX_TOTAL_WAIT,
            jitter: true,
        }
    }

    /// The delay before the first retry (before jitter).
    #[must_use]
    pub const fn min_delay(mut self, delay: Duration) -> Self {
        self.min_delay = delay;
        self
    }

    /// No backoff step exceeds this (before jitter).
    #[must_use]
    pub const fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Attempts in all, the first included; `1` never retries (`0` is read as `1`).
    #[must_use]
    pub const fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = if attempts == 0 { 1 } else { attempts };
        self
    }

    /// The most time spent waiting between attempts, `Retry-After` included.
    #[must_use]
    pub const fn max_total_wait(mut self, wait: Duration) -> Self {
        self.max_total_wait = wait;
        self
    }

    /// Whether each delay gets a random extra of up to itself (default on; tests turn it off).
    #[must_use]
    pub const fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// Attempts in all, the first included.
    pub const fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The cap on total waiting.
    pub const fn total_wait_cap(&self) -> Duration {
        self.max_total_wait
    }

    /// Runs `op` (given the 1-based attempt number) until it succeeds, its error says
    /// [`RetryHint::Stop`], the attempts run out, or the next wait would pass the total budget.
    ///
    /// Only pass calls that are idempotent or carry an idempotency key; the connector decides.
    ///
    /// # Errors
    /// The last attempt's error, unchanged.
    pub async fn run<T, E, F, Fut>(&self, mut op: F) -> Result<T, E>
    where
        E: Retryable,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut backoff = ExponentialBuilder::new()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize);
        if self.jitter {
            backoff = backoff.with_jitter();
        }
        let attempt = AtomicU32::new(0);
        let budget = self.max_total_wait;
        let mut spent = Duration::ZERO;
        (|| op(attempt.fetch_add(1, Ordering::Relaxed) + 1))
            .retry(backoff.build())
            .sleep(tokio::time::sleep)
            .when(|e: &E| matches!(e.retry_hint(), RetryHint::Retry { .. }))
            .adjust(|e: &E, next: Option<Duration>| {
                let step = next?;
                let wait = match e.retry_hint() {
                    RetryHint::Retry {
                        after: Some(server),
                    } => server.max(step),
                    _ => step,
                };
                // Never sleep past the budget: the caller gets the error (with its
                // Retry-After) and reschedules durably.
                if spent.saturating_add(wait) > budget {
                    return None;
                }
                spent += wait;
                Some(wait)
            })
            .notify(|_: &E, wait: Duration| {
                tracing::debug!(
                    attempt = attempt.load(Ordering::Relaxed),
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "retrying"
                );
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use tokio::time::Instant;

    use super::*;

    #[derive(Debug, PartialEq)]
    struct Failure(RetryHint);

    impl Retryable for Failure {
        fn retry_hint(&self) -> RetryHint {
            self.0
        }
    }

    const TRANSIENT: Failure = Failure(RetryHint::Retry { after: None });

    fn steady(step: Duration) -> RetryPolicy {
        RetryPolicy::default()
            .min_delay(step)
            .max_delay(step)
            .jitter(false)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_max_attempts() {
        // Arrange
        let policy = steady(Duration::from_millis(10)).max_attempts(4);
        let calls = AtomicU32::new(0);

        // Act
        let out: Result<(), Failure> = policy
            .run(|_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(TRANSIENT)
            })
            .await;

        // Assert
        assert_eq!(out, Err(TRANSIENT));
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_after_transient_failures_is_returned_with_attempt_numbers_counted() {
        // Arrange
        let policy = steady(Duration::from_millis(10)).max_attempts(5);

        // Act
        let out: Result<u32, Failure> = policy
            .run(|attempt| async move {
                if attempt < 3 {
                    Err(TRANSIENT)
                } else {
                    Ok(attempt)
                }
            })
            .await;

        // Assert
        assert_eq!(out, Ok(3));
    }

    #[tokio::test(start_paused = true)]
    async fn total_waiting_never_passes_the_cap_however_many_attempts_are_allowed() {
        // Arrange: 4 s steps, 100 attempts, 10 s budget: two waits fit, a third would not.
        let policy = steady(Duration::from_secs(4))
            .max_attempts(100)
            .max_total_wait(Duration::from_secs(10));
        let calls = AtomicU32::new(0);
        let started = Instant::now();

        // Act
        let out: Result<(), Failure> = policy
            .run(|_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(TRANSIENT)
            })
            .await;

        // Assert
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 3);
        assert_eq!(started.elapsed(), Duration::from_secs(8));
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_policy_waits_well_under_the_runners_lease_even_with_jitter() {
        // Arrange
        let policy = RetryPolicy::default().max_attempts(1000);
        let started = Instant::now();

        // Act
        let _: Result<(), Failure> = policy.run(|_| async { Err(TRANSIENT) }).await;

        // Assert
        assert!(started.elapsed() <= RetryPolicy::DEFAULT_MAX_TOTAL_WAIT);
        assert!(RetryPolicy::DEFAULT_MAX_TOTAL_WAIT < Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_longer_than_the_budget_stops_at_once_and_keeps_the_hint() {
        // Arrange
        let policy = steady(Duration::from_millis(10)).max_total_wait(Duration::from_secs(20));
        let slow = RetryHint::Retry {
            after: Some(Duration::from_secs(120)),
        };
        let calls = AtomicU32::new(0);
        let started = Instant::now();

        // Act
        let out: Result<(), Failure> = policy
            .run(|_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(Failure(slow))
            })
            .await;

        // Assert
        assert_eq!(out, Err(Failure(slow)));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_within_the_budget_is_waited_out_in_full() {
        // Arrange
        let policy = steady(Duration::from_millis(10)).max_attempts(2);
        let calls = AtomicU32::new(0);
        let started = Instant::now();

        // Act
        let out: Result<(), Failure> = policy
            .run(|_| async {
                if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                    Err(Failure(RetryHint::Retry {
                        after: Some(Duration::from_secs(3)),
                    }))
                } else {
                    Ok(())
                }
            })
            .await;

        // Assert
        assert_eq!(out, Ok(()));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn non_transient_errors_are_never_retried() {
        // Arrange
        let policy = steady(Duration::from_millis(10)).max_attempts(5);
        let calls = AtomicU32::new(0);

        // Act
        let out: Result<(), Failure> = policy
            .run(|_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(Failure(RetryHint::Stop))
            })
            .await;

        // Assert
        assert_eq!(out, Err(Failure(RetryHint::Stop)));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_none_policy_makes_exactly_one_attempt() {
        // Arrange
        let calls = AtomicU32::new(0);

        // Act
        let _: Result<(), Failure> = RetryPolicy::none()
            .run(|_| async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(TRANSIENT)
            })
            .await;

        // Assert
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
