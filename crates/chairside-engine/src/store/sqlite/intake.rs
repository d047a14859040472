//! The intake role on SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{Money, PatientContact, PracticeId};
use sqlx::{Row, SqliteConnection};

use super::sealed::INTAKE_SUMMARY;
use super::{SqliteStore, from_ms, ms};
use crate::store::{IntakeOrigin, IntakeRow, IntakeStore, NewIntake, NewWorkflow, Result};

const COLUMNS: &str = "id, practice_id, origin, amount_cents, summary, details_at, workflow_id, created_by, created_at";

impl SqliteStore {
    fn intake_row(&self, r: &sqlx::sqlite::SqliteRow) -> Result<IntakeRow> {
        let id: String = r.try_get("id")?;
        let summary: Option<Vec<u8>> = r.try_get("summary")?;
        let summary = summary
            .map(|s| INTAKE_SUMMARY.open_text(&self.key, &[&id], &s))
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

    async fn put_contact(
        &self,
        conn: &mut SqliteConnection,
        practice: &PracticeId,
        contact: &PatientContact,
        now_ms: i64,
    ) -> Result<()> {
        let plain = serde_json::to_vec(contact)?;
        let sealed = self
            .key
            .seal(&plain, &Self::associated(practice, &contact.id))?;
        sqlx::query(
            "INSERT INTO patients (practice_id, patient_id, contact, updated_at) VALUES (?, ?, ?, ?)
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
}

#[async_trait]
impl IntakeStore for SqliteStore {
    async fn admit_intake_submission(
        &self,
        keys: &[(String, u32)],
        window: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let since = crate::store::intake::window_start_ms(window, now);
        // BEGIN IMMEDIATE: the count and the insert are one decision for every instance.
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM intake_submissions WHERE at <= ?")
            .bind(since)
            .execute(&mut *tx)
            .await?;
        let hashes: Vec<Vec<u8>> = keys
            .iter()
            .map(|(k, _)| crate::store::intake::limit_key_hash(k))
            .collect();
        for (hash, (_, limit)) in hashes.iter().zip(keys) {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM intake_submissions WHERE key_hash = ?")
                    .bind(&hash[..])
                    .fetch_one(&mut *tx)
                    .await?;
            if n >= i64::from(*limit) {
                self.finish(tx).await?;
                return Ok(false);
            }
        }
        for hash in &hashes {
            sqlx::query("INSERT INTO intake_submissions (key_hash, at) VALUES (?, ?)")
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
            .map(|s| INTAKE_SUMMARY.seal(&self.key, &[&new.id], s.as_bytes()))
            .transpose()?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO intakes (id, practice_id, token_hash, origin, amount_cents, summary, details_at,
                created_by, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&new.id)
        .bind(new.practice_id.as_str())
        .bind(&new.token_hash[..])
        .bind(new.origin.label())
        .bind(new.amount.map(Money::minor))
        .bind(summary)
        .bind(new.details_from_patient.then_some(now_ms))
        .bind(&new.created_by)
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(contact) = &new.contact {
            self.put_contact(&mut tx, &new.practice_id, contact, now_ms)
                .await?;
        }
        self.finish(tx).await
    }

    async fn intake(&self, practice: &PracticeId, id: &str) -> Result<Option<IntakeRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM intakes WHERE practice_id = ? AND id = ?"
        ))
        .bind(practice.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.intake_row(&r)).transpose()
    }

    async fn intake_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<IntakeRow>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM intakes WHERE token_hash = ?"
        ))
        .bind(&token_hash[..])
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| self.intake_row(&r)).transpose()
    }

    async fn intakes(&self, practice: &PracticeId, limit: u32) -> Result<Vec<IntakeRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM intakes WHERE practice_id = ? ORDER BY created_at DESC, id LIMIT ?"
        ))
        .bind(practice.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.intake_row(r)).collect()
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
        let updated = sqlx::query(
            "UPDATE intakes SET details_at = ?, updated_at = ?
             WHERE practice_id = ? AND id = ? AND details_at IS NULL",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(practice.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 1 {
            self.put_contact(&mut tx, practice, contact, now_ms).await?;
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
            .map(|s| INTAKE_SUMMARY.seal(&self.key, &[id], s.as_bytes()))
            .transpose()?;
        let mut tx = self.begin().await?;
        let updated = sqlx::query(
            "UPDATE intakes SET amount_cents = ?, summary = COALESCE(?, summary), updated_at = ?
             WHERE practice_id = ? AND id = ? AND workflow_id IS NULL",
        )
        .bind(amount.minor())
        .bind(summary)
        .bind(ms(now))
        .bind(practice.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
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
        let updated = sqlx::query(
            "UPDATE intakes SET workflow_id = ?, updated_at = ?
             WHERE practice_id = ? AND id = ? AND workflow_id IS NULL
               AND details_at IS NOT NULL AND amount_cents IS NOT NULL",
        )
        .bind(new.state.id.as_str())
        .bind(now_ms)
        .bind(practice.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
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
}
