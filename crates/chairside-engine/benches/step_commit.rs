//! What one usual step costs the SQLite store, with nothing else around it: no HTTP, no runner,
//! no sandbox. `cargo bench -p chairside-engine --bench step_commit` (release) prints, for a
//! number of workflows committing steps one caller at a time and many at once, the CPU of the
//! store's threads and of the callers' runtime per step, and the transactions and durable
//! commits it took.
//!
//! A "usual step" is what the runner commits after most external calls
//! (docs/performance.md): the command's result (its effect finished), one new command with its
//! intent journaled in the same transaction (`NextStep::begin`, the lease kept), and one audit
//! line. Read it against the floor of `chairside bench --floor`: a bare durable commit of a
//! state-sized row, and the same unsynced.
//!
//! Options (environment): `STEP_BENCH_WORKFLOWS` (default 300), `STEP_BENCH_STEPS` steps per
//! workflow (default 12), `STEP_BENCH_CALLERS` callers at once in the second measurement
//! (default 16), `STEP_BENCH_SYNC` `full` (default) or `normal`.

#![allow(clippy::print_stdout, reason = "a benchmark's output is its figures")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_engine::store::{
    Claim, Consumed, Durability, NewWorkflow, NextStep, SqliteStore, StepFacts, WorkItem,
};
use chairside_workflow::machine::Transition;
use chairside_workflow::{Action, Command, WorkflowKey, WorkflowState};
use chrono::{DateTime, Utc};
use financing_core::{PatientId, PlanId, PracticeId};

/// The lease each claim is made and kept for: longer than any run, so none expires.
const LEASE: Duration = Duration::from_secs(3_600);

/// The actions the steps' new commands take in turn (their kind does not change what the store
/// writes for them).
const ACTIONS: [Action; 2] = [Action::EnsureCustomer, Action::LoadPlan];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of this process's threads whose name starts with `prefix`, from the scheduler's
/// statistics (nanoseconds).
fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse().ok()
        })
        .map(Duration::from_nanos)
        .sum()
}

/// One workflow, claimed and at its first command, with the command's intent journaled.
struct Held {
    claim: Claim,
    state: WorkflowState,
    command: Command,
}

/// Creates `n` workflows of one practice (one poll) and claims each at its first command.
async fn workflows(store: &SqliteStore, n: usize, now: DateTime<Utc>) -> Vec<Held> {
    let practice = PracticeId::new("bench-practice");
    let new = (0..n)
        .map(|i| {
            let key = WorkflowKey {
                practice_id: practice.clone(),
                plan_id: PlanId::new(format!("plan-{i}")),
                revision: "1".into(),
            };
            let mut state = WorkflowState::new(key, PatientId::new(format!("pat-{i}")), now);
            let first = state.start();
            NewWorkflow { state, first }
        })
        .collect();
    let created = store
        .record_poll(&practice, "bench", "1", new, vec![], now)
        .await
        .expect("the workflows are recorded");
    assert_eq!(created.len(), n, "every workflow created");
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let claims = store
            .claim_due("bench", now, LEASE, 64)
            .await
            .expect("claims");
        assert!(!claims.is_empty(), "every new workflow is due");
        for claim in claims {
            let work = store.load(&claim, now).await.expect("load");
            let Some(WorkItem::Command { command, .. }) = work.item else {
                panic!("a new workflow's first item is its first command");
            };
            store
                .begin_effect(&claim, &command, 1, &format!("{}-1", claim.id), now)
                .await
                .expect("the first intent");
            held.push(Held {
                claim,
                state: work.state,
                command,
            });
        }
    }
    held
}

/// `steps` usual steps of one workflow, one after the other.
async fn run_steps(store: Arc<SqliteStore>, mut held: Held, steps: u64, now: DateTime<Utc>) {
    for _ in 0..steps {
        let next = Command {
            seq: held.command.seq + 1,
            action: ACTIONS[(held.command.seq % 2) as usize].clone(),
        };
        let key = format!("{}-{}", held.claim.id, next.seq);
        let transition = Transition {
            commands: vec![next.clone()],
            audit: vec![format!("step {} done", held.command.seq)],
            ..Transition::default()
        };
        store
            .commit_step(
                &held.claim,
                &held.state,
                Consumed::Command {
                    seq: held.command.seq,
                    attempt: 1,
                    outcome: "done".into(),
                },
                "done",
                &transition,
                Some(NextStep {
                    begin: Some((&next, &key)),
                    sends: &[],
                    lease: LEASE,
                    facts: StepFacts::default(),
                }),
                now,
            )
            .await
            .expect("a step commits");
        held.command = next;
    }
}

/// The figures of one measurement.
struct Figures {
    steps: u64,
    store_us: f64,
    runtime_us: f64,
    transactions: u64,
    commits: u64,
    elapsed: Duration,
}

/// Runs every workflow's steps with `callers` workflows at once.
async fn measure(
    store: &Arc<SqliteStore>,
    held: Vec<Held>,
    steps: u64,
    callers: usize,
    now: DateTime<Utc>,
) -> Figures {
    let before = store.counters();
    let (store_cpu, runtime_cpu) = (threads_cpu("chairside-store"), threads_cpu("step-bench"));
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(held));
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let (store, queue) = (store.clone(), queue.clone());
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().expect("queue").pop();
                    let Some(held) = next else { break };
                    run_steps(store.clone(), held, steps, now).await;
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        task.await.expect("a caller");
        total += 1;
    }
    assert_eq!(total, callers);
    let elapsed = started.elapsed();
    let after = store.counters();
    let transactions = after.write_transactions - before.write_transactions;
    let per = |d: Duration| d.as_secs_f64() * 1e6 / transactions.max(1) as f64;
    Figures {
        steps: transactions,
        store_us: per(threads_cpu("chairside-store").saturating_sub(store_cpu)),
        runtime_us: per(threads_cpu("step-bench").saturating_sub(runtime_cpu)),
        transactions,
        commits: after.commits - before.commits,
        elapsed,
    }
}

fn main() {
    let workflows_n: usize = env_or("STEP_BENCH_WORKFLOWS", 300);
    let steps: u64 = env_or("STEP_BENCH_STEPS", 12);
    let callers: usize = env_or("STEP_BENCH_CALLERS", 16);
    let durability = match std::env::var("STEP_BENCH_SYNC").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("step-bench")
        .worker_threads(std::thread::available_parallelism().map_or(1, usize::from))
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let now = Utc::now();
        println!(
            "a usual step (its result, one new command journaled, one audit line) on SQLite ({durability:?}), {workflows_n} workflows x {steps} steps"
        );
        for (label, at_once) in [("one caller at a time", 1), ("callers at once", callers)] {
            let path = dir.path().join(format!("steps-{at_once}.sqlite"));
            let store = Arc::new(
                SqliteStore::open_with(&path, DataKey::generate(), durability)
                    .await
                    .expect("the store opens"),
            );
            store.migrate().await.expect("migrations");
            let held = workflows(&store, workflows_n, now).await;
            let f = measure(&store, held, steps, at_once, now).await;
            assert_eq!(
                f.steps,
                workflows_n as u64 * steps,
                "every step is one write transaction"
            );
            println!(
                "  {at_once:>3} {label:<22} store threads {:>6.1} µs, callers' runtime {:>6.1} µs per step; {} steps in {} commits ({:.2} steps per commit), {:.0} steps/s",
                f.store_us,
                f.runtime_us,
                f.transactions,
                f.commits,
                f.transactions as f64 / f.commits.max(1) as f64,
                f.transactions as f64 / f.elapsed.as_secs_f64(),
            );
        }
    });
}
