//! Data at rest: the file's permissions, nothing identifying a patient or their money in clear,
//! data-key rotation, and a failed seal failing the write.

use chairside_engine::store::crypto::{CryptoError, DataKey, Keyring, MAX_PLAINTEXT};
use chairside_engine::store::prelude::*;
use chairside_engine::store::{SqliteStore, StoreError};
use chairside_workflow::WorkflowId;

use crate::fakes::Answer;
use crate::harness::{KEY_HEX, World, contains, database_bytes, patient, practice_id, raw_pool};

const KEY_B: &str = "6b65792d622d666f722d726f746174696f6e2d746573742d303132333435363738";

fn key_a() -> DataKey {
    DataKey::parse(KEY_HEX).unwrap()
}

fn key_b() -> DataKey {
    DataKey::parse(&KEY_B[..64]).unwrap()
}

/// Every sealed column, as `(table, column)`.
const SEALED: [(&str, &str); 6] = [
    ("workflows", "state"),
    ("outbox", "command"),
    ("inbox", "event"),
    ("events", "detail"),
    ("staff_tasks", "reason"),
    ("patients", "contact"),
];

/// Runs patient 42's plan (made-up fee and estimate) to its end through Stripe (both lenders
/// decline, so a deposit link and a schedule are made) and returns the workflow.
async fn settled_world() -> (World, WorkflowId) {
    let w = World::new();
    let id = w.accept(42, 987_654, 123_456);
    w.carecredit.on_status(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    let runner = w.runner("runner-at-rest").await;
    w.settle(&runner).await;
    (w, id)
}

/// The key id of every sealed value, read from the file.
async fn key_ids(path: &std::path::Path) -> Vec<(String, Option<u8>)> {
    let pool = raw_pool(path).await;
    let mut out = Vec::new();
    for (table, column) in SEALED {
        let values: Vec<Vec<u8>> = sqlx::query_scalar(&format!(
            "SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        for v in values {
            out.push((table.to_owned(), Keyring::key_id(&v).unwrap()));
        }
    }
    pool.close().await;
    out
}

#[cfg(unix)]
#[tokio::test]
async fn a_fresh_database_and_its_journal_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");

    // Act: create, migrate and write, so the WAL and shared-memory files exist.
    let store = SqliteStore::open(&path, key_a()).await.unwrap();
    store.migrate().await.unwrap();
    store
        .put_patient(&practice_id(), &patient(1), crate::harness::t0())
        .await
        .unwrap();

    // Assert
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} has mode {mode:o}");
    }
}

#[tokio::test]
async fn no_name_contact_amount_or_checkout_link_is_stored_in_clear() {
    // Arrange / Act: a plan run to its end, with a deposit link sent and amounts priced.
    let (w, id) = settled_world().await;

    // Assert
    let store = w.store().await;
    let state = store.workflow(&id).await.unwrap().unwrap().state;
    let url = state.stripe.checkout_url.clone().expect("a deposit link");
    let customer = state.stripe.customer_id.clone().expect("a Stripe customer");
    assert!(!store.audit(&id).await.unwrap().is_empty());
    let seeded = patient(42);
    let db = database_bytes(&w.path);
    for value in [
        seeded.first_name.as_str(),
        seeded.last_name.as_str(),
        seeded.email.as_deref().unwrap(),
        &seeded.mobile_phone.as_deref().unwrap()[2..],
        url.as_str(),
        "checkout.stripe.test",
        customer.as_str(),
        "987654",
        "123456",
        "864198",
    ] {
        assert!(!contains(&db, value), "{value} is stored in clear");
    }
}

#[tokio::test]
async fn rotating_the_key_reseals_every_row_and_they_open_without_the_old_key() {
    // Arrange: rows written under key A (id 0).
    let (w, id) = settled_world().await;
    assert!(key_ids(&w.path).await.iter().all(|(_, k)| *k == Some(0)));
    let rotating = SqliteStore::open(
        &w.path,
        Keyring::new(1, key_b()).with_previous(0, key_a()).unwrap(),
    )
    .await
    .unwrap();
    let before = rotating.workflow(&id).await.unwrap().unwrap().state;
    let pending = rotating.rows_not_under_current_key().await.unwrap();
    assert!(pending > 10, "{pending}");

    // Act: small batches, then again (idempotent).
    let report = rotating.rotate_key(4).await.unwrap();
    let again = rotating.rotate_key(4).await.unwrap();

    // Assert
    assert_eq!(report.total(), pending);
    assert!(report.batches > 3, "bounded batches: {report:?}");
    assert_eq!(again.total(), 0);
    assert_eq!(rotating.rows_not_under_current_key().await.unwrap(), 0);
    let ids = key_ids(&w.path).await;
    assert!(ids.iter().all(|(_, k)| *k == Some(1)), "{ids:?}");
    let only_b = SqliteStore::open(&w.path, Keyring::new(1, key_b()))
        .await
        .unwrap();
    assert_eq!(only_b.workflow(&id).await.unwrap().unwrap().state, before);
    assert!(!only_b.audit(&id).await.unwrap().is_empty());
    only_b.tasks(None, true).await.unwrap();
    assert_eq!(
        only_b
            .patient(&practice_id(), &patient(42).id)
            .await
            .unwrap()
            .unwrap()
            .last_name,
        "Patient42"
    );
}

#[tokio::test]
async fn a_rotation_interrupted_by_a_fault_leaves_every_row_readable_and_resumes() {
    // Arrange: the audit table refuses the re-seal half-way through the pass.
    let (w, id) = settled_world().await;
    let ring = || Keyring::new(1, key_b()).with_previous(0, key_a()).unwrap();
    let store = SqliteStore::open(&w.path, ring()).await.unwrap();
    let pool = raw_pool(&w.path).await;
    sqlx::query(
        "CREATE TRIGGER test_refuse_reseal BEFORE UPDATE ON events
         BEGIN SELECT RAISE(ABORT, 'refused by test'); END",
    )
    .execute(&pool)
    .await
    .unwrap();

    // Act
    let failed = store.rotate_key(2).await;

    // Assert: partly done, all readable, and a second pass finishes.
    assert!(failed.is_err());
    let ids = key_ids(&w.path).await;
    assert!(ids.iter().any(|(_, k)| *k == Some(1)) && ids.iter().any(|(_, k)| *k == Some(0)));
    store.workflow(&id).await.unwrap().unwrap();
    store.audit(&id).await.unwrap();
    sqlx::query("DROP TRIGGER test_refuse_reseal")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    store.rotate_key(2).await.unwrap();
    assert_eq!(store.rows_not_under_current_key().await.unwrap(), 0);
}

#[tokio::test]
async fn a_row_sealed_with_an_unknown_key_id_is_an_error_naming_the_table_and_row_only() {
    // Arrange: rows under key A (id 0); a store that holds only key B (id 1).
    let (w, id) = settled_world().await;
    let store = SqliteStore::open(&w.path, Keyring::new(1, key_b()))
        .await
        .unwrap();

    // Act
    let err = store.workflow(&id).await.unwrap_err();

    // Assert
    assert!(
        matches!(
            &err,
            StoreError::Sealed { table: "workflows", row, source: CryptoError::UnknownKey(0) }
                if row == id.as_str()
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("workflows") && text.contains(id.as_str()),
        "{text}"
    );
    assert!(
        !text.contains("Patient42") && !text.contains("checkout"),
        "{text}"
    );
}

#[tokio::test]
async fn an_opt_out_recorded_before_a_rotation_still_blocks_texts_after_it() {
    // Arrange
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.db");
    let before = SqliteStore::open(&path, key_a()).await.unwrap();
    before.migrate().await.unwrap();
    before
        .set_sms_opt_out(
            &practice_id(),
            "+15555550142",
            true,
            "inbound_keyword",
            crate::harness::t0(),
        )
        .await
        .unwrap();

    // Act
    let after = SqliteStore::open(
        &path,
        Keyring::new(1, key_b()).with_previous(0, key_a()).unwrap(),
    )
    .await
    .unwrap();
    after.rotate_key(100).await.unwrap();

    // Assert
    assert!(
        after
            .sms_opted_out(&practice_id(), "+15555550142")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_failed_seal_fails_the_write_and_stores_nothing() {
    // Arrange: a detail above the sealing limit.
    let (w, id) = settled_world().await;
    let store = w.store().await;
    let lines = store.audit(&id).await.unwrap().len();
    let huge = "x".repeat(MAX_PLAINTEXT + 1);

    // Act
    let result = store
        .append_audit(&id, "staff:test", "note", &huge, crate::harness::t0())
        .await;

    // Assert
    assert!(
        matches!(
            result,
            Err(StoreError::Sealed {
                table: "events",
                source: CryptoError::Encrypt,
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(store.audit(&id).await.unwrap().len(), lines);
    assert!(!contains(&database_bytes(&w.path), &huge[..4096]));
}
