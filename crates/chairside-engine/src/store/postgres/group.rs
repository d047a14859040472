//! Group commit on PostgreSQL: the runner's transactions of concurrent workflows (intents, step
//! results, parks, retries, releases) share one transaction and one `COMMIT`, one flush of the
//! WAL, as they share one on the SQLite store's thread.
//!
//! One transaction of the group is open at a time, on one pooled connection. A caller
//! [`join`](Group::join)s it, waiting its turn (one caller's statements run at a time), writes
//! through the [`Member`] it gets, and [`commit`](Member::commit)s: its writes stay in the open
//! transaction and it waits for the group's `COMMIT`. A task of the store commits the open
//! transaction as soon as nobody waits to join it (or [`MAX_MEMBERS`] have joined), so the callers
//! that arrived while others wrote ride on one commit, and a caller alone is committed at once.
//! While that commit runs, the next callers fill the next transaction on another connection.
//!
//! A caller whose writes fail (a lost lease, a constraint, a dropped future) leaves with its
//! error, and only its own statements are undone: every caller but the first of a transaction
//! writes after a savepoint of its own, rolled back to before anyone else writes. The first needs
//! none: when it fails, the transaction holds nobody's writes and is rolled back whole. Should a
//! rollback to a savepoint itself fail, the whole transaction is rolled back and each of its
//! callers is told [`StoreError::Abandoned`]: nothing of theirs was written.
//!
//! Every caller is answered after the `COMMIT` that holds its writes returned, so under
//! `synchronous_commit = on` a caller told "done" holds writes that survive a power loss; a
//! failed `COMMIT` fails each caller of the group ([`StoreError::Shared`]). A caller that stops
//! waiting after its statements ran does not stop them: they commit with the group.
//!
//! The steps' outbound events are inserted last, by the commit, under the events' lock
//! ([`super::outbox::insert_events`] explains the lock): taken once per group, and held only
//! while the events are inserted and the transaction commits, never while a caller's statements
//! wait for a row.
//!
//! What a member must not do: use any other connection of the store while it holds its turn (a
//! row its group locked would wait for a commit that waits for the member).

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard, mpsc, watch};

use crate::outbound::events::OutboundEvent;
use crate::store::{Result, StoreError};

/// At most this many callers join one transaction. PostgreSQL keeps the ids of up to 64 written
/// subtransactions (savepoints) of a transaction in shared memory and looks past that on disk
/// for every other session's snapshot; this stays well under.
pub(super) const MAX_MEMBERS: usize = 32;

/// How a group's commit ended, for each of its callers.
type Outcome = std::result::Result<(), Arc<StoreError>>;

/// The group commit of one store (cloned with it).
#[derive(Clone)]
pub(super) struct Group {
    shared: Arc<Shared>,
}

struct Shared {
    pool: PgPool,
    /// The transaction callers join; `None` between a commit and the next caller.
    open: Mutex<Option<Open>>,
    /// Callers waiting for their turn: while there are any, the open transaction stays open.
    waiting: AtomicUsize,
    /// To the committing task.
    signal: mpsc::UnboundedSender<Signal>,
    next_id: AtomicU64,
    /// `COMMIT`s that carried at least one caller's writes.
    commits: AtomicU64,
    /// Callers' transactions those commits carried.
    carried: AtomicU64,
}

enum Signal {
    /// A transaction was opened: commit it once nobody waits to join it.
    Opened(u64),
    /// Commit (or roll back) this one now: it is full, or unusable.
    Close(Open),
}

struct Open {
    id: u64,
    tx: Transaction<'static, Postgres>,
    /// Callers that joined, the failed ones included; savepoint `s{n}` is the n-th one's.
    joined: usize,
    /// Callers whose writes stand.
    members: usize,
    /// What must be rolled back before anything else runs on the transaction.
    undo: Undo,
    events: Vec<Deferred>,
    done: watch::Sender<Option<Outcome>>,
}

/// What a failed caller leaves to be undone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Undo {
    Nothing,
    /// Roll back to the caller's savepoint `s{n}`.
    To(usize),
    /// Roll the whole transaction back.
    Whole,
}

/// A step's outbound events, inserted by the commit.
struct Deferred {
    workflow: String,
    events: Vec<OutboundEvent>,
    at: DateTime<Utc>,
}

impl Group {
    /// The group of the store on `pool`, with its committing task (which ends with the store).
    pub(super) fn new(pool: PgPool) -> Self {
        let (signal, signals) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pool,
            open: Mutex::new(None),
            waiting: AtomicUsize::new(0),
            signal,
            next_id: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            carried: AtomicU64::new(0),
        });
        tokio::spawn(commit_loop(Arc::downgrade(&shared), signals));
        Self { shared }
    }

    /// Waits for this caller's turn in the open transaction (opening one when none is) and
    /// returns it. Dropped without [`Member::commit`], its writes are undone.
    ///
    /// # Errors
    /// The pool's or the database's, when no transaction can be opened or the savepoint fails.
    pub(super) async fn join(&self) -> Result<Member<'_>> {
        let shared = &*self.shared;
        let mut guard = {
            let _waiting = Waiting::count(&shared.waiting);
            shared.open.lock().await
        };
        if let Some(open) = guard.as_mut() {
            let usable = undo(&mut open.tx, &mut open.undo).await;
            if (!usable || open.joined >= MAX_MEMBERS)
                && let Some(open) = guard.take()
            {
                // The task outlives every sender but on shutdown; the transaction then rolls
                // back as it is dropped and its callers hear `Abandoned`.
                let _ = shared.signal.send(Signal::Close(open));
            }
        }
        if guard.is_none() {
            let tx = shared.pool.begin().await?;
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            let (done, _) = watch::channel(None);
            *guard = Some(Open {
                id,
                tx,
                joined: 0,
                members: 0,
                undo: Undo::Nothing,
                events: Vec::new(),
                done,
            });
            if shared.signal.send(Signal::Opened(id)).is_err() {
                // No task to commit it: the runtime the store was made on has ended.
                *guard = None;
                return Err(StoreError::Abandoned);
            }
        }
        let mut open =
            MutexGuard::try_map(guard, Option::as_mut).map_err(|_| StoreError::Abandoned)?;
        open.joined += 1;
        let undo = if open.members == 0 {
            Undo::Whole
        } else {
            Undo::To(open.joined)
        };
        let mut member = Member {
            open,
            undo,
            committed: false,
            events: Vec::new(),
        };
        if let Undo::To(n) = undo {
            sqlx::query(savepoint(n).0).execute(&mut *member).await?;
        }
        Ok(member)
    }

    /// `COMMIT`s that carried callers' writes, and how many callers' transactions they carried.
    pub(super) fn commits(&self) -> (u64, u64) {
        (
            self.shared.commits.load(Ordering::Relaxed),
            self.shared.carried.load(Ordering::Relaxed),
        )
    }
}

/// Counts a caller waiting for its turn while it exists (dropped when the turn comes, or when the
/// caller stops waiting).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The statements that make the n-th caller's savepoint and roll back to it (statements of
/// their own, so each connection prepares them once).
fn savepoint(n: usize) -> (&'static str, &'static str) {
    static STATEMENTS: std::sync::LazyLock<Vec<(String, String)>> =
        std::sync::LazyLock::new(|| {
            (0..=MAX_MEMBERS)
                .map(|n| {
                    (
                        format!("SAVEPOINT s{n}"),
                        format!("ROLLBACK TO SAVEPOINT s{n}"),
                    )
                })
                .collect()
        });
    let (make, undo) = &STATEMENTS[n.min(MAX_MEMBERS)];
    (make, undo)
}

/// Rolls back what a failed caller left; false when the transaction cannot be used any more.
async fn undo(tx: &mut Transaction<'static, Postgres>, pending: &mut Undo) -> bool {
    match *pending {
        Undo::Nothing => true,
        Undo::Whole => false,
        Undo::To(n) => {
            // `pending` stays set until it is done: a caller that stops waiting here leaves it
            // for the next, and rolling back to a savepoint twice is the same as once.
            match sqlx::query(savepoint(n).1).execute(&mut **tx).await {
                Ok(_) => {
                    *pending = Undo::Nothing;
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, "group commit: a failed caller's writes could not be undone; the group is rolled back");
                    *pending = Undo::Whole;
                    false
                }
            }
        }
    }
}

/// One caller's turn in the group's open transaction: its statements run on it
/// (`&mut *member` is the connection).
pub(super) struct Member<'g> {
    open: MappedMutexGuard<'g, Open>,
    /// What is undone when the member is dropped without committing.
    undo: Undo,
    committed: bool,
    events: Vec<Deferred>,
}

impl Deref for Member<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.open.tx
    }
}

impl DerefMut for Member<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.open.tx
    }
}

impl Member<'_> {
    /// Leaves a step's outbound events to the commit, which inserts them under the events' lock.
    pub(super) fn defer_events(
        &mut self,
        workflow: &str,
        events: Vec<OutboundEvent>,
        at: DateTime<Utc>,
    ) {
        if !events.is_empty() {
            self.events.push(Deferred {
                workflow: workflow.to_owned(),
                events,
                at,
            });
        }
    }

    /// Leaves this caller's writes in the group's transaction, gives the next caller its turn,
    /// and waits for the group's commit.
    ///
    /// # Errors
    /// [`StoreError::Shared`] when the group's commit failed, [`StoreError::Abandoned`] when the
    /// group was rolled back: in both, nothing of this caller's was written (unless the
    /// connection broke during the `COMMIT` itself, when nobody can tell).
    pub(super) async fn commit(mut self) -> Result<()> {
        self.committed = true;
        self.open.members += 1;
        let events = std::mem::take(&mut self.events);
        self.open.events.extend(events);
        let mut done = self.open.done.subscribe();
        drop(self);
        let outcome = match done.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(StoreError::Shared(e)),
            None => Err(StoreError::Abandoned),
        }
    }
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.open.undo = self.undo;
        }
    }
}

/// The committing task: commits each transaction of the group, one after the other.
async fn commit_loop(shared: Weak<Shared>, mut signals: mpsc::UnboundedReceiver<Signal>) {
    while let Some(signal) = signals.recv().await {
        let Some(shared) = shared.upgrade() else {
            break;
        };
        let open = match signal {
            Signal::Close(open) => Some(open),
            Signal::Opened(id) => shared.take_when_quiet(id).await,
        };
        if let Some(open) = open {
            shared.close(open).await;
        }
    }
}

impl Shared {
    /// Takes transaction `id` out of the callers' reach once nobody waits to join it (or it is
    /// full). `None` when it was already taken.
    async fn take_when_quiet(&self, id: u64) -> Option<Open> {
        loop {
            // The lock is fair: this waits behind every caller already waiting.
            let mut guard = self.open.lock().await;
            let open = guard.as_ref()?;
            if open.id != id {
                return None;
            }
            if self.waiting.load(Ordering::SeqCst) == 0 || open.joined >= MAX_MEMBERS {
                return guard.take();
            }
            drop(guard);
            tokio::task::yield_now().await;
        }
    }

    /// Commits `open` (its callers' writes and their events), or rolls it back when it holds
    /// none or cannot be used, and tells its callers.
    async fn close(&self, open: Open) {
        let Open {
            mut tx,
            members,
            mut undo,
            events,
            done,
            ..
        } = open;
        let outcome = if !self::undo(&mut tx, &mut undo).await {
            let _ = tx.rollback().await;
            Err(Arc::new(StoreError::Abandoned))
        } else if members == 0 {
            let _ = tx.rollback().await;
            Ok(())
        } else {
            match write_events_and_commit(tx, events).await {
                Ok(()) => {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                    self.carried.fetch_add(members as u64, Ordering::Relaxed);
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(error = %e, callers = members, "group commit failed");
                    Err(Arc::new(e))
                }
            }
        };
        done.send_replace(Some(outcome));
    }
}

async fn write_events_and_commit(
    mut tx: Transaction<'static, Postgres>,
    events: Vec<Deferred>,
) -> Result<()> {
    if !events.is_empty() {
        super::outbox::lock_events(&mut tx).await?;
        for step in events {
            super::outbox::insert_events_locked(&mut tx, &step.workflow, step.events, step.at)
                .await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! On a real server (`scripts/with-postgres.sh`); without one they say so and pass, as the
    //! store suite's PostgreSQL variants do, unless `CHAIRSIDE_REQUIRE_POSTGRES=1`.

    use std::time::Duration;

    use sqlx::postgres::PgPoolOptions;

    use super::*;
    use crate::store::postgres::PostgresStore;

    /// A group on a fresh database with a table `t` of unique ids and a table `d` whose unique
    /// ids are checked only at commit; `None` without a server.
    async fn group() -> Option<(Group, PgPool)> {
        let Ok(admin) = std::env::var("CHAIRSIDE_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("CHAIRSIDE_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "CHAIRSIDE_REQUIRE_POSTGRES=1 but CHAIRSIDE_TEST_POSTGRES_URL is not set"
            );
            eprintln!("NOTE: the group commit tests did NOT run: no PostgreSQL server");
            return None;
        };
        let name = format!(
            "chairside_group_{}_{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let url = PostgresStore::create_database(&admin, &name).await.unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (id BIGINT PRIMARY KEY);
             CREATE TABLE d (id BIGINT, UNIQUE (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .execute(&pool)
        .await
        .unwrap();
        Some((Group::new(pool.clone()), pool))
    }

    async fn insert(conn: &mut PgConnection, table: &str, id: i64) -> Result<()> {
        let sql = if table == "t" {
            "INSERT INTO t (id) VALUES ($1)"
        } else {
            "INSERT INTO d (id) VALUES ($1)"
        };
        sqlx::query(sql).bind(id).execute(conn).await?;
        Ok(())
    }

    async fn ids(pool: &PgPool, table: &str) -> Vec<i64> {
        let sql = if table == "t" {
            "SELECT id FROM t ORDER BY id"
        } else {
            "SELECT id FROM d ORDER BY id"
        };
        sqlx::query_scalar(sql).fetch_all(pool).await.unwrap()
    }

    /// Waits until `n` callers wait for their turn.
    async fn until_waiting(group: &Group, n: usize) {
        for _ in 0..500 {
            if group.shared.waiting.load(Ordering::SeqCst) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{n} callers never waited for their turn");
    }

    /// A caller that writes `id` into `t`, then fails on purpose when `fail` (a duplicate of
    /// `dup` after its own write, so the database aborts its statement) or commits.
    fn caller(group: &Group, id: i64, dup: Option<i64>) -> tokio::task::JoinHandle<Result<()>> {
        let group = group.clone();
        tokio::spawn(async move {
            let mut member = group.join().await?;
            insert(&mut member, "t", id).await?;
            if let Some(dup) = dup {
                insert(&mut member, "t", dup).await?;
            }
            member.commit().await
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_callers_of_one_moment_share_one_commit_and_each_is_answered_after_it() {
        let Some((group, pool)) = group().await else {
            return;
        };
        // The first holds its turn while seven more arrive.
        let mut first = group.join().await.unwrap();
        insert(&mut first, "t", 1).await.unwrap();
        let others: Vec<_> = (2..=8).map(|id| caller(&group, id, None)).collect();
        until_waiting(&group, 7).await;
        // Nothing is visible before the commit.
        assert!(ids(&pool, "t").await.is_empty());
        first.commit().await.unwrap();
        for other in others {
            other.await.unwrap().unwrap();
        }
        assert_eq!(ids(&pool, "t").await, (1..=8).collect::<Vec<_>>());
        assert_eq!(group.commits(), (1, 8), "eight callers, one commit");
        // A caller alone is committed at once, in a commit of its own.
        caller(&group, 9, None).await.unwrap().unwrap();
        assert_eq!(group.commits(), (2, 9));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_refused_by_the_database_mid_way_is_undone_alone_and_the_others_commit() {
        let Some((group, pool)) = group().await else {
            return;
        };
        let mut first = group.join().await.unwrap();
        insert(&mut first, "t", 1).await.unwrap();
        // The second writes 2, then a duplicate of 1: the database aborts the transaction.
        let second = caller(&group, 2, Some(1));
        until_waiting(&group, 1).await;
        let third = caller(&group, 3, None);
        until_waiting(&group, 2).await;
        let (first, second, third) = tokio::join!(first.commit(), second, third);
        let refused = second.unwrap().unwrap_err();
        assert!(
            matches!(refused, StoreError::Database(_)),
            "the duplicate's own error: {refused:?}"
        );
        first.unwrap();
        third.unwrap().unwrap();
        assert_eq!(
            ids(&pool, "t").await,
            vec![1, 3],
            "2 was undone with its caller"
        );
        assert_eq!(group.commits(), (1, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_first_caller_refused_leaves_nothing_and_the_next_commits_in_a_new_transaction() {
        let Some((group, pool)) = group().await else {
            return;
        };
        let refused = caller(&group, 1, Some(1)).await.unwrap().unwrap_err();
        assert!(matches!(refused, StoreError::Database(_)), "{refused:?}");
        caller(&group, 2, None).await.unwrap().unwrap();
        assert_eq!(ids(&pool, "t").await, vec![2]);
        assert_eq!(group.commits(), (1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_stops_waiting_for_its_turn_is_not_counted_and_leaves_nothing() {
        let Some((group, pool)) = group().await else {
            return;
        };
        let first = group.join().await.unwrap();
        let gone = caller(&group, 2, None);
        until_waiting(&group, 1).await;
        gone.abort();
        until_waiting(&group, 0).await;
        // Its writes, made by nobody, are not there; the group still commits at once.
        drop(first);
        caller(&group, 3, None).await.unwrap().unwrap();
        assert_eq!(ids(&pool, "t").await, vec![3]);
        assert_eq!(group.commits(), (1, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_dropped_after_it_wrote_is_undone_alone_and_the_others_commit() {
        let Some((group, pool)) = group().await else {
            return;
        };
        let mut first = group.join().await.unwrap();
        insert(&mut first, "t", 1).await.unwrap();
        // The second writes 2 and then hangs, holding its turn, until it is aborted.
        let group2 = group.clone();
        let (wrote, written) = tokio::sync::oneshot::channel();
        let second = tokio::spawn(async move {
            let mut member = group2.join().await?;
            insert(&mut member, "t", 2).await?;
            let _ = wrote.send(());
            std::future::pending::<()>().await;
            member.commit().await
        });
        until_waiting(&group, 1).await;
        let third = caller(&group, 3, None);
        until_waiting(&group, 2).await;
        let (first, _) = tokio::join!(first.commit(), async {
            written.await.unwrap();
            second.abort();
        });
        first.unwrap();
        third.await.unwrap().unwrap();
        assert_eq!(ids(&pool, "t").await, vec![1, 3], "2 went with its caller");
        assert_eq!(group.commits(), (1, 2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_the_database_refuses_fails_every_caller_it_carried_and_keeps_nothing() {
        let Some((group, pool)) = group().await else {
            return;
        };
        // Two callers write the same id into `d`, whose uniqueness is checked at commit.
        let mut first = group.join().await.unwrap();
        insert(&mut first, "d", 7).await.unwrap();
        let group2 = group.clone();
        let second = tokio::spawn(async move {
            let mut member = group2.join().await?;
            insert(&mut member, "d", 7).await?;
            insert(&mut member, "t", 8).await?;
            member.commit().await
        });
        until_waiting(&group, 1).await;
        let first = first.commit().await.unwrap_err();
        let second = second.await.unwrap().unwrap_err();
        for e in [&first, &second] {
            assert!(
                matches!(e, StoreError::Shared(inner) if matches!(**inner, StoreError::Database(_))),
                "{e:?}"
            );
            assert!(!e.is_transient(), "a unique violation is not worth a retry");
        }
        assert!(ids(&pool, "d").await.is_empty());
        assert!(ids(&pool, "t").await.is_empty());
        assert_eq!(group.commits(), (0, 0));
    }
}
