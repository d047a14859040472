//! The intake role, once for both backends. PostgreSQL's instances write concurrently, so there
//! the rate limit holds each key's advisory lock and a link re-send locks its intake's row;
//! SQLite's `BEGIN IMMEDIATE` already makes each of those one decision at a time.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Money, PatientContact, PracticeId};
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Affected, Backend, Conn};
use crate::store::crypto::Keyring;
use crate::store::sqlite::sealed::{INTAKE_SUMMARY, PATIENT_CONTACT};
use crate::store::sqlite::{from_ms, ms};
use crate::store::{
    IntakeLinkSend, IntakeLinkSendRow, IntakeOrigin, IntakeRow, IntakeStore, LinkResend,
    LinkSendOutcome, NewIntake, NewWorkflow, Result,
};

const COLUMNS: &str = "id, practice_id, origin, amount_cents, summary, details_at, workflow_id, created_by, created_at";

/// An intake's row, its summary unsealed.
fn intake_row<R>(key: &Keyring, r: &R) -> Result<IntakeRow>
where
    R: Row,
    for<'r> &'r str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = r.try_get("id")?;
    let summary: Option<Vec<u8>> = r.try_get("summary")?;
    let summary = summary
        .map(|s| INTAKE_SUMMARY.open_text(key, &[&id], &s))
        .transpose()?;
    let origin: String = r.try_get("origin")?;
    Ok(IntakeRow {
        practice_id: PracticeId::new(r.try_get::<String, _>("practice_id")?),
        origin: if origin == "public" {
            IntakeOrigin::Public
        } else {
            IntakeOrigin::Staff
        },
        amount: r.try_get::<Option<i64>, _>("amount_cents")?.map(Money::usd),
        summary,
        details_at: r.try_get::<Option<i64>, _>("details_at")?.map(from_ms),
        workflow_id: r.try_get("workflow_id")?,
        created_by: r.try_get("created_by")?,
        created_at: from_ms(r.try_get("created_at")?),
        id,
    })
}

/// Stores (or replaces) a patient's contact, sealed to the practice and the patient.
async fn put_contact<DB>(
    conn: &mut DB::Connection,
    key: &Keyring,
    practice: &PracticeId,
    contact: &PatientContact,
    now_ms: i64,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Type<DB>,
{
    let plain = serde_json::to_vec(contact)?;
    let sealed = key.seal(
        &plain,
        &PATIENT_CONTACT.associated(&[practice.as_str(), contact.id.as_str()]),
    )?;
    sqlx::query::<DB>(
        "INSERT INTO patients (practice_id, patient_id, contact, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (practice_id, patient_id) DO UPDATE SET contact = excluded.contact, updated_at = excluded.updated_at",
    )
    .bind(practice.as_str())
    .bind(contact.id.as_str())
    .bind(sealed)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queues send `seq` of an intake's link, due now.
async fn insert_link_send<DB>(
    conn: &mut DB::Connection,
    intake: &str,
    seq: u32,
    practice: &PracticeId,
    actor: &str,
    now_ms: i64,
) -> Result<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    sqlx::query::<DB>(
        "INSERT INTO intake_link_sends (intake_id, seq, practice_id, requested_by, requested_at,
            status, attempts, next_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6)",
    )
    .bind(intake)
    .bind(i64::from(seq))
    .bind(practice.as_str())
    .bind(actor)
    .bind(now_ms)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl<S> IntakeStore for S
where
    S: Backend,
    for<'c> &'c mut Conn<S>: Executor<'c, Database = S::Db>,
    for<'c> &'c sqlx::Pool<S::Db>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    <S::Db as Database>::QueryResult: Affected,
    for<'r> &'r str: ColumnIndex<<S::Db as Database>::Row>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> bool: Decode<'q, S::Db> + Type<S::Db>,
    for<'q> Vec<u8>: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> &'q [u8]: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> Option<i64>: Encode<'q, S::Db>,
    for<'q> Option<&'q str>: Encode<'q, S::Db>,
    for<'q> Option<Vec<u8>>: Encode<'q, S::Db>,
{
    async fn admit_intake_submission(
        &self,
        keys: &[(String, u32)],
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let since = crate::store::intake::window_start_ms(window, now);
        let mut tx = self.begin().await?;
        // The count and the insert are one decision for every instance: each key's lock, in a
        // fixed order (SQLite's BEGIN IMMEDIATE already holds the one write lock).
        let mut names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        for name in names {
            S::lock_name(&mut tx, &format!("intake-limit:{name}")).await?;
        }
        sqlx::query::<S::Db>("DELETE FROM intake_submissions WHERE at <= $1")
            .bind(since)
            .execute(&mut *tx)
            .await?;
        let hashes: Vec<Vec<u8>> = keys
            .iter()
            .map(|(k, _)| crate::store::intake::limit_key_hash(k))
            .collect();
        for (hash, (_, limit)) in hashes.iter().zip(keys) {
            let n: i64 = sqlx::query_scalar::<S::Db, i64>(
                "SELECT COUNT(*) FROM intake_submissions WHERE key_hash = $1",
            )
            .bind(&hash[..])
            .fetch_one(&mut *tx)
            .await?;
            if n >= i64::from(*limit) {
                self.finish(tx).await?;
                return Ok(false);
            }
        }
        for hash in &hashes {
            sqlx::query::<S::Db>("INSERT INTO intake_submissions (key_hash, at) VALUES ($1, $2)")
                .bind(&hash[..])
                .bind(ms(now))
                .execute(&mut *tx)
                .await?;
        }
        self.finish(tx).await?;
        Ok(true)
    }

    async fn create_intake(&self, new: &NewIntake, now: DateTime<Utc>) -> Result<()> {
        let now_ms = ms(now);
        let summary = new
            .summary
            .as_deref()
            .map(|s| INTAKE_SUMMARY.seal(self.key(), &[&new.id], s.as_bytes()))
            .transpose()?;
        let mut tx = self.begin().await?;
        sqlx::query::<S::Db>(
            "INSERT INTO intakes (id, practice_id, token_hash, origin, amount_cents, summary, details_at,
                created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(new.id.as_str())
        .bind(new.practice_id.as_str())
        .bind(&new.token_hash[..])
        .bind(new.origin.label())
        .bind(new.amount.map(Money::minor))
        .bind(summary)
        .bind(new.details_from_patient.then_some(now_ms))
        .bind(new.created_by.as_str())
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(contact) = &new.contact {
            put_contact::<S::Db>(&mut tx, self.key(), &new.practice_id, contact, now_ms).await?;
        }
        if new.send_link {
            insert_link_send::<S::Db>(
                &mut tx,
                &new.id,
                0,
                &new.practice_id,
                &new.created_by,
                now_ms,
            )
            .await?;
            // The runner sends it: wake it (every instance's).
            return self.finish_due(tx).await;
        }
        self.finish(tx).await
    }

    async fn intake(&self, practice: &PracticeId, id: &str) -> Result<Option<IntakeRow>> {
        let row = sqlx::query::<S::Db>(&format!(
            "SELECT {COLUMNS} FROM intakes WHERE practice_id = $1 AND id = $2"
        ))
        .bind(practice.as_str())
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| intake_row(self.key(), &r)).transpose()
    }

    async fn intake_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<IntakeRow>> {
        let row = sqlx::query::<S::Db>(&format!(
            "SELECT {COLUMNS} FROM intakes WHERE token_hash = $1"
        ))
        .bind(&token_hash[..])
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| intake_row(self.key(), &r)).transpose()
    }

    async fn intakes(&self, practice: &PracticeId, limit: u32) -> Result<Vec<IntakeRow>> {
        let rows = sqlx::query::<S::Db>(&format!(
            "SELECT {COLUMNS} FROM intakes WHERE practice_id = $1 ORDER BY created_at DESC, id LIMIT $2"
        ))
        .bind(practice.as_str())
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| intake_row(self.key(), r)).collect()
    }

    async fn submit_intake_details(
        &self,
        practice: &PracticeId,
        id: &str,
        contact: &PatientContact,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let updated = sqlx::query::<S::Db>(
            "UPDATE intakes SET details_at = $1, updated_at = $2
             WHERE practice_id = $3 AND id = $4 AND details_at IS NULL",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(practice.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .affected();
        if updated == 1 {
            put_contact::<S::Db>(&mut tx, self.key(), practice, contact, now_ms).await?;
        }
        self.finish(tx).await?;
        Ok(updated == 1)
    }

    async fn set_intake_proposal(
        &self,
        practice: &PracticeId,
        id: &str,
        amount: Money,
        summary: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let summary = summary
            .map(|s| INTAKE_SUMMARY.seal(self.key(), &[id], s.as_bytes()))
            .transpose()?;
        let mut tx = self.begin().await?;
        let updated = sqlx::query::<S::Db>(
            "UPDATE intakes SET amount_cents = $1, summary = COALESCE($2, summary), updated_at = $3
             WHERE practice_id = $4 AND id = $5 AND workflow_id IS NULL",
        )
        .bind(amount.minor())
        .bind(summary)
        .bind(ms(now))
        .bind(practice.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .affected();
        self.finish(tx).await?;
        Ok(updated == 1)
    }

    async fn start_intake(
        &self,
        practice: &PracticeId,
        id: &str,
        new: NewWorkflow,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        let updated = sqlx::query::<S::Db>(
            "UPDATE intakes SET workflow_id = $1, updated_at = $2
             WHERE practice_id = $3 AND id = $4 AND workflow_id IS NULL
               AND details_at IS NOT NULL AND amount_cents IS NOT NULL",
        )
        .bind(new.state.id.as_str())
        .bind(now_ms)
        .bind(practice.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        let started = self
            .insert_new(&mut tx, practice, "intake", new, now_ms)
            .await?;
        if started.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
        self.finish_due(tx).await?;
        Ok(true)
    }

    async fn queue_intake_link_resend(
        &self,
        practice: &PracticeId,
        id: &str,
        actor: &str,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
    ) -> Result<LinkResend> {
        let now_ms = ms(now);
        let mut tx = self.begin().await?;
        // The count and the insert are one decision: the intake's row, locked on PostgreSQL, so
        // two staff clicking at once make one decision each, in turn.
        let details: Option<Option<i64>> = sqlx::query_scalar::<S::Db, Option<i64>>(&format!(
            "SELECT details_at FROM intakes WHERE practice_id = $1 AND id = $2{}",
            S::FOR_UPDATE
        ))
        .bind(practice.as_str())
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match details {
            None => LinkResend::NotFound,
            Some(Some(_)) => LinkResend::Complete,
            Some(None) => {
                let earlier: Vec<(i64, i64)> = sqlx::query_as::<S::Db, (i64, i64)>(
                    "SELECT seq, requested_at FROM intake_link_sends WHERE intake_id = $1",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                let times: Vec<DateTime<Utc>> =
                    earlier.iter().map(|(_, at)| from_ms(*at)).collect();
                match chairside_workflow::intake::check_link_resend(&times, now) {
                    Err(refused) => LinkResend::Refused(refused),
                    Ok(()) => {
                        let seq = earlier.iter().map(|(s, _)| s + 1).max().unwrap_or(0);
                        let seq = u32::try_from(seq).unwrap_or(u32::MAX);
                        insert_link_send::<S::Db>(&mut tx, id, seq, practice, actor, now_ms)
                            .await?;
                        sqlx::query::<S::Db>(
                            "UPDATE intakes SET token_hash = $1, updated_at = $2 WHERE id = $3",
                        )
                        .bind(&token_hash[..])
                        .bind(now_ms)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        self.insert_audit(
                            &mut tx,
                            id,
                            actor,
                            "intake_link_resend",
                            &format!("intake link send #{seq} asked for"),
                            now_ms,
                        )
                        .await?;
                        LinkResend::Queued { seq }
                    }
                }
            }
        };
        if matches!(outcome, LinkResend::Queued { .. }) {
            self.finish_due(tx).await?;
        } else {
            tx.rollback().await?;
        }
        Ok(outcome)
    }

    async fn claim_intake_link_sends(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<IntakeLinkSend>> {
        // A plain read first: the runner asks every round, and an idle round takes no write
        // lock and commits nothing.
        let any = if let Some(due) = self.intake_link_sends_due(ms(now)) {
            due.await?
        } else {
            sqlx::query_scalar::<S::Db, bool>(
                "SELECT EXISTS (SELECT 1 FROM intake_link_sends
                 WHERE status = 'pending' AND next_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1))",
            )
            .bind(ms(now))
            .fetch_one(self.pool())
            .await?
        };
        if !any {
            return Ok(Vec::new());
        }
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut tx = self.begin().await?;
        // On PostgreSQL, instances claim disjoint sends (`SKIP LOCKED`).
        let rows: Vec<(String, i64, String, i64)> =
            sqlx::query_as::<S::Db, (String, i64, String, i64)>(&format!(
                "SELECT intake_id, seq, practice_id, attempts FROM intake_link_sends
                 WHERE status = 'pending' AND next_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY next_at, intake_id, seq LIMIT $2{}",
                S::SKIP_LOCKED
            ))
            .bind(ms(now))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (intake_id, seq, practice_id, attempts) in rows {
            sqlx::query::<S::Db>(
                "UPDATE intake_link_sends SET attempts = attempts + 1, lease_until = $1
                 WHERE intake_id = $2 AND seq = $3",
            )
            .bind(ms(until))
            .bind(intake_id.as_str())
            .bind(seq)
            .execute(&mut *tx)
            .await?;
            claimed.push(IntakeLinkSend {
                intake_id,
                practice_id: PracticeId::new(practice_id),
                seq: u32::try_from(seq).unwrap_or(u32::MAX),
                attempt: u32::try_from(attempts + 1).unwrap_or(u32::MAX),
            });
        }
        self.finish(tx).await?;
        Ok(claimed)
    }

    async fn finish_intake_link_send(
        &self,
        send: &IntakeLinkSend,
        outcome: &LinkSendOutcome,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let now_ms = ms(now);
        let c = outcome.columns(now_ms);
        let mut tx = self.begin().await?;
        let updated = sqlx::query::<S::Db>(
            "UPDATE intake_link_sends
             SET status = $1, next_at = COALESCE($2, next_at), lease_until = NULL,
                 channels = COALESCE($3, channels), last_error = $4, done_at = $5
             WHERE intake_id = $6 AND seq = $7 AND attempts = $8 AND status = 'pending'",
        )
        .bind(c.status)
        .bind(c.next_ms)
        .bind(c.channels)
        .bind(c.error)
        .bind(c.done_ms)
        .bind(send.intake_id.as_str())
        .bind(i64::from(send.seq))
        .bind(i64::from(send.attempt))
        .execute(&mut *tx)
        .await?
        .affected();
        if updated != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        // The channels that went out, journalled with the outcome (the messenger leaves them
        // `attempting` for its caller to record).
        if let LinkSendOutcome::Sent { sent, .. } = outcome {
            for sent in sent {
                S::record_sent(&mut tx, sent, now_ms).await?;
            }
        }
        if let Some((kind, detail)) = outcome.audit(send.seq) {
            self.insert_audit(&mut tx, &send.intake_id, "runner", kind, &detail, now_ms)
                .await?;
        }
        self.finish(tx).await?;
        Ok(true)
    }

    async fn intake_link_sends(
        &self,
        practice: &PracticeId,
        id: &str,
    ) -> Result<Vec<IntakeLinkSendRow>> {
        let rows = sqlx::query::<S::Db>(
            "SELECT seq, requested_by, requested_at, status, attempts, channels, last_error, done_at
             FROM intake_link_sends WHERE practice_id = $1 AND intake_id = $2 ORDER BY seq",
        )
        .bind(practice.as_str())
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IntakeLinkSendRow {
                    seq: u32::try_from(r.try_get::<i64, _>("seq")?).unwrap_or(u32::MAX),
                    requested_by: r.try_get("requested_by")?,
                    requested_at: from_ms(r.try_get("requested_at")?),
                    status: r.try_get("status")?,
                    attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                    channels: r.try_get("channels")?,
                    last_error: r.try_get("last_error")?,
                    done_at: r.try_get::<Option<i64>, _>("done_at")?.map(from_ms),
                })
            })
            .collect()
    }
}
