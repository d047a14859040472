//! A small client-side limiter that keeps us inside NexHealth's documented budgets, so that a
//! busy poll does not spend the practice's quota on 429s.
//!
//! Each budget is a GCRA (virtual scheduling) bucket: requests are spaced `interval` apart, with
//! up to `burst` allowed back to back. A request takes its slot before it waits, so concurrent
//! callers queue in order instead of all waking together.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// NexHealth's documented rate limits for one API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateBudget {
    /// Requests per second for the whole key (100).
    pub per_second: u32,
    /// Requests per minute to patients and appointments (1000).
    pub patients_per_minute: u32,
    /// Requests per minute to every other endpoint (2000).
    pub other_per_minute: u32,
}

impl Default for RateBudget {
    fn default() -> Self {
        Self {
            per_second: 100,
            patients_per_minute: 1000,
            other_per_minute: 2000,
        }
    }
}

impl RateBudget {
    /// No client-side limiting (tests, or a proxy that limits for us).
    pub const UNLIMITED: Self = Self {
        per_second: 0,
        patients_per_minute: 0,
        other_per_minute: 0,
    };
}

/// One budget: `rate` requests per `period`, bursts up to a tenth of the rate (at least 1).
#[derive(Debug)]
pub(crate) struct Bucket {
    interval: Duration,
    tolerance: Duration,
    /// The theoretical arrival time of the next request.
    tat: Mutex<Option<Instant>>,
}

impl Bucket {
    /// `None` when `rate` is 0 (unlimited).
    pub(crate) fn new(rate: u32, period: Duration) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let interval = period / rate;
        let burst = (rate / 10).max(1);
        Some(Self {
            interval,
            tolerance: interval * (burst - 1),
            tat: Mutex::new(None),
        })
    }

    /// Reserves the next slot and returns how long to wait for it.
    pub(crate) fn reserve(&self, now: Instant) -> Duration {
        let mut tat = self
            .tat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = tat.map_or(now, |t| t.max(now));
        *tat = Some(start + self.interval);
        // Allowed once `now >= start - tolerance`.
        let allowed_at = start.checked_sub(self.tolerance).unwrap_or(now);
        allowed_at.saturating_duration_since(now)
    }

    /// Waits for the next slot.
    pub(crate) async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The three buckets of a [`RateBudget`].
#[derive(Debug)]
pub(crate) struct Limiter {
    per_second: Option<Bucket>,
    patients: Option<Bucket>,
    other: Option<Bucket>,
}

impl Limiter {
    pub(crate) fn new(budget: RateBudget) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            per_second: Bucket::new(budget.per_second, Duration::from_secs(1)),
            patients: Bucket::new(budget.patients_per_minute, minute),
            other: Bucket::new(budget.other_per_minute, minute),
        }
    }

    /// Waits until a request to a patient-budget (or other) endpoint may go.
    pub(crate) async fn acquire(&self, patient_budget: bool) {
        let class = if patient_budget {
            &self.patients
        } else {
            &self.other
        };
        if let Some(b) = class {
            b.acquire().await;
        }
        if let Some(b) = &self.per_second {
            b.acquire().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_spaces_requests_by_the_interval() {
        // 100/s: interval 10 ms, burst 10.
        let b = Bucket::new(100, Duration::from_secs(1)).unwrap();
        let now = Instant::now();
        for i in 0..10 {
            assert_eq!(
                b.reserve(now),
                Duration::ZERO,
                "request {i} is within the burst"
            );
        }
        assert_eq!(b.reserve(now), Duration::from_millis(10));
        assert_eq!(b.reserve(now), Duration::from_millis(20));
        // After a quiet second the burst is available again.
        let later = now + Duration::from_secs(2);
        assert_eq!(b.reserve(later), Duration::ZERO);
    }

    #[test]
    fn per_minute_budgets_space_requests_evenly() {
        // 1000/min: 60 ms apart once the burst of 100 is spent.
        let b = Bucket::new(1000, Duration::from_secs(60)).unwrap();
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(b.reserve(now), Duration::ZERO);
        }
        assert_eq!(b.reserve(now), Duration::from_millis(60));
    }

    #[test]
    fn a_zero_rate_is_unlimited() {
        assert!(Bucket::new(0, Duration::from_secs(1)).is_none());
    }

    #[tokio::test]
    async fn the_limiter_holds_callers_to_the_per_second_budget() {
        // 20/s with a burst of 2: five requests need at least (5 - 2) * 50 ms.
        let limiter = Limiter::new(RateBudget {
            per_second: 20,
            patients_per_minute: 0,
            other_per_minute: 0,
        });
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire(false).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(145), "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
}
