-- Per-practice poller leases (issue #19): with several instances on one database, each
-- practice's change feed is polled by one instance at a time. The holder renews its lease while
-- it polls and between polls; when it dies the lease runs out and another instance takes it with
-- the next epoch. A poll's commit checks its lease's epoch and expiry in the same transaction
-- (fencing), so a holder that stalled past its expiry records nothing. Times are Unix ms.
CREATE TABLE poller_leases (
    practice_id TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    lease_until INTEGER NOT NULL
);
