-- What the patient page records once per workflow, however often it is viewed: the notice shown
-- before a lender link, a lender or deposit link followed. A mark's first insert writes its audit
-- line in the same transaction; later views write nothing, so link scanners and repeated views
-- cannot grow the database. The marks per workflow are bounded by the lenders and links it has.
CREATE TABLE patient_page_marks (
    workflow_id TEXT NOT NULL REFERENCES workflows (id),
    mark        TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, mark)
);
