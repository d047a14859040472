//! Quarantine: an undecodable workflow row or webhook body is kept, set aside for staff, and
//! blocks nothing else.

use std::time::Duration;

use chairside_engine::store::prelude::*;
use chairside_workflow::{Event, Status, TaskKind, WorkflowId};

use crate::fakes::{Answer, FakeLender};
use crate::harness::{World, contains, database_bytes, logs, raw_pool};

/// What the corrupted row holds: if it shows up in a problem, a task or a log, content leaked.
const MARKER: &str = "Quarantine-Marker-Jane-Roe";

async fn corrupt(w: &World, id: &WorkflowId) {
    let pool = raw_pool(&w.path).await;
    let broken = format!(r#"{{"id":"{id}","patient_note":"{MARKER}","stage":{{"Finan"#);
    sqlx::query("UPDATE workflows SET state = ? WHERE id = ?")
        .bind(broken)
        .bind(id.as_str())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn an_undecodable_workflow_is_quarantined_while_the_others_run_to_done() {
    // Arrange: three plans; the second one's stored state is corrupted by hand.
    let mut w = World::new();
    w.carecredit = std::sync::Arc::new(FakeLender::answering(
        "carecredit",
        "CareCredit",
        Answer::Link,
        Answer::Approve,
    ));
    let ids: Vec<WorkflowId> = (1..=3).map(|n| w.accept(n, 150_000, 50_000)).collect();
    let runner = w.runner("alpha").await;
    assert_eq!(runner.poll().await.unwrap(), 3);
    corrupt(&w, &ids[1]).await;

    // Act
    w.settle(&runner).await;

    // Assert: the good ones finished; the listing answers without the bad one.
    let store = runner.store();
    for id in [&ids[0], &ids[2]] {
        assert_eq!(w.row(&runner, id).await.state.status, Status::Done, "{id}");
    }
    let listed = store.workflows(None, None, 100).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        store.counters().skipped_undecodable >= 1,
        "skips are counted"
    );

    // The bad one is quarantined with its id and the path, never the content.
    let held = store.quarantined_workflows(None).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].workflow_id, ids[1]);
    assert!(held[0].problem.contains("state"), "{}", held[0].problem);
    assert!(!held[0].problem.contains(MARKER));
    let tasks = store.tasks(None, false).await.unwrap();
    let task = tasks
        .iter()
        .find(|t| t.workflow_id == ids[1])
        .expect("a staff task for the quarantined workflow");
    assert_eq!(task.task.kind, TaskKind::SystemError);
    assert!(task.task.reason.contains(ids[1].as_str()));
    assert!(!task.task.reason.contains(MARKER));
    assert!(!logs().text().contains(MARKER), "no stored content in logs");

    // Kept as stored, and never claimed again, even when an event arrives for it.
    let pool = raw_pool(&w.path).await;
    let state: String = sqlx::query_scalar("SELECT state FROM workflows WHERE id = ?")
        .bind(ids[1].as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(state.contains(MARKER));
    store
        .enqueue(
            &ids[1],
            "test",
            &Event::PlanWithdrawn {
                reason: "edited".into(),
            },
            w.clock.now_utc(),
        )
        .await
        .unwrap();
    let claims = store
        .claim_due("beta", w.clock.now_utc(), Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert!(claims.iter().all(|c| c.id != ids[1]), "{claims:?}");
}

#[tokio::test]
async fn a_verified_delivery_that_does_not_parse_is_kept_sealed_and_once() {
    // Arrange
    let w = World::new();
    let store = w.store().await;
    let body = format!(r#"{{"id":"evt_1","object":"event","data":{{"name":"{MARKER}""#);

    // Act
    let first = store
        .quarantine_delivery(
            "stripe",
            body.as_bytes(),
            "did not parse",
            w.clock.now_utc(),
        )
        .await
        .unwrap();
    let again = store
        .quarantine_delivery(
            "stripe",
            body.as_bytes(),
            "did not parse",
            w.clock.now_utc(),
        )
        .await
        .unwrap();

    // Assert
    assert!(first);
    assert!(!again, "a redelivery is kept once");
    let held = store.quarantined_deliveries().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].provider, "stripe");
    assert!(
        !contains(&database_bytes(&w.path), MARKER),
        "the body is sealed at rest"
    );
    let opened = store.quarantined_delivery_body(held[0].id).await.unwrap();
    assert_eq!(opened.as_deref(), Some(body.as_bytes()));
}
