//! The login role: staff login failures per account and per client address, lockouts, and the
//! audit of every attempt. Kept in the store so the throttle survives a restart and is shared by
//! every instance serving the dashboard. Never a password.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use super::Result;

/// How a staff login attempt ended, as the audit records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginOutcome {
    /// The password matched; a session was opened.
    Success,
    /// The password was checked and did not match (or the name is unknown).
    WrongPassword,
    /// Refused before checking the password: the account or the address must wait.
    Throttled,
    /// Refused before checking the password: the account is locked.
    Locked,
    /// Refused before checking the password: too many passwords were being checked at once.
    Busy,
    /// Staff cleared the account's failures and lockout.
    Unlocked,
}

impl LoginOutcome {
    /// The label stored in the audit.
    pub fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::WrongPassword => "wrong_password",
            Self::Throttled => "throttled",
            Self::Locked => "locked",
            Self::Busy => "busy",
            Self::Unlocked => "unlocked",
        }
    }

    /// The outcome with this label.
    pub fn from_label(label: &str) -> Option<Self> {
        [
            Self::Success,
            Self::WrongPassword,
            Self::Throttled,
            Self::Locked,
            Self::Busy,
            Self::Unlocked,
        ]
        .into_iter()
        .find(|o| o.label() == label)
    }
}

/// One audited login attempt (or unlock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginAttempt {
    /// The username as typed (known or not).
    pub username: String,
    /// The client address the attempt came from; for an unlock, who unlocked (`cli`,
    /// `staff:alice`).
    pub address: String,
    /// When.
    pub at: DateTime<Utc>,
    /// How it ended.
    pub outcome: LoginOutcome,
}

/// The failures recorded against one account or one address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailureCount {
    /// Consecutive failures not yet forgotten.
    pub failures: u32,
    /// The latest of them.
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Until when the subject is locked out, if it is (accounts only).
    pub locked_until: Option<DateTime<Utc>>,
}

impl FailureCount {
    /// The count a stored row stands for at `now`: failures whose latest is older than
    /// `rule.forget_after` are forgotten, and a lockout that ended is no lockout. Shared by every
    /// store, so the rule is the same whatever the database.
    pub(crate) fn from_stored(
        failures: i64,
        last_failure_at: DateTime<Utc>,
        locked_until: Option<DateTime<Utc>>,
        rule: &LockRule,
        now: DateTime<Utc>,
    ) -> Self {
        let locked_until = locked_until.filter(|t| *t > now);
        let failures = if last_failure_at + rule.forget_after <= now {
            0
        } else {
            u32::try_from(failures).unwrap_or(u32::MAX)
        };
        Self {
            failures,
            last_failure_at: (failures > 0).then_some(last_failure_at),
            locked_until,
        }
    }

    /// The failures and lockout to store after one more failure at `now`: the account locks
    /// (`may_lock`) when the count reaches `rule.lock_after`; an address never locks.
    pub(crate) fn after_failure(
        &self,
        rule: &LockRule,
        now: DateTime<Utc>,
        may_lock: bool,
    ) -> (u32, Option<DateTime<Utc>>) {
        let failures = self.failures.saturating_add(1);
        let locked_until = if may_lock && failures >= rule.lock_after {
            Some(now + rule.lock_for)
        } else {
            self.locked_until
        };
        (failures, locked_until)
    }
}

/// An account's and an address's failures, read together before a login.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoginStanding {
    /// The account's (the username typed).
    pub account: FailureCount,
    /// The client address's.
    pub address: FailureCount,
}

/// How failures are counted and when an account locks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRule {
    /// Failures older than this (counted from the latest) are forgotten.
    pub forget_after: Duration,
    /// An account locks at this many consecutive failures.
    pub lock_after: u32,
    /// For this long (or until staff unlock it).
    pub lock_for: Duration,
}

/// Staff login throttling and its audit. Every method is one transaction.
#[async_trait]
pub trait LoginStore: Send + Sync + std::fmt::Debug + 'static {
    /// The failures of `username` and of `address` as of `now`; failures whose latest is older
    /// than `rule.forget_after` count as none.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn login_standing(
        &self,
        username: &str,
        address: &str,
        rule: &LockRule,
        now: DateTime<Utc>,
    ) -> Result<LoginStanding>;

    /// Audits `attempt` and updates the counts in one transaction: a wrong password adds a
    /// failure to the account and to the address (locking the account at `rule.lock_after`), a
    /// success clears the account's failures, anything else is only audited. Returns the
    /// standing after the attempt.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn record_login(&self, attempt: &LoginAttempt, rule: &LockRule) -> Result<LoginStanding>;

    /// Clears an account's failures and lockout and audits the unlock as done by `actor`.
    /// Returns whether there was anything to clear.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn unlock_staff(&self, username: &str, actor: &str, now: DateTime<Utc>) -> Result<bool>;

    /// The latest `limit` audited attempts on `username`, newest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](super::StoreError::Database).
    async fn login_attempts(&self, username: &str, limit: u32) -> Result<Vec<LoginAttempt>>;
}
