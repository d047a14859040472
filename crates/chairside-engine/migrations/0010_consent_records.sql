-- SMS consent as a record (COMPLIANCE.md section 5, DESIGN.md "consent is a record, not a flag").
--
-- `sms_consent` keeps one row per number and practice: the number's current standing, folded from
-- its history by `messaging::supersedes` (a withdrawal always wins; only the patient's own later
-- opt-in grants again). It now also says what was granted (`consent`: informational or written,
-- NULL for none), the wording shown and who recorded it. Rows written before this migration have
-- NULL there: no grant, and `opted_out` as before.
ALTER TABLE sms_consent ADD COLUMN consent TEXT;
ALTER TABLE sms_consent ADD COLUMN wording TEXT;
ALTER TABLE sms_consent ADD COLUMN recorded_by TEXT;

-- Every grant and withdrawal as it was recorded, append-only: source, the exact wording the
-- patient saw, when, who recorded it, and whether it changed the standing. The number is the
-- keyed hash (`phone_key`, under key `key_id`), never in clear.
CREATE TABLE sms_consent_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    practice_id TEXT NOT NULL,
    phone_key   TEXT NOT NULL,
    key_id      INTEGER NOT NULL,
    consent     TEXT,
    source      TEXT NOT NULL,
    wording     TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    at          INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    effective   INTEGER NOT NULL
);
CREATE INDEX sms_consent_log_number ON sms_consent_log (practice_id, phone_key, id);
CREATE TRIGGER sms_consent_log_append_only_update BEFORE UPDATE ON sms_consent_log
BEGIN SELECT RAISE(ABORT, 'the sms_consent_log table is append-only'); END;
CREATE TRIGGER sms_consent_log_append_only_delete BEFORE DELETE ON sms_consent_log
BEGIN SELECT RAISE(ABORT, 'the sms_consent_log table is append-only'); END;

-- Each message channel's send, journalled before the send (DESIGN.md: every effect exactly once,
-- messages included). Keyed by the message's stable key (`{workflow}:send_message:{seq}`) and the
-- channel. `attempting` rows are sends whose outcome is unknown (a crash, a timeout after the
-- request left): a text is reconciled by looking it up at Twilio (`body_digest` identifies it);
-- an email is never resent (at most once: SMTP cannot be asked). No PHI: the digest is a hash.
CREATE TABLE message_sends (
    message_key TEXT NOT NULL,
    channel     TEXT NOT NULL,
    state       TEXT NOT NULL,
    body_digest TEXT,
    provider_id TEXT,
    attempt_at  INTEGER NOT NULL,
    finished_at INTEGER,
    PRIMARY KEY (message_key, channel)
);
