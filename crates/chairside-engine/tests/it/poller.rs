//! One poller per practice across instances (issue #19): the lease protocol of [`PollerStore`]
//! (take, renew, hand over on expiry, release, fencing at commit), then two runners on one
//! database file polling through it: one polls at a time, and the other takes over when the
//! holder stops or dies.
//!
//! [`poller_lease_contract`] and [`a_poll_whose_lease_was_lost_records_nothing`] take any
//! [`Store`], so another implementation can run the same checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chairside_engine::ports::{ExternalError, PlanChanges, PlanSummary, PracticeSystem};
use chairside_engine::runner::Runner;
use chairside_engine::store::detection::DetectionBatch;
use chairside_engine::store::prelude::*;
use chairside_engine::store::{NewWorkflow, StoreError};
use chairside_workflow::{WorkflowKey, WorkflowState};
use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PlanId, PracticeId, TreatmentPlan};
use tokio::sync::{Notify, watch};

use crate::fakes::FakePms;
use crate::harness::{World, practice_id, t0};
use crate::pool::eventually;

const TTL: Duration = Duration::from_secs(30);

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

fn batch(plan: &str, cursor: &str) -> DetectionBatch {
    let key = WorkflowKey {
        practice_id: practice_id(),
        plan_id: PlanId::new(plan),
        revision: "1".into(),
    };
    let mut state = WorkflowState::new(key, PatientId::new("pat-1"), t0());
    let first = state.start();
    DetectionBatch {
        cursor: cursor.into(),
        new: vec![NewWorkflow { state, first }],
        ..DetectionBatch::default()
    }
}

/// The lease protocol, on any store.
pub(crate) async fn poller_lease_contract(store: &dyn Store) {
    let p = practice_id();

    // The first taker gets epoch 1; another owner is refused while it is live.
    let a = store
        .acquire_poller(&p, "a", at(0), TTL)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!((a.owner.as_str(), a.epoch), ("a", 1));
    assert_eq!(a.until, at(30));
    assert!(
        store
            .acquire_poller(&p, "b", at(29), TTL)
            .await
            .unwrap()
            .is_none(),
        "a live lease of another owner is not taken"
    );

    // Its holder keeps it at the same epoch, by acquiring again or renewing.
    let again = store
        .acquire_poller(&p, "a", at(10), TTL)
        .await
        .unwrap()
        .expect("the holder keeps its lease");
    assert_eq!((again.epoch, again.until), (1, at(40)));
    let renewed = store.renew_poller(&a, at(20), TTL).await.unwrap();
    assert_eq!((renewed.epoch, renewed.until), (1, at(50)));
    assert!(
        store
            .acquire_poller(&p, "b", at(45), TTL)
            .await
            .unwrap()
            .is_none(),
        "the renewal moved the expiry"
    );

    // Once it runs out another owner takes it at the next epoch, and the old holder can no
    // longer renew it.
    let b = store
        .acquire_poller(&p, "b", at(51), TTL)
        .await
        .unwrap()
        .expect("an expired lease is taken");
    assert_eq!((b.owner.as_str(), b.epoch), ("b", 2));
    assert!(matches!(
        store.renew_poller(&renewed, at(52), TTL).await,
        Err(StoreError::PollerLeaseLost(ref q)) if *q == p
    ));

    // A stale release changes nothing; the holder's release frees it at once for the next
    // epoch.
    store.release_poller(&renewed).await.unwrap();
    assert!(
        store
            .acquire_poller(&p, "a", at(53), TTL)
            .await
            .unwrap()
            .is_none(),
        "a stale release left b's lease alone"
    );
    store.release_poller(&b).await.unwrap();
    let a2 = store
        .acquire_poller(&p, "a", at(54), TTL)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_eq!(a2.epoch, 3);

    // A holder whose lease ran out, even if nobody took it, starts a new tenure.
    let a3 = store
        .acquire_poller(&p, "a", at(54 + 31), TTL)
        .await
        .unwrap()
        .expect("taken again");
    assert_eq!(a3.epoch, 4);
    assert!(matches!(
        store.renew_poller(&a2, at(54 + 31), TTL).await,
        Err(StoreError::PollerLeaseLost(_))
    ));

    // Leases are per practice.
    let other = PracticeId::new("other-practice");
    let o = store
        .acquire_poller(&other, "b", at(54 + 31), TTL)
        .await
        .unwrap()
        .expect("another practice's lease is free");
    assert_eq!(o.epoch, 1);
}

/// Fencing at commit, on any store: a poll recorded under a lease that was taken over, or that
/// ran out with nobody taking it, writes nothing; the live holder's poll is recorded.
pub(crate) async fn a_poll_whose_lease_was_lost_records_nothing(store: &dyn Store) {
    let p = practice_id();
    let old = store
        .acquire_poller(&p, "old", at(0), TTL)
        .await
        .unwrap()
        .unwrap();

    // Ran out, nobody took it: refused at commit all the same.
    let refused = store
        .record_detection_leased(&old, "fakepms", batch("tx-1", "c1"), at(31))
        .await;
    assert!(
        matches!(refused, Err(StoreError::PollerLeaseLost(_))),
        "{refused:?}"
    );

    // Taken over: the old holder's poll is refused, the new holder's is recorded.
    let new = store
        .acquire_poller(&p, "new", at(31), TTL)
        .await
        .unwrap()
        .unwrap();
    let refused = store
        .record_detection_leased(&old, "fakepms", batch("tx-1", "c1"), at(32))
        .await;
    assert!(
        matches!(refused, Err(StoreError::PollerLeaseLost(_))),
        "{refused:?}"
    );
    assert_eq!(store.cursor(&p, "fakepms").await.unwrap(), None);
    assert!(store.workflows(None, None, 10).await.unwrap().is_empty());

    let created = store
        .record_detection_leased(&new, "fakepms", batch("tx-2", "c2"), at(33))
        .await
        .unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(
        store.cursor(&p, "fakepms").await.unwrap().as_deref(),
        Some("c2")
    );
    let plans: Vec<String> = store
        .workflows(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.state.key.plan_id.as_str().to_owned())
        .collect();
    assert_eq!(plans, ["tx-2"], "only the holder's poll was recorded");
}

#[tokio::test]
async fn the_poller_lease_is_taken_kept_handed_over_on_expiry_and_released() {
    let w = World::new();
    poller_lease_contract(w.store().await.as_ref()).await;
}

#[tokio::test]
async fn a_poll_recorded_under_a_lost_poller_lease_writes_nothing() {
    let w = World::new();
    a_poll_whose_lease_was_lost_records_nothing(w.store().await.as_ref()).await;
}

/// The practice system as one instance sees it: the shared fake, with this instance's polls
/// counted.
#[derive(Debug)]
struct Counted {
    inner: Arc<FakePms>,
    polls: AtomicUsize,
}

#[async_trait]
impl PracticeSystem for Counted {
    fn source(&self) -> &str {
        self.inner.source()
    }
    async fn changed_plans(&self, cursor: Option<&str>) -> Result<PlanChanges, ExternalError> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.changed_plans(cursor).await
    }
    fn clamp_cursor(&self, cursor: &str, now: DateTime<Utc>) -> String {
        self.inner.clamp_cursor(cursor, now)
    }
    async fn plan(&self, summary: &PlanSummary) -> Result<TreatmentPlan, ExternalError> {
        self.inner.plan(summary).await
    }
    async fn patient(&self, patient: &PatientId) -> Result<PatientContact, ExternalError> {
        self.inner.patient(patient).await
    }
    async fn find_note(
        &self,
        patient: &PatientId,
        marker: &str,
    ) -> Result<Option<String>, ExternalError> {
        self.inner.find_note(patient, marker).await
    }
    async fn write_note(
        &self,
        patient: &PatientId,
        marker: &str,
        text: &str,
    ) -> Result<String, ExternalError> {
        self.inner.write_note(patient, marker, text).await
    }
}

/// An instance: a runner with its own store on the world's file, polling through its own view
/// of the practice system, under a 300 ms lease (renewed every 100 ms).
async fn instance(w: &World, name: &str) -> (Runner, Arc<Counted>) {
    let view = Arc::new(Counted {
        inner: w.pms.clone(),
        polls: AtomicUsize::new(0),
    });
    let mut rt = w.runtime();
    rt.pms = view.clone();
    let runner = w
        .runner_tuned(name, vec![rt], |c| c.lease = Duration::from_millis(300))
        .await;
    (runner, view)
}

fn start_polling(runner: &Runner) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let runner = runner.clone();
    let task = tokio::spawn(async move {
        runner
            .poll_practices(
                Duration::from_millis(20),
                Arc::new(Notify::new()),
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )
            .await;
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_poll_a_practice_one_at_a_time_and_the_other_takes_over_when_it_stops() {
    // Arrange: instance A polls; then B starts beside it.
    let w = World::new();
    let first = w.accept(1, 150_000, 50_000);
    let (a, a_view) = instance(&w, "a").await;
    let (b, b_view) = instance(&w, "b").await;
    let (stop_a, task_a) = start_polling(&a);
    eventually("A polls", || async {
        a_view.polls.load(Ordering::SeqCst) >= 2
    })
    .await;
    let (stop_b, task_b) = start_polling(&b);

    // Act 1: A keeps polling (and renewing) for many of B's attempts to take the lease.
    let seen = a_view.polls.load(Ordering::SeqCst);
    eventually("A polls on (well past several lease lengths)", || async {
        a_view.polls.load(Ordering::SeqCst) >= seen + 60
    })
    .await;

    // Assert 1
    assert_eq!(
        b_view.polls.load(Ordering::SeqCst),
        0,
        "B never polled while A held the lease"
    );
    assert!(a.store().workflow(&first).await.unwrap().is_some());

    // Act 2: A stops (releasing its lease); a plan accepted afterwards is B's to find.
    stop_a.send(true).unwrap();
    task_a.await.unwrap();
    let a_done = a_view.polls.load(Ordering::SeqCst);
    let second = w.accept(2, 150_000, 50_000);
    eventually("B takes over and detects the new plan", || async {
        b.store().workflow(&second).await.unwrap().is_some()
    })
    .await;
    stop_b.send(true).unwrap();
    task_b.await.unwrap();

    // Assert 2
    assert_eq!(a_view.polls.load(Ordering::SeqCst), a_done);
    assert!(b_view.polls.load(Ordering::SeqCst) >= 1);
    assert_eq!(b.store().workflows(None, None, 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_polling_instance_dies_another_takes_over_once_its_lease_runs_out() {
    // Arrange: A holds the lease and dies without releasing it (its task is dropped mid-loop, as
    // a SIGKILL would); the clock does not move, so its lease stays live.
    let w = World::new();
    let (a, a_view) = instance(&w, "a").await;
    let (b, b_view) = instance(&w, "b").await;
    let (_stop_a, task_a) = start_polling(&a);
    eventually("A polls", || async {
        a_view.polls.load(Ordering::SeqCst) >= 2
    })
    .await;
    task_a.abort();
    let _ = task_a.await;
    let (stop_b, task_b) = start_polling(&b);
    let id = w.accept(1, 150_000, 50_000);
    // B tries to take the lease every 100 ms; give it several tries while A's lease is live.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_expiry = b_view.polls.load(Ordering::SeqCst);

    // Act: the dead holder's lease runs out.
    w.clock.advance(Duration::from_secs(1));

    // Assert
    eventually("B takes over and detects the plan", || async {
        b.store().workflow(&id).await.unwrap().is_some()
    })
    .await;
    stop_b.send(true).unwrap();
    task_b.await.unwrap();
    assert_eq!(before_expiry, 0, "B did not poll while A's lease was live");
    let epoch: i64 = sqlx::query_scalar("SELECT epoch FROM poller_leases WHERE practice_id = ?")
        .bind(practice_id().as_str())
        .fetch_one(&crate::harness::raw_pool(&w.path).await)
        .await
        .unwrap();
    assert_eq!(epoch, 2, "B's tenure is the next epoch");
}
