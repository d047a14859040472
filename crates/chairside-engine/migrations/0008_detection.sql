-- Detection: what the poller knows about each practice system beyond its cursor.

-- Health per practice and source: the last good poll, failures in a row (the kind of the last,
-- never its content) and when the install baseline was taken (the first poll).
CREATE TABLE detection_health (
    practice_id          TEXT NOT NULL,
    source               TEXT NOT NULL,
    baseline_at          INTEGER,
    last_good_poll_at    INTEGER,
    last_failed_poll_at  INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    last_failure         TEXT,
    PRIMARY KEY (practice_id, source)
);

-- Plans already accepted when the practice went live: never started by the poller (a fresh
-- install starts from now); `chairside backfill` starts them on purpose.
CREATE TABLE detection_baseline (
    practice_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    plan_id     TEXT NOT NULL,
    PRIMARY KEY (practice_id, source, plan_id)
);

-- A plan whose record could not be read or failed a check: a staff task naming the plan and the
-- field path (never the value), once per plan, version (marker) and field.
CREATE TABLE detection_tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    practice_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    plan_id     TEXT NOT NULL,
    marker      TEXT NOT NULL,
    field       TEXT NOT NULL,
    problem     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    resolved_at INTEGER,
    UNIQUE (practice_id, source, plan_id, marker, field)
);
CREATE INDEX detection_tasks_open ON detection_tasks (practice_id) WHERE resolved_at IS NULL;

-- A plan whose details failed to load (a failing estimate endpoint): retried with backoff on later
-- polls without holding up the others, and a staff task after a bound. `summary` is the change
-- feed's summary (ids and times, no patient data).
CREATE TABLE detection_pending (
    practice_id TEXT NOT NULL,
    source      TEXT NOT NULL,
    plan_id     TEXT NOT NULL,
    summary     TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    next_at     INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    PRIMARY KEY (practice_id, source, plan_id)
);
