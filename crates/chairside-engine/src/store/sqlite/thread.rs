//! The store's own thread: one SQLite connection owned by one thread, fed by a channel, so a
//! whole transaction's statements cost one hop between the runtime's workers and SQLite, not one
//! hop per statement as through sqlx's connection threads (docs/performance.md, 2 December 2026).
//!
//! Group commit: the transactions queued while one commits go together in the next `BEGIN
//! IMMEDIATE` ... `COMMIT`, and a caller whose transaction fails (a lost lease, a constraint)
//! rolls back only its own statements. They first run one after the other with no savepoint
//! between them: a transaction that fails has almost always failed before it wrote (a step's
//! lease is checked first), and then there is nothing to undo. Only when one fails after it
//! changed rows is the batch rolled back and run again with each transaction in its own
//! savepoint, so the failed one's writes go and the others' stay. A savepoint costs every page a
//! transaction touches a copy into SQLite's statement journal, about 8 % of the instructions of
//! an external call (docs/performance.md, "Group commits without savepoints"); a transaction is
//! therefore a function that can run twice (`Fn`), and must not act outside its connection in a
//! way that running it again would double. Every caller is answered after the `COMMIT` that holds
//! its writes returned, so `synchronous = FULL` still means a caller told "done" holds a write
//! that survives a power loss. A failed `COMMIT` fails every caller of the batch, and nothing of
//! the batch is written.
//!
//! One turn of the caller's runtime, one trip: the transactions its tasks ask for while it runs
//! its ready tasks are sent to the thread together at the end of that turn (by a small task that
//! runs after them, see [`Flush`]), and their answers come back together to that task, which hands
//! each to its caller on the runtime. Waking a thread costs a system call and a task switch on
//! each side; this pays it once per turn instead of once per transaction each way, and gives the
//! group commit the whole turn's transactions at once (docs/performance.md, "One trip per turn").
//!
//! A caller that stops waiting (a deadline, a dropped future) does not stop its transaction: it
//! runs whole or not at all, as if it had finished just before the caller gave up.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::conn::Conn;
use crate::store::{Result, StoreError};

/// At most this many transactions share one commit, unless one turn of a runtime asked for more.
const MAX_BATCH: usize = 64;

/// A transaction queued for the thread.
trait Job: Send {
    /// True when it may write (the batch then takes the write lock up front).
    fn writes(&self) -> bool;
    /// Runs its statements, again when its batch is run again (the result replaces the last);
    /// false when it failed.
    fn run(&mut self, conn: &Conn<'_>) -> bool;
    /// Takes the batch's commit into its answer, once the commit is known.
    fn settle(&mut self, commit: std::result::Result<(), &rusqlite::Error>);
    /// Answers the caller (wherever it is called: the thread, or the runtime's relay).
    fn answer(self: Box<Self>);
}

struct Call<T, F> {
    writes: bool,
    work: F,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: Fn(&Conn<'_>) -> Result<T> + Send,
{
    fn writes(&self) -> bool {
        self.writes
    }

    fn run(&mut self, conn: &Conn<'_>) -> bool {
        let work = &self.work;
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(StoreError::Embedded(failure(
                "a store transaction panicked",
            )))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn settle(&mut self, commit: std::result::Result<(), &rusqlite::Error>) {
        self.result = Some(match (self.result.take(), commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (_, Err(e)) => Err(StoreError::Embedded(copy(e))),
            (None, Ok(())) => Err(StoreError::Embedded(failure("transaction not run"))),
        });
    }

    fn answer(self: Box<Self>) {
        let result = self
            .result
            .unwrap_or_else(|| Err(StoreError::Embedded(failure("transaction not run"))));
        // The caller may have stopped waiting: its transaction stands all the same.
        let _ = self.reply.send(result);
    }
}

fn failure(what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some(what.to_owned()),
    )
}

/// The same failure for another caller of the batch (`rusqlite::Error` is not `Clone`).
fn copy(e: &rusqlite::Error) -> rusqlite::Error {
    match e {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => failure(&other.to_string()),
    }
}

fn exec(conn: &Conn<'_>, sql: &'static str) -> rusqlite::Result<()> {
    conn.prepared(sql)?.execute([])?;
    Ok(())
}

/// What the thread has done, for the figures.
#[derive(Debug, Default)]
struct ThreadStats {
    /// Commits that changed rows (each one sync to disk under `synchronous = FULL`).
    commits: AtomicU64,
    /// Callers' transactions that changed rows, which those commits carried.
    grouped: AtomicU64,
}

/// The transactions of one turn, sent to the thread together.
struct Batch {
    jobs: Vec<Box<dyn Job>>,
    /// Where the answers go back together: the flushing task on the runtime. `None`, or a
    /// receiver gone (its runtime ended), and the thread answers each caller itself.
    relay: Option<oneshot::Sender<Vec<Box<dyn Job>>>>,
}

/// The handle callers queue transactions on; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct StoreThread {
    jobs: mpsc::Sender<Batch>,
    /// The transactions asked for since the last flush. A flush is on its way exactly when it is
    /// not empty: the caller that finds it empty spawns one, and each flush takes it whole.
    pending: Arc<Mutex<Vec<Box<dyn Job>>>>,
    stats: Arc<ThreadStats>,
}

impl StoreThread {
    /// The commits that wrote (each one sync to disk under `synchronous = FULL`) and the
    /// callers' transactions they carried, since the thread started: a group commit counts once
    /// in the first and once per caller in the second.
    pub(super) fn commits(&self) -> (u64, u64) {
        (
            self.stats.commits.load(Ordering::Relaxed),
            self.stats.grouped.load(Ordering::Relaxed),
        )
    }

    /// Opens the thread's connection on `path` (an existing database: the pool created it) and
    /// starts the thread.
    pub(super) fn start(path: &std::path::Path, synchronous: &str) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", synchronous)?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Statement journals (every statement that may abort part-way inside a transaction,
        // every job's savepoint in a group commit) in memory: otherwise each one past 64 KiB
        // spills to a temporary file that is created, written and closed once per transaction.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        conn.pragma_update(None, "wal_autocheckpoint", super::WAL_AUTOCHECKPOINT_PAGES)?;
        conn.set_prepared_statement_cache_capacity(256);
        let (jobs, queue) = mpsc::channel::<Batch>();
        let stats = Arc::new(ThreadStats::default());
        let seen = stats.clone();
        std::thread::Builder::new()
            .name("chairside-store".into())
            .spawn(move || serve(&Conn::new(&conn), &queue, &seen))?;
        Ok(Self {
            jobs,
            pending: Arc::default(),
            stats,
        })
    }

    /// Runs `work` in a write transaction (`BEGIN IMMEDIATE`, shared with the transactions
    /// queued beside it) and answers after its commit.
    pub(super) async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        self.queue(true, work).await
    }

    /// Runs `work` in a read transaction (one snapshot for all its statements).
    pub(super) async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        self.queue(false, work).await
    }

    async fn queue<T, F>(&self, writes: bool, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&Conn<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let call = Call {
            writes,
            work,
            result: None,
            reply,
        };
        let first = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let first = pending.is_empty();
            pending.push(Box::new(call));
            first
        };
        if first {
            let flush = Flush {
                pending: self.pending.clone(),
                jobs: self.jobs.clone(),
                sent: false,
            };
            match tokio::runtime::Handle::try_current() {
                // After the tasks ready in this turn of the runtime have asked for theirs.
                Ok(runtime) => drop(runtime.spawn(flush.at_end_of_turn())),
                // No runtime to wait for the end of a turn on: sent now, answered by the thread.
                Err(_) => drop(flush),
            }
        }
        answer
            .await
            .map_err(|_| StoreError::Embedded(failure("the store thread has stopped")))?
    }
}

/// Sends what is pending to the thread, once: at the end of the runtime's turn
/// ([`Flush::at_end_of_turn`]), or when dropped before that (its task dropped unrun because its
/// runtime is shutting down, or no runtime at all), so no transaction is ever left unsent.
struct Flush {
    pending: Arc<Mutex<Vec<Box<dyn Job>>>>,
    jobs: mpsc::Sender<Batch>,
    sent: bool,
}

impl Flush {
    /// Waits for the end of this turn of the runtime (`yield_now` lets every task already ready
    /// run first, and the ones the I/O driver wakes), sends the turn's transactions, and hands
    /// each caller its answer when the thread sends them back.
    async fn at_end_of_turn(mut self) {
        tokio::task::yield_now().await;
        let (relay, answers) = oneshot::channel();
        if self.send(Some(relay))
            && let Ok(jobs) = answers.await
        {
            for job in jobs {
                job.answer();
            }
        }
    }

    /// Sends the pending transactions; false when there were none or the thread has stopped.
    fn send(&mut self, relay: Option<oneshot::Sender<Vec<Box<dyn Job>>>>) -> bool {
        self.sent = true;
        let jobs =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if jobs.is_empty() {
            return false;
        }
        match self.jobs.send(Batch { jobs, relay }) {
            Ok(()) => true,
            Err(mpsc::SendError(batch)) => {
                let stopped = failure("the store thread has stopped");
                for mut job in batch.jobs {
                    job.settle(Err(&stopped));
                    job.answer();
                }
                false
            }
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        if !self.sent {
            self.send(None);
        }
    }
}

fn serve(conn: &Conn<'_>, queue: &mpsc::Receiver<Batch>, stats: &ThreadStats) {
    let mut batches: Vec<Batch> = Vec::new();
    while let Ok(first) = queue.recv() {
        let mut queued = first.jobs.len();
        batches.push(first);
        while queued < MAX_BATCH {
            match queue.try_recv() {
                Ok(batch) => {
                    queued += batch.jobs.len();
                    batches.push(batch);
                }
                Err(_) => break,
            }
        }
        let commit = run_batch(conn, &mut batches, stats);
        for batch in batches.drain(..) {
            let mut jobs = batch.jobs;
            for job in &mut jobs {
                job.settle(commit.as_ref().map(|_| ()));
            }
            let jobs = match batch.relay {
                Some(relay) => match relay.send(jobs) {
                    Ok(()) => continue,
                    // The relay's runtime ended: answered from here.
                    Err(jobs) => jobs,
                },
                None => jobs,
            };
            for job in jobs {
                job.answer();
            }
        }
    }
    tracing::debug!(
        commits = stats.commits.load(Ordering::Relaxed),
        transactions = stats.grouped.load(Ordering::Relaxed),
        "store thread stopped"
    );
}

/// One transaction for every job of `batches`; the commit's result (every job's own result is
/// kept in the job). The jobs run without savepoints first; when one of several fails after it
/// changed rows, the transaction is rolled back and the batch runs again, each job in its own
/// savepoint ([`Isolation`]).
fn run_batch(
    conn: &Conn<'_>,
    batches: &mut [Batch],
    stats: &ThreadStats,
) -> std::result::Result<(), rusqlite::Error> {
    let count = batches.iter().map(|b| b.jobs.len()).sum::<usize>();
    let mut pass = Isolation::None;
    loop {
        match run_pass(conn, batches, pass, count > 1) {
            Pass::Again => pass = Isolation::Savepoints,
            Pass::Failed(e) => {
                let _ = exec(conn, "ROLLBACK");
                return Err(e);
            }
            Pass::Ran { kept } => {
                let commit = exec(conn, "COMMIT").inspect_err(|_| {
                    let _ = exec(conn, "ROLLBACK");
                });
                if commit.is_ok() && kept > 0 {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats.grouped.fetch_add(kept, Ordering::Relaxed);
                }
                return commit;
            }
        }
    }
}

/// How one pass over a batch keeps its jobs apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// One after the other: a job that fails having changed nothing needs nothing undone.
    None,
    /// Each job in its own savepoint, rolled back to when the job fails.
    Savepoints,
}

/// How a pass over a batch ended.
enum Pass {
    /// Every job ran (some may have failed, their writes undone); `kept` jobs wrote. The
    /// transaction is open, to commit.
    Ran { kept: u64 },
    /// A job failed after it changed rows with no savepoint to undo them: the transaction is
    /// rolled back, and the batch is to run again with savepoints.
    Again,
    /// The transaction cannot go on (it could not begin, SQLite rolled it back, a savepoint
    /// statement failed, the only job failed): every job of the batch fails with it.
    Failed(rusqlite::Error),
}

/// Runs every job of `batches` once in a new transaction, kept apart as `isolation` says;
/// `several` when the batch has more than one job (one alone needs no savepoint: its failure
/// rolls the whole transaction back).
fn run_pass(conn: &Conn<'_>, batches: &mut [Batch], isolation: Isolation, several: bool) -> Pass {
    let begin = if batches.iter().flat_map(|b| &b.jobs).any(|job| job.writes()) {
        "BEGIN IMMEDIATE"
    } else {
        "BEGIN"
    };
    if let Err(e) = exec(conn, begin) {
        return Pass::Failed(e);
    }
    let savepoints = several && isolation == Isolation::Savepoints;
    let mut kept = 0_u64;
    for job in batches.iter_mut().flat_map(|b| b.jobs.iter_mut()) {
        if savepoints && let Err(e) = exec(conn, "SAVEPOINT job") {
            return Pass::Failed(e);
        }
        let changes = conn.total_changes();
        let ok = job.run(conn);
        let changed = conn.total_changes() != changes;
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk): the jobs
            // before this one lost their writes too.
            return Pass::Failed(failure("the store transaction was rolled back"));
        }
        if !several {
            if !ok {
                return Pass::Failed(failure("the transaction failed"));
            }
        } else if savepoints {
            let end = if ok {
                exec(conn, "RELEASE job")
            } else {
                exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"))
            };
            if let Err(e) = end {
                return Pass::Failed(e);
            }
        } else if !ok && changed {
            // Its writes cannot be undone alone: the batch runs again, kept apart.
            return match exec(conn, "ROLLBACK") {
                Ok(()) => Pass::Again,
                Err(e) => Pass::Failed(e),
            };
        }
        if ok && job.writes() && changed {
            kept += 1;
        }
    }
    Pass::Ran { kept }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as sync;

    use rusqlite::params;

    use super::*;
    use crate::store::WorkflowId;

    fn database() -> (tempfile::TempDir, StoreThread) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER NOT NULL);")
            .unwrap();
        drop(conn);
        let thread = StoreThread::start(&path, "FULL").unwrap();
        (dir, thread)
    }

    fn insert(x: i64) -> impl Fn(&Conn<'_>) -> Result<i64> + Send + 'static {
        move |conn| {
            conn.execute("INSERT INTO t (x) VALUES (?1)", params![x])?;
            Ok(x)
        }
    }

    async fn rows(thread: &StoreThread) -> Vec<i64> {
        thread
            .read(|conn| {
                let mut st = conn.prepare("SELECT x FROM t ORDER BY x")?;
                let xs = st
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()?;
                Ok(xs)
            })
            .await
            .unwrap()
    }

    #[test]
    fn sqlite_is_built_as_the_workspace_asks() {
        // `.cargo/config.toml` passes `LIBSQLITE3_FLAGS` to the bundled SQLite's build. Its
        // `HAVE_FDATASYNC` is not among the options SQLite reports; `DEFAULT_MEMSTATUS` and
        // `DEFAULT_LOOKASIDE`, passed beside it, are, so the flags reached the build when they
        // read as set there.
        let conn = Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for flag in ["DEFAULT_MEMSTATUS=0", "DEFAULT_LOOKASIDE=1200,500"] {
            assert!(
                options.iter().any(|o| o == flag),
                "SQLite built without the workspace's LIBSQLITE3_FLAGS ({flag}): {options:?}"
            );
        }
    }

    #[tokio::test]
    async fn transactions_queued_during_a_commit_share_the_next_one_and_a_failed_one_rolls_back_alone()
     {
        // Arrange: a first transaction holds the thread until three more are queued behind it.
        let (_dir, thread) = database();
        let (go, wait) = sync::channel::<()>();
        let (started, mut running) = tokio::sync::mpsc::unbounded_channel::<()>();
        let first = thread.write(move |conn| {
            started.send(()).unwrap();
            wait.recv().unwrap();
            insert(1)(conn)
        });
        let mut first = Box::pin(first);
        assert!(futures::poll!(&mut first).is_pending());
        // The first is sent at the end of this turn of the runtime, which this await ends.
        running.recv().await.unwrap();
        let mut second = Box::pin(thread.write(insert(2)));
        let mut refused = Box::pin(thread.write(|conn| {
            insert(3)(conn)?;
            // A lost lease after a write: nothing of this transaction may stay.
            Err::<i64, _>(StoreError::LeaseLost(WorkflowId::new("wf-1")))
        }));
        let mut fourth = Box::pin(thread.write(insert(4)));
        for queued in [&mut second, &mut fourth] {
            assert!(futures::poll!(queued).is_pending());
        }
        assert!(futures::poll!(&mut refused).is_pending());
        let before = thread.stats.commits.load(Ordering::Relaxed);

        // Act
        go.send(()).unwrap();

        // Assert: each caller gets its own answer; the refused one wrote nothing.
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(second.await.unwrap(), 2);
        assert!(matches!(refused.await, Err(StoreError::LeaseLost(_))));
        assert_eq!(fourth.await.unwrap(), 4);
        assert_eq!(rows(&thread).await, vec![1, 2, 4]);
        // The first commit, then one for the three queued behind it.
        assert_eq!(thread.stats.commits.load(Ordering::Relaxed) - before, 2);
        assert_eq!(thread.stats.grouped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn the_transactions_asked_for_in_one_turn_of_the_runtime_share_one_commit() {
        // Arrange
        let (_dir, thread) = database();
        thread.write(insert(0)).await.unwrap();
        let before = thread.commits();

        // Act: five callers ask in the same turn (one poll of all five).
        let answers = futures::future::join_all((1..=5).map(|x| thread.write(insert(x)))).await;

        // Assert: each its own answer, and one commit (one sync) carried all five.
        let answers: Vec<i64> = answers.into_iter().map(|a| a.unwrap()).collect();
        assert_eq!(answers, vec![1, 2, 3, 4, 5]);
        assert_eq!(thread.commits(), (before.0 + 1, before.1 + 5));
        assert_eq!(rows(&thread).await, vec![0, 1, 2, 3, 4, 5]);
    }

    /// `insert(x)` that counts its runs in `runs`.
    fn counted(
        x: i64,
        runs: &Arc<std::sync::atomic::AtomicUsize>,
    ) -> impl Fn(&Conn<'_>) -> Result<i64> + Send + 'static {
        let runs = runs.clone();
        move |conn| {
            runs.fetch_add(1, Ordering::Relaxed);
            insert(x)(conn)
        }
    }

    #[tokio::test]
    async fn a_transaction_that_fails_before_it_writes_leaves_its_batch_to_run_once() {
        // Arrange: three transactions asked for in one turn, the middle one refused before it
        // writes anything (as a step whose lease is gone).
        let (_dir, thread) = database();
        thread.write(insert(0)).await.unwrap();
        let before = thread.commits();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refused = |conn: &Conn<'_>| -> Result<i64> {
            conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0))?;
            Err(StoreError::LeaseLost(WorkflowId::new("wf-1")))
        };

        // Act
        let (first, refused, third) = tokio::join!(
            thread.write(counted(1, &runs)),
            thread.write(refused),
            thread.write(counted(3, &runs)),
        );

        // Assert: the others ran once each (no second pass) and share one commit.
        assert_eq!(first.unwrap(), 1);
        assert!(
            matches!(refused, Err(StoreError::LeaseLost(_))),
            "{refused:?}"
        );
        assert_eq!(third.unwrap(), 3);
        assert_eq!(runs.load(Ordering::Relaxed), 2);
        assert_eq!(thread.commits(), (before.0 + 1, before.1 + 2));
        assert_eq!(rows(&thread).await, vec![0, 1, 3]);
    }

    #[tokio::test]
    async fn a_transaction_that_fails_after_it_wrote_is_undone_alone_by_running_the_batch_again() {
        // Arrange: in one turn, a write, one that writes and then fails, a read of what the
        // failed one wrote, and another write.
        let (_dir, thread) = database();
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failing = |conn: &Conn<'_>| -> Result<i64> {
            insert(2)(conn)?;
            Err(StoreError::LeaseLost(WorkflowId::new("wf-1")))
        };
        let sees_two = |conn: &Conn<'_>| -> Result<i64> {
            Ok(conn.query_row("SELECT COUNT(*) FROM t WHERE x = 2", [], |r| r.get(0))?)
        };

        // Act
        let (first, failed, seen, fourth) = tokio::join!(
            thread.write(counted(1, &runs)),
            thread.write(failing),
            thread.read(sees_two),
            thread.write(counted(4, &runs)),
        );

        // Assert: the failed one's row is gone, the others' stay. The first pass stopped at
        // the failure: the write before it ran twice, the one after it once, and the read
        // answers from the second pass, which never saw the failed row.
        assert_eq!(first.unwrap(), 1);
        assert!(
            matches!(failed, Err(StoreError::LeaseLost(_))),
            "{failed:?}"
        );
        assert_eq!(seen.unwrap(), 0);
        assert_eq!(fourth.unwrap(), 4);
        assert_eq!(runs.load(Ordering::Relaxed), 3);
        assert_eq!(thread.commits(), (1, 2));
        assert_eq!(rows(&thread).await, vec![1, 4]);
    }

    #[tokio::test]
    async fn a_transaction_that_panics_after_it_wrote_in_a_batch_is_undone_alone() {
        let (_dir, thread) = database();
        let panicking = |conn: &Conn<'_>| -> Result<i64> {
            insert(2)(conn)?;
            panic!("a bug in a transaction");
        };
        let (first, panicked, third) = tokio::join!(
            thread.write(insert(1)),
            thread.write(panicking),
            thread.write(insert(3)),
        );
        assert_eq!(first.unwrap(), 1);
        assert!(
            matches!(panicked, Err(StoreError::Embedded(_))),
            "{panicked:?}"
        );
        assert_eq!(third.unwrap(), 3);
        assert_eq!(rows(&thread).await, vec![1, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn callers_on_every_worker_of_a_multi_thread_runtime_are_each_answered_once() {
        // Arrange: many tasks spread over the workers, each asking for a write then a read.
        let (_dir, thread) = database();
        let tasks: Vec<_> = (1..=300)
            .map(|x| {
                let thread = thread.clone();
                tokio::spawn(async move {
                    let wrote = thread.write(insert(x)).await.unwrap();
                    let seen = thread
                        .read(move |conn| {
                            Ok(
                                conn.query_row("SELECT COUNT(*) FROM t WHERE x = ?1", [x], |r| {
                                    r.get::<_, i64>(0)
                                })?,
                            )
                        })
                        .await
                        .unwrap();
                    (wrote, seen)
                })
            })
            .collect();

        // Act
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }

        // Assert: each caller got its own write back and then saw it; every row written once.
        assert!(
            answers
                .iter()
                .zip(1..)
                .all(|(&(wrote, seen), x)| wrote == x && seen == 1)
        );
        assert_eq!(rows(&thread).await, (1..=300).collect::<Vec<i64>>());
        assert_eq!(thread.commits().1, 300);
    }

    #[test]
    fn a_caller_outside_any_runtime_is_answered_by_the_thread() {
        let (_dir, thread) = database();
        let x = futures::executor::block_on(thread.write(insert(3))).unwrap();
        assert_eq!(x, 3);
        let xs = futures::executor::block_on(rows(&thread));
        assert_eq!(xs, vec![3]);
    }

    /// Writes `x` from a runtime of its own and reads every row back.
    fn write_and_read_on_a_new_runtime(thread: &StoreThread, x: i64) -> Vec<i64> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            thread.write(insert(x)).await.unwrap();
            rows(thread).await
        })
    }

    #[test]
    fn a_runtime_that_ends_before_its_turn_does_still_sends_what_its_tasks_asked_for() {
        // Arrange: a runtime whose task asks for a write and ends before the turn's flush runs.
        let (_dir, thread) = database();
        let first = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let asked = thread.clone();
        first.block_on(async move {
            let mut write = Box::pin(asked.write(insert(1)));
            assert!(futures::poll!(&mut write).is_pending());
        });

        // Act: the runtime ends (its flush task dropped unrun); another goes on with the store.
        drop(first);
        let xs = write_and_read_on_a_new_runtime(&thread, 2);

        // Assert: the first runtime's write was committed all the same, and nothing hangs.
        assert_eq!(xs, vec![1, 2]);
    }

    #[test]
    fn a_runtime_that_ends_while_its_answers_are_on_the_way_leaves_the_thread_serving_others() {
        // Arrange: a runtime's write is on the thread, held there until that runtime has ended.
        let (_dir, thread) = database();
        let (go, wait) = sync::channel::<()>();
        let (started, running) = sync::channel::<()>();
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let asked = thread.clone();
        first.block_on(async move {
            tokio::spawn(async move {
                asked
                    .write(move |conn| {
                        started.send(()).unwrap();
                        wait.recv().unwrap();
                        insert(1)(conn)
                    })
                    .await
            });
            // Let the flush run and send it: the write is on the thread when this returns.
            while running.try_recv().is_err() {
                tokio::task::yield_now().await;
            }
        });

        // Act: the runtime (with the task waiting for the answers) ends, then the thread commits.
        drop(first);
        go.send(()).unwrap();
        let xs = write_and_read_on_a_new_runtime(&thread, 2);

        // Assert
        assert_eq!(xs, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_write_transaction_that_changed_nothing_is_not_counted_as_a_commit() {
        // Arrange
        let (_dir, thread) = database();
        thread.write(insert(1)).await.unwrap();
        let before = thread.commits();

        // Act: a write transaction that finds nothing to change (an empty claim), then one that
        // does.
        thread
            .write(|conn| {
                conn.execute("UPDATE t SET x = 0 WHERE x = 99", [])?;
                Ok(())
            })
            .await
            .unwrap();
        let nothing = thread.commits();
        thread.write(insert(2)).await.unwrap();

        // Assert: no sync for the first; one commit carrying one transaction for the second.
        assert_eq!(nothing, before);
        assert_eq!(thread.commits(), (before.0 + 1, before.1 + 1));
    }

    #[tokio::test]
    async fn a_failed_transaction_alone_writes_nothing() {
        let (_dir, thread) = database();
        let failed = thread
            .write(|conn| {
                insert(7)(conn)?;
                conn.execute("INSERT INTO nowhere (x) VALUES (1)", [])?;
                Ok(())
            })
            .await;
        assert!(matches!(failed, Err(StoreError::Embedded(_))), "{failed:?}");
        assert_eq!(thread.write(insert(8)).await.unwrap(), 8);
        assert_eq!(rows(&thread).await, vec![8]);
    }

    #[tokio::test]
    async fn a_panicking_transaction_is_an_error_for_its_caller_and_the_thread_goes_on() {
        let (_dir, thread) = database();
        let panicked = thread
            .write(|conn| -> Result<()> {
                insert(5)(conn)?;
                panic!("a bug in a transaction");
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Embedded(_))),
            "{panicked:?}"
        );
        assert_eq!(thread.write(insert(6)).await.unwrap(), 6);
        assert_eq!(rows(&thread).await, vec![6]);
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_leaves_its_transaction_whole() {
        let (_dir, thread) = database();
        let (go, wait) = sync::channel::<()>();
        let mut abandoned = Box::pin(thread.write(move |conn| {
            wait.recv().unwrap();
            insert(1)(conn)?;
            insert(2)(conn)
        }));
        assert!(futures::poll!(&mut abandoned).is_pending());
        drop(abandoned);
        go.send(()).unwrap();
        assert_eq!(rows(&thread).await, vec![1, 2]);
    }
}
