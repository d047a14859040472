-- Quarantine: what cannot be decoded is kept as it arrived, set aside and shown to staff, instead
-- of being retried in a loop or failing every listing.

-- A workflow whose stored state (or a queued event or command) does not decode. The row in
-- `workflows` is kept untouched; the runner never claims it while it is listed here. `problem`
-- names the column and the path where decoding failed, never the content.
CREATE TABLE quarantined_workflows (
    workflow_id TEXT PRIMARY KEY,
    practice_id TEXT NOT NULL,
    problem     TEXT NOT NULL,
    at          INTEGER NOT NULL
);

-- A webhook delivery whose signature verified but whose body did not parse: sealed with the data
-- key (it may carry patient data), deduplicated by the body's hash so a redelivery is kept once.
CREATE TABLE quarantined_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    provider    TEXT NOT NULL,
    body_hash   TEXT NOT NULL,
    body        BLOB NOT NULL,
    problem     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (provider, body_hash)
);
