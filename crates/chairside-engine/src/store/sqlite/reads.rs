//! Reads that callers outside the runner make often during a run (the patient page, the webhook
//! checks, the staff alerts, the intake link dispatcher's idle check), and the runner's look for
//! a lender return reference, on the store's reader thread ([`super::thread`]) instead of sqlx's
//! pool: one hop to a connection that keeps its statements prepared, where the pool takes a hop
//! per statement and one more to check the connection on its release, and the workflow state
//! from the store's [`StateCache`] when it holds the stored bytes. The statements are those of
//! `store/shared/` (`report.rs`, `intake.rs`) and `links.rs`, which PostgreSQL still runs
//! through its pool.

use rusqlite::OptionalExtension;
use rusqlite::types::ValueRef;

use super::conn::Conn;
use super::from_ms;
use super::sealed::StateCache;
use crate::store::{Result, WorkflowRow};

/// `ReportStore::workflow`: the row selected as `WORKFLOW_COLUMNS` selects it, its state opened.
pub(super) fn workflow(
    conn: &Conn<'_>,
    states: &StateCache,
    id: &str,
) -> Result<Option<WorkflowRow>> {
    let row = conn
        .prepared(
            "SELECT w.state, w.updated_at, w.next_due_at,
                (SELECT action FROM outbox o WHERE o.workflow_id = w.id AND o.status = 'pending' ORDER BY seq LIMIT 1)
             FROM workflows w WHERE w.id = ?1",
        )?
        .query_row([id], |r| {
            // A sealed column's bytes: a blob, or text as a row written by hand holds it (as
            // sqlx reads `&[u8]`), so such a row fails to open rather than to read.
            let state = match r.get_ref(0)? {
                ValueRef::Blob(b) | ValueRef::Text(b) => states.open(id, b),
                other => {
                    return Err(rusqlite::Error::InvalidColumnType(
                        0,
                        "state".to_owned(),
                        other.data_type(),
                    ));
                }
            };
            let updated_at: i64 = r.get(1)?;
            let next_due_at: Option<i64> = r.get(2)?;
            let next_action: Option<String> = r.get(3)?;
            Ok(state.map(|state| WorkflowRow {
                state,
                updated_at: from_ms(updated_at),
                next_due_at: next_due_at.map(from_ms),
                next_action,
            }))
        })
        .optional()?;
    row.transpose()
}

/// `ReportStore::workflow_at_generation`: the link generation, then (when it is `generation`) the
/// row as [`workflow`] reads it, on one connection in one hop. Two statements, as the two calls
/// they replace were: each sees what was committed before it.
pub(super) fn workflow_at_generation(
    conn: &Conn<'_>,
    states: &StateCache,
    id: &str,
    generation: u64,
) -> Result<Option<WorkflowRow>> {
    let current: Option<i64> = conn
        .prepared("SELECT generation FROM patient_links WHERE workflow_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    if current.unwrap_or(0) as u64 != generation {
        return Ok(None);
    }
    workflow(conn, states, id)
}

/// `IntakeStore::claim_intake_link_sends`'s first look: whether any send is due at `now_ms`.
pub(super) fn intake_link_sends_due(conn: &Conn<'_>, now_ms: i64) -> Result<bool> {
    Ok(conn
        .prepared(
            "SELECT EXISTS (SELECT 1 FROM intake_link_sends
                 WHERE status = 'pending' AND next_at <= ?1
                   AND (lease_until IS NULL OR lease_until <= ?1))",
        )?
        .query_row([now_ms], |r| r.get(0))?)
}

/// `LinkStore::return_reference`'s first look: the workflow's return reference, when it has one.
pub(super) fn return_reference(conn: &Conn<'_>, workflow: &str) -> Result<Option<String>> {
    Ok(conn
        .prepared(
            "SELECT return_ref FROM patient_links WHERE workflow_id = ?1 AND return_ref IS NOT NULL",
        )?
        .query_row([workflow], |r| r.get(0))
        .optional()?)
}
