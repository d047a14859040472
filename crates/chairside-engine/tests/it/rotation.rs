//! `chairside rotate-key` on both stores (`both!`): every sealed value re-sealed under the new key
//! in bounded batches, everything readable once the old key is removed (an SMS opt-out included),
//! a second pass finding nothing, and a value no key opens named, not skipped.

use std::path::PathBuf;
use std::time::Duration;

use chairside_engine::store::crypto::{DataKey, Keyring};
use chairside_engine::store::{
    Consumed, IntakeOrigin, NewIntake, PostgresStore, ResealReport, SqliteStore, StoreError,
};
use chairside_workflow::machine::Transition;
use chairside_workflow::{Event, PaymentFact, StaffTask, TaskKind, WorkflowId};
use financing_core::Money;

use crate::backend::{Backend, TestDb, both};
use crate::harness::{KEY_HEX, patient, practice_id, t0};

const KEY_B: &str = "6b65792d622d666f722d726f746174696f6e2d746573742d303132333435363738";
const PHONE: &str = "+15555550142";

fn key_a() -> DataKey {
    DataKey::parse(KEY_HEX).unwrap()
}

pub(crate) fn key_b() -> DataKey {
    DataKey::parse(&KEY_B[..64]).unwrap()
}

/// Key B current (id 1), key A (id 0) still configured.
pub(crate) fn rotating() -> Keyring {
    Keyring::new(1, key_b()).with_previous(0, key_a()).unwrap()
}

fn secs(n: i64) -> chrono::DateTime<chrono::Utc> {
    t0() + chrono::Duration::seconds(n)
}

/// Every sealed column, as `(table, column)`.
const SEALED: [(&str, &str); 8] = [
    ("workflows", "state"),
    ("outbox", "command"),
    ("inbox", "event"),
    ("events", "detail"),
    ("staff_tasks", "reason"),
    ("patients", "contact"),
    ("intakes", "summary"),
    ("sms_consent", "phone_sealed"),
];

/// The store on `db`'s database under `ring`, as its own type: the rotation is not a role of the
/// `Store` trait (only `chairside rotate-key` runs it).
pub(crate) enum Concrete {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Concrete {
    pub(crate) async fn open(db: &TestDb, ring: Keyring) -> Self {
        match db.backend {
            Backend::Sqlite => Self::Sqlite(
                SqliteStore::open(&PathBuf::from(&db.location), ring)
                    .await
                    .unwrap(),
            ),
            Backend::Postgres => {
                Self::Postgres(PostgresStore::connect(&db.location, ring).await.unwrap())
            }
        }
    }

    pub(crate) async fn rotate_key(&self, batch: u32) -> Result<ResealReport, StoreError> {
        match self {
            Self::Sqlite(s) => s.rotate_key(batch).await,
            Self::Postgres(s) => s.rotate_key(batch).await,
        }
    }

    async fn rows_not_under_current_key(&self) -> u64 {
        match self {
            Self::Sqlite(s) => s.rows_not_under_current_key().await.unwrap(),
            Self::Postgres(s) => s.rows_not_under_current_key().await.unwrap(),
        }
    }
}

/// The key id of every sealed value, per table, as stored.
async fn key_ids(db: &TestDb) -> Vec<(&'static str, Option<u8>)> {
    let mut out = Vec::new();
    for (table, column) in SEALED {
        let values = db
            .raw
            .blobs(&format!(
                "SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
            ))
            .await;
        for v in values {
            out.push((table, Keyring::key_id(&v).unwrap()));
        }
    }
    out
}

/// One of every sealed row under key A: a workflow (state, outbox command, audit details), a
/// webhook's event in its inbox, a staff task, a patient's contact, an intake's summary and an
/// SMS opt-out. Returns the workflow.
async fn rows_under_key_a(db: &TestDb) -> WorkflowId {
    let store = &*db.store;
    let practice = practice_id();
    let mut state = chairside_workflow::WorkflowState::new(
        chairside_workflow::WorkflowKey {
            practice_id: practice.clone(),
            plan_id: financing_core::PlanId::new("tx-1"),
            revision: "1".into(),
        },
        financing_core::PatientId::new("pat-1"),
        t0(),
    );
    let first = state.start();
    let id = store
        .record_poll(
            &practice,
            "fakepms",
            "1",
            vec![chairside_engine::store::NewWorkflow { state, first }],
            vec![],
            t0(),
        )
        .await
        .unwrap()
        .remove(0);
    let claim = store
        .claim_due("a", t0(), Duration::from_secs(30), 1)
        .await
        .unwrap()
        .remove(0);
    let work = store.load(&claim, t0()).await.unwrap();
    let transition = Transition {
        raise_task: Some(StaffTask {
            kind: TaskKind::BadData,
            reason: "procedure 1 (D2740) has insurance estimates above its fee".into(),
        }),
        ..Transition::default()
    };
    store
        .commit(
            &claim,
            &work.state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "plan_loaded".into(),
            },
            "plan_loaded",
            &transition,
            secs(1),
        )
        .await
        .unwrap();
    store.release(&claim, secs(1)).await.unwrap();
    store
        .record_webhook(
            "stripe",
            "evt_1",
            vec![(
                id.clone(),
                Event::Payment(PaymentFact::Paid {
                    stripe_id: "in_1".into(),
                    amount: Money::usd(100),
                }),
            )],
            secs(2),
        )
        .await
        .unwrap();
    store
        .put_patient(&practice, &patient(7), secs(3))
        .await
        .unwrap();
    store
        .create_intake(
            &NewIntake {
                id: "in_rotation".into(),
                practice_id: practice.clone(),
                token_hash: [7; 32],
                origin: IntakeOrigin::Staff,
                amount: Some(Money::usd(100_000)),
                summary: Some("crown on 14, made-up consultation".into()),
                contact: None,
                details_from_patient: false,
                created_by: "staff:test".into(),
                send_link: false,
            },
            secs(4),
        )
        .await
        .unwrap();
    store
        .set_sms_opt_out(&practice, PHONE, true, "inbound_keyword", secs(5))
        .await
        .unwrap();
    id
}

async fn rotating_reseals_every_row_in_batches_and_all_reads_back_without_the_old_key(
    backend: Backend,
) {
    // Arrange: one of every sealed row under key A.
    let db = TestDb::new(backend).await;
    let id = rows_under_key_a(&db).await;
    let before = key_ids(&db).await;
    for (table, _) in SEALED {
        assert!(
            before.iter().any(|(t, _)| *t == table),
            "the arrangement writes a sealed row into {table}"
        );
    }
    assert!(before.iter().all(|(_, k)| *k == Some(0)), "{before:?}");
    let workflow = db.store.workflow(&id).await.unwrap().unwrap().state;
    let audit_of = |rows: Vec<chairside_engine::store::AuditRow>| {
        rows.into_iter()
            .map(|a| (a.at, a.actor, a.kind, a.detail))
            .collect::<Vec<_>>()
    };
    let tasks_of = |rows: Vec<chairside_engine::store::TaskRow>| {
        rows.into_iter()
            .map(|t| (t.workflow_id, t.task))
            .collect::<Vec<_>>()
    };
    let audit = audit_of(db.store.audit(&id).await.unwrap());
    let tasks = tasks_of(db.store.tasks(None, true).await.unwrap());
    assert!(audit.len() > 1 && tasks.len() == 1, "{audit:?} {tasks:?}");
    let rotating = Concrete::open(&db, rotating()).await;
    let pending = rotating.rows_not_under_current_key().await;
    assert_eq!(pending, before.len() as u64);

    // Act: batches of two, then a second pass.
    let report = rotating.rotate_key(2).await.unwrap();
    let again = rotating.rotate_key(2).await.unwrap();

    // Assert: every value under key B (id 1), in more than one batch per table that needs it.
    assert_eq!(report.total(), pending, "{report:?}");
    let per_table = |table: &str| before.iter().filter(|(t, _)| *t == table).count() as u64;
    let batches: u64 = SEALED.iter().map(|(t, _)| per_table(t).div_ceil(2)).sum();
    assert_eq!(report.batches, batches, "two rows a batch: {report:?}");
    assert!(report.previous_keys_removable());
    assert_eq!(again.total(), 0, "{again:?}");
    assert_eq!(rotating.rows_not_under_current_key().await, 0);
    let after = key_ids(&db).await;
    assert_eq!(after.len(), before.len());
    assert!(after.iter().all(|(_, k)| *k == Some(1)), "{after:?}");
    // With key A gone, every value opens and equals what was written.
    let only_b = db.reopen(Keyring::new(1, key_b())).await;
    assert_eq!(only_b.workflow(&id).await.unwrap().unwrap().state, workflow);
    assert_eq!(audit_of(only_b.audit(&id).await.unwrap()), audit);
    assert_eq!(tasks_of(only_b.tasks(None, true).await.unwrap()), tasks);
    assert_eq!(
        only_b
            .patient(&practice_id(), &patient(7).id)
            .await
            .unwrap(),
        Some(patient(7))
    );
    let intake = only_b
        .intake(&practice_id(), "in_rotation")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        intake.summary.as_deref(),
        Some("crown on 14, made-up consultation")
    );
    assert!(
        only_b.sms_opted_out(&practice_id(), PHONE).await.unwrap(),
        "the opt-out made under key A still blocks texts"
    );
    let claim = only_b
        .claim_due("b", secs(10), Duration::from_secs(30), 1)
        .await
        .unwrap();
    assert_eq!(claim.len(), 1, "the inbox event is due");
    let work = only_b.load(&claim[0], secs(10)).await.unwrap();
    assert!(work.item.is_some(), "the inbox event opens under key B");
}

async fn a_value_no_key_opens_stops_the_rotation_and_names_its_table(backend: Backend) {
    // Arrange: rows under key A, and a patient's contact that A does not open.
    let db = TestDb::new(backend).await;
    rows_under_key_a(&db).await;
    // Another row's value, sealed under A but bound to its own row: A refuses it here.
    let flip = "UPDATE patients SET contact = (SELECT state FROM workflows LIMIT 1)";
    assert_eq!(db.raw.execute(flip).await.unwrap(), 1);

    // Act
    let rotating = Concrete::open(&db, rotating()).await;
    let failed = rotating.rotate_key(100).await;

    // Assert: the error names the table (not the patient), and a later pass still has work.
    match failed {
        Err(StoreError::Sealed { table, .. }) => assert_eq!(table, "patients"),
        other => panic!("expected a sealed-value error, got {other:?}"),
    }
    assert!(rotating.rows_not_under_current_key().await > 0);
}

both!(
    rotating_reseals_every_row_in_batches_and_all_reads_back_without_the_old_key,
    a_value_no_key_opens_stops_the_rotation_and_names_its_table,
);
