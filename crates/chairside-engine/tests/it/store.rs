//! The store against a real database, every test once on SQLite (a file) and once on PostgreSQL
//! (`crate::backend`): idempotent detection, leases and fencing, the order work is handed out in,
//! deduplication, encryption at rest and the append-only audit trail.

use std::time::Duration;

use chairside_engine::staff::StaffActions;
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_engine::store::{
    AfterStep, AuditLine, Claim, ConsentFact, Consumed, NewWorkflow, NextStep, PageMark,
    SendRecord, SentChannel, StepFacts, StoreError, WorkItem,
};
use chairside_workflow::machine::Transition;
use chairside_workflow::{
    Action, Command, Event, PaymentFact, StaffTask, Status, TaskKind, TimerKind, WorkflowId,
    WorkflowKey, WorkflowState,
};
use chrono::{DateTime, Utc};
use financing_core::{Money, PatientId, PlanId, PracticeId};

use crate::backend::{Backend, Raw, TestDb, both};
use crate::harness::{KEY_HEX, contains, patient, practice_id, t0};

fn secs(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(n)
}

fn mins(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::minutes(n)
}

const LEASE: Duration = Duration::from_secs(30);

fn key(plan: &str, revision: &str) -> WorkflowKey {
    WorkflowKey {
        practice_id: practice_id(),
        plan_id: PlanId::new(plan),
        revision: revision.into(),
    }
}

fn new_workflow(plan: &str, revision: &str) -> NewWorkflow {
    let mut state = WorkflowState::new(key(plan, revision), PatientId::new("pat-1"), t0());
    let first = state.start();
    NewWorkflow { state, first }
}

/// Records one accepted plan at `t0` and returns its id.
async fn one_workflow(store: &dyn Store) -> WorkflowId {
    let created = store
        .record_poll(
            &practice_id(),
            "fakepms",
            "1",
            vec![new_workflow("tx-1", "1")],
            vec![],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    created[0].clone()
}

fn command(seq: u64, action: Action) -> Command {
    Command { seq, action }
}

async fn count(raw: &Raw, sql: &str) -> i64 {
    raw.count(sql).await
}

async fn migrating_twice_is_harmless_and_the_store_reports_ready(backend: Backend) {
    // Arrange: a database without the schema.
    let dir = tempfile::tempdir().unwrap();
    let location = match backend {
        Backend::Sqlite => dir.path().join("fresh.db").display().to_string(),
        Backend::Postgres => crate::backend::fresh_postgres_database().await,
    };
    let store = crate::backend::open(backend, &location, DataKey::parse(KEY_HEX).unwrap()).await;

    // Act / Assert
    assert!(!store.ready().await.unwrap(), "no schema yet");
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.ready().await.unwrap());
    // Commits are durable: WAL on SQLite (synchronous FULL is set per connection), the default
    // synchronous commit on PostgreSQL.
    match backend {
        Backend::Sqlite => {
            let pool = crate::harness::raw_pool(std::path::Path::new(&location)).await;
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(journal, "wal");
        }
        Backend::Postgres => {
            let store = chairside_engine::store::PostgresStore::connect(
                &location,
                DataKey::parse(KEY_HEX).unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(store.setting("synchronous_commit").await.unwrap(), "on");
        }
    }
}

async fn recording_the_same_plan_twice_creates_one_workflow_and_advances_the_cursor(
    backend: Backend,
) {
    // Arrange
    let db = TestDb::new(backend).await;
    let practice = practice_id();
    assert_eq!(db.store.cursor(&practice, "fakepms").await.unwrap(), None);

    // Act
    let first = db
        .store
        .record_poll(
            &practice,
            "fakepms",
            "c1",
            vec![new_workflow("tx-1", "1")],
            vec![],
            t0(),
        )
        .await
        .unwrap();
    let second = db
        .store
        .record_poll(
            &practice,
            "fakepms",
            "c2",
            vec![new_workflow("tx-1", "1"), new_workflow("tx-1", "1")],
            vec![],
            secs(1),
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(first, vec![WorkflowId::derive(&key("tx-1", "1"))]);
    assert!(second.is_empty(), "a known plan is skipped: {second:?}");
    assert_eq!(
        db.store
            .cursor(&practice, "fakepms")
            .await
            .unwrap()
            .as_deref(),
        Some("c2")
    );
    assert_eq!(
        db.store
            .cursor(&PracticeId::new("other"), "fakepms")
            .await
            .unwrap(),
        None,
        "cursors are per practice"
    );
    let pool = db.raw.clone();
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM workflows").await, 1);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM outbox").await,
        1,
        "one first command"
    );
}

async fn a_failed_poll_transaction_records_neither_the_plans_nor_the_cursor(backend: Backend) {
    // Arrange: make the cursor write fail, after the workflow insert in the same transaction.
    let db = TestDb::new(backend).await;
    let pool = db.raw.clone();
    pool.refuse_inserts_into("sync_cursors").await;

    // Act
    let result = db
        .store
        .record_poll(
            &practice_id(),
            "fakepms",
            "c1",
            vec![new_workflow("tx-1", "1")],
            vec![],
            t0(),
        )
        .await;

    // Assert
    assert!(matches!(result, Err(StoreError::Database(_))), "{result:?}");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM workflows").await, 0);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM outbox").await, 0);
    assert_eq!(
        db.store.cursor(&practice_id(), "fakepms").await.unwrap(),
        None
    );
}

async fn a_new_revision_of_a_known_plan_is_a_new_workflow_and_a_rejection_reaches_the_known_one(
    backend: Backend,
) {
    // Arrange
    let db = TestDb::new(backend).await;
    let first = one_workflow(&*db.store).await;
    let unknown = WorkflowId::derive(&key("tx-404", "1"));

    // Act
    let created = db
        .store
        .record_poll(
            &practice_id(),
            "fakepms",
            "2",
            vec![new_workflow("tx-1", "2")],
            vec![
                (
                    first.clone(),
                    Event::PlanWithdrawn {
                        reason: "rejected".into(),
                    },
                ),
                (
                    unknown.clone(),
                    Event::PlanWithdrawn {
                        reason: "rejected".into(),
                    },
                ),
            ],
            secs(1),
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(created, vec![WorkflowId::derive(&key("tx-1", "2"))]);
    assert_ne!(created[0], first);
    let pool = db.raw.clone();
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM workflows").await, 2);
    let inbox = pool
        .strings("SELECT workflow_id FROM inbox ORDER BY id")
        .await;
    // The new revision withdraws the earlier one ("edited"), then the rejection arrives too;
    // the event for the unknown workflow is dropped.
    assert_eq!(
        inbox,
        vec![first.to_string(), first.to_string()],
        "events for unknown workflows are dropped"
    );
    let claims = db.store.claim_due("a", secs(1), LEASE, 10).await.unwrap();
    let claim = claims.iter().find(|c| c.id == first).unwrap();
    let work = db.store.load(claim, secs(1)).await.unwrap();
    assert!(matches!(
        work.item,
        Some(WorkItem::Inbox {
            event: Event::PlanWithdrawn { .. },
            ..
        })
    ));
}

async fn a_round_of_claims_answers_when_the_next_workflow_becomes_claimable(backend: Backend) {
    // Arrange: two accepted plans, both due at t0.
    let db = TestDb::new(backend).await;
    let created = db
        .store
        .record_poll(
            &practice_id(),
            "fakepms",
            "1",
            vec![new_workflow("tx-1", "1"), new_workflow("tx-2", "1")],
            vec![],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 2);

    // Act: a round with one free slot, a round with five, and one with nothing left to take.
    let one = db.store.claim_round("a", secs(1), LEASE, 1).await.unwrap();
    let next_after_one = db.store.next_claimable(secs(1)).await.unwrap();
    let rest = db.store.claim_round("a", secs(2), LEASE, 5).await.unwrap();
    let next_after_rest = db.store.next_claimable(secs(2)).await.unwrap();
    let none = db.store.claim_round("b", secs(3), LEASE, 5).await.unwrap();

    // Assert: the first round filled its one slot, so it read no next time (the other plan,
    // due since t0, is there for the next round); once both are held, the next claimable moment
    // is the first lease's expiry. Each answer read is what `next_claimable` reads.
    assert_eq!(one.claims.len(), 1);
    assert!(one.next.is_none(), "a full round reads no next time");
    assert_eq!(next_after_one, Some(t0()));
    assert_eq!(rest.claims.len(), 1);
    assert_ne!(rest.claims[0].id, one.claims[0].id, "the other plan");
    let first_expiry =
        secs(1) + chrono::Duration::from_std(LEASE).unwrap() + chrono::Duration::milliseconds(1);
    let read = |round: &chairside_engine::store::ClaimRound| {
        round
            .next
            .as_ref()
            .expect("a round with a free slot reads the next time")
            .as_ref()
            .copied()
            .unwrap()
    };
    assert_eq!(read(&rest), Some(first_expiry));
    assert_eq!(read(&rest), next_after_rest);
    assert!(none.claims.is_empty(), "both are held: {:?}", none.claims);
    assert_eq!(read(&none), Some(first_expiry));
}

async fn a_claim_goes_to_one_owner_until_its_lease_expires_and_the_old_owner_is_then_fenced_off(
    backend: Backend,
) {
    // Arrange
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;

    // Act: A claims; B finds nothing while the lease holds, then takes over after it expires.
    let a = db
        .store
        .claim_due("runner-a", t0(), LEASE, 10)
        .await
        .unwrap();
    let b_early = db
        .store
        .claim_due("runner-b", secs(29), LEASE, 10)
        .await
        .unwrap();
    let b = db
        .store
        .claim_due("runner-b", secs(31), LEASE, 10)
        .await
        .unwrap();

    // Assert
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].id, id);
    assert!(
        b_early.is_empty(),
        "a held lease is not claimable: {b_early:?}"
    );
    assert_eq!(b.len(), 1);
    assert!(b[0].epoch > a[0].epoch, "{} > {}", b[0].epoch, a[0].epoch);
    let (a, b) = (&a[0], &b[0]);

    // The old owner's step is refused and writes nothing.
    let work = db.store.load(b, secs(31)).await.unwrap();
    let Some(WorkItem::Command { command: first, .. }) = work.item.clone() else {
        panic!("expected the first command, got {:?}", work.item);
    };
    let mut changed = work.state.clone();
    changed.status = Status::Done;
    let transition = Transition {
        commands: vec![command(2, Action::EnsureCustomer)],
        set_timers: vec![(TimerKind::Poll, mins(10))],
        raise_task: Some(StaffTask {
            kind: TaskKind::SystemError,
            reason: "should never be stored".into(),
        }),
        audit: vec!["stale write".into()],
        ..Transition::default()
    };
    let consumed = Consumed::Command {
        seq: first.seq,
        attempt: 1,
        outcome: "plan_loaded".into(),
    };
    let stale = db
        .store
        .commit(
            a,
            &changed,
            consumed.clone(),
            "plan_loaded",
            &transition,
            secs(32),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost(ref w)) if *w == id),
        "{stale:?}"
    );
    assert!(matches!(
        db.store.begin_effect(a, &first, 1, "k", secs(32)).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        db.store
            .defer_command(a, first.seq, 1, "transient", mins(5), secs(32))
            .await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        db.store.load(a, secs(32)).await,
        Err(StoreError::LeaseLost(_))
    ));
    // A late release by the old owner does not free the new owner's lease.
    db.store.release(a, secs(32)).await.unwrap();
    assert!(
        db.store
            .claim_due("runner-c", secs(33), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let row = db.store.workflow(&id).await.unwrap().unwrap();
    assert_eq!(row.state.status, Status::Active);
    assert!(db.store.tasks(None, true).await.unwrap().is_empty());
    let pool = db.raw.clone();
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM outbox").await, 1);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM timers").await, 0);
    // Each claim journaled the plan load's intent; the refused step finished none of them.
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM effects WHERE finished_at IS NULL AND outcome IS NULL"
        )
        .await,
        2
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM events").await,
        1,
        "only 'detected'"
    );

    // The new owner's commit goes through.
    db.store
        .begin_effect(b, &first, 1, "k", secs(33))
        .await
        .unwrap();
    db.store
        .commit(b, &changed, consumed, "plan_loaded", &transition, secs(34))
        .await
        .unwrap();
    let row = db.store.workflow(&id).await.unwrap().unwrap();
    assert_eq!(row.state.status, Status::Done);
    assert_eq!(row.next_action.as_deref(), Some("ensure_customer"));
    assert_eq!(db.store.tasks(None, false).await.unwrap().len(), 1);
}

async fn inbox_events_come_before_due_timers_and_timers_before_commands(backend: Backend) {
    // Arrange: a workflow with a pending command, a due timer and an inbox event.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let work = db.store.load(&claim, t0()).await.unwrap();
    let transition = Transition {
        commands: vec![command(2, Action::EnsureCustomer)],
        set_timers: vec![(TimerKind::Poll, mins(1))],
        ..Transition::default()
    };
    db.store
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
            t0(),
        )
        .await
        .unwrap();
    db.store.release(&claim, t0()).await.unwrap();
    db.store
        .enqueue(
            &id,
            "staff",
            &Event::PlanWithdrawn {
                reason: "rejected".into(),
            },
            mins(2),
        )
        .await
        .unwrap();

    // Act / Assert
    let claim = db
        .store
        .claim_due("a", mins(2), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let work = db.store.load(&claim, mins(2)).await.unwrap();
    let Some(WorkItem::Inbox { id: row, .. }) = work.item else {
        panic!("inbox first, got {:?}", work.item);
    };
    let empty = Transition::default();
    db.store
        .commit(
            &claim,
            &work.state,
            Consumed::Inbox(row),
            "plan_withdrawn",
            &empty,
            mins(2),
        )
        .await
        .unwrap();
    let work = db.store.load(&claim, mins(2)).await.unwrap();
    assert_eq!(
        work.item,
        Some(WorkItem::Timer(TimerKind::Poll)),
        "then the due timer"
    );
    db.store
        .commit(
            &claim,
            &work.state,
            Consumed::Timer(TimerKind::Poll),
            "timer_fired",
            &empty,
            mins(2),
        )
        .await
        .unwrap();
    let work = db.store.load(&claim, mins(2)).await.unwrap();
    assert!(
        matches!(
            work.item,
            Some(WorkItem::Command { ref command, attempts: 0 }) if command.seq == 2
        ),
        "then the command: {:?}",
        work.item
    );
}

async fn a_timer_fires_only_when_it_is_due(backend: Backend) {
    // Arrange: the first step leaves only a timer 10 minutes out.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let work = db.store.load(&claim, t0()).await.unwrap();
    let transition = Transition {
        set_timers: vec![(TimerKind::Reminder, mins(10))],
        ..Transition::default()
    };
    db.store
        .commit(
            &claim,
            &work.state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "application_opened".into(),
            },
            "application_opened",
            &transition,
            t0(),
        )
        .await
        .unwrap();

    // Act / Assert
    assert_eq!(db.store.load(&claim, mins(9)).await.unwrap().item, None);
    db.store.release(&claim, mins(9)).await.unwrap();
    let row = db.store.workflow(&id).await.unwrap().unwrap();
    assert_eq!(row.next_due_at, Some(mins(10)));
    assert!(
        db.store
            .claim_due("a", mins(9), LEASE, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let claim = db
        .store
        .claim_due("a", mins(10), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        db.store.load(&claim, mins(10)).await.unwrap().item,
        Some(WorkItem::Timer(TimerKind::Reminder))
    );
}

async fn a_deferred_command_waits_until_its_time_and_keeps_its_attempt_count_and_journal(
    backend: Backend,
) {
    // Arrange
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let Some(WorkItem::Command {
        command: first,
        attempts: 0,
    }) = db.store.load(&claim, t0()).await.unwrap().item
    else {
        panic!("the first command");
    };
    let key = id.idempotency_key(first.action.label(), first.seq);
    // The claim journaled the call's intent (the key is stored with the command).
    assert_eq!(
        claim
            .begun
            .as_ref()
            .map(|b| (b.seq, b.attempt, b.key.as_str())),
        Some((first.seq, 1, key.as_str()))
    );

    // Act
    db.store
        .defer_command(
            &claim,
            first.seq,
            1,
            "transient: plan: HTTP 503",
            mins(10),
            t0(),
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(db.store.load(&claim, mins(9)).await.unwrap().item, None);
    db.store.release(&claim, t0()).await.unwrap();
    assert!(
        db.store
            .claim_due("a", mins(9), LEASE, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let claim = db
        .store
        .claim_due("a", mins(10), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert!(matches!(
        db.store.load(&claim, mins(10)).await.unwrap().item,
        Some(WorkItem::Command { attempts: 1, .. })
    ));
    let pool = db.raw.clone();
    let row = pool
        .strings(
            "SELECT idempotency_key || ' | ' || COALESCE(outcome, '-') || ' | ' ||
                 CASE WHEN finished_at IS NULL THEN 'open' ELSE 'finished' END FROM effects
             ORDER BY attempt",
        )
        .await;
    // The claim that repeats the call journaled its intent as the next attempt, same key.
    assert_eq!(
        row,
        vec![
            format!("{key} | transient: plan: HTTP 503 | finished"),
            format!("{key} | - | open"),
        ]
    );
}

async fn a_webhook_is_recorded_once_per_provider_and_event_id(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let paid = || {
        vec![(
            id.clone(),
            Event::Payment(PaymentFact::Paid {
                stripe_id: "in_1".into(),
                amount: Money::usd(100),
            }),
        )]
    };

    // Act
    let first = db
        .store
        .record_webhook("stripe", "evt_1", paid(), t0())
        .await
        .unwrap();
    let again = db
        .store
        .record_webhook("stripe", "evt_1", paid(), secs(1))
        .await
        .unwrap();
    let other_provider = db
        .store
        .record_webhook("sunbit", "evt_1", vec![], secs(2))
        .await
        .unwrap();

    // Assert
    assert!(first);
    assert!(!again, "a redelivery is recognised");
    assert!(other_provider, "event ids are per provider");
    let pool = db.raw.clone();
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM inbox").await, 1);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM webhooks").await, 2);
}

async fn patient_contact_is_encrypted_at_rest_and_reads_back_equal(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let practice = practice_id();
    let contact = patient(7);
    let other = patient(8);

    // Act
    db.store
        .put_patient(&practice, &contact, t0())
        .await
        .unwrap();
    db.store.put_patient(&practice, &other, t0()).await.unwrap();

    // Assert
    let back = db.store.patient(&practice, &contact.id).await.unwrap();
    assert_eq!(back.as_ref(), Some(&contact));
    assert_eq!(
        db.store
            .patient(&PracticeId::new("x"), &contact.id)
            .await
            .unwrap(),
        None
    );
    let pool = db.raw.clone();
    let blob = pool
        .blob("SELECT contact FROM patients WHERE patient_id = 'pat-7'")
        .await;
    let everything = db.all_bytes().await;
    let phone = contact.mobile_phone.clone().unwrap();
    let email = contact.email.clone().unwrap();
    for phi in [
        contact.last_name.as_str(),
        phone.as_str(),
        &phone[2..],
        email.as_str(),
        "Sample Street",
    ] {
        assert!(!contains(&blob, phi), "{phi} is stored in clear");
        assert!(
            !contains(&everything, phi),
            "{phi} is somewhere in the database"
        );
    }
    // Another key cannot read it, and a row's ciphertext does not open as another patient's.
    let wrong = db.reopen(DataKey::generate()).await;
    assert!(matches!(
        wrong.patient(&practice, &contact.id).await,
        Err(StoreError::Crypto(_))
    ));
    pool.execute(
        "UPDATE patients SET contact = (SELECT contact FROM patients WHERE patient_id = 'pat-8')
         WHERE patient_id = 'pat-7'",
    )
    .await
    .unwrap();
    assert!(matches!(
        db.store.patient(&practice, &contact.id).await,
        Err(StoreError::Crypto(_))
    ));
}

async fn the_audit_trail_is_append_only(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    db.store
        .append_audit(&id, "staff:test", "note", "called the patient", secs(1))
        .await
        .unwrap();
    let pool = db.raw.clone();

    // Act
    let rewrite = match backend {
        Backend::Sqlite => "UPDATE events SET detail = 'rewritten'",
        Backend::Postgres => "UPDATE events SET detail = 'rewritten'::BYTEA",
    };
    let update = pool.execute(rewrite).await;
    let delete = pool.execute("DELETE FROM events").await;

    // Assert
    for result in [update, delete] {
        let err = result.expect_err("the events table must refuse the change");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    let audit = db.store.audit(&id).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, vec!["detected", "note"]);
    assert_eq!(audit[1].actor, "staff:test");
    assert_eq!(audit[1].detail, "called the patient");
    assert_eq!(audit[1].at, secs(1));
}

async fn staff_tasks_are_listed_per_practice_until_resolved(backend: Backend) {
    // Arrange: a step that raises a task.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let work = db.store.load(&claim, t0()).await.unwrap();
    let task = StaffTask {
        kind: TaskKind::BadData,
        reason: "procedure 1 (D2740) has insurance estimates above its fee".into(),
    };
    let transition = Transition {
        raise_task: Some(task.clone()),
        ..Transition::default()
    };
    db.store
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

    // Act / Assert
    let open = db.store.tasks(Some(&practice_id()), false).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].task, task);
    assert_eq!(open[0].workflow_id, id);
    assert_eq!(open[0].created_at, secs(1));
    assert!(
        db.store
            .tasks(Some(&PracticeId::new("other")), false)
            .await
            .unwrap()
            .is_empty()
    );

    let staff = StaffActions::new(&*db.store, "staff:test");
    let receipt = staff.cancel(&id, mins(1)).await.unwrap();
    assert_eq!(receipt.tasks_resolved, 1);
    assert!(db.store.tasks(None, false).await.unwrap().is_empty());
    let all = db.store.tasks(None, true).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].resolved_at, Some(mins(1)));
}

async fn a_pay_link_retry_closes_only_the_payment_failed_task(backend: Backend) {
    // Arrange: a done financing whose deposit payment failed, with a settlement task beside it.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let mut state = db.store.load(&claim, t0()).await.unwrap().state;
    state.status = Status::Done;
    state.result = Some(chairside_workflow::FinancingResult {
        financed: None,
        deposit: Money::usd(12_000),
        in_house: None,
        path: "test".into(),
    });
    state.stripe.customer_id = Some("cus_1".into());
    state.stripe.failures_handled = vec!["pi_1".into()];
    for (n, kind) in [TaskKind::Settlement, TaskKind::PaymentFailed]
        .into_iter()
        .enumerate()
    {
        let transition = Transition {
            raise_task: Some(StaffTask {
                kind,
                reason: "test".into(),
            }),
            ..Transition::default()
        };
        let consumed = Consumed::Command {
            seq: n as u64 + 1,
            attempt: 1,
            outcome: "test".into(),
        };
        db.store
            .commit(&claim, &state, consumed, "test", &transition, secs(1))
            .await
            .unwrap();
    }
    db.store.release(&claim, secs(1)).await.unwrap();

    // Act
    let receipt = StaffActions::new(&*db.store, "staff:test")
        .retry(&id, mins(1))
        .await
        .unwrap();

    // Assert
    assert_eq!(receipt.tasks_resolved, 1);
    let open = db.store.tasks(None, false).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].task.kind, TaskKind::Settlement);
}

async fn an_sms_opt_out_round_trips_without_storing_the_number_in_clear(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let practice = practice_id();
    let phone = "+15555550199";

    // Act / Assert
    assert!(!db.store.sms_opted_out(&practice, phone).await.unwrap());
    db.store
        .set_sms_opt_out(&practice, phone, true, "twilio:STOP", t0())
        .await
        .unwrap();
    assert!(db.store.sms_opted_out(&practice, phone).await.unwrap());
    assert!(
        !db.store
            .sms_opted_out(&practice, "+15555550198")
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .sms_opted_out(&PracticeId::new("other"), phone)
            .await
            .unwrap()
    );
    let pool = db.raw.clone();
    let keys = pool.strings("SELECT phone_key FROM sms_consent").await;
    assert_eq!(keys.len(), 1);
    assert!(!keys[0].contains("5555550199"));
    assert!(!contains(&db.all_bytes().await, "5555550199"));

    db.store
        .set_sms_opt_out(&practice, phone, false, "sms:start", secs(10))
        .await
        .unwrap();
    assert!(!db.store.sms_opted_out(&practice, phone).await.unwrap());

    // A change older than the one on record, arriving late, does not win.
    db.store
        .set_sms_opt_out(&practice, phone, true, "twilio:STOP", secs(5))
        .await
        .unwrap();
    assert!(!db.store.sms_opted_out(&practice, phone).await.unwrap());
    let record = db
        .store
        .sms_consent(&practice, phone)
        .await
        .unwrap()
        .unwrap();
    assert!(!record.opted_out);
    assert_eq!(record.at, secs(10));
    assert_eq!(record.source, "sms:start");
}

async fn listings_filter_by_status_and_show_the_next_action(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;

    // Act
    let active = db
        .store
        .workflows(Some(&practice_id()), Some(Status::Active), 10)
        .await
        .unwrap();
    let done = db
        .store
        .workflows(None, Some(Status::Done), 10)
        .await
        .unwrap();

    // Assert
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].state.id, id);
    assert_eq!(active[0].next_action.as_deref(), Some("load_plan"));
    assert_eq!(active[0].next_due_at, Some(t0()));
    assert!(done.is_empty());
    assert!(
        db.store
            .workflow(&WorkflowId::new("wf_missing"))
            .await
            .unwrap()
            .is_none()
    );
}

both!(
    a_round_of_claims_answers_when_the_next_workflow_becomes_claimable,
    two_instances_asking_at_once_never_both_hold_the_poller_lease,
    two_instances_claim_disjoint_workflows_and_together_take_every_due_one,
    a_truncation_of_the_audit_trail_is_refused,
    migrating_twice_is_harmless_and_the_store_reports_ready,
    recording_the_same_plan_twice_creates_one_workflow_and_advances_the_cursor,
    a_failed_poll_transaction_records_neither_the_plans_nor_the_cursor,
    a_new_revision_of_a_known_plan_is_a_new_workflow_and_a_rejection_reaches_the_known_one,
    a_claim_goes_to_one_owner_until_its_lease_expires_and_the_old_owner_is_then_fenced_off,
    inbox_events_come_before_due_timers_and_timers_before_commands,
    a_timer_fires_only_when_it_is_due,
    a_step_commit_journals_the_next_command_in_the_same_transaction_and_releases_when_idle,
    a_step_commit_journals_nothing_when_an_event_or_a_timer_comes_first,
    a_claim_journals_the_intent_of_a_due_command_queued_with_its_key_in_the_same_transaction,
    a_claim_journals_nothing_for_a_command_queued_without_its_key,
    a_webhook_claims_a_workflow_nobody_holds_for_the_registered_runner_in_its_own_transaction,
    every_write_transaction_alone_is_one_durable_commit_and_an_empty_claim_is_none,
    a_webhook_is_recorded_once_and_queues_its_events_for_known_workflows_only,
    a_step_commit_under_a_lost_lease_writes_nothing,
    a_step_commit_records_the_calls_facts_in_the_same_transaction,
    a_step_commit_stores_the_loaded_patient_and_the_practices_consent_attestation,
    an_application_intent_makes_the_return_reference_in_its_own_transaction,
    page_marks_written_behind_are_recorded_once_each_in_one_transaction,
    a_poll_claims_the_workflows_it_creates_for_the_registered_runner_in_its_own_transaction,
    a_leased_poll_claims_the_workflows_it_creates_for_the_registered_runner_in_its_own_transaction,
    a_deferred_command_waits_until_its_time_and_keeps_its_attempt_count_and_journal,
    a_webhook_is_recorded_once_per_provider_and_event_id,
    patient_contact_is_encrypted_at_rest_and_reads_back_equal,
    the_audit_trail_is_append_only,
    staff_tasks_are_listed_per_practice_until_resolved,
    a_pay_link_retry_closes_only_the_payment_failed_task,
    an_sms_opt_out_round_trips_without_storing_the_number_in_clear,
    listings_filter_by_status_and_show_the_next_action,
    a_step_commit_lists_the_workflow_under_its_new_status_and_without_a_next_step_keeps_the_lease,
    intake_rate_limits_are_shared_by_instances_and_forget_old_submissions,
    an_intake_link_send_is_queued_with_the_intake_claimed_once_and_resent_under_the_limits,
    mark_handled_closes_the_task_it_was_pressed_on_and_leaves_the_lender_charge_open,
    a_staff_alert_digest_is_collected_all_or_nothing_and_read_back_by_any_instance,
    a_workflow_set_aside_for_an_unconfigured_practice_raises_one_task_and_its_needs_staff_event,
);

async fn a_workflow_set_aside_for_an_unconfigured_practice_raises_one_task_and_its_needs_staff_event(
    backend: Backend,
) {
    use chairside_engine::outbound::events::{EventType, OutboundEvent};

    // Arrange: a claimed workflow whose practice this runner does not know (the runner's park
    // path).
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let task = StaffTask {
        kind: TaskKind::SystemError,
        reason: "practice 'smile' is not in this runner's configuration".into(),
    };

    // Act: set aside for an hour; then claimed and set aside again.
    db.store
        .park(&claim, mins(60), &task, secs(1))
        .await
        .unwrap();
    let early = db.store.claim_due("b", mins(30), LEASE, 1).await.unwrap();
    let again = db
        .store
        .claim_due("b", mins(61), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    db.store
        .park(&again, mins(121), &task, mins(61))
        .await
        .unwrap();

    // Assert: not due while set aside; one task and one event, whatever the number of parks.
    assert!(
        early.is_empty(),
        "a set-aside workflow is not claimed before its time"
    );
    let open = db.store.tasks(Some(&practice_id()), false).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].task, task);
    let events = db.store.outbound_events(id.as_str()).await.unwrap();
    let needs_staff: Vec<OutboundEvent> = events
        .iter()
        .filter(|e| e.kind == EventType::NeedsStaff.label())
        .map(|e| OutboundEvent::from_payload(&e.payload).unwrap())
        .collect();
    assert_eq!(needs_staff.len(), 1, "{events:?}");
    assert_eq!(needs_staff[0].data.task.as_deref(), Some("system_error"));
    assert_eq!(needs_staff[0].data.workflow_id, id.as_str());
    assert_eq!(needs_staff[0].at, secs(1));
}

async fn an_intake_link_send_is_queued_with_the_intake_claimed_once_and_resent_under_the_limits(
    backend: Backend,
) {
    use chairside_engine::store::{
        IntakeLinkSend, IntakeOrigin, LinkResend, LinkSendOutcome, NewIntake,
    };
    use chairside_workflow::intake::LinkResendRefused;

    // Arrange: a staff intake that asks for its link to be sent, and a second instance.
    let db = TestDb::new(backend).await;
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;
    let practice = practice_id();
    db.store
        .create_intake(
            &NewIntake {
                id: "in_send".into(),
                practice_id: practice.clone(),
                token_hash: [1; 32],
                origin: IntakeOrigin::Staff,
                amount: None,
                summary: None,
                contact: Some(patient(3)),
                details_from_patient: false,
                created_by: "staff:alice".into(),
                send_link: true,
            },
            t0(),
        )
        .await
        .unwrap();

    // Act + Assert: one instance claims the first send; the other gets nothing while the lease
    // holds.
    let claimed = db
        .store
        .claim_intake_link_sends(t0(), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed,
        vec![IntakeLinkSend {
            intake_id: "in_send".into(),
            practice_id: practice.clone(),
            seq: 0,
            attempt: 1,
        }]
    );
    assert_eq!(claimed[0].message_key(), "intake:in_send:link:0");
    assert!(
        other
            .claim_intake_link_sends(secs(1), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A crash: the lease runs out and the send is claimed again, as attempt 2 under the same key;
    // the first attempt's late outcome is refused.
    let again = other
        .claim_intake_link_sends(secs(31), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].seq, again[0].attempt), (0, 2));
    let sent = LinkSendOutcome::Sent {
        channels: "email".into(),
        sent: vec![SentChannel {
            key: "intake:in_send:link:0".into(),
            channel: "email",
            provider_id: "<intake-0@chairside.test>".into(),
        }],
    };
    assert!(
        !db.store
            .finish_intake_link_send(&claimed[0], &sent, secs(32))
            .await
            .unwrap()
    );
    assert!(
        other
            .finish_intake_link_send(&again[0], &sent, secs(32))
            .await
            .unwrap()
    );
    assert!(
        db.store
            .claim_intake_link_sends(mins(60), LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // The channel that went out is journalled `sent` with the outcome.
    assert_eq!(
        db.delivery
            .send_record("intake:in_send:link:0", "email")
            .await
            .unwrap(),
        Some(SendRecord::Sent {
            provider_id: Some("<intake-0@chairside.test>".into())
        })
    );

    // A re-send: refused within 10 minutes of the last send, then queued as send 1 with a new
    // link hash, and audited.
    let refused = db
        .store
        .queue_intake_link_resend(&practice, "in_send", "staff:bob", &[2; 32], mins(5))
        .await
        .unwrap();
    assert_eq!(
        refused,
        LinkResend::Refused(LinkResendRefused::TooSoon(mins(10)))
    );
    let queued = db
        .store
        .queue_intake_link_resend(&practice, "in_send", "staff:bob", &[2; 32], mins(11))
        .await
        .unwrap();
    assert_eq!(queued, LinkResend::Queued { seq: 1 });
    assert!(db.store.intake_by_token(&[1; 32]).await.unwrap().is_none());
    assert_eq!(
        db.store
            .intake_by_token(&[2; 32])
            .await
            .unwrap()
            .map(|r| r.id),
        Some("in_send".to_owned())
    );
    let resend = db
        .store
        .claim_intake_link_sends(mins(11), LEASE, 10)
        .await
        .unwrap();
    assert_eq!(resend.len(), 1);
    assert_eq!(resend[0].message_key(), "intake:in_send:link:1");
    let failed = LinkSendOutcome::Failed {
        error: "not sent: no email address and no SMS consent on file".into(),
    };
    assert!(
        db.store
            .finish_intake_link_send(&resend[0], &failed, mins(12))
            .await
            .unwrap()
    );
    let rows = db
        .store
        .intake_link_sends(&practice, "in_send")
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[0].status.as_str(),
            rows[0].channels.as_deref(),
            rows[0].attempts
        ),
        ("sent", Some("email"), 2)
    );
    assert_eq!(
        (rows[1].status.as_str(), rows[1].requested_by.as_str()),
        ("failed", "staff:bob")
    );
    assert!(
        rows[1]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("no SMS consent")
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM events WHERE workflow_id = 'in_send'")
            .await,
        3,
        "the re-send asked for, the first send sent, the re-send given up"
    );

    // An unknown intake, and one whose patient already submitted, are not re-sent.
    assert_eq!(
        db.store
            .queue_intake_link_resend(&practice, "in_nope", "staff:bob", &[3; 32], mins(30))
            .await
            .unwrap(),
        LinkResend::NotFound
    );
    assert!(
        db.store
            .submit_intake_details(&practice, "in_send", &patient(3), mins(40))
            .await
            .unwrap()
    );
    assert_eq!(
        db.store
            .queue_intake_link_resend(&practice, "in_send", "staff:bob", &[3; 32], mins(50))
            .await
            .unwrap(),
        LinkResend::Complete
    );
}

async fn intake_rate_limits_are_shared_by_instances_and_forget_old_submissions(backend: Backend) {
    // Arrange: two instances on one database; a limit of two per address.
    let db = TestDb::new(backend).await;
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;
    let window = Duration::from_secs(600);
    let keys = |a: &str| vec![("practice:p".to_owned(), 3), (format!("address:{a}"), 2)];

    // Act + Assert: the address's two submissions are counted across both instances.
    assert!(
        db.store
            .admit_intake_submission(&keys("1"), window, t0())
            .await
            .unwrap()
    );
    assert!(
        other
            .admit_intake_submission(&keys("1"), window, t0())
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .admit_intake_submission(&keys("1"), window, t0())
            .await
            .unwrap(),
        "the address is at its limit on every instance"
    );
    assert!(
        other
            .admit_intake_submission(&keys("2"), window, t0())
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .admit_intake_submission(&keys("3"), window, t0())
            .await
            .unwrap(),
        "the practice is at its limit"
    );
    // Once the window passed, old rows are pruned and the practice is admitted again.
    let later = t0() + chrono::Duration::seconds(601);
    assert!(
        other
            .admit_intake_submission(&keys("1"), window, later)
            .await
            .unwrap()
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM intake_submissions")
            .await,
        2,
        "only the new submission's two keys are left"
    );
}

async fn two_instances_claim_disjoint_workflows_and_together_take_every_due_one(backend: Backend) {
    // Arrange: twelve due workflows, and a second instance on the same database.
    let db = TestDb::new(backend).await;
    let new: Vec<NewWorkflow> = (0..12)
        .map(|n| new_workflow(&format!("tx-{n}"), "1"))
        .collect();
    let created = db
        .store
        .record_poll(&practice_id(), "fakepms", "1", new, vec![], t0())
        .await
        .unwrap();
    assert_eq!(created.len(), 12);
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;

    // Act: both claim at once, five at a time, until nothing is left.
    let mut a = Vec::new();
    let mut b = Vec::new();
    loop {
        let (ca, cb) = tokio::join!(
            db.store.claim_due("instance-a", secs(1), LEASE, 5),
            other.claim_due("instance-b", secs(1), LEASE, 5),
        );
        let (ca, cb) = (ca.unwrap(), cb.unwrap());
        if ca.is_empty() && cb.is_empty() {
            break;
        }
        a.extend(ca);
        b.extend(cb);
    }

    // Assert: no workflow claimed twice, none left out, each claim fenced and owned.
    let mut ids: Vec<String> = a.iter().chain(&b).map(|c| c.id.to_string()).collect();
    ids.sort();
    let mut expected: Vec<String> = created.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(ids, expected, "every due workflow claimed exactly once");
    assert!(
        a.iter().chain(&b).all(|c| c.due_at == Some(t0())),
        "each claim says when its workflow came due (created by the poll at t0)"
    );
    assert!(a.iter().all(|c| c.owner == "instance-a" && c.epoch == 1));
    assert!(b.iter().all(|c| c.owner == "instance-b" && c.epoch == 1));
    // A claim by one instance fences the other out of it.
    let theirs = b.first().or(a.first()).unwrap();
    let stolen = Claim {
        owner: "instance-c".into(),
        ..theirs.clone()
    };
    assert!(matches!(
        db.store.load(&stolen, secs(2)).await,
        Err(StoreError::LeaseLost(_))
    ));
}

async fn a_truncation_of_the_audit_trail_is_refused(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let truncate = match backend {
        // SQLite has no TRUNCATE: `DELETE FROM` without a WHERE is its form, refused above.
        Backend::Sqlite => "DELETE FROM sms_consent_log",
        Backend::Postgres => "TRUNCATE events, sms_consent_log",
    };
    db.store
        .set_sms_opt_out(&practice_id(), "+15555550123", true, "twilio:STOP", t0())
        .await
        .unwrap();

    // Act
    let result = db.raw.execute(truncate).await;

    // Assert
    let err = result.expect_err("append-only tables refuse to be emptied");
    assert!(err.to_string().contains("append-only"), "{err}");
    assert_eq!(db.store.audit(&id).await.unwrap().len(), 1);
    assert_eq!(
        db.store
            .sms_consent_history(&practice_id(), "+15555550123")
            .await
            .unwrap()
            .len(),
        1
    );
}

/// PostgreSQL only: SQLite's instances share one machine and its signal is in-process.
#[tokio::test]
async fn on_postgresql_work_made_due_by_one_instance_wakes_the_runners_of_another() {
    if !crate::backend::postgres_configured() {
        return;
    }
    // Arrange: a second instance, waiting for due work.
    let db = TestDb::new(Backend::Postgres).await;
    let id = one_workflow(&*db.store).await;
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;
    let signal = other
        .due_signal()
        .expect("the PostgreSQL store rings on due work");
    let woken = signal.notified();
    tokio::pin!(woken);
    woken.as_mut().enable();

    // Act: the first instance takes a webhook for the workflow.
    let paid = Event::Payment(PaymentFact::Paid {
        stripe_id: "in_1".into(),
        amount: Money::usd(100),
    });
    db.store
        .record_webhook("stripe", "evt_wake", vec![(id, paid)], secs(1))
        .await
        .unwrap();

    // Assert: the other instance hears of it (the bound only keeps a broken build from hanging).
    tokio::time::timeout(Duration::from_secs(30), woken)
        .await
        .expect("NOTIFY reached the other instance");
}

/// The poller lease's contract (`crate::poller`, run there on SQLite) on PostgreSQL.
#[tokio::test]
async fn on_postgresql_the_poller_lease_is_taken_kept_handed_over_on_expiry_and_released() {
    if !crate::backend::postgres_configured() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    crate::poller::poller_lease_contract(&*db.store).await;
}

/// A fenced poll (`crate::poller`, run there on SQLite) on PostgreSQL.
#[tokio::test]
async fn on_postgresql_a_poll_recorded_under_a_lost_poller_lease_writes_nothing() {
    if !crate::backend::postgres_configured() {
        return;
    }
    let db = TestDb::new(Backend::Postgres).await;
    crate::poller::a_poll_whose_lease_was_lost_records_nothing(&*db.store).await;
}

/// Two instances asking for one practice's poller lease at the same moment: one gets it.
async fn two_instances_asking_at_once_never_both_hold_the_poller_lease(backend: Backend) {
    // Arrange
    let db = TestDb::new(backend).await;
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;
    let practice = practice_id();

    for round in 0..20 {
        // Act: both ask at once for a lease that has run out (or never existed).
        let at = secs(100 * round);
        let (a, b) = tokio::join!(
            db.store
                .acquire_poller(&practice, "instance-a", at, Duration::from_secs(30)),
            other.acquire_poller(&practice, "instance-b", at, Duration::from_secs(30)),
        );

        // Assert
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(
            a.is_some() != b.is_some(),
            "round {round}: exactly one holds it: {a:?} {b:?}"
        );
    }
}

async fn a_claim_journals_the_intent_of_a_due_command_queued_with_its_key_in_the_same_transaction(
    backend: Backend,
) {
    // Arrange: a new workflow, its plan load queued by the poll with its idempotency key.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let pool = db.raw.clone();
    let writes = db.store.counters().write_transactions;

    // Act
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);

    // Assert: one transaction took the lease and journaled the plan load's intent under the
    // claim's epoch and the key the command was queued with (the runner's key for it).
    assert_eq!(db.store.counters().write_transactions, writes + 1);
    let work = db.store.load(&claim, t0()).await.unwrap();
    let Some(WorkItem::Command { command, attempts }) = work.item else {
        panic!("expected the plan load, got {:?}", work.item);
    };
    assert_eq!(attempts, 0);
    let begun = claim
        .begun
        .clone()
        .expect("the claim journaled the plan load");
    assert_eq!(begun.seq, command.seq);
    assert_eq!(begun.attempt, 1);
    assert_eq!(begun.key, work.state.command_key(&command));
    assert_eq!(
        count(
            &pool,
            &format!(
                "SELECT COUNT(*) FROM effects WHERE workflow_id = '{id}' AND seq = {} AND attempt = 1
                 AND idempotency_key = '{}' AND epoch = {} AND action = 'load_plan' AND finished_at IS NULL",
                command.seq, begun.key, claim.epoch
            )
        )
        .await,
        1
    );

    // A claim after the lease ran out (the first runner died before the call) journals the next
    // attempt: the call is repeated under the same key, never lost, and the journal shows both.
    let again = db
        .store
        .claim_due("b", secs(31), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let begun_again = again.begun.clone().expect("journaled again");
    assert_eq!((begun_again.seq, begun_again.attempt), (command.seq, 2));
    assert_eq!(begun_again.key, begun.key);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM effects").await,
        2,
        "one intent per claim"
    );

    // An event queued for it comes first: the next claim journals nothing.
    db.store
        .enqueue(
            &id,
            "test",
            &Event::PlanWithdrawn { reason: "x".into() },
            secs(40),
        )
        .await
        .unwrap();
    let third = db
        .store
        .claim_due("c", secs(62), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(third.begun, None);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM effects").await, 2);
}

/// A command queued without its key (before migration 0029) is journaled by the runner as
/// before: the claim journals nothing for it.
async fn a_claim_journals_nothing_for_a_command_queued_without_its_key(backend: Backend) {
    // Arrange: the plan load as a command queued before the key was stored with it.
    let db = TestDb::new(backend).await;
    one_workflow(&*db.store).await;
    let pool = db.raw.clone();
    pool.execute("UPDATE outbox SET idempotency_key = NULL")
        .await
        .unwrap();

    // Act
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);

    // Assert
    assert_eq!(claim.begun, None);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM effects").await, 0);
}

/// Claims the one workflow at `at` as `owner` and returns the claim and its first command.
async fn claim_first_command(
    store: &dyn Store,
    owner: &str,
    at: DateTime<Utc>,
) -> (Claim, WorkflowState, Command) {
    let claim = store
        .claim_due(owner, at, LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let work = store.load(&claim, at).await.unwrap();
    let Some(WorkItem::Command { command, .. }) = work.item else {
        panic!("expected the first command, got {:?}", work.item);
    };
    (claim, work.state, command)
}

async fn a_step_commit_journals_the_next_command_in_the_same_transaction_and_releases_when_idle(
    backend: Backend,
) {
    // Arrange: the first command's call is done.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let (claim, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    db.store
        .begin_effect(&claim, &first, 1, "k1", t0())
        .await
        .unwrap();
    let writes = db.store.counters().write_transactions;
    let second = command(2, Action::EnsureCustomer);
    let transition = Transition {
        commands: vec![second.clone()],
        ..Transition::default()
    };
    // The command sends a message: both channels are journaled with its intent.
    let sends = [("email", None), ("sms", Some("digest-2".to_owned()))];
    let next = NextStep {
        begin: Some((&second, "k2")),
        sends: &sends,
        lease: LEASE,
        facts: StepFacts::default(),
    };

    // Act: its result, with the next command proposed.
    let after = db
        .store
        .commit_step(
            &claim,
            &state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "plan_loaded".into(),
            },
            "plan_loaded",
            &transition,
            Some(next),
            secs(20),
        )
        .await
        .unwrap();

    // Assert: one transaction; the next intent is journaled under this claim's epoch, the lease
    // runs from the commit, and the first call's outcome is recorded.
    assert_eq!(after, AfterStep::Begun(1));
    assert_eq!(db.store.counters().write_transactions, writes + 1);
    // The message journal holds both channels `attempting` under the intent's key, written by
    // that same transaction.
    assert!(matches!(
        db.delivery.send_record("k2", "email").await.unwrap(),
        Some(SendRecord::Attempting {
            body_digest: None,
            ..
        })
    ));
    assert!(matches!(
        db.delivery.send_record("k2", "sms").await.unwrap(),
        Some(SendRecord::Attempting { body_digest: Some(d), .. }) if d == "digest-2"
    ));
    let pool = db.raw.clone();
    assert_eq!(
        count(
            &pool,
            &format!(
            "SELECT COUNT(*) FROM effects WHERE seq = 2 AND attempt = 1 AND idempotency_key = 'k2'
             AND epoch = {} AND finished_at IS NULL AND action = 'ensure_customer'", claim.epoch
        )
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM effects WHERE seq = 1 AND outcome = 'plan_loaded'"
        )
        .await,
        1
    );
    // Claimed at 0 s for 30 s, extended at 20 s to 50 s: still held at 40 s, by nobody else.
    assert!(
        db.store
            .claim_due("b", secs(40), LEASE, 1)
            .await
            .unwrap()
            .is_empty()
    );

    // Act: the begun command's result, leaving only a timer ten minutes out.
    let transition = Transition {
        set_timers: vec![(TimerKind::Reminder, mins(10))],
        ..Transition::default()
    };
    let after = db
        .store
        .commit_step(
            &claim,
            &state,
            Consumed::Command {
                seq: 2,
                attempt: 1,
                outcome: "customer_ready".into(),
            },
            "customer_ready",
            &transition,
            Some(NextStep {
                begin: None,
                sends: &[],
                lease: LEASE,
                facts: StepFacts::default(),
            }),
            secs(45),
        )
        .await
        .unwrap();

    // Assert: released in the same transaction; the claim no longer holds, and the workflow is
    // claimable by anyone when its timer comes due.
    assert_eq!(after, AfterStep::Released);
    assert!(matches!(
        db.store.load(&claim, secs(46)).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(
        db.store
            .claim_due("b", mins(9), LEASE, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let taken = db.store.claim_due("b", mins(10), LEASE, 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, id);
}

async fn every_write_transaction_alone_is_one_durable_commit_and_an_empty_claim_is_none(
    backend: Backend,
) {
    // Arrange
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let (claim, _state, first) = claim_first_command(&*db.store, "a", t0()).await;
    let before = db.store.counters();

    // Act: one after the other, so none shares a commit: a claim that finds nothing due, the
    // runner's intent, a webhook's event.
    assert!(
        db.store
            .claim_due("b", t0(), LEASE, 1)
            .await
            .unwrap()
            .is_empty()
    );
    db.store
        .begin_effect(&claim, &first, 1, "k1", t0())
        .await
        .unwrap();
    db.store
        .enqueue(
            &id,
            "staff",
            &Event::PlanWithdrawn {
                reason: "rejected".into(),
            },
            secs(1),
        )
        .await
        .unwrap();

    // Assert: two transactions, two commits; the empty claim wrote nothing.
    let after = db.store.counters();
    assert_eq!(after.write_transactions - before.write_transactions, 2);
    assert_eq!(after.commits - before.commits, 2);
}

async fn a_poll_claims_the_workflows_it_creates_for_the_registered_runner_in_its_own_transaction(
    backend: Backend,
) {
    a_poll_hands_over_what_it_creates(backend, false).await;
}

/// The same for a poll fenced by the practice's poller lease (`record_detection_leased`: how the
/// runner pool of `chairside run` records its polls).
async fn a_leased_poll_claims_the_workflows_it_creates_for_the_registered_runner_in_its_own_transaction(
    backend: Backend,
) {
    a_poll_hands_over_what_it_creates(backend, true).await;
}

async fn a_poll_hands_over_what_it_creates(backend: Backend, leased: bool) {
    // Arrange: a runner registered to take the claims.
    let db = TestDb::new(backend).await;
    let lease = if leased {
        let lease = db
            .store
            .acquire_poller(&practice_id(), "poller", t0(), LEASE)
            .await
            .unwrap()
            .expect("the practice's poller lease is free");
        Some(lease)
    } else {
        None
    };
    let handoffs = db
        .store
        .handoffs()
        .expect("both stores claim in the transaction that made the work due");
    assert!(handoffs.register("mine", LEASE));
    let mut state = WorkflowState::new(key("tx-9", "1"), PatientId::new("pat-9"), t0());
    let first = state.start();
    let batch = chairside_engine::store::detection::DetectionBatch {
        cursor: "c9".into(),
        new: vec![NewWorkflow { state, first }],
        ..Default::default()
    };
    let before = db.store.counters();

    // Act
    let created = match &lease {
        Some(lease) => db
            .store
            .record_detection_leased(lease, "fakepms", batch, t0())
            .await
            .unwrap(),
        None => db
            .store
            .record_detection(&practice_id(), "fakepms", batch, t0())
            .await
            .unwrap(),
    };

    // Assert: one transaction made the workflow and claimed it for "mine", its first command's
    // intent journaled; nobody else can claim it now.
    assert_eq!(created.len(), 1);
    assert_eq!(
        db.store.counters().write_transactions - before.write_transactions,
        1
    );
    let handed = handoffs.take(10);
    assert_eq!(handed.len(), 1, "{handed:?}");
    let (claim, _) = &handed[0];
    assert_eq!((&claim.id, claim.owner.as_str()), (&created[0], "mine"));
    let begun = claim.begun.as_ref().expect("the first command's intent");
    assert_eq!(
        count(
            &db.raw,
            &format!(
                "SELECT COUNT(*) FROM effects WHERE workflow_id = '{}' AND seq = {} AND finished_at IS NULL",
                claim.id.as_str(),
                begun.seq
            )
        )
        .await,
        1
    );
    assert!(
        db.store
            .claim_due("other", t0(), LEASE, 5)
            .await
            .unwrap()
            .is_empty()
    );
    let work = db.store.load(claim, t0()).await.unwrap();
    assert!(
        matches!(work.item, Some(WorkItem::Command { .. })),
        "{:?}",
        work.item
    );
}

async fn a_webhook_claims_a_workflow_nobody_holds_for_the_registered_runner_in_its_own_transaction(
    backend: Backend,
) {
    // Arrange: a workflow due and not held, and one held by another runner.
    let db = TestDb::new(backend).await;
    let idle = one_workflow(&*db.store).await;
    let held = db
        .store
        .record_poll(
            &practice_id(),
            "fakepms",
            "2",
            vec![new_workflow("tx-2", "1")],
            vec![],
            t0(),
        )
        .await
        .unwrap()
        .remove(0);
    let other = db.store.claim_due("other", t0(), LEASE, 2).await.unwrap();
    for claim in other.iter().filter(|c| c.id == idle) {
        db.store.release(claim, t0()).await.unwrap();
    }
    let handoffs = db
        .store
        .handoffs()
        .expect("both stores claim in the transaction that made the work due");
    assert!(handoffs.register("mine", LEASE));
    assert!(!handoffs.register("someone-else", LEASE), "one taker");
    let before = db.store.counters();
    let event = || Event::PlanWithdrawn {
        reason: "rejected".into(),
    };

    // Act
    let fresh = db
        .store
        .record_webhook(
            "stripe",
            "evt_h",
            vec![(idle.clone(), event()), (held.clone(), event())],
            secs(1),
        )
        .await
        .unwrap();

    // Assert: one transaction queued both events and claimed the idle workflow for "mine"
    // (the epoch moved on, its event is what is due, so no intent); the held one stays its
    // holder's, and nobody else can claim the idle one now.
    assert!(fresh);
    assert_eq!(
        db.store.counters().write_transactions - before.write_transactions,
        1
    );
    let handed = handoffs.take(10);
    assert_eq!(handed.len(), 1, "{handed:?}");
    let (claim, _) = &handed[0];
    assert_eq!(
        (&claim.id, claim.owner.as_str(), claim.begun.as_ref()),
        (&idle, "mine", None)
    );
    assert!(
        db.store
            .claim_due("third", secs(2), LEASE, 5)
            .await
            .unwrap()
            .is_empty()
    );
    let work = db.store.load(claim, secs(2)).await.unwrap();
    assert!(
        matches!(work.item, Some(WorkItem::Inbox { .. })),
        "{:?}",
        work.item
    );
    // Unregistered, the claims not taken are returned to be let go; nothing more is handed.
    assert!(handoffs.unregister("mine").is_empty());
    assert_eq!(handoffs.taker(), None);
}

async fn a_webhook_is_recorded_once_and_queues_its_events_for_known_workflows_only(
    backend: Backend,
) {
    // Arrange: a workflow with its first command pending.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let withdrawn = || Event::PlanWithdrawn {
        reason: "rejected".into(),
    };
    let before = db.store.counters();

    // Act: a delivery naming the workflow and one that does not exist, then its repeat.
    let fresh = db
        .store
        .record_webhook(
            "stripe",
            "evt_1",
            vec![
                (id.clone(), withdrawn()),
                (WorkflowId::new("wf_nobody"), withdrawn()),
            ],
            secs(1),
        )
        .await
        .unwrap();
    let after_first = db.store.counters();
    let repeat = db
        .store
        .record_webhook("stripe", "evt_1", vec![(id.clone(), withdrawn())], secs(2))
        .await
        .unwrap();

    // Assert: one transaction and one commit for the delivery, none for its repeat; one event
    // queued, for the known workflow, which is due at once.
    assert!(fresh);
    assert!(!repeat);
    assert_eq!(
        after_first.write_transactions - before.write_transactions,
        1
    );
    assert_eq!(after_first.commits - before.commits, 1);
    assert_eq!(
        db.store.counters().write_transactions,
        after_first.write_transactions
    );
    let pool = db.raw.clone();
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM inbox").await, 1);
    let claim = db
        .store
        .claim_due("a", secs(2), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let work = db.store.load(&claim, secs(2)).await.unwrap();
    assert_eq!(work.state.id, id);
    assert!(
        matches!(
            work.item,
            Some(WorkItem::Inbox {
                event: Event::PlanWithdrawn { .. },
                ..
            })
        ),
        "{:?}",
        work.item
    );
}

async fn a_step_commit_journals_nothing_when_an_event_or_a_timer_comes_first(backend: Backend) {
    // Arrange: the first call is done; a webhook's event is waiting, and the step sets a timer
    // that is already due.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let (claim, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    db.store
        .begin_effect(&claim, &first, 1, "k1", t0())
        .await
        .unwrap();
    db.store
        .enqueue(
            &id,
            "staff",
            &Event::PlanWithdrawn {
                reason: "rejected".into(),
            },
            secs(1),
        )
        .await
        .unwrap();
    let second = command(2, Action::EnsureCustomer);
    let transition = Transition {
        commands: vec![second.clone()],
        set_timers: vec![(TimerKind::Poll, secs(1))],
        ..Transition::default()
    };

    // Act
    let after = db
        .store
        .commit_step(
            &claim,
            &state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "plan_loaded".into(),
            },
            "plan_loaded",
            &transition,
            Some(NextStep {
                begin: Some((&second, "k2")),
                sends: &[("email", None), ("sms", Some("digest-2".to_owned()))],
                lease: LEASE,
                facts: StepFacts::default(),
            }),
            secs(2),
        )
        .await
        .unwrap();

    // Assert: kept, nothing journaled for the command; the event comes next, then the timer.
    assert_eq!(after, AfterStep::Due);
    let pool = db.raw.clone();
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM effects WHERE seq = 2").await,
        0
    );
    // Nor its message's sends: nothing is attempted before its intent is journaled.
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM message_sends WHERE message_key = 'k2'"
        )
        .await,
        0
    );
    let work = db.store.load(&claim, secs(2)).await.unwrap();
    let Some(WorkItem::Inbox { id: row, .. }) = work.item else {
        panic!("the event first, got {:?}", work.item);
    };
    let after = db
        .store
        .commit_step(
            &claim,
            &work.state,
            Consumed::Inbox(row),
            "plan_withdrawn",
            &Transition::default(),
            Some(NextStep {
                begin: Some((&second, "k2")),
                sends: &[],
                lease: LEASE,
                facts: StepFacts::default(),
            }),
            secs(3),
        )
        .await
        .unwrap();
    assert_eq!(
        after,
        AfterStep::Due,
        "the due timer still comes before the command"
    );
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM effects WHERE seq = 2").await,
        0
    );
    assert_eq!(
        db.store.load(&claim, secs(3)).await.unwrap().item,
        Some(WorkItem::Timer(TimerKind::Poll))
    );
}

async fn a_step_commit_under_a_lost_lease_writes_nothing(backend: Backend) {
    // Arrange: the first claim ran out and another runner took the workflow.
    let db = TestDb::new(backend).await;
    one_workflow(&*db.store).await;
    let (stale, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    db.store
        .begin_effect(&stale, &first, 1, "k1", t0())
        .await
        .unwrap();
    let taken = db.store.claim_due("b", secs(31), LEASE, 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    let second = command(2, Action::EnsureCustomer);
    let transition = Transition {
        commands: vec![second.clone()],
        ..Transition::default()
    };

    // Act
    let refused = db
        .store
        .commit_step(
            &stale,
            &state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "plan_loaded".into(),
            },
            "plan_loaded",
            &transition,
            Some(NextStep {
                begin: Some((&second, "k2")),
                sends: &[],
                lease: LEASE,
                facts: StepFacts {
                    sent: &sent_both("k1"),
                    audit: &[disclosure()],
                    patient: Some(&patient(7)),
                    consent: Some(&attestation(&patient(7))),
                },
            }),
            secs(32),
        )
        .await;

    // Assert: refused; no outcome, no next intent, no new command, the new owner's lease intact.
    assert!(
        matches!(refused, Err(StoreError::LeaseLost(_))),
        "{refused:?}"
    );
    let pool = db.raw.clone();
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM effects WHERE seq = 2").await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM effects WHERE outcome IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM outbox").await, 1);
    assert!(db.store.load(&taken[0], secs(33)).await.is_ok()); // The call's facts went with the refused step: nothing journaled, no disclosure line.
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM message_sends").await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM events WHERE kind = 'disclosure'"
        )
        .await,
        0
    );
    // Nor the patient read with the plan, nor its consent attestation: the new owner reads them
    // again when it repeats the step.
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM patients").await, 0);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM sms_consent_log").await,
        0
    );
}

/// The practice's attestation of SMS consent for `contact`'s number, as read with a plan.
fn attestation(contact: &financing_core::PatientContact) -> ConsentFact {
    ConsentFact {
        phone: contact
            .mobile_phone
            .clone()
            .expect("the test patient has a mobile"),
        entry: messaging::ConsentEntry::grant(
            messaging::ConsentKind::Informational,
            "practice_attestation",
            "the practice system records consent to texts",
            "practice:fakepms",
            t0(),
        ),
    }
}

async fn a_step_commit_stores_the_loaded_patient_and_the_practices_consent_attestation(
    backend: Backend,
) {
    // Arrange: the plan-load call is done; it read the patient and the practice's word on texts.
    let db = TestDb::new(backend).await;
    one_workflow(&*db.store).await;
    let (claim, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    db.store
        .begin_effect(&claim, &first, 1, "k1", t0())
        .await
        .unwrap();
    let contact = patient(7);
    let consent = attestation(&contact);
    let writes = db.store.counters().write_transactions;

    // Act
    let after = db
        .store
        .commit_step(
            &claim,
            &state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "plan_loaded".into(),
            },
            "plan_loaded",
            &Transition::default(),
            Some(NextStep {
                begin: None,
                sends: &[],
                lease: LEASE,
                facts: StepFacts {
                    patient: Some(&contact),
                    consent: Some(&consent),
                    ..StepFacts::default()
                },
            }),
            secs(1),
        )
        .await
        .unwrap();

    // Assert: one transaction for the step, the contact (sealed, readable back) and the
    // attestation in the number's history, deciding its standing.
    assert_eq!(after, AfterStep::Released);
    assert_eq!(db.store.counters().write_transactions, writes + 1);
    let practice = practice_id();
    assert_eq!(
        db.store.patient(&practice, &contact.id).await.unwrap(),
        Some(contact.clone())
    );
    let phone = consent.phone.as_str();
    let standing = db.store.sms_consent(&practice, phone).await.unwrap();
    assert!(
        matches!(&standing, Some(r) if !r.opted_out && r.source == "practice_attestation"),
        "{standing:?}"
    );
    let history = db
        .store
        .sms_consent_history(&practice, phone)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].entry, consent.entry);
    assert!(history[0].effective);
    // Stored for the workflow's practice only.
    assert_eq!(
        db.store
            .patient(&PracticeId::new("elsewhere"), &contact.id)
            .await
            .unwrap(),
        None
    );
}

async fn an_application_intent_makes_the_return_reference_in_its_own_transaction(backend: Backend) {
    // Arrange: the plan is loaded; its step's result is an application at a lender.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let (claim, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    db.store
        .begin_effect(&claim, &first, 1, "k1", t0())
        .await
        .unwrap();
    let apply = command(
        2,
        Action::StartApplication {
            lender: financing_core::LenderId::new("sunbit"),
            amount: Money::usd(120_000),
        },
    );
    let transition = Transition {
        commands: vec![apply.clone()],
        ..Transition::default()
    };
    let pool = db.raw.clone();
    let writes = db.store.counters().write_transactions;

    // Act: the step's commit journals the application's intent.
    let after = db
        .store
        .commit_step(
            &claim,
            &state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "plan_loaded".into(),
            },
            "plan_loaded",
            &transition,
            Some(NextStep {
                begin: Some((&apply, "k2")),
                sends: &[],
                lease: LEASE,
                facts: StepFacts::default(),
            }),
            secs(1),
        )
        .await
        .unwrap();

    // Assert: the reference exists with the intent, in the same one transaction; the call then
    // reads it without a write, and it stays the same (a retried call sends the same link).
    assert_eq!(after, AfterStep::Begun(1));
    assert_eq!(db.store.counters().write_transactions, writes + 1);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM patient_links WHERE return_ref IS NOT NULL"
        )
        .await,
        1
    );
    let reference = db.store.return_reference(&id).await.unwrap();
    assert_eq!(db.store.counters().write_transactions, writes + 1);
    assert_eq!(
        db.store.resolve_return_reference(&reference).await.unwrap(),
        Some((id.clone(), 0))
    );
    // A repeat of the call after a crash journals a new attempt and keeps the reference.
    db.store
        .begin_effect(&claim, &apply, 2, "k2", secs(2))
        .await
        .unwrap();
    assert_eq!(db.store.return_reference(&id).await.unwrap(), reference);
    // A call that sends no return link makes none: after a revocation, the next intent of
    // another kind leaves the workflow without one.
    db.store.revoke_links(&id, secs(3)).await.unwrap();
    db.store
        .begin_effect(
            &claim,
            &command(3, Action::EnsureCustomer),
            1,
            "k3",
            secs(3),
        )
        .await
        .unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM patient_links WHERE return_ref IS NOT NULL"
        )
        .await,
        0
    );
}

fn sent_both(key: &str) -> Vec<SentChannel> {
    vec![
        SentChannel {
            key: key.into(),
            channel: "email",
            provider_id: "<k1@chairside.test>".into(),
        },
        SentChannel {
            key: key.into(),
            channel: "sms",
            provider_id: "SM00000000000000000000000000000001".into(),
        },
    ]
}

fn disclosure() -> AuditLine {
    AuditLine {
        kind: "disclosure",
        detail: "cardholder lookup sent to carecredit".into(),
    }
}

async fn a_step_commit_records_the_calls_facts_in_the_same_transaction(backend: Backend) {
    // Arrange: a message's intent is journaled and both its channels begun in one transaction.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let (claim, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    db.store
        .begin_effect(&claim, &first, 1, "k1", t0())
        .await
        .unwrap();
    let writes = db.store.counters().write_transactions;
    db.delivery
        .begin_sends("k1", &[("email", None), ("sms", Some("digest-1"))], secs(1))
        .await
        .unwrap();
    assert_eq!(db.store.counters().write_transactions, writes + 1);
    assert!(matches!(
        db.delivery.send_record("k1", "sms").await.unwrap(),
        Some(SendRecord::Attempting { body_digest: Some(d), .. }) if d == "digest-1"
    ));
    assert!(matches!(
        db.delivery.send_record("k1", "email").await.unwrap(),
        Some(SendRecord::Attempting { .. })
    ));

    // Act: the step's commit carries what the call did (both channels out, one disclosure).
    let sent = sent_both("k1");
    let audit = [disclosure()];
    let after = db
        .store
        .commit_step(
            &claim,
            &state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "message_sent".into(),
            },
            "message_sent",
            &Transition::default(),
            Some(NextStep {
                begin: None,
                sends: &[],
                lease: LEASE,
                facts: StepFacts {
                    sent: &sent,
                    audit: &audit,
                    ..StepFacts::default()
                },
            }),
            secs(2),
        )
        .await
        .unwrap();

    // Assert: one more transaction in all; both channels journaled sent with the provider's
    // ids, the disclosure in the audit trail next to the step's own line.
    assert_eq!(after, AfterStep::Released);
    assert_eq!(db.store.counters().write_transactions, writes + 2);
    assert_eq!(
        db.delivery.send_record("k1", "email").await.unwrap(),
        Some(SendRecord::Sent {
            provider_id: Some("<k1@chairside.test>".into())
        })
    );
    assert_eq!(
        db.delivery.send_record("k1", "sms").await.unwrap(),
        Some(SendRecord::Sent {
            provider_id: Some("SM00000000000000000000000000000001".into())
        })
    );
    let pool = db.raw.clone();
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM events WHERE kind = 'disclosure' AND actor = 'runner'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM events WHERE kind = 'message_sent'"
        )
        .await,
        1
    );
    // Each line opens under its own row (the sealed detail is bound to the row's id), the
    // disclosure right after the step's line.
    let trail = db.store.audit(&id).await.unwrap();
    let kinds: Vec<(&str, &str)> = trail
        .iter()
        .rev()
        .take(2)
        .map(|row| (row.kind.as_str(), row.detail.as_str()))
        .collect();
    assert_eq!(
        kinds[0],
        ("disclosure", "cardholder lookup sent to carecredit")
    );
    assert_eq!(kinds[1].0, "message_sent");
}

/// PostgreSQL only: SQLite's instances share one process's signal, PostgreSQL's are told across
/// processes by `NOTIFY`.
#[tokio::test]
async fn a_workflow_released_with_a_timer_wakes_the_runners_of_other_instances() {
    if !crate::backend::postgres_configured() {
        return;
    }
    // Arrange: two instances on one database; the other's signal has rung for the new workflow
    // (the poll's announcement) and is quiet again.
    let db = TestDb::new(Backend::Postgres).await;
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;
    let signal = other
        .due_signal()
        .expect("PostgreSQL instances are told of due work");
    let id = one_workflow(&*db.store).await;
    tokio::time::timeout(Duration::from_secs(10), signal.notified())
        .await
        .expect("the poll that created the workflow is announced to the other instance");
    let (claim, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    db.store
        .begin_effect(&claim, &first, 1, "k1", t0())
        .await
        .unwrap();

    // Act: the step's result sets a timer ten minutes out and releases the workflow.
    let transition = Transition {
        set_timers: vec![(TimerKind::Reminder, mins(10))],
        ..Transition::default()
    };
    let after = db
        .store
        .commit_step(
            &claim,
            &state,
            Consumed::Command {
                seq: 1,
                attempt: 1,
                outcome: "plan_loaded".into(),
            },
            "plan_loaded",
            &transition,
            Some(NextStep {
                begin: None,
                sends: &[],
                lease: LEASE,
                facts: StepFacts::default(),
            }),
            secs(2),
        )
        .await
        .unwrap();

    // Assert: the other instance's runner is woken (it would otherwise sleep until its idle
    // recheck, however long), and what it then reads is the timer's time; when that comes, it
    // takes the workflow.
    assert_eq!(after, AfterStep::Released);
    tokio::time::timeout(Duration::from_secs(10), signal.notified())
        .await
        .expect("the release with a timer is announced to the other instance");
    assert_eq!(other.next_claimable(secs(3)).await.unwrap(), Some(mins(10)));
    let taken = other.claim_due("b", mins(10), LEASE, 1).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].id, id);
    assert_eq!(taken[0].due_at, Some(mins(10)), "came due at the timer");
}

/// Three workflows, each raising a bad-data task at `secs(1)`, `secs(2)`, `secs(3)`: their
/// `workflow.needs_staff` events, oldest first.
async fn three_task_events(store: &dyn Store) -> Vec<chairside_engine::store::outbox::StoredEvent> {
    let created = store
        .record_poll(
            &practice_id(),
            "fakepms",
            "c1",
            vec![
                new_workflow("tx-1", "1"),
                new_workflow("tx-2", "1"),
                new_workflow("tx-3", "1"),
            ],
            vec![],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(created.len(), 3);
    let mut events = Vec::new();
    for n in 1..=3 {
        let claim = store
            .claim_due("a", t0(), LEASE, 1)
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
                secs(n),
            )
            .await
            .unwrap();
        events.extend(
            store
                .outbound_events(claim.id.as_str())
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.kind == "workflow.needs_staff"),
        );
    }
    events.sort_by_key(|e| e.row);
    events
}

async fn a_staff_alert_digest_is_collected_all_or_nothing_and_read_back_by_any_instance(
    backend: Backend,
) {
    // Arrange
    let db = TestDb::new(backend).await;
    let other = db.reopen(DataKey::parse(KEY_HEX).unwrap()).await;
    let events = three_task_events(&*db.store).await;
    assert_eq!(events.len(), 3);
    let ids = |e: &[chairside_engine::store::outbox::StoredEvent]| -> Vec<String> {
        e.iter().map(|e| e.event_id.clone()).collect()
    };
    let kind = "workflow.needs_staff";
    let practice = practice_id();

    // Act + Assert: the window's candidates, by practice and time.
    let all = db
        .store
        .undigested_events(practice.as_str(), kind, secs(1), secs(4), 10)
        .await
        .unwrap();
    assert_eq!(ids(&all), ids(&events));
    let later = db
        .store
        .undigested_events(practice.as_str(), kind, secs(2), secs(3), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&later),
        ids(&events[1..2]),
        "from inclusive, until exclusive"
    );
    assert!(
        db.store
            .undigested_events("other", kind, secs(0), secs(9), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The first two collected by one instance...
    let first = ids(&events[..2]);
    assert!(
        db.store
            .collect_digest(
                "staff-digest:a",
                practice.as_str(),
                &first[1],
                &first,
                secs(5)
            )
            .await
            .unwrap()
    );
    // ...then the other instance's overlapping set is refused, writing nothing.
    let overlapping = ids(&events[1..]);
    assert!(
        !other
            .collect_digest(
                "staff-digest:b",
                practice.as_str(),
                &overlapping[0],
                &overlapping,
                secs(5)
            )
            .await
            .unwrap()
    );
    let left = other
        .undigested_events(practice.as_str(), kind, secs(0), secs(9), 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&left),
        ids(&events[2..]),
        "the refused digest wrote nothing"
    );
    assert_eq!(other.digest_of(&events[2].event_id).await.unwrap(), None);

    // Any instance reads the digest back from any of its events, oldest first.
    for e in &events[..2] {
        let digest = other
            .digest_of(&e.event_id)
            .await
            .unwrap()
            .expect("collected");
        assert_eq!(digest.key, "staff-digest:a");
        assert_eq!(digest.lead, events[1].event_id);
        assert_eq!(digest.events, events[..2].to_vec());
    }
}

async fn mark_handled_closes_the_task_it_was_pressed_on_and_leaves_the_lender_charge_open(
    backend: Backend,
) {
    // Arrange: a done financing with a lender charge for staff (settlement) and a reversed
    // payment beside it.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let claim = db
        .store
        .claim_due("a", t0(), LEASE, 1)
        .await
        .unwrap()
        .remove(0);
    let mut state = db.store.load(&claim, t0()).await.unwrap().state;
    state.status = Status::Done;
    for (n, kind) in [TaskKind::Settlement, TaskKind::PaymentReversed]
        .into_iter()
        .enumerate()
    {
        let transition = Transition {
            raise_task: Some(StaffTask {
                kind,
                reason: "test".into(),
            }),
            ..Transition::default()
        };
        let consumed = Consumed::Command {
            seq: n as u64 + 1,
            attempt: 1,
            outcome: "test".into(),
        };
        db.store
            .commit(&claim, &state, consumed, "test", &transition, secs(1))
            .await
            .unwrap();
    }
    db.store.release(&claim, secs(1)).await.unwrap();
    let open = db.store.tasks(None, false).await.unwrap();
    let reversed = open
        .iter()
        .find(|t| t.task.kind == TaskKind::PaymentReversed)
        .expect("the reversed payment's task")
        .id;
    let staff = StaffActions::new(&*db.store, "staff:test");

    // Act: Mark handled pressed on the reversed payment's task.
    let receipt = staff
        .act(
            chairside_engine::staff::StaffRequest::new(
                id.clone(),
                chairside_workflow::StaffAction::MarkHandled,
                "staff:test",
            )
            .answering(reversed),
            mins(1),
        )
        .await
        .unwrap();

    // Assert: that task only; the lender charge stays open and nothing waits for the runner, so
    // the charge's own Mark handled is taken at once.
    assert_eq!(receipt.tasks_resolved, 1);
    let open = db.store.tasks(None, false).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].task.kind, TaskKind::Settlement);
    let settlement = open[0].id;
    let second = staff
        .act(
            chairside_engine::staff::StaffRequest::new(
                id.clone(),
                chairside_workflow::StaffAction::MarkHandled,
                "staff:test",
            )
            .answering(settlement),
            mins(2),
        )
        .await
        .unwrap();
    assert_eq!(second.tasks_resolved, 1);
    assert!(db.store.tasks(None, false).await.unwrap().is_empty());
}

fn page_mark(workflow: &WorkflowId, mark: &str, kind: &str, at: DateTime<Utc>) -> PageMark {
    PageMark {
        workflow: workflow.clone(),
        mark: mark.into(),
        kind: kind.into(),
        detail: format!("patient followed {mark}"),
        at,
    }
}

async fn page_marks_written_behind_are_recorded_once_each_in_one_transaction(backend: Backend) {
    // Arrange: one mark already recorded the usual way.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    assert!(
        db.store
            .audit_once(&id, "apply:sunbit", "lender_link_opened", "followed", t0())
            .await
            .unwrap()
    );
    let audit_before = db.store.audit(&id).await.unwrap().len();
    let writes = db.store.counters().write_transactions;
    let group = [
        page_mark(&id, "apply:sunbit", "lender_link_opened", secs(1)),
        page_mark(&id, "apply:carecredit", "lender_link_opened", secs(1)),
        page_mark(&id, "pay:cs_1", "deposit_link_opened", secs(2)),
        // A double click within the group.
        page_mark(&id, "pay:cs_1", "deposit_link_opened", secs(2)),
    ];

    // Act
    let new = db.store.audit_marks(&group).await.unwrap();
    let again = db.store.audit_marks(&group).await.unwrap();

    // Assert: the two new marks in one transaction, with their lines; the repeat writes nothing.
    assert_eq!(new, 2);
    assert_eq!(again, 0);
    assert_eq!(db.store.counters().write_transactions, writes + 1);
    let audit = db.store.audit(&id).await.unwrap();
    assert_eq!(audit.len(), audit_before + 2);
    let kinds: Vec<&str> = audit.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "deposit_link_opened")
            .count(),
        1
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "lender_link_opened").count(),
        2
    );
    assert!(
        !db.store
            .audit_once(&id, "pay:cs_1", "deposit_link_opened", "followed", secs(3))
            .await
            .unwrap(),
        "a mark written behind is a mark like any other"
    );
}

/// Waits until a session of `pool` waits for a lock while running a statement that begins with
/// `statement` (what the other side of a lock test is doing).
async fn until_waiting_for_a_lock(pool: &sqlx::PgPool, statement: &str) {
    let pattern = format!("{statement}%");
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(&pattern)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no session came to wait for a lock within 10 s");
}

/// PostgreSQL only (SQLite has one writer): two instances' groups of page marks holding the
/// same marks wait for each other in line, whatever order their lines came in. Before, each
/// inserted in arrival order, and `chairside bench --instances 3` lost groups of link lines to
/// PostgreSQL's deadlock detector.
#[tokio::test]
async fn on_postgresql_groups_of_page_marks_in_opposite_orders_wait_in_line_not_in_a_circle() {
    if !crate::backend::postgres_configured() {
        return;
    }
    // Arrange: another instance's group, mid-transaction, has inserted the first of two marks
    // (in key order) and not yet the second.
    let db = TestDb::new(Backend::Postgres).await;
    let id = one_workflow(&*db.store).await;
    let Raw::Postgres(pool) = db.raw.clone() else {
        unreachable!("a PostgreSQL test database")
    };
    let insert = "INSERT INTO patient_page_marks (workflow_id, mark, at) VALUES ($1, $2, 0)";
    let mut other = pool.begin().await.unwrap();
    sqlx::query(insert)
        .bind(id.as_str())
        .bind("apply:carecredit")
        .execute(&mut *other)
        .await
        .unwrap();

    // Act: this instance's group has the two marks the other way round; once it waits, the
    // other group goes on to its second mark and commits.
    let store = db.store.clone();
    let group = vec![
        page_mark(&id, "apply:sunbit", "lender_link_opened", secs(1)),
        page_mark(&id, "apply:carecredit", "lender_link_opened", secs(1)),
    ];
    let ours = tokio::spawn(async move { store.audit_marks(&group).await });
    until_waiting_for_a_lock(&pool, "INSERT INTO patient_page_marks").await;
    let theirs = sqlx::query(insert)
        .bind(id.as_str())
        .bind("apply:sunbit")
        .execute(&mut *other)
        .await;
    other.commit().await.unwrap();

    // Assert: neither was cancelled; ours found both marks recorded and wrote nothing.
    theirs.expect("the other group's second mark is not refused as a deadlock");
    assert_eq!(ours.await.unwrap().unwrap(), 0);
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM patient_page_marks")
            .await,
        2
    );
}

/// PostgreSQL only: a row being written that refers to a workflow (a patient page's line,
/// uncommitted: its foreign key holds `FOR KEY SHARE` on the workflow's row) neither keeps the
/// workflow from being claimed nor holds up its step. With `FOR UPDATE` row locks the claim
/// skipped the workflow and the step waited for the page's commit, up to the lock timeout.
#[tokio::test]
async fn on_postgresql_a_line_being_written_for_a_workflow_holds_up_neither_its_claim_nor_its_step()
{
    if !crate::backend::postgres_configured() {
        return;
    }
    // Arrange: the page's transaction has inserted a line for the workflow and not committed.
    let db = TestDb::new(Backend::Postgres).await;
    let id = one_workflow(&*db.store).await;
    let Raw::Postgres(pool) = db.raw.clone() else {
        unreachable!("a PostgreSQL test database")
    };
    let mut page = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO patient_page_marks (workflow_id, mark, at) VALUES ($1, 'apply:sunbit', 0)",
    )
    .bind(id.as_str())
    .execute(&mut *page)
    .await
    .unwrap();

    // Act: a runner claims the workflow and journals its first call, the page still open.
    let (claim, _, first) = claim_first_command(&*db.store, "a", t0()).await;
    let begun = db.store.begin_effect(&claim, &first, 1, "k1", t0()).await;
    page.commit().await.unwrap();

    // Assert
    assert_eq!(claim.id, id);
    begun.expect("the step's lease check did not wait for the page's line");
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM effects WHERE idempotency_key = 'k1'")
            .await,
        1
    );
}

/// PostgreSQL only: what the database answers a transaction it cancelled to break a deadlock,
/// or one that waited longer than its lock timeout, is told apart as worth running again.
#[tokio::test]
async fn on_postgresql_a_broken_deadlock_and_a_lock_timeout_are_transient() {
    if !crate::backend::postgres_configured() {
        return;
    }
    // Arrange: two rows; sessions enough for three transactions and a look at them.
    let db = TestDb::new(Backend::Postgres).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&db.location)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE lock_test (id INT PRIMARY KEY, n INT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO lock_test VALUES (1, 0), (2, 0)")
        .execute(&pool)
        .await
        .unwrap();
    let update = "UPDATE lock_test SET n = n + 1 WHERE id = $1";
    let mut first = pool.begin().await.unwrap();
    let mut second = pool.begin().await.unwrap();
    sqlx::query(update)
        .bind(1)
        .execute(&mut *first)
        .await
        .unwrap();
    sqlx::query(update)
        .bind(2)
        .execute(&mut *second)
        .await
        .unwrap();

    // Act: a lock not granted within its timeout; then the two sessions in a circle.
    let mut third = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL lock_timeout = '50ms'")
        .execute(&mut *third)
        .await
        .unwrap();
    let timed_out = sqlx::query(update)
        .bind(1)
        .execute(&mut *third)
        .await
        .unwrap_err();
    drop(third);
    let waiting = tokio::spawn(async move {
        let r = sqlx::query(update).bind(2).execute(&mut *first).await;
        (r, first)
    });
    until_waiting_for_a_lock(&pool, update).await;
    let circled = sqlx::query(update).bind(1).execute(&mut *second).await;
    let (waited, _first) = waiting.await.unwrap();

    // Assert: the lock timeout, and whichever side PostgreSQL cancelled, are transient; a
    // statement that can never succeed is not.
    assert!(StoreError::Database(timed_out).is_transient());
    let cancelled = match (waited, circled) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("exactly one side is cancelled as a deadlock: {other:?}"),
    };
    assert!(StoreError::Database(cancelled).is_transient());
    let broken = sqlx::query("SELECT * FROM no_such_table")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(!StoreError::Database(broken).is_transient());
}

async fn a_step_commit_lists_the_workflow_under_its_new_status_and_without_a_next_step_keeps_the_lease(
    backend: Backend,
) {
    // Arrange: the first command claimed at 0 s for 30 s.
    let db = TestDb::new(backend).await;
    let id = one_workflow(&*db.store).await;
    let (claim, state, first) = claim_first_command(&*db.store, "a", t0()).await;
    let listed = |status| {
        let store = db.store.clone();
        async move {
            store
                .workflows(Some(&practice_id()), Some(status), 10)
                .await
                .unwrap()
                .len()
        }
    };
    let consumed = Consumed::Command {
        seq: first.seq,
        attempt: 1,
        outcome: "plan_loaded".into(),
    };
    let transition = Transition {
        set_timers: vec![(TimerKind::Reminder, mins(10))],
        ..Transition::default()
    };

    // Act: a step that keeps the status, then one that changes it, neither with a next step.
    let mut kept = state.clone();
    kept.status = Status::Active;
    db.store
        .commit(&claim, &kept, consumed, "plan_loaded", &transition, secs(5))
        .await
        .unwrap();
    let active_after_first = listed(Status::Active).await;
    let mut done = kept.clone();
    done.status = Status::Done;
    db.store
        .commit(
            &claim,
            &done,
            Consumed::Timer(TimerKind::Reminder),
            "reminder",
            &Transition::default(),
            secs(6),
        )
        .await
        .unwrap();

    // Assert: listed under the status of its latest state each time.
    assert_eq!(active_after_first, 1);
    assert_eq!(listed(Status::Active).await, 0);
    assert_eq!(listed(Status::Done).await, 1);
    let row = db.store.workflow(&id).await.unwrap().unwrap();
    assert_eq!(row.state.status, Status::Done);
    // Without a next step the claim's lease is left as it was: still held until 30 s, nobody
    // else takes the workflow (its timer was consumed, nothing is due), and the claim may load.
    assert!(
        db.store
            .claim_due("b", secs(29), LEASE, 1)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(db.store.load(&claim, secs(29)).await.is_ok());
}
