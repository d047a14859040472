//! The login role on PostgreSQL: failures and the attempt audit in one transaction holding an
//! advisory lock on the account (then the address), so concurrent attempts on several instances
//! count every failure (SQLite's `BEGIN IMMEDIATE` serializes them the same way).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use super::{PostgresStore, from_ms, lock_name, ms};
use crate::store::logins::{FailureCount, LockRule, LoginAttempt, LoginOutcome, LoginStanding};
use crate::store::{LoginStore, Result};

const ACCOUNT: &str = "account";
const ADDRESS: &str = "address";

async fn count(
    conn: &mut PgConnection,
    kind: &str,
    subject: &str,
    rule: &LockRule,
    now: DateTime<Utc>,
) -> Result<FailureCount> {
    let row = sqlx::query(
        "SELECT failures, last_failure_at, locked_until FROM login_failures WHERE kind = $1 AND subject = $2",
    )
    .bind(kind)
    .bind(subject)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(FailureCount::default());
    };
    Ok(FailureCount::from_stored(
        row.try_get("failures")?,
        from_ms(row.try_get("last_failure_at")?),
        row.try_get::<Option<i64>, _>("locked_until")?.map(from_ms),
        rule,
        now,
    ))
}

async fn add_failure(
    conn: &mut PgConnection,
    kind: &str,
    subject: &str,
    rule: &LockRule,
    now: DateTime<Utc>,
    may_lock: bool,
) -> Result<()> {
    let before = count(conn, kind, subject, rule, now).await?;
    let (failures, locked_until) = before.after_failure(rule, now, may_lock);
    sqlx::query(
        "INSERT INTO login_failures (kind, subject, failures, last_failure_at, locked_until)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (kind, subject) DO UPDATE SET
            failures = $3, last_failure_at = $4, locked_until = $5",
    )
    .bind(kind)
    .bind(subject)
    .bind(i64::from(failures))
    .bind(ms(now))
    .bind(locked_until.map(ms))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn audit(conn: &mut PgConnection, attempt: &LoginAttempt) -> Result<()> {
    sqlx::query(
        "INSERT INTO login_attempts (at, username, address, outcome) VALUES ($1, $2, $3, $4)",
    )
    .bind(ms(attempt.at))
    .bind(&attempt.username)
    .bind(&attempt.address)
    .bind(attempt.outcome.label())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl LoginStore for PostgresStore {
    async fn login_standing(
        &self,
        username: &str,
        address: &str,
        rule: &LockRule,
        now: DateTime<Utc>,
    ) -> Result<LoginStanding> {
        let mut conn = self.pool.acquire().await?;
        Ok(LoginStanding {
            account: count(&mut conn, ACCOUNT, username, rule, now).await?,
            address: count(&mut conn, ADDRESS, address, rule, now).await?,
        })
    }

    async fn record_login(&self, attempt: &LoginAttempt, rule: &LockRule) -> Result<LoginStanding> {
        let now = attempt.at;
        let mut tx = self.begin().await?;
        // Always the account's lock before the address's: two attempts never wait on each other
        // in a cycle.
        lock_name(&mut tx, &format!("login:{ACCOUNT}:{}", attempt.username)).await?;
        lock_name(&mut tx, &format!("login:{ADDRESS}:{}", attempt.address)).await?;
        match attempt.outcome {
            LoginOutcome::WrongPassword => {
                add_failure(&mut tx, ACCOUNT, &attempt.username, rule, now, true).await?;
                add_failure(&mut tx, ADDRESS, &attempt.address, rule, now, false).await?;
            }
            LoginOutcome::Success => {
                sqlx::query("DELETE FROM login_failures WHERE kind = $1 AND subject = $2")
                    .bind(ACCOUNT)
                    .bind(&attempt.username)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        audit(&mut tx, attempt).await?;
        let standing = LoginStanding {
            account: count(&mut tx, ACCOUNT, &attempt.username, rule, now).await?,
            address: count(&mut tx, ADDRESS, &attempt.address, rule, now).await?,
        };
        self.finish(tx).await?;
        Ok(standing)
    }

    async fn unlock_staff(&self, username: &str, actor: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        lock_name(&mut tx, &format!("login:{ACCOUNT}:{username}")).await?;
        let cleared = sqlx::query("DELETE FROM login_failures WHERE kind = $1 AND subject = $2")
            .bind(ACCOUNT)
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let attempt = LoginAttempt {
            username: username.to_owned(),
            address: actor.to_owned(),
            at: now,
            outcome: LoginOutcome::Unlocked,
        };
        audit(&mut tx, &attempt).await?;
        self.finish(tx).await?;
        Ok(cleared > 0)
    }

    async fn login_attempts(&self, username: &str, limit: u32) -> Result<Vec<LoginAttempt>> {
        let rows = sqlx::query(
            "SELECT at, username, address, outcome FROM login_attempts
             WHERE username = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(username)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let outcome: String = row.try_get("outcome")?;
                Ok(LoginAttempt {
                    username: row.try_get("username")?,
                    address: row.try_get("address")?,
                    at: from_ms(row.try_get("at")?),
                    // An unknown label can only come from a newer version; show it as a failure.
                    outcome: LoginOutcome::from_label(&outcome)
                        .unwrap_or(LoginOutcome::WrongPassword),
                })
            })
            .collect()
    }
}
