//! The delivery log: the practice's outbound event deliveries (webhook endpoints, the CRM, the
//! lab), newest first, with their attempts and last outcome; a delivery given up after its last
//! attempt can be queued again. The dashboard shows a banner while any is given up.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{
    forbidden, local, not_found, practice_name, root, same, see_other, server_error, session,
    time_zone, to_login,
};
use crate::HttpState;
use chairside_engine::store::outbox::DeliveryRow;

/// Lines shown.
const LOG_LIMIT: u32 = 200;

#[derive(Serialize)]
struct Line {
    id: i64,
    subscriber: String,
    event: String,
    kind: String,
    workflow_href: String,
    status: &'static str,
    failed: bool,
    attempts: u32,
    last: String,
    outcome: String,
    next: String,
}

#[derive(Serialize)]
struct Log {
    root: String,
    csrf: String,
    user: String,
    practice_name: String,
    failed: usize,
    lines: Vec<Line>,
}

fn status_text(status: &str) -> &'static str {
    match status {
        "delivered" => "delivered",
        "failed" => "given up",
        _ => "waiting to retry",
    }
}

fn outcome(row: &DeliveryRow) -> String {
    match (row.last_status, row.last_error.as_deref()) {
        (Some(code), Some(error)) => format!("{error} (HTTP {code})"),
        (Some(code), None) => format!("HTTP {code}"),
        (None, Some(error)) => error.to_owned(),
        (None, None) => "–".to_owned(),
    }
}

/// `GET /staff/deliveries`.
pub(crate) async fn log(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    let rows = match state
        .store
        .deliveries(Some(s.practice.as_str()), None, LOG_LIMIT)
        .await
    {
        Ok(rows) => rows,
        Err(e) => return server_error(&state, &e),
    };
    let tz = time_zone(&state, &s.practice);
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(|| "–".to_owned(), |t| local(t, tz, "%b %-d %H:%M:%S"))
    };
    let lines: Vec<Line> = rows
        .iter()
        .map(|r| Line {
            id: r.id,
            subscriber: r.subscriber.clone(),
            event: r.event_id.clone(),
            kind: r.kind.clone(),
            // An event about a plan before any workflow (`plan.needs_staff`) links to the
            // dashboard's detection section.
            workflow_href: if r.workflow_id.is_empty() {
                format!("{}staff#detection", root(&state))
            } else {
                format!("{}staff/workflows/{}", root(&state), r.workflow_id)
            },
            status: status_text(&r.status),
            failed: r.status == "failed",
            attempts: r.attempts,
            last: when(r.last_attempt_at),
            outcome: outcome(r),
            next: when(r.next_attempt_at),
        })
        .collect();
    let page = Log {
        root: root(&state),
        csrf: s.csrf.clone(),
        user: s.username.clone(),
        practice_name: practice_name(&state, &s.practice),
        failed: lines.iter().filter(|l| l.failed).count(),
        lines,
    };
    state
        .pages
        .render(StatusCode::OK, "staff_deliveries.html", page)
}

/// The requeue form.
#[derive(Deserialize)]
pub(crate) struct RequeueForm {
    csrf: String,
}

/// `POST /staff/deliveries/{id}/retry`: a given-up delivery of the staff member's practice is
/// queued again, its attempts counted afresh.
pub(crate) async fn requeue(
    State(state): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(form): Form<RequeueForm>,
) -> Response {
    let Some((_, s)) = session(&state, &headers) else {
        return to_login(&state);
    };
    if !same(&form.csrf, &s.csrf) {
        return forbidden(&state);
    }
    // Only a delivery of this practice, and only one that was given up.
    let mine = match state
        .store
        .deliveries(Some(s.practice.as_str()), Some("failed"), u32::MAX)
        .await
    {
        Ok(rows) => rows.iter().any(|r| r.id == id),
        Err(e) => return server_error(&state, &e),
    };
    if !mine {
        return not_found(&state);
    }
    match state.store.requeue_delivery(id, state.now()).await {
        Ok(true) => {
            tracing::info!(delivery = id, actor = %s.username, "delivery queued again by staff");
            see_other(&format!("{}staff/deliveries", root(&state)))
        }
        Ok(false) => not_found(&state),
        Err(e) => server_error(&state, &e),
    }
}

/// Given-up deliveries of `practice`, for the dashboard's banner.
pub(crate) async fn failed_count(
    state: &HttpState,
    practice: &financing_core::PracticeId,
) -> Result<usize, chairside_engine::store::StoreError> {
    Ok(state
        .store
        .deliveries(Some(practice.as_str()), Some("failed"), 1_000)
        .await?
        .len())
}
