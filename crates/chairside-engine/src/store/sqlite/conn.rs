//! A store thread's connection with the statements its transactions run, each prepared once and
//! found again by the address of its text.
//!
//! rusqlite's own statement cache (`Connection::prepare_cached`) finds a statement by its text:
//! every use hashes the whole statement twice (taking it out of the cache and putting it back),
//! compares it, and copies the text into a new allocation. With a dozen or more statements in a
//! step, finding them by address instead cut the instructions of an external call by about 3 %
//! (docs/performance.md, "Statements found by address"). The statements of the store are
//! `&'static str` constants and literals: their address and length name them, and looking them
//! up costs an Fx hash of two words (std's SipHash of them showed in the count: 1.020 M
//! instructions per call with it, 1.009 to 1.019 M with Fx). Statements built at run time (a
//! table name spliced in) still go through `prepare_cached`, which [`Conn`] reaches by
//! dereferencing to the [`Connection`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};

use rusqlite::{Connection, Statement};
use rustc_hash::FxBuildHasher;

/// Where a `&'static str` lives and how long it is: two constants with the same text may get
/// two entries, never one entry for two texts.
type Key = (usize, usize);

/// The connection a store thread owns, and the statements prepared on it.
pub(in crate::store) struct Conn<'c> {
    conn: &'c Connection,
    prepared: RefCell<HashMap<Key, Statement<'c>, FxBuildHasher>>,
}

impl<'c> Conn<'c> {
    /// Statements are prepared on `conn` as they are first used.
    pub(in crate::store) fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            prepared: RefCell::default(),
        }
    }

    /// The statement `sql`, prepared on first use and kept for the connection's life. While the
    /// returned statement is in use, asking for the same text again prepares a second copy (the
    /// two are kept as one when both are back).
    ///
    /// # Errors
    /// SQLite's, when `sql` does not prepare.
    pub(in crate::store) fn prepared(
        &self,
        sql: &'static str,
    ) -> rusqlite::Result<Prepared<'_, 'c>> {
        let key = (sql.as_ptr() as usize, sql.len());
        let kept = self.prepared.borrow_mut().remove(&key);
        let statement = match kept {
            Some(statement) => statement,
            None => self
                .conn
                .prepare_with_flags(sql, rusqlite::PrepFlags::SQLITE_PREPARE_PERSISTENT)?,
        };
        Ok(Prepared {
            home: &self.prepared,
            key,
            statement: Some(statement),
        })
    }

    /// How many statements are kept (for tests).
    #[cfg(test)]
    pub(in crate::store) fn kept(&self) -> usize {
        self.prepared.borrow().len()
    }
}

impl Deref for Conn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// A statement of [`Conn::prepared`], put back when dropped. rusqlite resets a statement after
/// `execute` and when its rows are dropped, so it goes back ready to bind again.
pub(in crate::store) struct Prepared<'a, 'c> {
    home: &'a RefCell<HashMap<Key, Statement<'c>, FxBuildHasher>>,
    key: Key,
    statement: Option<Statement<'c>>,
}

impl<'c> Deref for Prepared<'_, 'c> {
    type Target = Statement<'c>;

    fn deref(&self) -> &Statement<'c> {
        self.statement
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only when dropped"))
    }
}

impl<'c> DerefMut for Prepared<'_, 'c> {
    fn deref_mut(&mut self) -> &mut Statement<'c> {
        self.statement
            .as_mut()
            .unwrap_or_else(|| unreachable!("taken only when dropped"))
    }
}

impl Drop for Prepared<'_, '_> {
    fn drop(&mut self) {
        if let Some(statement) = self.statement.take() {
            self.home.borrow_mut().insert(self.key, statement);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSERT: &str = "INSERT INTO t (x) VALUES (?1)";
    const COUNT: &str = "SELECT COUNT(*), COALESCE(SUM(x), 0) FROM t";

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER NOT NULL)")
            .unwrap();
        conn
    }

    #[test]
    fn a_statement_is_prepared_once_and_runs_again_with_new_parameters() {
        let conn = table();
        let conn = Conn::new(&conn);
        for x in 1..=3_i64 {
            assert_eq!(conn.prepared(INSERT).unwrap().execute([x]).unwrap(), 1);
        }
        let (n, sum): (i64, i64) = conn
            .prepared(COUNT)
            .unwrap()
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((n, sum), (3, 6));
        assert_eq!(conn.kept(), 2);
    }

    #[test]
    fn the_same_statement_in_use_twice_at_once_runs_as_two_copies() {
        let conn = table();
        let conn = Conn::new(&conn);
        for x in [5_i64, 7] {
            conn.prepared(INSERT).unwrap().execute([x]).unwrap();
        }
        let mut outer = conn.prepared("SELECT x FROM t ORDER BY x").unwrap();
        let mut rows = outer.query([]).unwrap();
        let mut seen = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let x: i64 = row.get(0).unwrap();
            // The same text again while the outer statement is stepping through its rows.
            conn.prepared(INSERT).unwrap().execute([x * 10]).unwrap();
            seen.push(x);
        }
        drop(rows);
        drop(outer);
        assert_eq!(seen, [5, 7]);
        let total: i64 = conn
            .prepared(COUNT)
            .unwrap()
            .query_row([], |r| r.get(1))
            .unwrap();
        assert_eq!(total, 5 + 7 + 50 + 70);
        assert_eq!(conn.kept(), 3);
    }

    #[test]
    fn a_statement_that_failed_goes_back_ready_for_the_next_use() {
        let conn = table();
        let conn = Conn::new(&conn);
        // NOT NULL fails at step, after binding.
        let null: Option<i64> = None;
        assert!(conn.prepared(INSERT).unwrap().execute([null]).is_err());
        assert_eq!(conn.prepared(INSERT).unwrap().execute([4_i64]).unwrap(), 1);
        let n: i64 = conn
            .prepared(COUNT)
            .unwrap()
            .query_row([], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn text_that_does_not_prepare_is_an_error_and_keeps_nothing() {
        let conn = table();
        let conn = Conn::new(&conn);
        assert!(conn.prepared("SELECT nothing FROM nowhere").is_err());
        assert_eq!(conn.kept(), 0);
    }
}
