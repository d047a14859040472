-- Staff alert digests (issue #16): which new-task events one staff email covers. Written in one
-- transaction, all or nothing, before the email goes out: an event belongs to one digest only
-- (its primary key), so a crash between collecting and sending neither loses a task (the lead
-- event's delivery is retried and sends the digest it collected) nor puts it in a second email.
-- `digest_key` is the message key the send is journalled under (message_sends); `is_lead` marks the
-- event whose delivery collected the digest and sends it. Times are Unix milliseconds; the table
-- holds event ids only (no PHI).
CREATE TABLE staff_alert_digests (
    event_id     TEXT PRIMARY KEY,
    digest_key   TEXT NOT NULL,
    practice_id  TEXT NOT NULL,
    is_lead      INTEGER NOT NULL,
    collected_at INTEGER NOT NULL
);
CREATE INDEX staff_alert_digests_by_key ON staff_alert_digests (digest_key);
CREATE INDEX outbound_events_by_practice_type ON outbound_events (practice_id, type, created_at);
