-- The public intake page's submission limits (PostgreSQL twin of ../0023_intake_rate_limits.sql):
-- one row per admitted submission and limit key (a SHA-256 of the key), pruned past the window.
-- Times are Unix ms.
CREATE TABLE intake_submissions (
    key_hash BYTEA NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX intake_submissions_by_key ON intake_submissions (key_hash, at);
CREATE INDEX intake_submissions_by_time ON intake_submissions (at);
