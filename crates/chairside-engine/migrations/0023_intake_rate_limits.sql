-- The public intake page's submission limits (issue #18), shared by every instance on the
-- database: one row per admitted submission and limit key (a SHA-256 of `practice:{id}` or
-- `address:{client}`, so no client address is stored in clear). Rows older than the window are
-- pruned by the next admission. Times are Unix ms.
CREATE TABLE intake_submissions (
    key_hash BLOB NOT NULL,
    at       INTEGER NOT NULL
);
CREATE INDEX intake_submissions_by_key ON intake_submissions (key_hash, at);
CREATE INDEX intake_submissions_by_time ON intake_submissions (at);
