-- Five tables stored in their primary key's order (issue #19: less work per step). A table with a
-- composite primary key is, on SQLite, two B-trees: the rows by a hidden rowid, and the key's
-- index pointing into them. Every insert writes both, every lookup by key reads both, and every
-- commit writes a page of each to the WAL. These five are only ever looked up by their key and
-- have no sealed column (the key-rotation pass walks sealed tables by rowid), so `WITHOUT ROWID`
-- keeps each as the one B-tree of its key. In a 300-plan bench run the key indexes dropped here
-- were about 13 % of the pages written to the WAL (effects alone 7 %). The rows are copied as
-- they are; nothing else changes (no foreign key points at these tables; their own references
-- are kept).

CREATE TABLE effects_clustered (
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
) WITHOUT ROWID;
INSERT INTO effects_clustered
    (workflow_id, seq, attempt, action, idempotency_key, epoch, intent_at, finished_at, outcome)
SELECT workflow_id, seq, attempt, action, idempotency_key, epoch, intent_at, finished_at, outcome
FROM effects;
DROP TABLE effects;
ALTER TABLE effects_clustered RENAME TO effects;

CREATE TABLE timers_clustered (
    workflow_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    fire_at     INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, kind)
) WITHOUT ROWID;
INSERT INTO timers_clustered (workflow_id, kind, fire_at)
SELECT workflow_id, kind, fire_at FROM timers;
DROP TABLE timers;
ALTER TABLE timers_clustered RENAME TO timers;

CREATE TABLE webhooks_clustered (
    provider    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, event_id)
) WITHOUT ROWID;
INSERT INTO webhooks_clustered (provider, event_id, received_at)
SELECT provider, event_id, received_at FROM webhooks;
DROP TABLE webhooks;
ALTER TABLE webhooks_clustered RENAME TO webhooks;

CREATE TABLE message_sends_clustered (
    message_key TEXT NOT NULL,
    channel     TEXT NOT NULL,
    state       TEXT NOT NULL,
    body_digest TEXT,
    provider_id TEXT,
    attempt_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (message_key, channel)
) WITHOUT ROWID;
INSERT INTO message_sends_clustered
    (message_key, channel, state, body_digest, provider_id, attempt_at, finished_at)
SELECT message_key, channel, state, body_digest, provider_id, attempt_at, finished_at
FROM message_sends;
DROP TABLE message_sends;
ALTER TABLE message_sends_clustered RENAME TO message_sends;

CREATE TABLE patient_page_marks_clustered (
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    mark        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, mark)
) WITHOUT ROWID;
INSERT INTO patient_page_marks_clustered (workflow_id, mark, at)
SELECT workflow_id, mark, at FROM patient_page_marks;
DROP TABLE patient_page_marks;
ALTER TABLE patient_page_marks_clustered RENAME TO patient_page_marks;
