//! Staff alert digests at the engine: tasks the real runner raises go through the outbox and the
//! dispatcher to a recording mailer. Several tasks at once are one email listing them all; tasks
//! spaced apart are one email each; a crash between collecting a digest and sending it, or a
//! send that certainly failed, neither loses a task nor sends one twice; two dispatchers at once
//! send one digest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chairside_engine::outbound::events::EventType;
use chairside_engine::outbound::staff_alert::{
    AlertMailer, AlertRoute, DigestPlan, StaffAlerts, digest_key, plan_digest,
};
use chairside_engine::outbound::{DispatchConfig, Dispatcher, SharedSubscriber};
use chairside_engine::store::SqliteStore;
use chairside_engine::store::outbox::StoredEvent;
use chairside_engine::store::prelude::*;
use financing_core::Backoff;
use messaging::{EmailAddress, EmailMessageId, RenderedEmail, SmtpFailure};
use url::Url;

use crate::harness::{World, practice_id};

const WINDOW: Duration = Duration::from_secs(120);

/// One email as the mailer took it.
#[derive(Clone, Debug)]
struct Sent {
    key: String,
    subject: String,
    text: String,
}

/// Records every email; fails the first `fail_first` sends as a refused connection (certainly
/// not sent).
#[derive(Default)]
struct Mailer {
    sent: Mutex<Vec<Sent>>,
    fail_first: Mutex<u32>,
}

#[async_trait]
impl AlertMailer for Mailer {
    async fn send_keyed(
        &self,
        _to: &EmailAddress,
        email: &RenderedEmail,
        key: &str,
    ) -> messaging::Result<EmailMessageId> {
        {
            let mut fail = self.fail_first.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(messaging::Error::Smtp {
                    failure: SmtpFailure::Connect,
                });
            }
        }
        self.sent.lock().unwrap().push(Sent {
            key: key.to_owned(),
            subject: email.subject.clone(),
            text: email.text.clone(),
        });
        Ok(EmailMessageId::new(format!("<{key}@test>")))
    }
}

impl Mailer {
    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }
}

fn alerts(store: &Arc<SqliteStore>, mailer: &Arc<Mailer>) -> SharedSubscriber {
    alerts_in(store, mailer, financing_core::Language::En)
}

/// The staff alerts of the practice, whose staff read `language`.
fn alerts_in(
    store: &Arc<SqliteStore>,
    mailer: &Arc<Mailer>,
    language: financing_core::Language,
) -> SharedSubscriber {
    let route = AlertRoute {
        practice_name: "Smile Test Dental".into(),
        to: EmailAddress::parse("frontdesk@smile.example").unwrap(),
        sender: mailer.clone(),
        kinds: None,
        digest_window: WINDOW,
        language,
    };
    let routes = HashMap::from([(practice_id(), route)]);
    Arc::new(
        StaffAlerts::new(
            routes,
            store.clone(),
            store.clone(),
            Url::parse("https://chairside.example/").unwrap(),
        )
        .unwrap(),
    )
}

fn dispatcher(
    w: &World,
    store: &Arc<SqliteStore>,
    sub: SharedSubscriber,
    owner: &str,
) -> Dispatcher {
    let backoff = Backoff {
        base: Duration::from_secs(5),
        cap: Duration::from_secs(60),
        max_attempts: 6,
    };
    dispatcher_with(w, store, sub, owner, backoff)
}

/// [`dispatcher`] retrying on `backoff`.
fn dispatcher_with(
    w: &World,
    store: &Arc<SqliteStore>,
    sub: SharedSubscriber,
    owner: &str,
    backoff: Backoff,
) -> Dispatcher {
    Dispatcher::new(
        store.clone(),
        vec![sub],
        w.clock.clone(),
        DispatchConfig {
            owner: owner.into(),
            lease: Duration::from_secs(60),
            batch: 32,
            backoff,
        },
    )
}

/// Plans `from..to` (patients of those numbers) each raise a bad-data task (insurance above the
/// fee), the runner taking them all in one pass.
async fn bad_plans(w: &World, numbers: std::ops::Range<u32>) {
    for n in numbers {
        w.accept(n, 50_000, 60_000);
    }
    let runner = w.runner("runner-1").await;
    w.settle(&runner).await;
}

/// Rounds of the dispatcher, the clock moving `step` between them.
async fn rounds(w: &World, d: &Dispatcher, n: u32, step: Duration) {
    for _ in 0..n {
        d.tick().await.unwrap();
        w.clock.advance(step);
    }
}

fn needs_staff(events: &[StoredEvent]) -> usize {
    events
        .iter()
        .filter(|e| EventType::from_label(&e.kind) == Some(EventType::NeedsStaff))
        .count()
}

#[tokio::test]
async fn many_tasks_at_once_are_one_email_listing_them_all() {
    // Arrange
    let w = World::new();
    let store = w.store().await;
    let mailer = Arc::new(Mailer::default());
    let d = dispatcher(&w, &store, alerts(&store, &mailer), "test/outbound");
    d.start_cursors().await.unwrap(); // the subscriber starts here
    bad_plans(&w, 1..5).await;

    // Act: inside the window nothing goes out; after it, one email.
    rounds(&w, &d, 3, Duration::from_secs(10)).await;
    let early = mailer.sent();
    rounds(&w, &d, 20, Duration::from_secs(30)).await;

    // Assert
    assert!(early.is_empty(), "sent before the window closed: {early:?}");
    let sent = mailer.sent();
    assert_eq!(sent.len(), 1, "one digest for four tasks: {sent:?}");
    let mail = &sent[0];
    assert!(mail.key.starts_with("staff-digest:"), "{}", mail.key);
    assert!(
        mail.subject.contains("Smile Test Dental") && mail.subject.contains("4 patients"),
        "{}",
        mail.subject
    );
    assert!(
        mail.text.starts_with("4 workflows need attention"),
        "{}",
        mail.text
    );
    for n in 1..5 {
        assert!(
            mail.text.contains(&format!("plan tx-{n} (bad data)")),
            "plan {n}: {}",
            mail.text
        );
    }
    assert_eq!(
        mail.text.matches("staff/workflows/").count(),
        4,
        "{}",
        mail.text
    );
    // Every delivery is done: none waits to send again.
    let counts = store.delivery_counts().await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 4, 0));
}

#[tokio::test]
async fn a_digest_goes_out_when_its_window_closes_and_waiting_for_it_is_no_failed_attempt() {
    // Arrange: a retry backoff far longer than the window, so a wait taken as a failure would
    // hold the digest back past the window's end.
    let w = World::new();
    let store = w.store().await;
    let mailer = Arc::new(Mailer::default());
    let backoff = Backoff {
        base: Duration::from_secs(600),
        cap: Duration::from_secs(3600),
        max_attempts: 2,
    };
    let d = dispatcher_with(
        &w,
        &store,
        alerts(&store, &mailer),
        "test/outbound",
        backoff,
    );
    d.start_cursors().await.unwrap(); // the subscriber starts here
    bad_plans(&w, 1..4).await;

    // Act: one round inside the window, then one as it closes.
    let waiting = d.tick().await.unwrap();
    let log_waiting = store.deliveries(None, None, 10).await.unwrap();
    let early = mailer.sent();
    w.clock.advance(WINDOW);
    let closed = d.tick().await.unwrap();

    // Assert: the waits were neither failures nor attempts...
    assert_eq!(
        (waiting.attempted, waiting.delivered, waiting.failed),
        (3, 0, 0)
    );
    assert!(early.is_empty(), "sent before the window closed: {early:?}");
    assert_eq!(log_waiting.len(), 3);
    for row in &log_waiting {
        assert_eq!(row.status, "pending");
        assert_eq!(row.attempts, 0, "a wait is not an attempt");
        assert_eq!(
            row.last_error.as_deref(),
            Some("waiting for the digest window to close")
        );
        assert_eq!(row.last_status, None);
    }
    // ...and the digest went out as the window closed, each task's delivery done in one attempt
    // (with `max_attempts` 2, a wait counted as one would have left a single try).
    assert_eq!(closed.delivered, 3);
    let sent = mailer.sent();
    assert_eq!(sent.len(), 1, "one digest for three tasks: {sent:?}");
    assert!(
        sent[0].subject.contains("3 patients"),
        "{}",
        sent[0].subject
    );
    let log = store.deliveries(None, None, 10).await.unwrap();
    assert!(
        log.iter()
            .all(|r| r.status == "delivered" && r.attempts == 1),
        "{log:?}"
    );
}

#[tokio::test]
async fn tasks_spaced_apart_are_one_email_each_reading_as_a_single_alert() {
    // Arrange
    let w = World::new();
    let store = w.store().await;
    let mailer = Arc::new(Mailer::default());
    let d = dispatcher(&w, &store, alerts(&store, &mailer), "test/outbound");
    d.fan_out().await.unwrap();

    // Act: a task, ten minutes of rounds, another task.
    bad_plans(&w, 1..2).await;
    rounds(&w, &d, 20, Duration::from_secs(30)).await;
    bad_plans(&w, 2..3).await;
    rounds(&w, &d, 20, Duration::from_secs(30)).await;

    // Assert
    let sent = mailer.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for (mail, n) in sent.iter().zip(1..) {
        assert!(mail.key.starts_with("staff-alert:evt_"), "{}", mail.key);
        assert!(mail.subject.contains("needs attention"), "{}", mail.subject);
        assert!(
            mail.text.starts_with("A workflow needs attention."),
            "{}",
            mail.text
        );
        assert!(
            mail.text.contains(&format!("plan tx-{n} (bad data)")),
            "{}",
            mail.text
        );
    }
}

#[tokio::test]
async fn a_practice_whose_staff_read_spanish_gets_its_alert_and_its_digest_in_spanish_with_initials_only()
 {
    // Arrange
    let w = World::new();
    let store = w.store().await;
    let mailer = Arc::new(Mailer::default());
    let d = dispatcher(
        &w,
        &store,
        alerts_in(&store, &mailer, financing_core::Language::Es),
        "test/outbound",
    );
    d.fan_out().await.unwrap();

    // Act: one task alone, then three together.
    bad_plans(&w, 1..2).await;
    rounds(&w, &d, 20, Duration::from_secs(30)).await;
    bad_plans(&w, 2..5).await;
    rounds(&w, &d, 20, Duration::from_secs(30)).await;

    // Assert: the single alert and the digest, each in Spanish, each naming the plan and what
    // the task asks, and nothing of the patient but initials.
    let sent = mailer.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let (alone, digest) = (&sent[0], &sent[1]);
    assert!(alone.key.starts_with("staff-alert:"), "{}", alone.key);
    assert!(
        alone.subject.contains("requiere atención"),
        "{}",
        alone.subject
    );
    assert!(
        alone
            .text
            .starts_with("Un flujo de trabajo requiere atención."),
        "{}",
        alone.text
    );
    assert!(
        alone
            .text
            .contains("plan tx-1 (datos del plan): no se puede calcular el precio"),
        "{}",
        alone.text
    );
    assert!(digest.key.starts_with("staff-digest:"), "{}", digest.key);
    assert!(
        digest.subject.contains("3 pacientes requieren atención"),
        "{}",
        digest.subject
    );
    for n in 2..5 {
        assert!(
            digest
                .text
                .contains(&format!("plan tx-{n} (datos del plan)")),
            "{}",
            digest.text
        );
    }
    for mail in [alone, digest] {
        for english in [
            "needs attention",
            "Reason",
            "Open it",
            "bad data",
            "insurance",
        ] {
            assert!(
                !mail.text.contains(english) && !mail.subject.contains(english),
                "English `{english}` in: {} / {}",
                mail.subject,
                mail.text
            );
        }
        for n in 1..5 {
            let p = crate::harness::patient(n);
            assert!(!mail.text.contains(&p.first_name), "{}", mail.text);
            assert!(!mail.text.contains(&p.last_name), "{}", mail.text);
        }
    }
}

#[tokio::test]
async fn a_crash_between_collecting_and_sending_loses_no_task_and_sends_none_twice() {
    // Arrange: three tasks; an instance collected their digest and died before sending it.
    let w = World::new();
    let store = w.store().await;
    let mailer = Arc::new(Mailer::default());
    let d = dispatcher(&w, &store, alerts(&store, &mailer), "test/outbound");
    d.fan_out().await.unwrap();
    bad_plans(&w, 1..4).await;
    let mut events = Vec::new();
    for wf in store.workflows(None, None, 100).await.unwrap() {
        events.extend(
            store
                .outbound_events(wf.state.id.as_str())
                .await
                .unwrap()
                .into_iter()
                .filter(|e| EventType::from_label(&e.kind) == Some(EventType::NeedsStaff)),
        );
    }
    events.sort_by_key(|e| e.row);
    assert_eq!(needs_staff(&events), 3);
    w.clock.advance(WINDOW);
    let now = w.clock.now_utc();
    let DigestPlan::Collect(ids) = plan_digest(&events[1], &events, WINDOW, now) else {
        panic!("the window has closed");
    };
    assert_eq!(ids.len(), 3);
    let key = digest_key(&ids);
    assert!(
        store
            .collect_digest(&key, practice_id().as_str(), &events[1].event_id, &ids, now)
            .await
            .unwrap()
    );
    // The next send certainly fails once (a refused connection).
    *mailer.fail_first.lock().unwrap() = 1;

    // Act: the dispatcher carries on.
    rounds(&w, &d, 30, Duration::from_secs(30)).await;

    // Assert: the digest as collected, once, with all three.
    let sent = mailer.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].key, key);
    for n in 1..4 {
        assert!(
            sent[0].text.contains(&format!("plan tx-{n} (bad data)")),
            "{}",
            sent[0].text
        );
    }
    let counts = store.delivery_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (0, 0));
}

#[tokio::test]
async fn two_dispatchers_at_once_send_one_digest() {
    // Arrange: two instances, each with its own store handle, dispatcher and subscriber.
    let w = World::new();
    let store_a = w.store().await;
    let store_b = w.store().await;
    let mailer = Arc::new(Mailer::default());
    let a = dispatcher(
        &w,
        &store_a,
        alerts(&store_a, &mailer),
        "instance-a/outbound",
    );
    let b = dispatcher(
        &w,
        &store_b,
        alerts(&store_b, &mailer),
        "instance-b/outbound",
    );
    a.fan_out().await.unwrap();
    bad_plans(&w, 1..7).await;

    // Act
    for _ in 0..20 {
        let (x, y) = tokio::join!(a.tick(), b.tick());
        x.unwrap();
        y.unwrap();
        w.clock.advance(Duration::from_secs(30));
    }

    // Assert
    let sent = mailer.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].subject.contains("6 patients"),
        "{}",
        sent[0].subject
    );
}

// Detection tasks: a plan that could not be started raises a task before any workflow exists;
// its `plan.needs_staff` event reaches the staff alert like any task. A workflow set aside
// because its stored data does not read (quarantined) alerts from its row alone. Both stores.

mod detection {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use chairside_engine::outbound::staff_alert::{AlertRoute, StaffAlerts};
    use chairside_engine::outbound::{DispatchConfig, Dispatcher, SharedSubscriber};
    use chairside_engine::store::detection::{DetectionBatch, DetectionKind, NewDetectionTask};
    use financing_core::{Backoff, Language};
    use messaging::EmailAddress;
    use url::Url;

    use super::{Mailer, WINDOW};
    use crate::backend::{Backend, TestDb, both};
    use crate::fakes::ManualClock;
    use crate::harness::{LEASE, practice_id, t0};
    use chairside_engine::outbound::events::{EventType, OutboundEvent};
    use chairside_engine::store::{Claim, NewWorkflow};

    /// A store, a clock, a recording mailer and a dispatcher with the practice's staff alerts
    /// (staff reading `language`), its subscriber cursor taken before anything happens.
    struct Kit {
        db: TestDb,
        clock: Arc<ManualClock>,
        mailer: Arc<Mailer>,
        dispatcher: Dispatcher,
    }

    impl Kit {
        async fn new(backend: Backend, language: Language) -> Self {
            let db = TestDb::new(backend).await;
            let clock = Arc::new(ManualClock::new(t0()));
            let mailer = Arc::new(Mailer::default());
            let route = AlertRoute {
                practice_name: "Smile Test Dental".into(),
                to: EmailAddress::parse("frontdesk@smile.example").unwrap(),
                sender: mailer.clone(),
                kinds: None,
                digest_window: WINDOW,
                language,
            };
            let alerts: SharedSubscriber = Arc::new(
                StaffAlerts::new(
                    HashMap::from([(practice_id(), route)]),
                    db.store.clone(),
                    db.delivery.clone(),
                    Url::parse("https://chairside.example/").unwrap(),
                )
                .unwrap(),
            );
            let dispatcher = Dispatcher::new(
                db.store.clone(),
                vec![alerts],
                clock.clone(),
                DispatchConfig {
                    owner: "test/outbound".into(),
                    lease: Duration::from_secs(60),
                    batch: 32,
                    backoff: Backoff {
                        base: Duration::from_secs(5),
                        cap: Duration::from_secs(60),
                        max_attempts: 6,
                    },
                },
            );
            dispatcher.start_cursors().await.unwrap(); // the subscriber starts here
            Self {
                db,
                clock,
                mailer,
                dispatcher,
            }
        }

        /// One poll of the practice system that could not read `tasks`, at the clock's time.
        async fn poll(&self, tasks: Vec<NewDetectionTask>) {
            let batch = DetectionBatch {
                cursor: "1".into(),
                tasks,
                ..DetectionBatch::default()
            };
            self.db
                .store
                .record_detection(&practice_id(), "dentrix", batch, self.clock.now())
                .await
                .unwrap();
        }

        async fn rounds(&self, n: u32, step: Duration) {
            for _ in 0..n {
                self.dispatcher.tick().await.unwrap();
                self.clock.advance(step);
            }
        }

        async fn plan_events(&self) -> i64 {
            self.db
                .raw
                .count("SELECT COUNT(*) FROM outbound_events WHERE type = 'plan.needs_staff'")
                .await
        }
    }

    /// A feed record the practice system sent as garbage (its fee unreadable).
    fn garbage(plan: &str) -> NewDetectionTask {
        NewDetectionTask {
            kind: DetectionKind::UnreadableRecord,
            plan_id: plan.into(),
            marker: "2026-06-02T09:00:00".into(),
            field: "procedures[0].fee".into(),
            problem: "the practice system's record could not be read; correct the field in the \
                      practice system (the plan is looked at again when it changes)"
                .into(),
        }
    }

    use chairside_engine::clock::Clock as _;

    async fn a_plan_that_could_not_be_read_alerts_staff_once_saying_what_to_do(backend: Backend) {
        // Arrange
        let kit = Kit::new(backend, Language::En).await;

        // Act: the poll that met the garbage, and a re-poll that meets it again.
        kit.poll(vec![garbage("tx-9")]).await;
        let after_first = kit.plan_events().await;
        kit.clock.advance(Duration::from_secs(30));
        kit.poll(vec![garbage("tx-9")]).await;
        kit.rounds(20, Duration::from_secs(30)).await;
        kit.poll(vec![garbage("tx-9")]).await;
        kit.rounds(20, Duration::from_secs(30)).await;

        // Assert: one event, ids and the kind only, in the task's transaction.
        assert_eq!(after_first, 1, "the event is written with the task");
        assert_eq!(
            kit.plan_events().await,
            1,
            "a re-raised task writes no second event"
        );
        let payload = String::from_utf8(
            kit.db
                .raw
                .blob("SELECT payload FROM outbound_events WHERE type = 'plan.needs_staff'")
                .await,
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&payload).unwrap();
        let task_id = kit.db.store.detection_tasks(None, false).await.unwrap()[0].id;
        assert_eq!(json["type"], "plan.needs_staff");
        assert_eq!(json["data"]["task"], "unreadable_record");
        assert_eq!(json["data"]["source"], "dentrix");
        assert_eq!(json["data"]["plan_id"], "tx-9");
        assert_eq!(json["data"]["detection_task"], task_id);
        assert!(json["data"].get("workflow_id").is_none(), "{payload}");
        assert!(
            !payload.contains("fee"),
            "no field or problem text: {payload}"
        );
        // One email, saying what happened and what to do, linking to the detection section.
        let sent = kit.mailer.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let mail = &sent[0];
        assert!(mail.key.starts_with("staff-alert:evt_"), "{}", mail.key);
        for part in [
            "plan tx-9 (unreadable record, dentrix, field procedures[0].fee)",
            "could not be read",
            "Open the plan in the practice system and correct that field",
            "again on its own",
            "Dismiss the task on the dashboard",
            "https://chairside.example/staff#detection",
        ] {
            assert!(mail.text.contains(part), "`{part}` missing: {}", mail.text);
        }
        let counts = kit.db.store.delivery_counts().await.unwrap();
        assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 1, 0));
    }

    async fn a_detection_task_resolved_before_its_alert_goes_out_is_not_alerted(backend: Backend) {
        // Arrange: a task, resolved by staff within the digest window.
        let kit = Kit::new(backend, Language::En).await;
        kit.poll(vec![garbage("tx-9")]).await;
        kit.rounds(2, Duration::from_secs(10)).await;
        let id = kit.db.store.detection_tasks(None, false).await.unwrap()[0].id;
        assert!(
            kit.db
                .store
                .resolve_detection_task(&practice_id(), id, kit.clock.now())
                .await
                .unwrap()
        );

        // Act
        kit.rounds(20, Duration::from_secs(30)).await;
        // The practice system sends the same record again: the resolved task stays resolved.
        kit.poll(vec![garbage("tx-9")]).await;
        kit.rounds(20, Duration::from_secs(30)).await;

        // Assert: no email, and the delivery is done, not failed.
        assert!(kit.mailer.sent().is_empty(), "{:?}", kit.mailer.sent());
        assert_eq!(kit.plan_events().await, 1);
        let counts = kit.db.store.delivery_counts().await.unwrap();
        assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 1, 0));
    }

    async fn plans_that_could_not_be_started_together_are_one_digest_in_the_staffs_spanish(
        backend: Backend,
    ) {
        // Arrange
        let kit = Kit::new(backend, Language::Es).await;
        let edited = NewDetectionTask {
            kind: DetectionKind::EditedAfterDone,
            plan_id: "tx-2".into(),
            marker: "rev-2".into(),
            field: "plan.procedures".into(),
            problem: "what is financed changed".into(),
        };

        // Act: two plans in one poll, a third a minute later.
        kit.poll(vec![garbage("tx-1"), edited]).await;
        kit.clock.advance(Duration::from_secs(60));
        let mut check = garbage("tx-3");
        check.kind = DetectionKind::PlanCheck;
        kit.poll(vec![check]).await;
        kit.rounds(20, Duration::from_secs(30)).await;

        // Assert: one digest of three, in Spanish, none of the task's English words.
        let sent = kit.mailer.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let mail = &sent[0];
        assert!(mail.key.starts_with("staff-digest:"), "{}", mail.key);
        for part in [
            "plan tx-1 (registro ilegible, dentrix, campo procedures[0].fee)",
            "plan tx-2 (plan modificado, dentrix, campo plan.procedures)",
            "plan tx-3 (plan con errores, dentrix, campo procedures[0].fee)",
            "corrija ese campo",
            "Revise el plan con el paciente",
        ] {
            assert!(mail.text.contains(part), "`{part}` missing: {}", mail.text);
        }
        assert_eq!(mail.text.matches("staff#detection").count(), 3);
        for english in ["could not be read", "what is financed", "Open the plan"] {
            assert!(!mail.text.contains(english), "English in: {}", mail.text);
        }
    }

    /// What the corrupted row holds: if it shows up in an event or an alert, content leaked.
    const MARKER: &str = "Set-Aside-Marker-Jane-Roe";

    /// One workflow for plan `tx-7`, claimed, whose stored state was then overwritten with
    /// bytes that do not open: what the runner quarantines.
    async fn unreadable_workflow(kit: &Kit) -> (chairside_workflow::WorkflowId, Claim) {
        let key = chairside_workflow::WorkflowKey {
            practice_id: practice_id(),
            plan_id: financing_core::PlanId::new("tx-7"),
            revision: "1".into(),
        };
        let mut state = chairside_workflow::WorkflowState::new(
            key,
            financing_core::PatientId::new("pat-7"),
            t0(),
        );
        let first = state.start();
        let new = NewWorkflow { state, first };
        let id = kit
            .db
            .store
            .record_poll(&practice_id(), "fakepms", "1", vec![new], vec![], t0())
            .await
            .unwrap()
            .remove(0);
        let claim = kit
            .db
            .store
            .claim_due("runner-a", kit.clock.now(), LEASE, 1)
            .await
            .unwrap()
            .remove(0);
        kit.db
            .raw
            .execute(&format!("UPDATE workflows SET state = '{MARKER}'"))
            .await
            .unwrap();
        (id, claim)
    }

    async fn a_workflow_set_aside_because_it_does_not_read_alerts_staff_once_without_reading_it(
        backend: Backend,
    ) {
        // Arrange
        let kit = Kit::new(backend, Language::En).await;
        let (id, claim) = unreadable_workflow(&kit).await;

        // Act: quarantined (twice: a second runner's late attempt), then the dispatcher's rounds.
        let problem = kit
            .db
            .store
            .quarantine_workflow(&claim, kit.clock.now())
            .await
            .unwrap();
        let again = kit
            .db
            .store
            .quarantine_workflow(&claim, kit.clock.now())
            .await;
        kit.rounds(20, Duration::from_secs(30)).await;

        // Assert: one `workflow.needs_staff` event (`system_error`), ids only, from the row.
        assert!(problem.is_some(), "the workflow is quarantined");
        assert!(
            matches!(
                again,
                Err(chairside_engine::store::StoreError::LeaseLost(_))
            ),
            "the late attempt is refused: {again:?}"
        );
        let events = kit.db.store.outbound_events(id.as_str()).await.unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        let event = OutboundEvent::from_payload(&events[0].payload).unwrap();
        assert_eq!(event.kind, EventType::NeedsStaff);
        assert_eq!(event.data.task.as_deref(), Some("system_error"));
        assert_eq!(event.data.workflow_id, id.as_str());
        assert_eq!(event.data.plan_id, "tx-7");
        let payload = String::from_utf8(events[0].payload.clone()).unwrap();
        assert!(!payload.contains(MARKER), "{payload}");
        // One email: what happened and what to do, no initials, the dashboard's set-aside list.
        let sent = kit.mailer.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let mail = &sent[0];
        for part in [
            "plan tx-7 (set aside)",
            "could not be read",
            "Ask your Chairside operator to repair it",
            "https://chairside.example/staff#held",
        ] {
            assert!(mail.text.contains(part), "`{part}` missing: {}", mail.text);
        }
        assert!(!mail.text.contains(MARKER), "{}", mail.text);
        assert!(
            !mail.text.contains("an external call failed"),
            "not the generic system error: {}",
            mail.text
        );
        let counts = kit.db.store.delivery_counts().await.unwrap();
        assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 1, 0));
    }

    async fn a_set_aside_workflows_alert_is_in_the_staffs_spanish(backend: Backend) {
        // Arrange
        let kit = Kit::new(backend, Language::Es).await;
        let (_, claim) = unreadable_workflow(&kit).await;

        // Act
        kit.db
            .store
            .quarantine_workflow(&claim, kit.clock.now())
            .await
            .unwrap();
        kit.rounds(20, Duration::from_secs(30)).await;

        // Assert
        let sent = kit.mailer.sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        let text = &sent[0].text;
        assert!(text.contains("plan tx-7 (apartado)"), "{text}");
        assert!(text.contains("operador de Chairside"), "{text}");
        assert!(!text.contains("could not be read"), "English in: {text}");
    }

    async fn waiting_for_the_digest_window_is_recorded_as_no_attempt(backend: Backend) {
        // Arrange: two plans that could not be read, in one poll.
        let kit = Kit::new(backend, Language::En).await;
        kit.poll(vec![garbage("tx-1"), garbage("tx-2")]).await;

        // Act: a round inside the window, then one as it closes.
        let waiting = kit.dispatcher.tick().await.unwrap();
        let log_waiting = kit.db.store.deliveries(None, None, 10).await.unwrap();
        kit.clock.advance(WINDOW);
        let closed = kit.dispatcher.tick().await.unwrap();

        // Assert: the waits were pending deliveries with no attempt counted; the digest went out
        // as the window closed, each delivery done in its one attempt.
        assert_eq!(
            (waiting.attempted, waiting.delivered, waiting.failed),
            (2, 0, 0)
        );
        assert_eq!(log_waiting.len(), 2);
        assert!(
            log_waiting
                .iter()
                .all(|r| r.status == "pending" && r.attempts == 0),
            "{log_waiting:?}"
        );
        assert_eq!(closed.delivered, 2);
        assert_eq!(kit.mailer.sent().len(), 1);
        let log = kit.db.store.deliveries(None, None, 10).await.unwrap();
        assert!(
            log.iter()
                .all(|r| r.status == "delivered" && r.attempts == 1),
            "{log:?}"
        );
    }

    both!(
        waiting_for_the_digest_window_is_recorded_as_no_attempt,
        a_plan_that_could_not_be_read_alerts_staff_once_saying_what_to_do,
        a_detection_task_resolved_before_its_alert_goes_out_is_not_alerted,
        plans_that_could_not_be_started_together_are_one_digest_in_the_staffs_spanish,
        a_workflow_set_aside_because_it_does_not_read_alerts_staff_once_without_reading_it,
        a_set_aside_workflows_alert_is_in_the_staffs_spanish,
    );
}
