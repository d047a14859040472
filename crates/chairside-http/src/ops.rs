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
    let held = (
        state.store.quarantined_workflows(None).await,
        state.store.quarantined_deliveries().await,
    );
    match held {
        (Ok(w), Ok(d)) => {
            let skipped = state.store.counters().skipped_undecodable;
            state.metrics.quarantine(w.len(), d.len(), skipped);
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "metrics: listing the quarantine failed");
        }
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
    use chairside_engine::store::prelude::*;

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
    async fn one_undecodable_workflow_is_quarantined_and_the_dashboard_and_metrics_still_answer() {
        // Arrange: two workflows; one's stored state is corrupted; the runner's claim meets it.
        let kit = Kit::new().await;
        let good = kit.seed_workflow("tx-good").await;
        let bad = kit.seed_workflow("tx-bad").await;
        kit.corrupt_state(&bad, r#"{"patient":"Corrupt-Marker-Jane-Roe","stage":"#)
            .await;
        let claims = kit
            .store
            .claim_due("runner", kit.now(), std::time::Duration::from_secs(60), 10)
            .await
            .unwrap();
        for claim in &claims {
            if claim.id == bad {
                assert!(kit.store.load(claim, kit.now()).await.is_err());
                let problem = kit
                    .store
                    .quarantine_workflow(claim, kit.now())
                    .await
                    .unwrap();
                assert!(problem.is_some());
            } else {
                kit.store.release(claim, kit.now()).await.unwrap();
            }
        }

        // Act
        let metrics = kit.send(get("/metrics")).await;
        let (session, _) = kit.login("alice", crate::testkit::ALICE_PASSWORD).await;
        let dashboard = kit
            .send(crate::testkit::with_cookie(get("/staff"), &session))
            .await;

        // Assert
        assert_eq!(metrics.status(), StatusCode::OK);
        let text = body_text(metrics).await;
        assert!(
            text.contains(r#"chairside_workflows{status="active"} 1"#),
            "the good one is still counted: {text}"
        );
        assert!(
            text.contains(r#"chairside_quarantined{kind="workflow"} 1"#),
            "{text}"
        );
        assert_eq!(dashboard.status(), StatusCode::OK);
        let page = body_text(dashboard).await;
        assert!(page.contains(&format!("workflow {bad}")), "{page}");
        assert!(page.contains(good.as_str()), "the good one is listed");
        assert!(!page.contains("Corrupt-Marker"));
        assert_eq!(
            kit.store
                .claim_due("runner", kit.now(), std::time::Duration::from_secs(60), 10)
                .await
                .unwrap()
                .iter()
                .filter(|c| c.id == bad)
                .count(),
            0,
            "never claimed again"
        );
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
