-- Per-practice poller leases (PostgreSQL twin of ../0019_poller_leases.sql): each practice's
-- change feed is polled by one instance at a time; a poll's commit checks its lease's epoch and
-- expiry in the same transaction. Times are Unix ms.
CREATE TABLE poller_leases (
    practice_id TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    epoch       BIGINT NOT NULL,
    lease_until BIGINT NOT NULL
);
