-- Chairside schema, version 1. Times are Unix milliseconds.

CREATE TABLE workflows (
    id                TEXT PRIMARY KEY,
    practice_id       TEXT NOT NULL,
    plan_id           TEXT NOT NULL,
    revision          TEXT NOT NULL,
    patient_id        TEXT NOT NULL,
    status            TEXT NOT NULL,
    stage             TEXT NOT NULL,
    state             TEXT NOT NULL,
    accepted_at       INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    ledger_written_at INTEGER,
    next_due_at       INTEGER,
    lease_owner       TEXT,
    lease_until       INTEGER,
    epoch             INTEGER NOT NULL DEFAULT 0,
    UNIQUE (practice_id, plan_id, revision)
);
CREATE INDEX workflows_due ON workflows (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX workflows_practice ON workflows (practice_id, status);

-- The outbox: every external effect a transition asked for, written in the same transaction.
CREATE TABLE outbox (
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    seq         INTEGER NOT NULL,
    action      TEXT NOT NULL,
    command     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    done_at     INTEGER,
    PRIMARY KEY (workflow_id, seq)
);
CREATE INDEX outbox_pending ON outbox (workflow_id, seq) WHERE status = 'pending';

-- The journal of external calls: intent before the call, outcome after.
CREATE TABLE effects (
    workflow_id     TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    attempt         INTEGER NOT NULL,
    action          TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    epoch           INTEGER NOT NULL,
    intent_at       INTEGER NOT NULL,
    finished_at     INTEGER,
    outcome         TEXT,
    PRIMARY KEY (workflow_id, seq, attempt)
);

CREATE TABLE timers (
    workflow_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    fire_at     INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, kind)
);

-- Events for a workflow received from outside (webhooks, staff, the poller), applied under the lease.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    event       TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX inbox_workflow ON inbox (workflow_id, id);

-- Append-only audit trail: who, what, when for every state change and every disclosure.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    at          INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX events_workflow ON events (workflow_id, id);
CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;
CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the events table is append-only'); END;

CREATE TABLE sync_cursors (
    practice_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    cursor      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (practice_id, source)
);

CREATE TABLE webhooks (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, event_id)
);

CREATE TABLE staff_tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    practice_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    resolution  TEXT
);
CREATE INDEX staff_tasks_open ON staff_tasks (practice_id) WHERE resolved_at IS NULL;

-- Patient contact data, encrypted (XChaCha20-Poly1305) with the configured key.
CREATE TABLE patients (
    practice_id TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    contact     BLOB NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (practice_id, patient_id)
);

-- SMS consent per phone number, keyed by a keyed hash of the number (no number in clear).
CREATE TABLE sms_consent (
    practice_id TEXT NOT NULL,
    phone_key   TEXT NOT NULL,
    opted_out   INTEGER NOT NULL,
    source      TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (practice_id, phone_key)
);
