-- Patient links, per workflow: the link generation every patient token carries (bumped to revoke
-- every link issued so far), the opaque reference lenders get as their return URL, and when a
-- patient last asked for a fresh link (rate limit). No row means generation 0, no reference yet.
CREATE TABLE patient_links (
    workflow_id         TEXT PRIMARY KEY REFERENCES workflows (id),
    generation          INTEGER NOT NULL DEFAULT 0,
    return_ref          TEXT UNIQUE,
    revoked_at          INTEGER,
    resend_requested_at INTEGER
);
