-- Staff alert digests (PostgreSQL twin of ../0024_staff_alert_digests.sql): which new-task events
-- one staff email covers, written all or nothing before the email goes out.
CREATE TABLE staff_alert_digests (
    event_id     TEXT PRIMARY KEY,
    digest_key   TEXT NOT NULL,
    practice_id  TEXT NOT NULL,
    is_lead      BOOLEAN NOT NULL,
    collected_at BIGINT NOT NULL
);
CREATE INDEX staff_alert_digests_by_key ON staff_alert_digests (digest_key);
CREATE INDEX outbound_events_by_practice_type ON outbound_events (practice_id, type, created_at);
