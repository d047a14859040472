-- The sends of each intake's link (PostgreSQL twin of ../0026_intake_link_sends.sql): the first
-- (seq 0) and each staff re-send, keyed `intake:{intake_id}:link:{seq}` in the message journal.
-- Times are Unix ms.
CREATE TABLE intake_link_sends (
    intake_id    TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    practice_id  TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    lease_until  BIGINT,
    channels     TEXT,
    last_error   TEXT,
    done_at      BIGINT,
    PRIMARY KEY (intake_id, seq)
);
CREATE INDEX intake_link_sends_due ON intake_link_sends (status, next_at);
