//! The PostgreSQL store as a [`Backend`] of the roles written once for both stores
//! (`store/shared/`).

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::PostgresStore;
use crate::outbound::events::OutboundEvent;
use crate::store::Result;
use crate::store::crypto::Keyring;
use crate::store::shared::Backend;
use std::sync::atomic::AtomicU64;

use crate::store::detection::DetectionBatch;
use crate::store::{Claim, NewWorkflow, SentChannel, WorkflowRow};
use chairside_workflow::{Event, StaffTask, WorkflowId, WorkflowState};
use chrono::{DateTime, Utc};
use financing_core::PracticeId;

impl Backend for PostgresStore {
    type Db = Postgres;

    type TaskEvents = Vec<OutboundEvent>;

    const SKIP_LOCKED: &'static str = " FOR NO KEY UPDATE SKIP LOCKED";

    const FOR_UPDATE: &'static str = super::ROW_LOCK;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn key(&self) -> &Keyring {
        &self.key
    }

    async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        PostgresStore::begin(self).await
    }

    #[track_caller]
    fn finish(
        &self,
        tx: Transaction<'static, Postgres>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        PostgresStore::finish(self, tx)
    }

    #[track_caller]
    fn finish_due(
        &self,
        tx: Transaction<'static, Postgres>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        PostgresStore::finish_due(self, tx)
    }

    async fn lock_name(conn: &mut PgConnection, name: &str) -> Result<()> {
        super::lock_name(conn, name).await
    }

    async fn insert_audit(
        &self,
        conn: &mut PgConnection,
        id: &str,
        actor: &str,
        kind: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<()> {
        super::insert_audit(conn, &self.key, id, actor, kind, detail, now_ms).await
    }

    async fn record_sent(conn: &mut PgConnection, sent: &SentChannel, now_ms: i64) -> Result<()> {
        super::delivery::record_sent(conn, sent, now_ms).await
    }

    async fn insert_new(
        &self,
        conn: &mut PgConnection,
        practice: &PracticeId,
        source: &str,
        new: NewWorkflow,
        now_ms: i64,
    ) -> Result<Option<WorkflowId>> {
        PostgresStore::insert_new(self, conn, practice, source, new, now_ms).await
    }

    async fn next_id(conn: &mut PgConnection, table: &'static str) -> Result<i64> {
        super::next_id(conn, table).await
    }

    async fn task_events(
        conn: &mut PgConnection,
        id: &str,
        state: &WorkflowState,
        task: &StaffTask,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboundEvent>> {
        super::outbox::task_events(conn, id, state, task, now).await
    }

    async fn insert_task_events(
        conn: &mut PgConnection,
        id: &str,
        events: Vec<OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        super::outbox::insert_events(conn, id, events, now).await
    }

    async fn insert_events(
        conn: &mut PgConnection,
        id: &str,
        events: Vec<OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        super::outbox::insert_events(conn, id, events, now).await
    }

    async fn check_lease(&self, conn: &mut PgConnection, claim: &Claim, now_ms: i64) -> Result<()> {
        super::check_lease(conn, claim, now_ms).await
    }

    async fn insert_inbox(
        &self,
        conn: &mut PgConnection,
        id: &str,
        source: &str,
        event: &Event,
        now_ms: i64,
    ) -> Result<()> {
        super::insert_inbox(conn, &self.key, id, source, event, now_ms).await
    }

    async fn revoke_links(conn: &mut PgConnection, id: &str, now_ms: i64) -> Result<u64> {
        super::links::revoke_in(conn, id, now_ms).await
    }

    fn workflow_row(&self, row: &sqlx::postgres::PgRow) -> Result<WorkflowRow> {
        super::row_to_workflow(&self.key, row)
    }

    fn skipped(&self) -> &AtomicU64 {
        &self.skipped
    }

    async fn take_created(
        &self,
        conn: &mut PgConnection,
        created: &[WorkflowId],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>> {
        PostgresStore::take_created(self, conn, created, now).await
    }

    fn handoff_queue(&self) -> &crate::store::Handoffs {
        &self.handoffs
    }

    async fn write_detection(
        &self,
        conn: &mut PgConnection,
        practice: &PracticeId,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>> {
        PostgresStore::write_detection(self, conn, practice, source, batch, now).await
    }
}
