-- What the patient page records once per workflow (PostgreSQL twin of ../0011_patient_page.sql).
CREATE TABLE patient_page_marks (
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    mark        TEXT NOT NULL,
    at          BIGINT NOT NULL,
    PRIMARY KEY (workflow_id, mark)
);
