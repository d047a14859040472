-- New-patient intake (docs/intake.md): a consultation's proposed amount and the details the
-- patient typed on Chairside's intake page. The patient's contact is stored like every patient's
-- (the patients table, sealed) under the id `intake-{id}` until the practice system has one. The
-- consultation summary is sealed (`intakes:{id}`). An intake starts at most one workflow:
-- `workflow_id` is set once, in the transaction that creates it.
CREATE TABLE intakes (
    id           TEXT PRIMARY KEY,
    practice_id  TEXT NOT NULL,
    -- SHA-256 of the patient's intake link token (the token itself is never stored).
    token_hash   BYTEA NOT NULL UNIQUE,
    -- 'staff' (started on the dashboard) or 'public' (the practice's intake page).
    origin       TEXT NOT NULL,
    -- The amount proposed for financing, in cents; NULL until staff enter it.
    amount_cents BIGINT,
    summary      BYTEA,
    -- When the patient submitted their details; NULL until then.
    details_at   BIGINT,
    workflow_id  TEXT,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX intakes_by_practice ON intakes (practice_id, created_at);
