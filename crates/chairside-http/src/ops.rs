//! `/healthz`, `/readyz`, `/metrics`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;

/// The most workflows one scrape reads to refresh the gauges.
const SCRAPE_LIMIT: u32 = 100_000;

/// The process is up.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// The store answers and its schema is current.
pub(crate) async fn readyz(State(state): State<HttpState>) -> Response {
    match state.store.ready().await {
        Ok(true) => (StatusCode::OK, "ready\n").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response()
        }
    }
}

/// Prometheus text exposition. The workflow gauges are refreshed from the store on each scrape.
pub(crate) async fn metrics(State(state): State<HttpState>) -> Response {
    match state.store.workflows(None, None, SCRAPE_LIMIT).await {
        Ok(rows) => state.metrics.refresh(&rows),
        // Serve what we have: a scrape that fails outright hides the other metrics too.
        Err(e) => tracing::warn!(error = %e, "metrics: listing workflows failed"),
    }
    let mut res = state.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use crate::testkit::{Kit, body_text, get};

    #[tokio::test]
    async fn health_and_readiness_answer_200_on_a_migrated_store() {
        // Arrange
        let kit = Kit::new().await;
        // Act
        let health = kit.send(get("/healthz")).await;
        let ready = kit.send(get("/readyz")).await;
        // Assert
        assert_eq!(health.status(), StatusCode::OK);
        assert_eq!(ready.status(), StatusCode::OK);
        assert_eq!(body_text(ready).await, "ready\n");
    }

    #[tokio::test]
    async fn metrics_show_workflows_by_status_and_the_operatory_to_ledger_histogram() {
        // Arrange
        let kit = Kit::new().await;
        let done = kit.seed_done_workflow("tx-done").await;
        kit.seed_workflow("tx-open").await;
        // Act
        let res = kit.send(get("/metrics")).await;
        // Assert
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = body_text(res).await;
        assert!(
            text.contains(r#"chairside_workflows{status="active"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"chairside_workflows{status="done"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("chairside_operatory_to_ledger_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"chairside_operatory_to_ledger_seconds_bucket{le="300"} 1"#),
            "{text}"
        );
        assert!(!text.contains(done.as_str()), "ids never become labels");

        // A second scrape does not count the same workflow twice.
        let again = body_text(kit.send(get("/metrics")).await).await;
        assert!(
            again.contains("chairside_operatory_to_ledger_seconds_count 1"),
            "{again}"
        );
    }
}
