//! The one vocabulary every connector uses to classify failures.
//!
//! Each connector crate has its own `Error` with a `kind()` that returns [`ErrorKind`], from one
//! table per crate (see STYLE.md). The orchestrator and the waterfall only look at the kind.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// How a failed external call should be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Nothing happened on the other side, or repeating the call is safe: retry with backoff.
    Transient {
        /// The server's `Retry-After`, when it gave one: wait at least this long.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (bad request, bad credentials, a changed vendor shape): a person must act.
    Permanent,
    /// The call may or may not have taken effect (a timeout or 5xx after a non-idempotent POST):
    /// reconcile by lookup before acting again, never blind-retry.
    Indeterminate,
}

impl ErrorKind {
    /// A transient kind without a server-given delay.
    pub const TRANSIENT: Self = Self::Transient { retry_after: None };

    /// True for [`ErrorKind::Transient`].
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The server's requested delay, for transient errors that carried one.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Self::Transient { retry_after } => retry_after,
            _ => None,
        }
    }

    /// A short stable label for metrics and staff tasks (`transient`, `permanent`, `indeterminate`).
    pub fn label(self) -> &'static str {
        match self {
            Self::Transient { .. } => "transient",
            Self::Permanent => "permanent",
            Self::Indeterminate => "indeterminate",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Anything that can say which [`ErrorKind`] it is.
pub trait Classify {
    /// The classification of this failure.
    fn kind(&self) -> ErrorKind;
}

/// A lender plug-in's failure, as the waterfall and the orchestrator see it: a kind plus the
/// connector's own error as the source (the sqlx `Box<dyn DatabaseError>` shape).
///
/// Its `Display` is the connector error's `Display`, which by STYLE.md never contains a vendor body
/// or patient data.
#[derive(Debug)]
pub struct ProviderError {
    kind: ErrorKind,
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl ProviderError {
    /// Wraps a connector error with its classification.
    pub fn new(
        kind: ErrorKind,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// Wraps any classified connector error.
    pub fn from_classified<E>(err: E) -> Self
    where
        E: Classify + StdError + Send + Sync + 'static,
    {
        Self {
            kind: err.kind(),
            source: Box::new(err),
        }
    }

    /// The classification.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The connector's own error, for downcasting.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self.source.as_ref()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.source, self.kind)
    }
}

impl StdError for ProviderError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.source.as_ref())
    }
}

impl Classify for ProviderError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// Exponential backoff with jitter, shared by every connector so that they retry alike.
///
/// Pure: the caller supplies the jitter sample (a number in `[0, 1)`) so the schedule is testable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry, before jitter.
    pub base: Duration,
    /// No delay exceeds this, except a longer `Retry-After` from the server.
    pub cap: Duration,
    /// Attempts in all, the first included. `1` means never retry.
    pub max_attempts: u32,
}

impl Default for Backoff {
    /// Stripe's documented schedule: from 0.5 s, capped at 5 s; three attempts.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(5),
            max_attempts: 3,
        }
    }
}

impl Backoff {
    /// No retries at all.
    pub const NONE: Self = Self {
        base: Duration::ZERO,
        cap: Duration::ZERO,
        max_attempts: 1,
    };

    /// The wait after failed attempt number `attempt` (1-based), or `None` when no attempt is left
    /// or the error is not transient.
    ///
    /// The delay is `min(cap, base * 2^(attempt-1))` scaled into 50–100 % by `jitter` (in `[0, 1)`),
    /// and never shorter than the server's `Retry-After`.
    pub fn delay(&self, attempt: u32, kind: ErrorKind, jitter: f64) -> Option<Duration> {
        if !kind.is_transient() || attempt >= self.max_attempts {
            return None;
        }
        let exp = self.base.saturating_mul(
            1_u32
                .checked_shl(attempt.saturating_sub(1))
                .unwrap_or(u32::MAX),
        );
        let capped = exp.min(self.cap);
        let jitter = jitter.clamp(0.0, 1.0);
        let jittered = capped.mul_f64(0.5 + 0.5 * jitter);
        Some(match kind.retry_after() {
            Some(server) if server > jittered => server,
            _ => jittered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_between_half_and_full() {
        let b = Backoff {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(5),
            max_attempts: 10,
        };
        assert_eq!(
            b.delay(1, ErrorKind::TRANSIENT, 1.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            b.delay(2, ErrorKind::TRANSIENT, 1.0),
            Some(Duration::from_millis(1000))
        );
        assert_eq!(
            b.delay(2, ErrorKind::TRANSIENT, 0.0),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            b.delay(9, ErrorKind::TRANSIENT, 1.0),
            Some(Duration::from_secs(5))
        );
        // Far past the cap the shift saturates instead of overflowing.
        let b = Backoff {
            max_attempts: 100,
            ..b
        };
        assert_eq!(
            b.delay(40, ErrorKind::TRANSIENT, 1.0),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn backoff_honours_retry_after_and_stops_at_max_attempts() {
        let b = Backoff {
            max_attempts: 3,
            ..Backoff::default()
        };
        let slow = ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(b.delay(1, slow, 0.5), Some(Duration::from_secs(30)));
        assert_eq!(b.delay(3, ErrorKind::TRANSIENT, 0.5), None);
        assert_eq!(b.delay(1, ErrorKind::Permanent, 0.5), None);
        assert_eq!(b.delay(1, ErrorKind::Indeterminate, 0.5), None);
        assert_eq!(Backoff::NONE.delay(1, ErrorKind::TRANSIENT, 0.5), None);
    }

    #[test]
    fn provider_error_keeps_kind_and_source() {
        let e = ProviderError::new(ErrorKind::Permanent, "create session: HTTP 400");
        assert_eq!(e.kind(), ErrorKind::Permanent);
        assert_eq!(e.to_string(), "create session: HTTP 400 (permanent)");
        assert!(StdError::source(&e).is_some());
    }
}
