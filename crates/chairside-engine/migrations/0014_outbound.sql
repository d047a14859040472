-- Outbound events (issue #18): written in the transaction of the workflow step that causes them,
-- then delivered once per subscriber (webhook endpoints, the CRM, the lab). Times are Unix
-- milliseconds. The payload carries ids and states only (no names, contact, procedures or
-- amounts), so it is stored in clear: it is the exact body every retry sends and signs.
CREATE TABLE outbound_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT NOT NULL UNIQUE,
    workflow_id TEXT NOT NULL,
    practice_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    payload     BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

-- How far each subscriber's fan-out has read. A subscriber seen for the first time starts at the
-- newest event: like go-live, a new endpoint is not sent the history.
CREATE TABLE outbound_cursors (
    subscriber TEXT PRIMARY KEY,
    last_event INTEGER NOT NULL,
    since      INTEGER NOT NULL
);

-- One row per (event, subscriber): delivered at most once as far as we know, and retried with
-- the same webhook-id until delivered or given up.
CREATE TABLE outbound_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event           INTEGER NOT NULL REFERENCES outbound_events (id),
    subscriber      TEXT NOT NULL,
    practice_id     TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    done_at         INTEGER,
    created_at      INTEGER NOT NULL,
    UNIQUE (event, subscriber)
);
CREATE INDEX outbound_deliveries_due ON outbound_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX outbound_deliveries_recent ON outbound_deliveries (created_at);
