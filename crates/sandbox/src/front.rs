//! The middleware in front of every HTTP stand-in: records the request, then applies the faults
//! the [`FaultController`] decides on.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::fault::{Fault, FaultController, LostResponse, System};
use crate::record::{RecordedRequest, Recorder};
use crate::server::{ConnHandle, Shutdown};

/// Requests bigger than this are refused; nothing Chairside sends comes close.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Per-system state of the front middleware.
#[derive(Clone, Debug)]
pub(crate) struct Front {
    pub(crate) system: System,
    pub(crate) faults: FaultController,
    pub(crate) recorder: Recorder,
    pub(crate) shutdown: Shutdown,
}

/// Wraps `router` in the front middleware for `front.system`.
pub(crate) fn wrap(router: axum::Router, front: Front) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(front, front_layer))
}

async fn front_layer(
    State(front): State<Front>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let verdict = front.faults.decide(front.system, &method, &path);

    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let seq = front.recorder.record(RecordedRequest {
        seq: 0,
        system: front.system,
        method,
        path,
        query: parts.uri.query().map(str::to_owned),
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        received_at: chrono::Utc::now(),
        faults: verdict.labels.clone(),
        status: None,
    });

    if !verdict.delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(verdict.delay) => {}
            () = front.shutdown.wait() => {}
        }
    }
    let req = Request::from_parts(parts, Body::from(bytes));

    match verdict.fault {
        None | Some(Fault::Latency(_)) => {
            let resp = next.run(req).await;
            front.recorder.set_status(seq, resp.status().as_u16());
            resp
        }
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let resp = fault_response(front.system, status, retry_after);
            front.recorder.set_status(seq, resp.status().as_u16());
            resp
        }
        Some(Fault::ConnectionReset) => {
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Some(Fault::ResponseLost(mode)) => {
            let resp = next.run(req).await;
            // The handler's effects are done once its response exists; draining the body makes
            // sure nothing lazy is left.
            let _ = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
            if mode == LostResponse::Hang {
                front.shutdown.wait().await;
            }
            conn.kill();
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Some(Fault::SlowDrip { chunk, interval }) => {
            let resp = next.run(req).await;
            front.recorder.set_status(seq, resp.status().as_u16());
            let (parts, body) = resp.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            Response::from_parts(parts, drip(bytes, chunk.max(1), interval))
        }
    }
}

fn drip(bytes: Bytes, chunk: usize, interval: Duration) -> Body {
    let stream = futures::stream::unfold((bytes, true), move |(mut rest, first)| async move {
        if rest.is_empty() {
            return None;
        }
        if !first {
            tokio::time::sleep(interval).await;
        }
        let piece = rest.split_to(chunk.min(rest.len()));
        Some((Ok::<_, std::io::Error>(piece), (rest, false)))
    });
    Body::from_stream(stream)
}

/// The error a vendor would send with `status`, shaped as that vendor shapes errors.
fn fault_response(system: System, status: u16, retry_after: Option<Duration>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let reason = code.canonical_reason().unwrap_or("Error");
    let body = match system {
        System::Stripe => {
            let (kind, err_code) = if status == 429 {
                ("invalid_request_error", Some("rate_limit"))
            } else {
                ("api_error", None)
            };
            json!({"error": {
                "type": kind,
                "code": err_code,
                "message": format!("Sandbox fault injection: {reason}."),
            }})
        }
        System::Twilio => {
            let twilio_code = if status == 429 { 20429 } else { 20500 };
            json!({
                "code": twilio_code,
                "message": reason,
                "more_info": format!("https://www.twilio.com/docs/errors/{twilio_code}"),
                "status": status,
            })
        }
        System::Dentrix => json!({
            "data": null,
            "warnings": [],
            "errors": [{"code": status, "message": reason}],
        }),
        _ => json!({"code": status, "message": reason}),
    };
    let mut resp = (code, axum::Json(body)).into_response();
    if let Some(after) = retry_after
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().to_string())
    {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    if system == System::Stripe && matches!(status, 429 | 500..=504) {
        resp.headers_mut()
            .insert("stripe-should-retry", HeaderValue::from_static("true"));
    }
    resp
}
