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
//! Nothing here is Chairside's code: these are lower bounds that its figures can be read against.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use super::{PRODUCT_THREADS, ProductRuntime, SandboxProcess, proc};
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
    let ours = proc::threads_cpu_time(PRODUCT_THREADS);
    let theirs = proc::cpu_time(sandbox_pid).unwrap_or_default();
    round_trips(product, http, url, callers, total).await?;
    let ours = proc::threads_cpu_time(PRODUCT_THREADS).saturating_sub(ours);
    let theirs = proc::cpu_time(sandbox_pid)
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
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
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
    let runtime_before = proc::threads_cpu_time(PRODUCT_THREADS);
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
    let runtime = proc::threads_cpu_time(PRODUCT_THREADS).saturating_sub(runtime_before);
    let thread = tokio::task::spawn_blocking(move || {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("the committing thread panicked"))?
    })
    .await
    .context("the committing thread")??;
    Ok((per_us(thread, commits), per_us(runtime, commits)))
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
        };
        assert!((f.per_call_us(0.0, 0.0) - 120.0).abs() < 1e-9);
        assert!((f.per_call_us(1.5, 1.5) - 270.0).abs() < 1e-9);
        // Two transactions, one of them synced: 120 + 100 + 20.
        assert!((f.per_call_us(2.0, 1.0) - 240.0).abs() < 1e-9);
    }
}
