//! The poller role, once for both backends: one row per practice in `poller_leases` (migration
//! 0019). Taking the lease holds the practice's lock (an advisory lock on PostgreSQL, where the
//! row may not exist yet; SQLite's `BEGIN IMMEDIATE` holds the one write lock), and a fenced poll
//! reads the lease row locked until it commits, so two instances see each other's tenure in
//! order.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Row, Type};

use super::{Affected, Backend, Conn};
use crate::store::detection::DetectionBatch;
use crate::store::poller::{PollerLease, PollerStore, next_tenure};
use crate::store::sqlite::{from_ms, ms};
use crate::store::{Result, StoreError};
use chairside_workflow::WorkflowId;

fn until(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

/// Refuses unless `lease` is still held at its epoch and live at `now`.
async fn check_poller_lease<S>(conn: &mut Conn<S>, lease: &PollerLease, now: i64) -> Result<()>
where
    S: Backend,
    for<'c> &'c mut Conn<S>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
{
    let held: Option<i64> = sqlx::query_scalar::<S::Db, i64>(&format!(
        "SELECT CAST(1 AS BIGINT) FROM poller_leases
         WHERE practice_id = $1 AND owner = $2 AND epoch = $3 AND lease_until >= $4{}",
        S::FOR_UPDATE
    ))
    .bind(lease.practice.as_str())
    .bind(lease.owner.as_str())
    .bind(lease.epoch)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if held.is_some() {
        Ok(())
    } else {
        Err(StoreError::PollerLeaseLost(lease.practice.clone()))
    }
}

#[async_trait]
impl<S> PollerStore for S
where
    S: Backend,
    for<'c> &'c mut Conn<S>: Executor<'c, Database = S::Db>,
    for<'q> <S::Db as Database>::Arguments<'q>: IntoArguments<'q, S::Db>,
    <S::Db as Database>::QueryResult: Affected,
    usize: ColumnIndex<<S::Db as Database>::Row>,
    for<'r> &'r str: ColumnIndex<<S::Db as Database>::Row>,
    for<'q> &'q str: Encode<'q, S::Db> + Type<S::Db>,
    for<'q> String: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
    for<'q> i64: Encode<'q, S::Db> + Decode<'q, S::Db> + Type<S::Db>,
{
    async fn acquire_poller(
        &self,
        practice: &PracticeId,
        owner: &str,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<Option<PollerLease>> {
        let now_ms = ms(now);
        let until = until(now, ttl);
        let mut tx = self.begin().await?;
        S::lock_name(&mut tx, &format!("poller:{practice}")).await?;
        let row = sqlx::query::<S::Db>(
            "SELECT owner, epoch, lease_until FROM poller_leases WHERE practice_id = $1",
        )
        .bind(practice.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let held = match &row {
            None => None,
            Some(r) => Some((
                r.try_get::<String, _>("owner")?,
                r.try_get::<i64, _>("epoch")?,
                r.try_get::<i64, _>("lease_until")? >= now_ms,
            )),
        };
        let Some(epoch) = next_tenure(
            held.as_ref().map(|(o, e, live)| (o.as_str(), *e, *live)),
            owner,
        ) else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query::<S::Db>(
            "INSERT INTO poller_leases (practice_id, owner, epoch, lease_until) VALUES ($1, $2, $3, $4)
             ON CONFLICT (practice_id) DO UPDATE SET owner = excluded.owner, epoch = excluded.epoch,
                lease_until = excluded.lease_until",
        )
        .bind(practice.as_str())
        .bind(owner)
        .bind(epoch)
        .bind(ms(until))
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await?;
        Ok(Some(PollerLease {
            practice: practice.clone(),
            owner: owner.to_owned(),
            epoch,
            until: from_ms(ms(until)),
        }))
    }

    async fn renew_poller(
        &self,
        lease: &PollerLease,
        now: DateTime<Utc>,
        ttl: Duration,
    ) -> Result<PollerLease> {
        let until = until(now, ttl);
        let mut tx = self.begin().await?;
        let n = sqlx::query::<S::Db>(
            "UPDATE poller_leases SET lease_until = $1
             WHERE practice_id = $2 AND owner = $3 AND epoch = $4 AND lease_until >= $5",
        )
        .bind(ms(until))
        .bind(lease.practice.as_str())
        .bind(&lease.owner)
        .bind(lease.epoch)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .affected();
        if n != 1 {
            tx.rollback().await?;
            return Err(StoreError::PollerLeaseLost(lease.practice.clone()));
        }
        self.finish(tx).await?;
        Ok(PollerLease {
            until: from_ms(ms(until)),
            ..lease.clone()
        })
    }

    async fn release_poller(&self, lease: &PollerLease) -> Result<()> {
        let mut tx = self.begin().await?;
        // Ran out at once: the next acquire by anyone starts a new tenure (next epoch).
        sqlx::query::<S::Db>(
            "UPDATE poller_leases SET lease_until = -1 WHERE practice_id = $1 AND owner = $2 AND epoch = $3",
        )
        .bind(lease.practice.as_str())
        .bind(&lease.owner)
        .bind(lease.epoch)
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await
    }

    async fn record_detection_leased(
        &self,
        lease: &PollerLease,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>> {
        let mut tx = self.begin().await?;
        check_poller_lease::<S>(&mut tx, lease, ms(now)).await?;
        let created = self
            .write_detection(&mut tx, &lease.practice, source, batch, now)
            .await?;
        let claims = self.take_created(&mut tx, &created, now).await?;
        self.finish_due(tx).await?;
        self.handoff_queue().push(claims);
        Ok(created)
    }
}
