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

#[tokio::test]
async fn a_consent_grant_recorded_under_the_old_key_survives_that_keys_removal() {
    // Arrange: START recorded under key A.
    let dir = tempfile::tempdir().unwrap();
    let (path, under_a) = store_under_a(&dir).await;
    under_a
        .set_sms_opt_out(&practice_id(), PHONE, false, "web_form", t0())
        .await
        .unwrap();

    // Act
    SqliteStore::open(&path, rotating())
        .await
        .unwrap()
        .rotate_key(100)
        .await
        .unwrap();
    let only_b = SqliteStore::open(&path, Keyring::new(1, key_b()))
        .await
        .unwrap();

    // Assert
    let record = only_b
        .sms_consent(&practice_id(), PHONE)
        .await
        .unwrap()
        .expect("the grant is found");
    assert!(!record.opted_out);
    assert_eq!(record.source, "web_form");
}

#[tokio::test]
async fn a_rotation_merging_two_rows_for_one_number_keeps_the_latest_and_an_opt_out_on_a_tie() {
    // Arrange: under A, one number opts out at t0 + 1 min and another opts out at t0. Once B is
    // current (A still configured), the first re-subscribes by an older, out-of-order webhook and
    // the second re-subscribes at the same instant as its opt-out.
    let dir = tempfile::tempdir().unwrap();
    let (path, under_a) = store_under_a(&dir).await;
    let later = t0() + chrono::Duration::minutes(1);
    let other = "+15555550143";
    under_a
        .set_sms_opt_out(&practice_id(), PHONE, true, "inbound_keyword", later)
        .await
        .unwrap();
    under_a
        .set_sms_opt_out(&practice_id(), other, true, "inbound_keyword", t0())
        .await
        .unwrap();
    let store = SqliteStore::open(&path, rotating()).await.unwrap();
    // Written straight under the current hash, as a write before this change would have been,
    // so the rotation has two rows to merge for each number.
    let pool = crate::harness::raw_pool(&path).await;
    for (phone, at) in [(PHONE, t0()), (other, t0())] {
        sqlx::query(
            "INSERT INTO sms_consent (practice_id, phone_key, opted_out, source, at) VALUES (?, ?, 0, 'twilio', ?)",
        )
        .bind(practice_id().as_str())
        .bind(key_b().lookup_key(phone))
        .bind(at.timestamp_millis())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    // Act
    store.rotate_key(1).await.unwrap();
    let only_b = SqliteStore::open(&path, Keyring::new(1, key_b()))
        .await
        .unwrap();

    // Assert
    assert!(only_b.sms_opted_out(&practice_id(), PHONE).await.unwrap());
    assert!(only_b.sms_opted_out(&practice_id(), other).await.unwrap());
}

#[tokio::test]
async fn a_rotation_re_hashes_consent_in_bounded_batches_and_a_second_pass_does_nothing() {
    // Arrange: five numbers under key A.
    let dir = tempfile::tempdir().unwrap();
    let (path, under_a) = store_under_a(&dir).await;
    for n in 0..5 {
        under_a
            .set_sms_opt_out(
                &practice_id(),
                &format!("+1555555020{n}"),
                true,
                "inbound_keyword",
                t0(),
            )
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path, rotating()).await.unwrap();
    assert_eq!(store.rows_not_under_current_key().await.unwrap(), 5);

    // Act
    let report = store.rotate_key(2).await.unwrap();
    let again = store.rotate_key(2).await.unwrap();

    // Assert
    assert!(report.resealed.contains(&("sms_consent", 5)), "{report:?}");
    assert_eq!(report.batches, 3, "{report:?}");
    assert_eq!(again.total(), 0);
    assert_eq!(store.rows_not_under_current_key().await.unwrap(), 0);
    let only_b = SqliteStore::open(&path, Keyring::new(1, key_b()))
        .await
        .unwrap();
    for n in 0..5 {
        assert!(
            only_b
                .sms_opted_out(&practice_id(), &format!("+1555555020{n}"))
                .await
                .unwrap()
        );
    }
}

/// Turns the consent row of `PHONE` into one written before migration 0007: no sealed number.
async fn make_legacy(path: &std::path::Path) {
    let pool = crate::harness::raw_pool(path).await;
    sqlx::query("UPDATE sms_consent SET phone_sealed = NULL, key_id = NULL")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn a_consent_row_without_a_sealed_number_makes_the_rotation_say_the_old_key_must_stay() {
    // Arrange: an opt-out written under A before this change.
    let dir = tempfile::tempdir().unwrap();
    let (path, under_a) = store_under_a(&dir).await;
    under_a
        .set_sms_opt_out(&practice_id(), PHONE, true, "inbound_keyword", t0())
        .await
        .unwrap();
    make_legacy(&path).await;
    let store = SqliteStore::open(&path, rotating()).await.unwrap();

    // Act
    let report = store.rotate_key(100).await.unwrap();

    // Assert: not re-hashable, so A must stay; with A it is still found.
    assert_eq!(report.consent_not_rehashable, 1, "{report:?}");
    assert!(!report.previous_keys_removable());
    assert_eq!(store.consent_rows_not_rehashable().await.unwrap(), 1);
    assert!(store.sms_opted_out(&practice_id(), PHONE).await.unwrap());
}

#[tokio::test]
async fn a_consent_row_without_a_sealed_number_is_sealed_by_the_next_write_and_keeps_the_opt_out() {
    // Arrange: an opt-out at t0 + 1 min written under A before this change.
    let dir = tempfile::tempdir().unwrap();
    let (path, under_a) = store_under_a(&dir).await;
    let later = t0() + chrono::Duration::minutes(1);
    under_a
        .set_sms_opt_out(&practice_id(), PHONE, true, "inbound_keyword", later)
        .await
        .unwrap();
    make_legacy(&path).await;
    let store = SqliteStore::open(&path, rotating()).await.unwrap();

    // Act: an older opt-in arrives out of order under B, then the rotation runs.
    store
        .set_sms_opt_out(&practice_id(), PHONE, false, "twilio", t0())
        .await
        .unwrap();
    let report = store.rotate_key(100).await.unwrap();

    // Assert: nothing left that needs A, and without A the opt-out still wins.
    assert_eq!(report.consent_not_rehashable, 0, "{report:?}");
    assert!(report.previous_keys_removable());
    let only_b = SqliteStore::open(&path, Keyring::new(1, key_b()))
        .await
        .unwrap();
    let record = only_b
        .sms_consent(&practice_id(), PHONE)
        .await
        .unwrap()
        .unwrap();
    assert!(record.opted_out);
    assert_eq!(record.at, later);
}

#[tokio::test]
async fn the_database_never_holds_a_consent_phone_number_in_clear() {
    // Arrange / Act: consent written under A, rotated to B, written again under B.
    let dir = tempfile::tempdir().unwrap();
    let (path, under_a) = store_under_a(&dir).await;
    under_a
        .set_sms_opt_out(&practice_id(), PHONE, true, "inbound_keyword", t0())
        .await
        .unwrap();
    let store = SqliteStore::open(&path, rotating()).await.unwrap();
    store.rotate_key(100).await.unwrap();
    store
        .set_sms_opt_out(
            &practice_id(),
            PHONE,
            false,
            "staff",
            t0() + chrono::Duration::hours(1),
        )
        .await
        .unwrap();

    // Assert: the number is sealed in the row, and appears nowhere in the file or its log.
    let pool = crate::harness::raw_pool(&path).await;
    let sealed: Vec<Option<Vec<u8>>> = sqlx::query_scalar("SELECT phone_sealed FROM sms_consent")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(sealed.len(), 1);
    assert_eq!(
        Keyring::key_id(sealed[0].as_deref().unwrap()).unwrap(),
        Some(1)
    );
    let db = crate::harness::database_bytes(&path);
    for value in [PHONE, &PHONE[2..], &PHONE[5..]] {
        assert!(
            !crate::harness::contains(&db, value),
            "{value} is stored in clear"
        );
    }
}

// ---- Consent records: source, wording, when, who; withdrawal always wins. ----

mod records {
    use chairside_engine::store::prelude::*;
    use chairside_engine::store::{SmsConsentRecord, SqliteStore};
    use chrono::Duration;
    use messaging::{
        ConsentEntry, ConsentKind, PATIENT_PAGE_WORDING, STAFF_INTAKE_FORM_WORDING, sources,
    };

    use super::{PHONE, store_under_a};
    use crate::harness::{practice_id, raw_pool, t0};

    fn attestation(at_min: i64) -> ConsentEntry {
        ConsentEntry::grant(
            ConsentKind::Informational,
            "practice_system:opendental",
            "The practice's record in opendental (TxtMsgOk) says the patient agreed",
            "runner",
            t0() + Duration::minutes(at_min),
        )
    }

    fn stop(at_min: i64) -> ConsentEntry {
        ConsentEntry::withdrawal(
            sources::SMS_STOP,
            "STOP",
            "webhook:twilio",
            t0() + Duration::minutes(at_min),
        )
    }

    fn page(at_min: i64) -> ConsentEntry {
        ConsentEntry::grant(
            ConsentKind::Written,
            sources::PATIENT_PAGE,
            PATIENT_PAGE_WORDING,
            "patient",
            t0() + Duration::minutes(at_min),
        )
    }

    async fn record(store: &SqliteStore, entry: &ConsentEntry) -> SmsConsentRecord {
        store
            .record_sms_consent(&practice_id(), PHONE, entry, entry.at)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_practice_attestation_grants_until_stop_and_never_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = store_under_a(&dir).await;

        let granted = record(&store, &attestation(0)).await;
        assert_eq!(granted.consent, Some(ConsentKind::Informational));
        assert!(!granted.opted_out);
        assert_eq!(granted.recorded_by, "runner");

        let stopped = record(&store, &stop(1)).await;
        assert!(stopped.opted_out);
        assert_eq!(stopped.consent, None);

        // The next plan's read of the practice system says yes again: recorded, not effective.
        let after = record(&store, &attestation(60)).await;
        assert!(after.opted_out, "an attestation overrode a withdrawal");
        assert!(store.sms_opted_out(&practice_id(), PHONE).await.unwrap());

        // Only the patient's own opt-in grants again, and the record keeps its wording.
        let again = record(&store, &page(61)).await;
        assert!(!again.opted_out);
        assert_eq!(again.consent, Some(ConsentKind::Written));
        assert_eq!(again.wording, PATIENT_PAGE_WORDING);
        assert_eq!(again.source, sources::PATIENT_PAGE);

        let history = store
            .sms_consent_history(&practice_id(), PHONE)
            .await
            .unwrap();
        let seen: Vec<(&str, bool)> = history
            .iter()
            .map(|r| (r.entry.source.as_str(), r.effective))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("practice_system:opendental", true),
                (sources::SMS_STOP, true),
                ("practice_system:opendental", false),
                (sources::PATIENT_PAGE, true),
            ]
        );
        assert_eq!(history[3].entry.wording, PATIENT_PAGE_WORDING);
        assert_eq!(history[3].entry.recorded_by, "patient");
    }

    #[tokio::test]
    async fn a_late_stop_still_beats_a_staff_entry_recorded_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, store) = store_under_a(&dir).await;
        let staff = ConsentEntry::grant(
            ConsentKind::Written,
            sources::STAFF_INTAKE_FORM,
            STAFF_INTAKE_FORM_WORDING,
            "staff:alice",
            t0() + Duration::minutes(10),
        );
        record(&store, &staff).await;
        // A STOP sent before the staff entry, processed after it.
        let now = record(&store, &stop(5)).await;
        assert!(now.opted_out);
    }

    #[tokio::test]
    async fn the_history_is_append_only_and_holds_no_number_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = store_under_a(&dir).await;
        record(&store, &page(0)).await;
        let pool = raw_pool(&path).await;
        for sql in [
            "UPDATE sms_consent_log SET consent = 'written'",
            "DELETE FROM sms_consent_log",
        ] {
            let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{err}");
        }
        let rows: Vec<String> = sqlx::query_scalar("SELECT phone_key FROM sms_consent_log")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].contains("5555550142"));
    }
}
