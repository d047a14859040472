//! The SQLite store as a [`Backend`] of the roles written once for both stores
//! (`store/shared/`).

use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::SqliteStore;
use crate::store::Result;
use crate::store::crypto::Keyring;
use crate::store::shared::Backend;
use std::sync::atomic::AtomicU64;

use crate::store::detection::DetectionBatch;
use crate::store::{Claim, NewWorkflow, SentChannel, WorkflowRow};
use chairside_workflow::{Event, StaffTask, WorkflowId, WorkflowState};
use chrono::{DateTime, Utc};
use financing_core::PracticeId;

impl Backend for SqliteStore {
    type Db = Sqlite;

    // Inserted at once by `task_events`.
    type TaskEvents = ();

    // `BEGIN IMMEDIATE` takes the write lock up front: nothing else to lock.
    const SKIP_LOCKED: &'static str = "";

    const FOR_UPDATE: &'static str = "";

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn key(&self) -> &Keyring {
        &self.key
    }

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>> {
        SqliteStore::begin(self).await
    }

    #[track_caller]
    fn finish(
        &self,
        tx: Transaction<'static, Sqlite>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        SqliteStore::finish(self, tx)
    }

    #[track_caller]
    fn finish_due(
        &self,
        tx: Transaction<'static, Sqlite>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + '_ {
        SqliteStore::finish_due(self, tx)
    }

    async fn lock_name(_conn: &mut SqliteConnection, _name: &str) -> Result<()> {
        // One writer at a time: the transaction already holds the database's write lock.
        Ok(())
    }

    async fn insert_audit(
        &self,
        conn: &mut SqliteConnection,
        id: &str,
        actor: &str,
        kind: &str,
        detail: &str,
        now_ms: i64,
    ) -> Result<()> {
        super::insert_audit(conn, &self.key, id, actor, kind, detail, now_ms).await
    }

    async fn record_sent(
        conn: &mut SqliteConnection,
        sent: &SentChannel,
        now_ms: i64,
    ) -> Result<()> {
        super::delivery::record_sent(conn, sent, now_ms).await
    }

    async fn insert_new(
        &self,
        conn: &mut SqliteConnection,
        practice: &PracticeId,
        source: &str,
        new: NewWorkflow,
        now_ms: i64,
    ) -> Result<Option<WorkflowId>> {
        SqliteStore::insert_new(self, conn, practice, source, new, now_ms).await
    }

    async fn next_id(conn: &mut SqliteConnection, table: &'static str) -> Result<i64> {
        super::sealed::next_id(conn, table).await
    }

    async fn task_events(
        conn: &mut SqliteConnection,
        id: &str,
        state: &WorkflowState,
        task: &StaffTask,
        now: DateTime<Utc>,
    ) -> Result<()> {
        super::outbox::record_task_event(conn, id, state, task, now).await
    }

    async fn insert_task_events(
        _conn: &mut SqliteConnection,
        _id: &str,
        (): (),
        _now: DateTime<Utc>,
    ) -> Result<()> {
        Ok(())
    }

    async fn insert_events(
        conn: &mut SqliteConnection,
        id: &str,
        events: Vec<crate::outbound::events::OutboundEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        for event in &events {
            super::outbox::insert_event(conn, id, event, now).await?;
        }
        Ok(())
    }

    async fn check_lease(
        &self,
        conn: &mut SqliteConnection,
        claim: &Claim,
        now_ms: i64,
    ) -> Result<()> {
        super::check_lease(conn, claim, now_ms).await
    }

    async fn insert_inbox(
        &self,
        conn: &mut SqliteConnection,
        id: &str,
        source: &str,
        event: &Event,
        now_ms: i64,
    ) -> Result<()> {
        super::insert_inbox(conn, &self.key, id, source, event, now_ms).await
    }

    async fn revoke_links(conn: &mut SqliteConnection, id: &str, now_ms: i64) -> Result<u64> {
        super::links::revoke_in(conn, id, now_ms).await
    }

    fn workflow_row(&self, row: &sqlx::sqlite::SqliteRow) -> Result<WorkflowRow> {
        super::row_to_workflow(&self.key, row)
    }

    fn workflow_read<'a>(
        &'a self,
        id: &'a WorkflowId,
    ) -> Option<impl std::future::Future<Output = Result<Option<WorkflowRow>>> + Send + 'a> {
        let (states, id) = (self.states.clone(), id.as_str().to_owned());
        Some(
            self.reader
                .read(move |conn| super::reads::workflow(conn, &states, &id)),
        )
    }

    fn workflow_at_generation_read<'a>(
        &'a self,
        id: &'a WorkflowId,
        generation: u64,
    ) -> Option<impl std::future::Future<Output = Result<Option<WorkflowRow>>> + Send + 'a> {
        let (states, id) = (self.states.clone(), id.as_str().to_owned());
        Some(
            self.reader.read(move |conn| {
                super::reads::workflow_at_generation(conn, &states, &id, generation)
            }),
        )
    }

    fn intake_link_sends_due(
        &self,
        now_ms: i64,
    ) -> Option<impl std::future::Future<Output = Result<bool>> + Send + '_> {
        Some(
            self.reader
                .read(move |conn| super::reads::intake_link_sends_due(conn, now_ms)),
        )
    }

    fn skipped(&self) -> &AtomicU64 {
        &self.skipped
    }

    async fn take_created(
        &self,
        conn: &mut SqliteConnection,
        created: &[WorkflowId],
        now: DateTime<Utc>,
    ) -> Result<Vec<Claim>> {
        SqliteStore::take_created(self, conn, created, now).await
    }

    fn handoff_queue(&self) -> &crate::store::Handoffs {
        &self.handoffs
    }

    async fn write_detection(
        &self,
        conn: &mut SqliteConnection,
        practice: &PracticeId,
        source: &str,
        batch: DetectionBatch,
        now: DateTime<Utc>,
    ) -> Result<Vec<WorkflowId>> {
        SqliteStore::write_detection(self, conn, practice, source, batch, now).await
    }
}
