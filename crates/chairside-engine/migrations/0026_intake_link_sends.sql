-- Chairside sends the patient their intake link (docs/intake.md): one row per send, the first
-- (seq 0, queued with the intake) and each staff re-send (seq 1, 2, ...), written in the
-- transaction that asks for it and sent by the runner. The message key of a send is
-- `intake:{intake_id}:link:{seq}`: the same on every attempt, so the message journal
-- (`message_sends`) keeps one send from going out twice across crashes and retries. The link
-- itself is not stored: it is rebuilt from the intake id (an HMAC under the patient-link key).
-- Times are Unix ms.
CREATE TABLE intake_link_sends (
    intake_id    TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    practice_id  TEXT NOT NULL,
    -- `staff:{user}` (who started the intake or asked for the re-send).
    requested_by TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    -- 'pending', 'sent' or 'failed'.
    status       TEXT NOT NULL,
    -- Attempts so far, counted at claim (a crash mid-send counts).
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL,
    lease_until  INTEGER,
    -- The channels it went out on ('email', 'email,sms'), once sent.
    channels     TEXT,
    -- Why the last attempt did not go out (no patient data).
    last_error   TEXT,
    done_at      INTEGER,
    PRIMARY KEY (intake_id, seq)
);
CREATE INDEX intake_link_sends_due ON intake_link_sends (status, next_at);
