//! One store test suite, two databases: `both!` turns each `async fn test(backend: Backend)` into
//! `sqlite::test` and `postgres::test`. The PostgreSQL variants use one fresh database per test
//! (so they run in parallel) on the server `CHAIRSIDE_TEST_POSTGRES_URL` names, which
//! `scripts/with-postgres.sh` starts (and `scripts/test.sh` always uses). Without it they do not
//! run and say so on the terminal; with `CHAIRSIDE_REQUIRE_POSTGRES=1` they fail instead.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Once};

use chairside_engine::store::crypto::{DataKey, Keyring};
use chairside_engine::store::prelude::*;
use chairside_engine::store::{DeliveryStore, PostgresStore, SqliteStore};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Row as _, SqlitePool};

use crate::harness::{KEY_HEX, database_bytes, raw_pool};

/// The database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// Expands each named `async fn NAME(backend: Backend)` of the calling module into the tests
/// `sqlite::NAME` and `postgres::NAME`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(crate::backend::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if crate::backend::postgres_configured() {
                        super::$name(crate::backend::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}
pub(crate) use both;

const URL_VAR: &str = "CHAIRSIDE_TEST_POSTGRES_URL";
const REQUIRE_VAR: &str = "CHAIRSIDE_REQUIRE_POSTGRES";

/// The server's URL, when the PostgreSQL variants are to run.
pub(crate) fn postgres_url() -> Option<String> {
    std::env::var(URL_VAR).ok().filter(|u| !u.is_empty())
}

/// True when the PostgreSQL variants can run. When they cannot, fails under
/// `CHAIRSIDE_REQUIRE_POSTGRES=1`, and otherwise writes once, straight to the terminal (past the
/// test harness's capture), that they did not run.
pub(crate) fn postgres_configured() -> bool {
    if postgres_url().is_some() {
        return true;
    }
    assert!(
        std::env::var(REQUIRE_VAR).as_deref() != Ok("1"),
        "{REQUIRE_VAR}=1 but {URL_VAR} is not set: the PostgreSQL variants cannot run"
    );
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: the PostgreSQL variants of the store tests did NOT run ({URL_VAR} is not set); \
             run them with scripts/with-postgres.sh cargo test -p chairside-engine --test it"
        );
    });
    false
}

/// A fresh, empty database on the test server, and its URL.
pub(crate) async fn fresh_postgres_database() -> String {
    let admin = postgres_url().expect("postgres_configured was checked");
    let name = format!(
        "chairside_test_{}_{:016x}",
        std::process::id(),
        rand::random::<u64>()
    );
    PostgresStore::create_database(&admin, &name)
        .await
        .expect("creating a test database on CHAIRSIDE_TEST_POSTGRES_URL")
}

/// A plain connection pool on the database, to look at the rows as a DBA would.
#[derive(Clone, Debug)]
pub(crate) enum Raw {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Raw {
    /// The single `BIGINT`/`INTEGER` `sql` selects.
    pub(crate) async fn count(&self, sql: &str) -> i64 {
        match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    /// The text column `sql` selects, row by row.
    pub(crate) async fn strings(&self, sql: &str) -> Vec<String> {
        match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }

    /// The blob (`BLOB`/`BYTEA`) `sql` selects.
    pub(crate) async fn blob(&self, sql: &str) -> Vec<u8> {
        match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    /// Every blob (`BLOB`/`BYTEA`) `sql` selects, row by row.
    pub(crate) async fn blobs(&self, sql: &str) -> Vec<Vec<u8>> {
        match self {
            Self::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            Self::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }

    /// Runs a statement; the database's error when it refuses.
    pub(crate) async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Self::Sqlite(p) => sqlx::query(sql).execute(p).await?.rows_affected(),
            Self::Postgres(p) => sqlx::query(sql).execute(p).await?.rows_affected(),
        })
    }

    /// Makes every insert into `table` fail, with a trigger.
    pub(crate) async fn refuse_inserts_into(&self, table: &str) {
        match self {
            Self::Sqlite(_) => {
                self.execute(&format!(
                    "CREATE TRIGGER test_refuse_{table} BEFORE INSERT ON {table}
                     BEGIN SELECT RAISE(ABORT, 'write refused by the test'); END"
                ))
                .await
                .unwrap();
            }
            Self::Postgres(_) => {
                self.execute(
                    "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                     BEGIN RAISE EXCEPTION 'write refused by the test'; END $$",
                )
                .await
                .unwrap();
                self.execute(&format!(
                    "CREATE TRIGGER test_refuse_{table} BEFORE INSERT ON {table}
                     FOR EACH ROW EXECUTE FUNCTION test_refuse()"
                ))
                .await
                .unwrap();
            }
        }
    }
}

/// A migrated store on a fresh database of `backend`, and a raw pool on the same database.
pub(crate) struct TestDb {
    _dir: tempfile::TempDir,
    /// Which database.
    pub(crate) backend: Backend,
    /// The SQLite file, or the PostgreSQL URL.
    pub(crate) location: String,
    /// The store, as callers see it.
    pub(crate) store: Arc<dyn Store>,
    /// The same store as the message-delivery journal.
    pub(crate) delivery: Arc<dyn DeliveryStore>,
    /// Rows as stored.
    pub(crate) raw: Raw,
}

impl TestDb {
    /// A fresh database of `backend`, migrated, under the harness's key.
    pub(crate) async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let location = match backend {
            Backend::Sqlite => dir.path().join("store.db").display().to_string(),
            Backend::Postgres => fresh_postgres_database().await,
        };
        let (store, delivery) =
            open_with_delivery(backend, &location, DataKey::parse(KEY_HEX).unwrap()).await;
        store.migrate().await.unwrap();
        let raw = match backend {
            Backend::Sqlite => Raw::Sqlite(raw_pool(&PathBuf::from(&location)).await),
            Backend::Postgres => Raw::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&location)
                    .await
                    .unwrap(),
            ),
        };
        Self {
            _dir: dir,
            backend,
            location,
            store,
            delivery,
            raw,
        }
    }

    /// The same database opened with another key.
    pub(crate) async fn reopen(&self, key: impl Into<Keyring>) -> Arc<dyn Store> {
        open(self.backend, &self.location, key).await
    }

    /// Every value stored, as bytes: on SQLite the file and its write-ahead log; on PostgreSQL
    /// every column of every table (blobs as their bytes, the rest as text).
    pub(crate) async fn all_bytes(&self) -> Vec<u8> {
        match &self.raw {
            Raw::Sqlite(_) => database_bytes(&PathBuf::from(&self.location)),
            Raw::Postgres(pool) => {
                let columns = sqlx::query(
                    "SELECT table_name::TEXT AS t, column_name::TEXT AS c, data_type::TEXT AS d
                     FROM information_schema.columns WHERE table_schema = 'public'",
                )
                .fetch_all(pool)
                .await
                .unwrap();
                let mut bytes = Vec::new();
                for col in columns {
                    let (t, c, d): (String, String, String) =
                        (col.get("t"), col.get("c"), col.get("d"));
                    if d == "bytea" {
                        let values: Vec<Option<Vec<u8>>> =
                            sqlx::query_scalar(&format!("SELECT \"{c}\" FROM \"{t}\""))
                                .fetch_all(pool)
                                .await
                                .unwrap();
                        values.into_iter().flatten().for_each(|v| bytes.extend(v));
                    } else {
                        let values: Vec<Option<String>> =
                            sqlx::query_scalar(&format!("SELECT \"{c}\"::TEXT FROM \"{t}\""))
                                .fetch_all(pool)
                                .await
                                .unwrap();
                        values
                            .into_iter()
                            .flatten()
                            .for_each(|v| bytes.extend(v.into_bytes()));
                    }
                }
                bytes
            }
        }
    }
}

/// Opens (does not migrate) the store at `location`.
pub(crate) async fn open(
    backend: Backend,
    location: &str,
    key: impl Into<Keyring>,
) -> Arc<dyn Store> {
    open_with_delivery(backend, location, key).await.0
}

/// [`open`], and the same store as the message-delivery journal (not one of `Store`'s roles).
pub(crate) async fn open_with_delivery(
    backend: Backend,
    location: &str,
    key: impl Into<Keyring>,
) -> (Arc<dyn Store>, Arc<dyn DeliveryStore>) {
    match backend {
        Backend::Sqlite => {
            let store = Arc::new(
                SqliteStore::open(&PathBuf::from(location), key)
                    .await
                    .unwrap(),
            );
            (store.clone(), store)
        }
        Backend::Postgres => {
            let store = Arc::new(PostgresStore::connect(location, key).await.unwrap());
            (store.clone(), store)
        }
    }
}
