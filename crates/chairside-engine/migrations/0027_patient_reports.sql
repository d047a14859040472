-- A patient's own report of a link-only lender's decision from the patient page (issue #18,
-- docs/lenders.md): one row per report taken. The report (lender, outcome, amount, language) is
-- sealed (`patient_reports:{id}`). `task_id` is the staff task it raised: the report is pending
-- while that task is open. A report decides nothing; staff confirm it. Times are Unix ms.
CREATE TABLE patient_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    task_id     INTEGER NOT NULL,
    report      BLOB NOT NULL,
    reported_at INTEGER NOT NULL
);
CREATE INDEX patient_reports_by_workflow ON patient_reports (workflow_id, reported_at);
CREATE INDEX patient_reports_by_task ON patient_reports (task_id);
