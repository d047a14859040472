//! `chairside rotate-key` on PostgreSQL: every sealed value not under the keyring's current key
//! re-sealed, and every SMS consent row re-hashed, in batches, as `sqlite/sealed.rs` does.
//!
//! What differs from SQLite: writers run beside the rotation (SQLite's batch holds the one write
//! lock), so each batch takes its rows `FOR UPDATE` and reads them as they are once locked. A row
//! a runner rewrote meanwhile is under the current key and drops out of the batch; a re-seal never
//! writes back a value older than the row's own. A PostgreSQL database never held values in
//! clear (its sealed columns are `BYTEA` from its first migration), so there is no legacy pass.

use sqlx::Row;

use super::PostgresStore;
use super::patient::fold_consent;
use crate::store::Result;
use crate::store::sqlite::ResealReport;
use crate::store::sqlite::sealed::{ALL, CONSENT_PHONE, SealedColumn};

/// Consent rows a rotation re-hashes: a sealed number, and a hash or seal not under the current
/// key. `$1` is the current key id, `$2` the current header.
const CONSENT_PENDING: &str = "phone_sealed IS NOT NULL
    AND (key_id IS DISTINCT FROM $1 OR substr(phone_sealed, 1, 2) <> $2)";

/// Values of `col` not sealed under the current key; `$1` is the current header.
fn pending(col: &SealedColumn) -> String {
    format!(
        "{c} IS NOT NULL AND substr({c}, 1, 2) <> $1",
        c = col.column
    )
}

impl PostgresStore {
    /// The events waiting in a workflow's inbox, oldest first, opened (operations and tests:
    /// the column is sealed), as [`SqliteStore::inbox_events`](crate::store::SqliteStore::inbox_events).
    ///
    /// # Errors
    /// [`StoreError::Sealed`](crate::store::StoreError::Sealed),
    /// [`StoreError::Database`](crate::store::StoreError::Database).
    pub async fn inbox_events(
        &self,
        workflow: &chairside_workflow::WorkflowId,
    ) -> Result<Vec<chairside_workflow::Event>> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT id, event FROM inbox WHERE workflow_id = $1 ORDER BY id")
                .bind(workflow.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|(id, sealed)| {
                crate::store::sqlite::sealed::INBOX_EVENT.open_json(
                    &self.key,
                    &[&id.to_string()],
                    sealed,
                )
            })
            .collect()
    }

    /// Re-seals every sealed value not yet under the keyring's current key, `batch` rows per
    /// transaction, then re-hashes the SMS consent rows (see [`SqliteStore::rotate_key`]).
    /// Idempotent and resumable, and safe beside running instances: each batch locks its rows.
    ///
    /// # Errors
    /// [`StoreError::Sealed`](crate::store::StoreError::Sealed) naming the table and row of a
    /// value no key in the ring opens; [`StoreError::Database`](crate::store::StoreError::Database).
    ///
    /// [`SqliteStore::rotate_key`]: crate::store::SqliteStore::rotate_key
    pub async fn rotate_key(&self, batch: u32) -> Result<ResealReport> {
        let mut report = self.reseal(batch).await?;
        self.rehash_consent(batch, &mut report).await?;
        report.consent_not_rehashable = self.consent_rows_not_rehashable().await?;
        Ok(report)
    }

    /// SMS consent rows without a sealed number, which a rotation cannot re-hash (see
    /// [`ResealReport::consent_not_rehashable`]). A PostgreSQL database gets them only from
    /// data imported from a SQLite one written before its migration 0007.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::store::StoreError::Database).
    pub async fn consent_rows_not_rehashable(&self) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sms_consent WHERE phone_sealed IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many sealed values, and consent rows that can be re-hashed, are not under the current
    /// key (0 after a finished rotation).
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::store::StoreError::Database).
    pub async fn rows_not_under_current_key(&self) -> Result<u64> {
        let header = self.key.current_header();
        let mut total = 0;
        for col in ALL {
            let sql = format!("SELECT COUNT(*) FROM {} WHERE {}", col.table, pending(col));
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(&header[..])
                .fetch_one(&self.pool)
                .await?;
            total += u64::try_from(n).unwrap_or(0);
        }
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM sms_consent WHERE {CONSENT_PENDING}"
        ))
        .bind(i64::from(self.key.current_id()))
        .bind(&header[..])
        .fetch_one(&self.pool)
        .await?;
        total += u64::try_from(n).unwrap_or(0);
        Ok(total)
    }

    async fn reseal(&self, batch: u32) -> Result<ResealReport> {
        let batch = batch.max(1);
        let header = self.key.current_header();
        let mut report = ResealReport::default();
        for col in ALL {
            let keys: Vec<String> = col
                .keys
                .iter()
                .map(|k| format!("CAST({k} AS TEXT)"))
                .collect();
            // No cursor: a re-sealed row leaves the pending set, and a value no key opens fails
            // the pass, so every batch takes new rows and the loop ends.
            let select = format!(
                "SELECT {}, {c} AS value, CAST(ctid AS TEXT) AS at_row FROM {t} WHERE {pending}
                 ORDER BY {order} LIMIT $2 FOR UPDATE",
                keys.join(", "),
                c = col.column,
                t = col.table,
                pending = pending(col),
                order = col.keys.join(", "),
            );
            // The row is locked until the batch commits, so its physical address stays its own.
            let update = format!(
                "UPDATE {} SET {} = $1 WHERE ctid = CAST($2 AS tid)",
                col.table, col.column
            );
            let mut done = 0_u64;
            loop {
                let mut tx = self.begin().await?;
                let rows = sqlx::query(&select)
                    .bind(&header[..])
                    .bind(i64::from(batch))
                    .fetch_all(&mut *tx)
                    .await?;
                for row in &rows {
                    let key_values: Vec<String> = (0..col.keys.len())
                        .map(|i| row.try_get::<String, _>(i))
                        .collect::<Result<_, _>>()?;
                    let key_refs: Vec<&str> = key_values.iter().map(String::as_str).collect();
                    let plain =
                        col.open(&self.key, &key_refs, row.try_get::<&[u8], _>("value")?)?;
                    sqlx::query(&update)
                        .bind(col.seal(&self.key, &key_refs, &plain)?)
                        .bind(row.try_get::<String, _>("at_row")?)
                        .execute(&mut *tx)
                        .await?;
                }
                let n = rows.len() as u64;
                if n == 0 {
                    tx.rollback().await?;
                    break;
                }
                self.finish(tx).await?;
                report.batches += 1;
                done += n;
                if n < u64::from(batch) {
                    break;
                }
            }
            report.resealed.push((col.table, done));
        }
        Ok(report)
    }

    async fn rehash_consent(&self, batch: u32, report: &mut ResealReport) -> Result<()> {
        let batch = batch.max(1);
        let header = self.key.current_header();
        let current = i64::from(self.key.current_id());
        let select = format!(
            "SELECT rowid, practice_id, phone_key, phone_sealed FROM sms_consent
             WHERE rowid > $3 AND {CONSENT_PENDING} ORDER BY rowid LIMIT $4"
        );
        let mut after = 0_i64;
        let mut done = 0_u64;
        loop {
            let mut tx = self.begin().await?;
            let rows = sqlx::query(&select)
                .bind(current)
                .bind(&header[..])
                .bind(after)
                .bind(i64::from(batch))
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                let rowid: i64 = row.try_get("rowid")?;
                after = rowid;
                let practice: String = row.try_get("practice_id")?;
                let hash: String = row.try_get("phone_key")?;
                let phone = CONSENT_PHONE.open_text(
                    &self.key,
                    &[&practice, &hash],
                    row.try_get::<&[u8], _>("phone_sealed")?,
                )?;
                // The fold takes the number's lock, then reads every row held for it (this one
                // included, if an earlier row of this batch or a concurrent change did not fold
                // it already) and writes one row under the current key.
                fold_consent(&mut tx, &self.key, &practice, &phone, None, Some(rowid)).await?;
            }
            let n = rows.len() as u64;
            if n == 0 {
                tx.rollback().await?;
                break;
            }
            self.finish(tx).await?;
            report.batches += 1;
            done += n;
            if n < u64::from(batch) {
                break;
            }
        }
        report.resealed.push((CONSENT_PHONE.table, done));
        Ok(())
    }
}
