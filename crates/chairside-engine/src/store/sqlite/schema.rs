//! The schema and health role on SQLite.

use std::sync::atomic::Ordering;

use async_trait::async_trait;

use super::{MIGRATOR, SqliteStore};
use crate::store::{Result, SchemaStore, StoreCounters};

#[async_trait]
impl SchemaStore for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        // Rows written in clear before migration 0003 are sealed now, before anything reads them.
        self.seal_legacy_rows().await?;
        Ok(())
    }

    async fn ready(&self) -> Result<bool> {
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
                .fetch_one(&self.pool)
                .await
                .unwrap_or(0);
        Ok(applied as usize >= MIGRATOR.iter().count())
    }

    fn counters(&self) -> StoreCounters {
        StoreCounters {
            write_transactions: self.writes.total(),
            commits: self.commits(),
            skipped_undecodable: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn write_sites(&self) -> Vec<(String, u64)> {
        self.writes.by_site()
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection as _;

    use super::MIGRATOR;
    use crate::store::SchemaStore as _;
    use crate::store::crypto::DataKey;
    use crate::store::sqlite::SqliteStore;

    /// The tables migration 0030 stores in their key's order.
    const CLUSTERED: [&str; 5] = [
        "effects",
        "timers",
        "webhooks",
        "message_sends",
        "patient_page_marks",
    ];

    /// A database migrated up to 0029 with a row in each table 0030 rebuilds: after the store's
    /// own migration the rows are there as they were, each table is one B-tree (no rowid), and
    /// the constraints still hold.
    #[tokio::test]
    async fn migration_0030_keeps_every_row_and_stores_the_tables_by_their_key() {
        let dir = tempfile::tempdir().unwrap();
        // Migrations 0001 to 0029 exactly as shipped, applied as an older build would have.
        let older = dir.path().join("migrations");
        std::fs::create_dir(&older).unwrap();
        for m in MIGRATOR.iter().filter(|m| m.version < 30) {
            let name = format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_"));
            std::fs::write(older.join(name), m.sql.as_bytes()).unwrap();
        }
        let path = dir.path().join("chairside.sqlite");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(older.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO workflows (id, practice_id, plan_id, revision, patient_id, status, stage,
                 state, accepted_at, created_at, updated_at)
             VALUES ('wf-1', 'pr-1', 'plan-1', 'r1', 'pt-1', 'running', 'financing', 'x', 1, 1, 1);
             INSERT INTO effects VALUES ('wf-1', 3, 1, 'charge_deposit', 'key-3-1', 2, 10, 11, 'ok');
             INSERT INTO effects VALUES ('wf-1', 4, 1, 'send_message', 'key-4-1', 2, 12, NULL, NULL);
             INSERT INTO timers VALUES ('wf-1', 'follow_up', 99);
             INSERT INTO webhooks VALUES ('stripe', 'evt_1', 5);
             INSERT INTO message_sends VALUES ('msg-1', 'sms', 'sent', 'digest', 'SM1', 6, 7);
             INSERT INTO patient_page_marks VALUES ('wf-1', 'viewed', 8);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();

        let store = SqliteStore::open(&path, DataKey::generate()).await.unwrap();
        store.migrate().await.unwrap();
        assert!(store.ready().await.unwrap());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        for table in CLUSTERED {
            let sql: String = sqlx::query_scalar(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert!(sql.ends_with("WITHOUT ROWID"), "{table}: {sql}");
            // No separate index of the key remains beside the table.
            let indexes: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
            )
            .bind(table)
            .fetch_one(&mut conn)
            .await
            .unwrap();
            assert_eq!(indexes, 0, "{table}");
        }
        let effects: Vec<(i64, String, Option<String>)> = sqlx::query_as(
            "SELECT seq, idempotency_key, outcome FROM effects WHERE workflow_id = 'wf-1' ORDER BY seq",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(
            effects,
            vec![
                (3, "key-3-1".to_owned(), Some("ok".to_owned())),
                (4, "key-4-1".to_owned(), None)
            ]
        );
        let rows: (i64, i64, String, i64) = sqlx::query_as(
            "SELECT (SELECT fire_at FROM timers WHERE workflow_id = 'wf-1' AND kind = 'follow_up'),
                    (SELECT received_at FROM webhooks WHERE provider = 'stripe' AND event_id = 'evt_1'),
                    (SELECT provider_id FROM message_sends WHERE message_key = 'msg-1' AND channel = 'sms'),
                    (SELECT at FROM patient_page_marks WHERE workflow_id = 'wf-1' AND mark = 'viewed')",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows, (99, 5, "SM1".to_owned(), 8));
        // The keys still refuse a second row, and the marks still need their workflow.
        let again = sqlx::query("INSERT INTO webhooks VALUES ('stripe', 'evt_1', 9)")
            .execute(&mut conn)
            .await;
        assert!(again.is_err(), "a webhook id is kept once");
        sqlx::query("PRAGMA foreign_keys = ON")
            .execute(&mut conn)
            .await
            .unwrap();
        let orphan = sqlx::query("INSERT INTO patient_page_marks VALUES ('wf-none', 'viewed', 1)")
            .execute(&mut conn)
            .await;
        assert!(orphan.is_err(), "a mark needs its workflow");
    }
}
