//! The login role, once for both backends: failures and the attempt audit in one transaction,
//! so concurrent attempts on several instances count every failure (SQLite's `BEGIN IMMEDIATE`
//! runs them one at a time; PostgreSQL's holds an advisory lock on the account, then the address).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Affected, Backend};
use crate::store::logins::{FailureCount, LockRule, LoginAttempt, LoginOutcome, LoginStanding};
use crate::store::sqlite::{from_ms, ms};
use crate::store::{LoginStore, Result};

const ACCOUNT: &str = "account";
const ADDRESS: &str = "address";

async fn count<DB>(
    conn: &mut DB::Connection,
    kind: &str,
    subject: &str,
    rule: &LockRule,
    now: DateTime<Utc>,
) -> Result<FailureCount>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
{
    let row = sqlx::query::<DB>(
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

async fn add_failure<DB>(
    conn: &mut DB::Connection,
    kind: &str,
    subject: &str,
    rule: &LockRule,
    now: DateTime<Utc>,
    may_lock: bool,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'r> &'r str: ColumnIndex<DB::Row>,
{
    let before = count::<DB>(conn, kind, subject, rule, now).await?;
    let (failures, locked_until) = before.after_failure(rule, now, may_lock);
    sqlx::query::<DB>(
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

async fn audit<DB>(conn: &mut DB::Connection, attempt: &LoginAttempt) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sqlx::query::<DB>(
        "INSERT INTO login_attempts (at, username, address, outcome) VALUES ($1, $2, $3, $4)",
    )
    .bind(ms(attempt.at))
    .bind(attempt.username.as_str())
    .bind(attempt.address.as_str())
    .bind(attempt.outcome.label())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl<S> LoginStore for S
where
    S: Backend,
    for<'c> &'c mut <S::Db as Database>::Connection: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    <S::Db as Database>::QueryResult: Affected,
    for<'q> &'q str: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db>,
    for<'r> &'r str: ColumnIndex<<S::Db as Database>::Row>,
{
    async fn login_standing(
        &self,
        username: &str,
        address: &str,
        rule: &LockRule,
        now: DateTime<Utc>,
    ) -> Result<LoginStanding> {
        let mut conn = self.pool().acquire().await?;
        Ok(LoginStanding {
            account: count::<S::Db>(&mut conn, ACCOUNT, username, rule, now).await?,
            address: count::<S::Db>(&mut conn, ADDRESS, address, rule, now).await?,
        })
    }

    async fn record_login(&self, attempt: &LoginAttempt, rule: &LockRule) -> Result<LoginStanding> {
        let now = attempt.at;
        let mut tx = self.begin().await?;
        // Always the account's lock before the address's: two attempts never wait on each other
        // in a cycle.
        S::lock_name(&mut tx, &format!("login:{ACCOUNT}:{}", attempt.username)).await?;
        S::lock_name(&mut tx, &format!("login:{ADDRESS}:{}", attempt.address)).await?;
        match attempt.outcome {
            LoginOutcome::WrongPassword => {
                add_failure::<S::Db>(&mut tx, ACCOUNT, &attempt.username, rule, now, true).await?;
                add_failure::<S::Db>(&mut tx, ADDRESS, &attempt.address, rule, now, false).await?;
            }
            LoginOutcome::Success => {
                sqlx::query::<S::Db>("DELETE FROM login_failures WHERE kind = $1 AND subject = $2")
                    .bind(ACCOUNT)
                    .bind(attempt.username.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        audit::<S::Db>(&mut tx, attempt).await?;
        let standing = LoginStanding {
            account: count::<S::Db>(&mut tx, ACCOUNT, &attempt.username, rule, now).await?,
            address: count::<S::Db>(&mut tx, ADDRESS, &attempt.address, rule, now).await?,
        };
        self.finish(tx).await?;
        Ok(standing)
    }

    async fn unlock_staff(&self, username: &str, actor: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.begin().await?;
        S::lock_name(&mut tx, &format!("login:{ACCOUNT}:{username}")).await?;
        let cleared =
            sqlx::query::<S::Db>("DELETE FROM login_failures WHERE kind = $1 AND subject = $2")
                .bind(ACCOUNT)
                .bind(username)
                .execute(&mut *tx)
                .await?
                .affected();
        let attempt = LoginAttempt {
            username: username.to_owned(),
            address: actor.to_owned(),
            at: now,
            outcome: LoginOutcome::Unlocked,
        };
        audit::<S::Db>(&mut tx, &attempt).await?;
        self.finish(tx).await?;
        Ok(cleared > 0)
    }

    async fn login_attempts(&self, username: &str, limit: u32) -> Result<Vec<LoginAttempt>> {
        let rows = sqlx::query::<S::Db>(
            "SELECT at, username, address, outcome FROM login_attempts
             WHERE username = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(username)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
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
