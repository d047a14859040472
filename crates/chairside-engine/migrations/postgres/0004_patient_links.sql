-- Patient links, per workflow (PostgreSQL twin of ../0004_patient_links.sql).
CREATE TABLE patient_links (
    workflow_id         TEXT PRIMARY KEY REFERENCES workflows (id),
    generation          BIGINT NOT NULL DEFAULT 0,
    return_ref          TEXT UNIQUE,
    revoked_at          BIGINT,
    resend_requested_at BIGINT
);
