//! SMS consent across data-key rotations: withdrawal always wins, even after the old key is
//! removed from the configuration.

use chairside_engine::store::SqliteStore;
use chairside_engine::store::crypto::{DataKey, Keyring};
use chairside_engine::store::prelude::*;

use crate::harness::{KEY_HEX, practice_id, t0};

const KEY_B: &str = "6b65792d622d666f722d726f746174696f6e2d746573742d303132333435363738";
const PHONE: &str = "+15555550142";

fn key_a() -> DataKey {
    DataKey::parse(KEY_HEX).unwrap()
}

fn key_b() -> DataKey {
    DataKey::parse(&KEY_B[..64]).unwrap()
}

/// Key B current (id 1), key A (id 0) still configured as a previous key.
fn rotating() -> Keyring {
    Keyring::new(1, key_b()).with_previous(0, key_a()).unwrap()
}

/// A migrated store under key A alone, on a temporary file.
async fn store_under_a(dir: &tempfile::TempDir) -> (std::path::PathBuf, SqliteStore) {
    let path = dir.path().join("consent.db");
    let store = SqliteStore::open(&path, key_a()).await.unwrap();
    store.migrate().await.unwrap();
    (path, store)
}

#[tokio::test]
async fn an_opt_out_recorded_under_the_old_key_still_blocks_texts_once_that_key_is_removed() {
    // Arrange: STOP recorded under key A.
    let dir = tempfile::tempdir().unwrap();
    let (path, under_a) = store_under_a(&dir).await;
    under_a
        .set_sms_opt_out(&practice_id(), PHONE, true, "inbound_keyword", t0())
        .await
        .unwrap();

    // Act: rotate to B, then remove A from the keyring.
    let report = SqliteStore::open(&path, rotating())
        .await
        .unwrap()
        .rotate_key(100)
        .await
        .unwrap();
    let only_b = SqliteStore::open(&path, Keyring::new(1, key_b()))
        .await
        .unwrap();

    // Assert
    assert!(only_b.sms_opted_out(&practice_id(), PHONE).await.unwrap());
    let record = only_b
        .sms_consent(&practice_id(), PHONE)
        .await
        .unwrap()
        .expect("the opt-out is found");
    assert!(record.opted_out);
    assert_eq!(record.source, "inbound_keyword");
    assert_eq!(record.at, t0());
    assert!(report.previous_keys_removable(), "{report:?}");
}
