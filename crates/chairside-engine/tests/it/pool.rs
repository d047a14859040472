//! The long-running loops and the lease around a call: a continuous pool where a slow workflow
//! holds up no other, wake-ups from the store instead of a fixed sleep, one poller per practice
//! with its own deadline, leases renewed while a call is in flight and checked at commit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chairside_engine::runner::Runner;
use chairside_workflow::{Event, Status, WorkflowId};
use financing_core::PracticeId;
use tokio::sync::{Notify, watch};

use crate::fakes::{Answer, FakePms, Fault};
use crate::harness::{LEASE, World, raw_pool};

/// Waits until `check` holds, looking every 10 ms; panics after 10 s (a broken test fails
/// instead of hanging). Not a timing assertion: the conditions are ones only the code under test
/// can make true.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `runner.work` in the background, and a way to stop it.
fn start_work(runner: &Runner) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, mut stopped) = watch::channel(false);
    let runner = runner.clone();
    let task = tokio::spawn(async move {
        runner
            .work(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
    });
    (stop, task)
}

/// How many of `ids` are at `status`. Until `target` of them are, the clock jumps to the next
/// due time (within two hours, so leases and reminders far away stay put) and the pool is woken.
async fn count_advancing(
    w: &World,
    runner: &Runner,
    ids: &[WorkflowId],
    status_wanted: Status,
    target: usize,
) -> usize {
    let mut n = 0;
    for id in ids {
        if status(w, runner, id).await == status_wanted {
            n += 1;
        }
    }
    if n < target
        && let Some(at) = w.next_due(runner).await
        && at > w.clock.now_utc()
        && at < w.clock.now_utc() + chrono::Duration::hours(2)
    {
        w.clock.set(at);
        runner.wake();
    }
    n
}

async fn status(w: &World, runner: &Runner, id: &WorkflowId) -> Status {
    w.row(runner, id).await.state.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_whose_call_hangs_holds_up_no_other() {
    // Arrange: two plans on the in-house path; the first Stripe customer call hangs. The lease is long, so moving the clock to the next timer never frees the hung one.
    let w = World::new();
    let ids = [w.accept(1, 150_000, 50_000), w.accept(2, 150_000, 50_000)];
    w.carecredit.on_start(Answer::Decline);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe
        .script
        .fault("ensure_customer", Fault::HangAfterApplying, 1);
    let runner = w
        .runner_tuned("pool", vec![w.runtime()], |c| {
            c.lease = Duration::from_secs(24 * 3600);
        })
        .await;
    assert_eq!(runner.poll().await.unwrap(), 2);

    // Act
    let (stop, task) = start_work(&runner);
    w.stripe.script.gate.entered().await;
    eventually(
        "the other workflow finishes while the first hangs",
        || async { count_advancing(&w, &runner, &ids, Status::Done, 1).await == 1 },
    )
    .await;
    let hung_was_active = count_advancing(&w, &runner, &ids, Status::Active, 0).await;
    w.stripe.script.gate.open();
    eventually(
        "the hung workflow finishes once its call answers",
        || async { count_advancing(&w, &runner, &ids, Status::Done, 2).await == 2 },
    )
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();

    // Assert
    assert_eq!(
        hung_was_active, 1,
        "the hung workflow was still at its call"
    );
    assert_eq!(w.stripe.customers().len(), 2, "one customer each");
    assert_eq!(w.stripe.schedules().len(), 2);
    for id in &ids {
        assert_eq!(w.pms.notes_for(id).len(), 1);
    }
    assert_eq!(runner.stats().lost_leases.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_queued_while_the_pool_sleeps_is_picked_up_without_waiting_for_the_recheck() {
    // Arrange: a workflow waiting on the patient (link sent, next status poll 10 minutes away on
    // a clock that does not move), and a pool that would look again only after an hour.
    let w = World::new();
    w.carecredit.on_start(Answer::Link);
    let id = w.accept(1, 150_000, 50_000);
    let runner = w
        .runner_tuned("pool", vec![w.runtime()], |c| {
            c.idle_recheck = Duration::from_secs(3600);
        })
        .await;
    assert_eq!(runner.poll().await.unwrap(), 1);
    let (stop, task) = start_work(&runner);
    eventually("the application link is sent", || async {
        w.messenger.sent().len() == 1
    })
    .await;
    eventually("the workflow is released and waits", || async {
        w.row(&runner, &id)
            .await
            .next_due_at
            .is_some_and(|at| at > w.clock.now_utc())
    })
    .await;

    // Act: a webhook's event is stored (through the store the runner uses).
    runner
        .store()
        .enqueue(
            &id,
            "webhook:test",
            &Event::PlanWithdrawn {
                reason: "rejected".into(),
            },
            w.clock.now_utc(),
        )
        .await
        .unwrap();

    // Assert: only the store's wake-up can have made the pool look before the hour is out.
    eventually("the queued event is applied", || async {
        status(&w, &runner, &id).await == Status::Cancelled
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_practice_system_that_hangs_delays_no_other_practices_detection() {
    // Arrange: a second practice whose system never answers a change poll.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    let hung = Arc::new(FakePms::default());
    hung.script
        .fault("changed_plans", Fault::HangAfterApplying, 1_000);
    let mut other = w.runtime();
    other.profile.id = PracticeId::new("hung-dental-test");
    other.pms = hung.clone();
    let runner = w
        .runner_tuned("pollers", vec![other, w.runtime()], |c| {
            c.poll_deadline = Duration::from_millis(200);
        })
        .await;

    // Act
    let (stop, mut stopped) = watch::channel(false);
    let pollers = {
        let runner = runner.clone();
        tokio::spawn(async move {
            runner
                .poll_practices(
                    Duration::from_millis(50),
                    Arc::new(Notify::new()),
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                )
                .await;
        })
    };

    // Assert: the good practice's plan is detected while the other hangs, and the hung poll is
    // cut at its deadline and asked again.
    eventually("the good practice's plan becomes a workflow", || async {
        runner.store().workflow(&id).await.unwrap().is_some()
    })
    .await;
    eventually("the hung poll is abandoned and retried", || async {
        hung.script.count("changed_plans") >= 2
    })
    .await;
    stop.send(true).unwrap();
    pollers.await.unwrap();
    assert_eq!(
        runner
            .store()
            .workflows(None, None, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_renewed_during_a_long_call_is_not_taken_by_another_runner() {
    // Arrange: a 300 ms lease; the Stripe customer call hangs until the test lets it go.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe
        .script
        .fault("ensure_customer", Fault::HangAfterApplying, 1);
    let lease = Duration::from_millis(300);
    let holder = w
        .runner_tuned("holder", vec![w.runtime()], |c| c.lease = lease)
        .await;
    let thief = w
        .runner_tuned("thief", vec![w.runtime()], |c| c.lease = lease)
        .await;
    holder.poll().await.unwrap();
    let task = {
        let holder = holder.clone();
        tokio::spawn(async move { holder.run_until_idle(100).await })
    };
    w.stripe.script.gate.entered().await;
    let db = raw_pool(&w.path).await;

    // Act: the clock moves past the original lease five times over, each time by less than a
    // lease; after each move the holder renews and the thief tries to claim.
    let mut stolen = 0;
    for _ in 0..5 {
        w.clock.advance(Duration::from_millis(200));
        let now = w.clock.now_utc().timestamp_millis();
        eventually("the holder renews its lease", || async {
            let until: Option<i64> =
                sqlx::query_scalar("SELECT lease_until FROM workflows WHERE id = ?")
                    .bind(id.as_str())
                    .fetch_one(&db)
                    .await
                    .unwrap();
            until.is_some_and(|u| u >= now + 250)
        })
        .await;
        stolen += thief.tick().await.unwrap();
    }
    w.stripe.script.gate.open();
    task.await.unwrap().unwrap();
    w.settle(&holder).await;

    // Assert
    assert_eq!(stolen, 0, "the renewed lease was never claimable");
    assert_eq!(holder.stats().lost_leases.load(Ordering::Relaxed), 0);
    assert_eq!(status(&w, &holder, &id).await, Status::Done);
    assert_eq!(
        w.stripe.script.count("ensure_customer"),
        1,
        "the customer was asked for once"
    );
    assert_eq!(w.pms.notes_for(&id).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_outlives_its_lease_is_refused_at_commit_and_committed_once_by_the_next_owner()
{
    // Arrange: the Stripe customer call hangs; its lease runs out before it answers, and nobody has claimed
    // the workflow yet (the fencing epoch alone would not notice).
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    w.carecredit.on_start(Answer::Decline);
    w.sunbit.on_start(Answer::Decline);
    w.stripe
        .script
        .fault("ensure_customer", Fault::HangAfterApplying, 1);
    let late = w.runner("late").await;
    late.poll().await.unwrap();
    let task = {
        let late = late.clone();
        tokio::spawn(async move { late.tick().await })
    };
    w.stripe.script.gate.entered().await;

    let steps_before = late.stats().steps.load(Ordering::Relaxed);

    // Act: the lease expires; then the call answers.
    w.clock.advance(LEASE + Duration::from_secs(1));
    w.stripe.script.gate.open();
    task.await.unwrap().unwrap();
    let after_late = w.row(&late, &id).await;
    let heir = w.runner("heir").await;
    w.settle(&heir).await;

    // Assert
    assert_eq!(late.stats().lost_leases.load(Ordering::Relaxed), 1);
    assert_eq!(
        late.stats().steps.load(Ordering::Relaxed),
        steps_before,
        "the late result was not committed"
    );
    assert_eq!(
        after_late.next_action.as_deref(),
        Some("ensure_customer"),
        "the customer step is still to do"
    );
    assert_eq!(status(&w, &heir, &id).await, Status::Done);
    let keys = w.stripe.script.calls("ensure_customer");
    assert_eq!(keys.len(), 2, "the heir asked again");
    assert_eq!(keys[0], keys[1], "with the same idempotency key");
    assert_eq!(w.stripe.customers().len(), 1);
    let loaded = heir
        .store()
        .audit(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == "customer_ready")
        .count();
    assert_eq!(loaded, 1, "the step was committed once");
    assert_eq!(w.pms.notes_for(&id).len(), 1);
}

#[tokio::test]
async fn a_lease_that_ran_out_or_moved_is_not_renewed() {
    // Arrange: a workflow due now, claimed by one runner.
    let w = World::new();
    w.accept(1, 150_000, 50_000);
    let first = w.runner("first").await;
    first.poll().await.unwrap();
    let store = first.store();
    let now = w.clock.now_utc();
    let claim = store
        .claim_due("first", now, LEASE, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();

    // Act + Assert: renewed inside the lease; refused once it ran out; refused after another
    // runner claimed it.
    store.renew_lease(&claim, now, LEASE).await.unwrap();
    let later = now + chrono::Duration::from_std(LEASE * 2).unwrap();
    assert!(store.renew_lease(&claim, later, LEASE).await.is_err());
    let taken = store
        .claim_due("second", later, LEASE, 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert!(taken.epoch > claim.epoch);
    assert!(
        store
            .renew_lease(&claim, later, LEASE)
            .await
            .is_err_and(|e| matches!(e, chairside_engine::store::StoreError::LeaseLost(_)))
    );
    store.renew_lease(&taken, later, LEASE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_detected_while_the_pool_runs_is_handed_over_by_the_polls_transaction() {
    // Arrange: the pool is running before the plan is seen.
    let w = World::new();
    let id = w.accept(1, 150_000, 50_000);
    let runner = w.runner("pool").await;
    let (stop, task) = start_work(&runner);

    // Act: the poll creates the workflow; the pool runs it until it waits on the patient.
    assert_eq!(runner.poll().await.unwrap(), 1);
    let pool = raw_pool(&w.path).await;
    eventually("the workflow ran until it waits, and let go", || async {
        let waiting: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM workflows WHERE lease_owner IS NULL
               AND (SELECT COUNT(*) FROM message_sends) > 0",
        )
        .fetch_optional(&pool)
        .await
        .unwrap();
        waiting.is_some()
    })
    .await;
    stop.send(true).unwrap();
    task.await.unwrap();

    // Assert: the poll's transaction claimed it for this runner (epoch 1) and journaled the
    // plan load's intent; every transaction of the runner since was a step's commit: no claim,
    // no intent, no release of its own.
    let plan_load: (i64, i64) = sqlx::query_as(
        "SELECT e.epoch, w.epoch FROM effects e JOIN workflows w ON w.id = e.workflow_id
         WHERE e.workflow_id = ? AND e.action = 'load_plan' AND e.outcome IS NOT NULL",
    )
    .bind(id.as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(plan_load, (1, 1), "one claim, made by the poll");
    let sites = runner.store().write_sites();
    let runner_writes: u64 = sites
        .iter()
        .filter(|(site, _)| site.starts_with("sqlite/workflow.rs"))
        .map(|(_, n)| n)
        .sum();
    let steps = runner.stats().steps.load(Ordering::Relaxed);
    assert!(steps >= 3, "plan loaded, lender asked, link sent: {steps}");
    assert_eq!(runner_writes, steps, "{sites:?}");
}
