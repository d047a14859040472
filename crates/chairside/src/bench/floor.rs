//! The floor under Chairside's CPU per external call on this machine (`chairside bench --floor`):
//! what the two things every call is made of cost with nothing of Chairside around them.
//!
//! - **An HTTP round trip over loopback**: the product's HTTP client (reqwest on a runtime built
//!   as the instances' is, keep-alive) asks the sandbox's smallest answer (`GET /counts` of its
//!   admin API, a few bytes of JSON) and reads it; the CPU of the runtime's threads per round
//!   trip, one caller at a time and many at once. Every external call is at least one of these.
//! - **A durable commit**: a thread that owns a SQLite connection as the store's thread does (WAL,
//!   `synchronous = FULL`) updates one row holding a state-sized blob and commits; its CPU per
//!   commit, and the runtime's CPU when a task on the runtime asks for each commit and waits for
//!   it (the hop to the store's thread and back, as the runner's steps do). The same transaction
//!   unsynced (`synchronous = NORMAL`) is the floor of a transaction that shares a group commit.
//!
//! Nothing in those two is Chairside's code: they are lower bounds that its figures can be read
//! against. Beside them, **a usual step through the real SQLite store** (`SqliteStore`'s
//! `commit_step`: the command's result, one new command with its intent journaled in the same
//! transaction, one audit line), one caller at a time and many at once (the store thread's group
//! commit), with nothing else around it: the store's part of a call, to read against the bare
//! commit.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chairside_engine::store::crypto::DataKey;
use chairside_engine::store::prelude::*;
use chairside_engine::store::{
    Claim, Consumed, NewWorkflow, NextStep, SqliteStore, StepFacts, WorkItem,
};
use chairside_workflow::machine::Transition;
use chairside_workflow::{Action, Command, WorkflowKey, WorkflowState};
use chrono::{DateTime, Utc};
use financing_core::{PatientId, PlanId, PracticeId};
use serde::Serialize;

use super::{PRODUCT_THREADS, ProductRuntime, SQLITE_THREADS, SandboxProcess, proc};
use crate::demo::world::Surface;

/// Callers at once in the "many at once" measurement: about the runner's workflows in flight at
/// zero latency on two cores.
const CALLERS: usize = 16;
/// Rows the commits update in turn (the workflows in flight).
const ROWS: u64 = 300;
/// Bytes of the blob each commit writes: about a sealed workflow state late in its chain (2.6 KB
/// on average, 3.1 KB at most at the end of a 300-plan bench; docs/performance.md, "The floor").
pub(crate) const STATE_BYTES: usize = 3_072;
/// The committing thread's name: apart from the product's and the store's.
const FLOOR_THREAD: &str = "floor-sqlite";

/// What the floor measured.
#[derive(Debug, Clone, Serialize)]
pub struct FloorFigures {
    /// HTTP round trips in each measurement.
    pub round_trips: u64,
    /// The runtime's CPU per round trip, one caller at a time, µs.
    pub http_one_caller_us: f64,
    /// The sandbox's CPU per round trip, one caller at a time, µs (the other end; not ours).
    pub http_one_caller_sandbox_us: f64,
    /// Callers at once in the next two figures.
    pub callers: usize,
    /// The runtime's CPU per round trip, `callers` at once, µs.
    pub http_many_callers_us: f64,
    /// The sandbox's CPU per round trip, `callers` at once, µs.
    pub http_many_callers_sandbox_us: f64,
    /// Durable commits in each measurement.
    pub commits: u64,
    /// Bytes of the row each commit rewrites.
    pub state_bytes: usize,
    /// The committing thread's CPU per commit, µs.
    pub commit_us: f64,
    /// The committing thread's CPU per transaction that is not synced (`synchronous = NORMAL`:
    /// what a transaction sharing a group commit costs beyond the commit), µs.
    pub unsynced_us: f64,
    /// The committing thread's CPU per commit when each is asked for by a task on the runtime,
    /// µs.
    pub commit_asked_us: f64,
    /// The runtime's CPU per commit asked for (sending, waking, being woken), µs.
    pub commit_asked_runtime_us: f64,
    /// Usual steps committed through the SQLite store in each of the next measurements.
    pub steps: u64,
    /// The store's threads' CPU per usual step, one caller at a time, µs.
    pub step_one_caller_us: f64,
    /// The callers' runtime's CPU per usual step, one caller at a time, µs.
    pub step_one_caller_runtime_us: f64,
    /// The store's threads' CPU per usual step, `callers` at once, µs.
    pub step_many_callers_us: f64,
    /// The callers' runtime's CPU per usual step, `callers` at once, µs.
    pub step_many_callers_runtime_us: f64,
    /// Steps per durable commit with `callers` at once (the group commit).
    pub steps_per_commit_many_callers: f64,
}

impl FloorFigures {
    /// The floor of one external call that makes `transactions_per_call` write transactions, of
    /// which `commits_per_call` are synced: the cheaper of the two HTTP figures (a floor,
    /// whichever way the calls come), that many asked-for commits with their hops, and the other
    /// transactions unsynced, µs.
    pub fn per_call_us(&self, transactions_per_call: f64, commits_per_call: f64) -> f64 {
        self.http_one_caller_us.min(self.http_many_callers_us)
            + commits_per_call * (self.commit_asked_us + self.commit_asked_runtime_us)
            + (transactions_per_call - commits_per_call).max(0.0) * self.unsynced_us
    }
}

/// Measures the floor with the sandbox `bin`, the SQLite file in `dir`: `commits` durable commits
/// and twice as many HTTP round trips in each measurement.
pub(super) async fn measure(bin: &Path, dir: &Path, commits: u64) -> anyhow::Result<FloorFigures> {
    let trips = commits * 2;
    let surface = Surface::bind().await?;
    let sandbox = SandboxProcess::spawn(bin, &surface, &[]).await?;
    let product = ProductRuntime::new()?;
    let url = sandbox.admin.join("counts")?;
    let http = product
        .handle()
        .spawn(async {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(32)
                .build()
        })
        .await
        .context("building the HTTP client")?
        .context("the HTTP client")?;

    // Warm up: connections opened, the runtime's threads started.
    round_trips(&product, &http, &url, CALLERS, CALLERS as u64 * 4).await?;
    let (one, one_sandbox) = measured(&product, &http, &url, &sandbox.pid, 1, trips).await?;
    let (many, many_sandbox) =
        measured(&product, &http, &url, &sandbox.pid, CALLERS, trips).await?;

    // The sandbox stopped before the commits, so it takes no CPU from them.
    drop(sandbox);

    let db = dir.join("floor.sqlite");
    let alone = db.clone();
    // The committing thread is waited for off the async threads.
    let (commit, unsynced) = tokio::task::spawn_blocking(move || {
        anyhow::Ok((
            commits_alone(&alone, commits, "FULL")?,
            commits_alone(&alone, commits, "NORMAL")?,
        ))
    })
    .await
    .context("the committing thread")??;
    let (asked, asked_runtime) = commits_asked(&product, &db, commits).await?;

    // Workflows of 8 steps each, about `commits` steps in all.
    let workflows = (commits / STEPS_PER_WORKFLOW).clamp(2, 300);
    let step_one = usual_steps(&product, &dir.join("steps-one.sqlite"), workflows, 1).await?;
    let step_many =
        usual_steps(&product, &dir.join("steps-many.sqlite"), workflows, CALLERS).await?;
    Ok(FloorFigures {
        round_trips: trips,
        http_one_caller_us: one,
        http_one_caller_sandbox_us: one_sandbox,
        callers: CALLERS,
        http_many_callers_us: many,
        http_many_callers_sandbox_us: many_sandbox,
        commits,
        state_bytes: STATE_BYTES,
        commit_us: commit,
        unsynced_us: unsynced,
        commit_asked_us: asked,
        commit_asked_runtime_us: asked_runtime,
        steps: step_one.steps,
        step_one_caller_us: step_one.store_us,
        step_one_caller_runtime_us: step_one.runtime_us,
        step_many_callers_us: step_many.store_us,
        step_many_callers_runtime_us: step_many.runtime_us,
        steps_per_commit_many_callers: step_many.steps as f64 / step_many.commits.max(1) as f64,
    })
}

/// The runtime's and the sandbox's CPU per round trip, `callers` at once, µs.
async fn measured(
    product: &ProductRuntime,
    http: &reqwest::Client,
    url: &url::Url,
    sandbox_pid: &str,
    callers: usize,
    total: u64,
) -> anyhow::Result<(f64, f64)> {
    let ours = proc::ThreadTimes::now();
    let theirs = proc::process_run_time(sandbox_pid).unwrap_or_default();
    round_trips(product, http, url, callers, total).await?;
    let ours = proc::ThreadTimes::now().grown_since(&ours, &[PRODUCT_THREADS]);
    let theirs = proc::process_run_time(sandbox_pid)
        .unwrap_or_default()
        .saturating_sub(theirs);
    Ok((per_us(ours, total), per_us(theirs, total)))
}

/// `total` round trips to `url` from `callers` tasks on the product's runtime, each waiting for
/// its answer before asking again.
async fn round_trips(
    product: &ProductRuntime,
    http: &reqwest::Client,
    url: &url::Url,
    callers: usize,
    total: u64,
) -> anyhow::Result<()> {
    let each = total / callers as u64;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let http = http.clone();
            let url = url.clone();
            product.handle().spawn(async move {
                for _ in 0..each {
                    let response = http.get(url.clone()).send().await?;
                    anyhow::ensure!(
                        response.status().is_success(),
                        "the sandbox answered {}",
                        response.status()
                    );
                    response.bytes().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await.context("a caller")??;
    }
    Ok(())
}

/// Opens `db` as the store's thread opens its connection (WAL, `synchronous` as given: `FULL`
/// or `NORMAL`) and fills [`ROWS`] rows.
fn open(db: &Path, synchronous: &str) -> anyhow::Result<rusqlite::Connection> {
    let conn =
        rusqlite::Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY, state BLOB NOT NULL);",
    )?;
    let blob = blob(0);
    for id in 0..ROWS {
        conn.execute(
            "INSERT OR REPLACE INTO floor (id, state) VALUES (?1, ?2)",
            rusqlite::params![id, blob],
        )?;
    }
    Ok(conn)
}

/// A state-sized blob that differs for every `n` (sealed states do not compress).
fn blob(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..STATE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// One durable commit: row `n` of the rows rewritten.
fn commit(conn: &mut rusqlite::Connection, n: u64, blob: &[u8]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.prepare_cached("UPDATE floor SET state = ?1 WHERE id = ?2")?
        .execute(rusqlite::params![blob, n % ROWS])?;
    tx.commit()
}

/// The CPU time of the calling thread. The kernel brings a thread's figure up to date when the
/// thread leaves the CPU, so it sleeps a moment first (a run of unsynced commits never blocks).
fn this_thread_cpu() -> Duration {
    std::thread::sleep(Duration::from_millis(1));
    proc::run_time("thread-self").unwrap_or_default()
}

/// The committing thread's CPU per commit with nothing else going on, `synchronous` as given,
/// µs.
fn commits_alone(db: &Path, commits: u64, synchronous: &'static str) -> anyhow::Result<f64> {
    let db = db.to_path_buf();
    std::thread::Builder::new()
        .name(FLOOR_THREAD.into())
        .spawn(move || {
            let mut conn = open(&db, synchronous)?;
            let blobs: Vec<Vec<u8>> = (0..16).map(blob).collect();
            let before = this_thread_cpu();
            for n in 0..commits {
                commit(&mut conn, n, &blobs[(n % 16) as usize])?;
            }
            Ok(per_us(this_thread_cpu().saturating_sub(before), commits))
        })
        .context("the committing thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the committing thread panicked"))?
}

/// A commit asked for by a task on the runtime: the row, and where to say it is done.
type Ask = (u64, tokio::sync::oneshot::Sender<rusqlite::Result<()>>);

/// The committing thread's and the runtime's CPU per commit when a task on the runtime asks for
/// each one and waits for it, µs.
async fn commits_asked(
    product: &ProductRuntime,
    db: &Path,
    commits: u64,
) -> anyhow::Result<(f64, f64)> {
    let (tx, rx) = std::sync::mpsc::channel::<Ask>();
    let db = db.to_path_buf();
    let thread = std::thread::Builder::new()
        .name(FLOOR_THREAD.into())
        .spawn(move || -> anyhow::Result<Duration> {
            let mut conn = open(&db, "FULL")?;
            let blobs: Vec<Vec<u8>> = (0..16).map(blob).collect();
            let before = this_thread_cpu();
            while let Ok((n, done)) = rx.recv() {
                let _ = done.send(commit(&mut conn, n, &blobs[(n % 16) as usize]));
            }
            Ok(this_thread_cpu().saturating_sub(before))
        })
        .context("the committing thread")?;
    let runtime_before = proc::ThreadTimes::now();
    product
        .handle()
        .spawn(async move {
            for n in 0..commits {
                let (done, answer) = tokio::sync::oneshot::channel();
                tx.send((n, done))
                    .map_err(|_| anyhow::anyhow!("the committing thread stopped"))?;
                answer.await.context("the committing thread stopped")??;
            }
            anyhow::Ok(())
        })
        .await
        .context("the asking task")??;
    let runtime = proc::ThreadTimes::now().grown_since(&runtime_before, &[PRODUCT_THREADS]);
    let thread = tokio::task::spawn_blocking(move || {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the committing thread panicked"))?
    })
    .await
    .context("the committing thread")??;
    Ok((per_us(thread, commits), per_us(runtime, commits)))
}

/// Usual steps per workflow in the store's measurement.
const STEPS_PER_WORKFLOW: u64 = 8;
/// The lease the store's measurement claims and keeps its workflows for: longer than any run.
const STEP_LEASE: Duration = Duration::from_secs(3_600);

/// What one measurement of usual steps through the store gave.
struct Steps {
    steps: u64,
    commits: u64,
    store_us: f64,
    runtime_us: f64,
}

/// One workflow, claimed, at a command whose intent is journaled.
struct Held {
    claim: Claim,
    state: WorkflowState,
    command: Command,
}

/// [`STEPS_PER_WORKFLOW`] usual steps of each of `workflows` new workflows through a fresh
/// SQLite store at `db` (`synchronous = FULL`), `callers` workflows at once on the product's
/// runtime: the CPU of the store's threads and of the runtime per step.
async fn usual_steps(
    product: &ProductRuntime,
    db: &Path,
    workflows: u64,
    callers: usize,
) -> anyhow::Result<Steps> {
    // A fresh store each time, also when `--dir` is reused: an earlier run's workflows are past
    // their first command and still leased.
    for suffix in ["", "-wal", "-shm"] {
        let file = db.with_file_name(format!(
            "{}{suffix}",
            db.file_name().unwrap_or_default().to_string_lossy()
        ));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", file.display())),
        }
    }
    let db = db.to_path_buf();
    product
        .handle()
        .spawn(async move {
            let store = Arc::new(
                SqliteStore::open(&db, DataKey::generate())
                    .await
                    .with_context(|| format!("opening {}", db.display()))?,
            );
            store.migrate().await.context("migrating")?;
            let now = Utc::now();
            let held = claimed(&store, workflows, now).await?;
            let before = store.counters();
            let threads_before = proc::ThreadTimes::now();
            let queue = Arc::new(std::sync::Mutex::new(held));
            let tasks: Vec<_> = (0..callers)
                .map(|_| {
                    let (store, queue) = (store.clone(), queue.clone());
                    tokio::spawn(async move {
                        loop {
                            let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                            let Some(held) = next else { break };
                            steps_of(&store, held, now).await?;
                        }
                        anyhow::Ok(())
                    })
                })
                .collect();
            for task in tasks {
                task.await.context("a caller")??;
            }
            let threads_after = proc::ThreadTimes::now();
            let store_cpu = threads_after.grown_since(&threads_before, &SQLITE_THREADS);
            let runtime_cpu = threads_after.grown_since(&threads_before, &[PRODUCT_THREADS]);
            let after = store.counters();
            let steps = after.write_transactions - before.write_transactions;
            anyhow::ensure!(
                steps == workflows * STEPS_PER_WORKFLOW,
                "{steps} write transactions for {} steps",
                workflows * STEPS_PER_WORKFLOW
            );
            Ok(Steps {
                steps,
                commits: after.commits - before.commits,
                store_us: per_us(store_cpu, steps),
                runtime_us: per_us(runtime_cpu, steps),
            })
        })
        .await
        .context("the steps' measurement")?
}

/// Records `n` new workflows of one practice and claims each at its first command, its intent
/// journaled.
async fn claimed(store: &SqliteStore, n: u64, now: DateTime<Utc>) -> anyhow::Result<Vec<Held>> {
    let practice = PracticeId::new("floor-practice");
    let new = (0..n)
        .map(|i| {
            let key = WorkflowKey {
                practice_id: practice.clone(),
                plan_id: PlanId::new(format!("floor-plan-{i}")),
                revision: "1".into(),
            };
            let mut state = WorkflowState::new(key, PatientId::new(format!("floor-{i}")), now);
            let first = state.start();
            NewWorkflow { state, first }
        })
        .collect();
    store
        .record_poll(&practice, "floor", "1", new, vec![], now)
        .await
        .context("recording the workflows")?;
    let mut held = Vec::new();
    loop {
        let claims = store
            .claim_due("floor", now, STEP_LEASE, 64)
            .await
            .context("claiming")?;
        if claims.is_empty() {
            break;
        }
        for claim in claims {
            let work = store.load(&claim, now).await.context("loading")?;
            let Some(WorkItem::Command { command, .. }) = work.item else {
                anyhow::bail!("a new workflow's first item is not its first command");
            };
            let key = format!("{}-{}", claim.id, command.seq);
            store
                .begin_effect(&claim, &command, 1, &key, now)
                .await
                .context("journaling the first intent")?;
            held.push(Held {
                claim,
                state: work.state,
                command,
            });
        }
    }
    anyhow::ensure!(
        held.len() as u64 == n,
        "{} of {n} workflows claimed",
        held.len()
    );
    Ok(held)
}

/// [`STEPS_PER_WORKFLOW`] usual steps of one workflow, one after the other: the command's
/// result, one new command with its intent journaled in the same transaction, one audit line.
async fn steps_of(store: &SqliteStore, mut held: Held, now: DateTime<Utc>) -> anyhow::Result<()> {
    for _ in 0..STEPS_PER_WORKFLOW {
        let next = Command {
            seq: held.command.seq + 1,
            action: if held.command.seq.is_multiple_of(2) {
                Action::EnsureCustomer
            } else {
                Action::LoadPlan
            },
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
                    lease: STEP_LEASE,
                    facts: StepFacts::default(),
                }),
                now,
            )
            .await
            .context("a step's commit")?;
        held.command = next;
    }
    Ok(())
}

/// `total` divided by `count`, in µs.
fn per_us(total: Duration, count: u64) -> f64 {
    total.as_secs_f64() * 1e6 / count.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_rewrites_its_row_durably_with_a_blob_of_the_state_s_size() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("floor.sqlite");
        let mut conn = open(&db, "FULL").expect("open");
        let written = blob(7);
        commit(&mut conn, ROWS + 5, &written).expect("commit");
        drop(conn);
        let conn = rusqlite::Connection::open(&db).expect("reopen");
        let (count, state): (u64, Vec<u8>) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM floor), state FROM floor WHERE id = 5",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("read");
        assert_eq!(count, ROWS);
        assert_eq!(state, written);
        assert_eq!(state.len(), STATE_BYTES);
        assert_ne!(blob(1), blob(2), "every commit writes other bytes");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn the_floor_of_a_call_adds_its_commits_with_their_hops_to_the_cheaper_round_trip() {
        let f = FloorFigures {
            round_trips: 1,
            http_one_caller_us: 200.0,
            http_one_caller_sandbox_us: 0.0,
            callers: 2,
            http_many_callers_us: 120.0,
            http_many_callers_sandbox_us: 0.0,
            commits: 1,
            state_bytes: STATE_BYTES,
            commit_us: 50.0,
            unsynced_us: 20.0,
            commit_asked_us: 60.0,
            commit_asked_runtime_us: 40.0,
            steps: 1,
            step_one_caller_us: 0.0,
            step_one_caller_runtime_us: 0.0,
            step_many_callers_us: 0.0,
            step_many_callers_runtime_us: 0.0,
            steps_per_commit_many_callers: 1.0,
        };
        assert!((f.per_call_us(0.0, 0.0) - 120.0).abs() < 1e-9);
        assert!((f.per_call_us(1.5, 1.5) - 270.0).abs() < 1e-9);
        // Two transactions, one of them synced: 120 + 100 + 20.
        assert!((f.per_call_us(2.0, 1.0) - 240.0).abs() < 1e-9);
    }
}
