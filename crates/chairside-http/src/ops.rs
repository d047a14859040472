//! `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::HttpState;

/// The process is up.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// Polls failed in a row after which a practice's detection counts as degraded.
pub(crate) const DEGRADED_AFTER_FAILURES: u32 = 3;

/// The store answers and its schema is current: 200. The body is `ready` when every practice
/// system's detection is healthy, else `degraded` with one line per practice system that has
/// failed [`DEGRADED_AFTER_FAILURES`] polls in a row or holds records it could not read (ids and
/// counts only). Degraded stays 200: this instance still serves patients and webhooks, and
/// restarting it fixes nothing in a practice system (docs/operations.md).
pub(crate) async fn readyz(State(state): State<HttpState>) -> Response {
    match state.store.ready().await {
        Ok(true) => {
            let health = match state.store.detection_health().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "readiness check: detection health unreadable");
                    return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
                        .into_response();
                }
            };
            let mut lines = String::new();
            for h in &health {
                if h.consecutive_failures >= DEGRADED_AFTER_FAILURES || h.unreadable_records > 0 {
                    lines.push_str(&format!(
                        "practice {} {}: {} polls failed in a row, {} unreadable records, last good poll {}\n",
                        h.practice_id,
                        h.source,
                        h.consecutive_failures,
                        h.unreadable_records,
                        h.last_good_poll_at
                            .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339()),
                    ));
                }
            }
            if lines.is_empty() {
                (StatusCode::OK, "ready\n").into_response()
            } else {
                (StatusCode::OK, format!("degraded\n{lines}")).into_response()
            }
        }
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response()
        }
    }
}

/// Prometheus text exposition, for the bearer of the metrics token, or, when none is
/// configured, for loopback clients only. The gauges come from [`Metrics::refresh`]'s cached
/// aggregate: a scrape never lists or decodes workflows.
///
/// [`Metrics::refresh`]: crate::Metrics
pub(crate) async fn metrics(State(state): State<HttpState>, req: Request) -> Response {
    if let Some(refusal) = refuse(&state, &req) {
        return refusal;
    }
    state.metrics.refresh(state.reports()).await;
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
    match state.store.detection_health().await {
        Ok(health) => state.metrics.detection(&health),
        Err(e) => tracing::warn!(error = %e, "metrics: reading detection health failed"),
    }
    let mut res = state.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// Why a scrape is refused, if it is: 401 without the configured token, 403 from a
/// non-loopback peer when no token is configured (or when the peer is unknown).
fn refuse(state: &HttpState, req: &Request) -> Option<Response> {
    match &state.config.metrics_token {
        Some(token) => {
            let given = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            if given.is_some_and(|g| same_token(g, token.expose_secret())) {
                None
            } else {
                let mut res =
                    (StatusCode::UNAUTHORIZED, "metrics token required\n").into_response();
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                Some(res)
            }
        }
        None => {
            let loopback = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback());
            (!loopback).then(|| {
                (
                    StatusCode::FORBIDDEN,
                    "metrics are served to loopback clients only\n",
                )
                    .into_response()
            })
        }
    }
}

/// Compares digests in constant time, so neither the content nor the length of the token leaks
/// through timing.
fn same_token(given: &str, token: &str) -> bool {
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    a.ct_eq(&b).into()
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Request, StatusCode, header};
    use secrecy::SecretString;
    use tower::ServiceExt as _;

    use crate::testkit::{Kit, body_text, config, get};

    const METRICS_TOKEN: &str = "metrics-bearer-token-for-tests";

    /// A scrape as it arrives from `peer`, optionally with a bearer token.
    fn scrape(peer: &str, token: Option<&str>) -> Request<Body> {
        let mut b = Request::get("/metrics");
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let mut req = b.body(Body::empty()).unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    }

    async fn kit_with_token() -> Kit {
        let mut c = config();
        c.metrics_token = Some(SecretString::from(METRICS_TOKEN));
        Kit::with_config(c).await
    }

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
    async fn detection_health_shows_on_readyz_the_metrics_and_the_dashboard() {
        use chairside_engine::store::detection::{DetectionBatch, DetectionKind, NewDetectionTask};
        // Arrange: practice "smile": its feed failed three times; "other": a good poll with one
        // record it could not read.
        let kit = Kit::new().await;
        for _ in 0..3 {
            kit.store
                .record_poll_failure(
                    &crate::testkit::smile(),
                    "opendental",
                    "transient",
                    kit.now(),
                )
                .await
                .unwrap();
        }
        let batch = DetectionBatch {
            cursor: "c1".into(),
            tasks: vec![NewDetectionTask {
                kind: DetectionKind::UnreadableRecord,
                plan_id: "963".into(),
                marker: "2026-06-02T09:00:00".into(),
                field: "proctp row 1, field FeeAmt: malformed money".into(),
                problem: "could not be read".into(),
            }],
            ..DetectionBatch::default()
        };
        kit.store
            .record_detection(
                &crate::testkit::other(),
                "dentrix",
                batch.clone(),
                kit.now(),
            )
            .await
            .unwrap();
        // The same task again (the next poll) is not a second one.
        kit.store
            .record_detection(&crate::testkit::other(), "dentrix", batch, kit.now())
            .await
            .unwrap();

        // Act
        let ready = kit.send(get("/readyz")).await;
        let metrics = kit.send(scrape("127.0.0.1:40000", None)).await;

        // Assert
        assert_eq!(ready.status(), StatusCode::OK);
        let text = body_text(ready).await;
        assert!(text.starts_with("degraded\n"), "{text}");
        assert!(
            text.contains("practice smile opendental: 3 polls failed in a row"),
            "{text}"
        );
        assert!(
            text.contains("practice other dentrix: 0 polls failed in a row, 1 unreadable"),
            "{text}"
        );
        let text = body_text(metrics).await;
        assert!(
            text.contains(r#"chairside_detection_consecutive_failures{practice="smile",source="opendental"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"chairside_detection_unreadable_records{practice="other",source="dentrix"} 1"#
            ),
            "{text}"
        );
        let (session, _) = kit.login("alice", crate::testkit::ALICE_PASSWORD).await;
        let page = body_text(
            kit.send(crate::testkit::with_cookie(get("/staff"), &session))
                .await,
        )
        .await;
        assert!(
            page.contains("the last 3 checks for accepted plans failed"),
            "{page}"
        );

        // A good poll clears the failures.
        kit.store
            .record_detection(
                &crate::testkit::smile(),
                "opendental",
                DetectionBatch::default(),
                kit.now(),
            )
            .await
            .unwrap();
        let text = body_text(kit.send(get("/readyz")).await).await;
        assert!(!text.contains("practice smile"), "{text}");
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
        // Its own page says it was set aside, without the stored content; the good one's opens.
        let detail = kit
            .send(crate::testkit::with_cookie(
                get(&format!("/staff/workflows/{bad}")),
                &session,
            ))
            .await;
        assert_eq!(detail.status(), StatusCode::LOCKED);
        let detail = body_text(detail).await;
        assert!(detail.contains("Set aside"), "{detail}");
        assert!(!detail.contains("Corrupt-Marker"));
        let good_page = kit
            .send(crate::testkit::with_cookie(
                get(&format!("/staff/workflows/{good}")),
                &session,
            ))
            .await;
        assert_eq!(good_page.status(), StatusCode::OK);
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
        let res = kit.send(scrape("127.0.0.1:50000", None)).await;
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
        let again = body_text(kit.send(scrape("[::1]:50000", None)).await).await;
        assert!(
            again.contains("chairside_operatory_to_ledger_seconds_count 1"),
            "{again}"
        );
    }

    #[tokio::test]
    async fn without_a_token_a_scrape_from_a_non_loopback_peer_is_refused() {
        // Arrange
        let kit = Kit::new().await;
        kit.seed_workflow("tx-open").await;
        // Act
        let remote = kit.send(scrape("203.0.113.7:40000", None)).await;
        let unknown_peer = crate::router(kit.state.clone())
            .oneshot(get("/metrics"))
            .await
            .unwrap();
        let forged_bearer = kit
            .send(scrape("203.0.113.7:40000", Some("anything")))
            .await;
        // Assert
        assert_eq!(remote.status(), StatusCode::FORBIDDEN);
        assert_eq!(unknown_peer.status(), StatusCode::FORBIDDEN);
        assert_eq!(forged_bearer.status(), StatusCode::FORBIDDEN);
        assert!(!body_text(remote).await.contains("chairside_workflows"));
    }

    #[tokio::test]
    async fn with_a_token_a_wrong_or_missing_token_is_refused_even_from_loopback() {
        // Arrange
        let kit = kit_with_token().await;
        // Act
        let wrong = kit
            .send(scrape(
                "203.0.113.7:40000",
                Some("metrics-bearer-token-for-tesTS"),
            ))
            .await;
        let longer = kit
            .send(scrape(
                "203.0.113.7:40000",
                Some(&format!("{METRICS_TOKEN}x")),
            ))
            .await;
        let missing = kit.send(scrape("127.0.0.1:40000", None)).await;
        // Assert
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(longer.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[tokio::test]
    async fn with_a_token_the_right_token_answers_from_any_peer() {
        // Arrange
        let kit = kit_with_token().await;
        kit.seed_workflow("tx-open").await;
        // Act
        let res = kit
            .send(scrape("203.0.113.7:40000", Some(METRICS_TOKEN)))
            .await;
        // Assert
        assert_eq!(res.status(), StatusCode::OK);
        let text = body_text(res).await;
        assert!(
            text.contains(r#"chairside_workflows{status="active"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn scrapes_never_decode_workflows_so_an_undecodable_row_is_still_counted() {
        // Arrange: a row the workflow listing cannot read (the listing skips it and counts it).
        let kit = Kit::new().await;
        kit.seed_workflow("tx-open").await;
        let broken = kit.seed_workflow("tx-broken").await;
        kit.corrupt_state(&broken, "not a workflow state").await;
        assert_eq!(
            kit.state
                .reports()
                .workflows(None, None, 10)
                .await
                .unwrap()
                .len(),
            1,
            "the listing reads each row, and skips the broken one"
        );
        // Act
        let res = kit.send(scrape("127.0.0.1:40000", None)).await;
        // Assert
        assert_eq!(res.status(), StatusCode::OK);
        let text = body_text(res).await;
        assert!(
            text.contains(r#"chairside_workflows{status="active"} 2"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_flood_of_scrapes_within_the_refresh_interval_is_served_from_one_cached_count() {
        // Arrange
        let kit = Kit::new().await;
        kit.seed_workflow("tx-1").await;
        let first = body_text(kit.send(scrape("127.0.0.1:40000", None)).await).await;
        assert!(
            first.contains(r#"chairside_workflows{status="active"} 1"#),
            "{first}"
        );
        kit.seed_workflow("tx-2").await;
        // Act: within the refresh interval (5 s; a hundred in-process scrapes take a few ms), no
        // scrape asks the store again.
        let mut last = String::new();
        for _ in 0..100 {
            last = body_text(kit.send(scrape("127.0.0.1:40000", None)).await).await;
        }
        // Assert: still the first count, though a second workflow now exists.
        assert!(
            last.contains(r#"chairside_workflows{status="active"} 1"#),
            "{last}"
        );
    }

    // The same tests on PostgreSQL (when CHAIRSIDE_TEST_POSTGRES_URL is set).
    crate::testkit::also_on_postgres!(
        health_and_readiness_answer_200_on_a_migrated_store,
        detection_health_shows_on_readyz_the_metrics_and_the_dashboard,
        one_undecodable_workflow_is_quarantined_and_the_dashboard_and_metrics_still_answer,
        metrics_show_workflows_by_status_and_the_operatory_to_ledger_histogram,
        scrapes_never_decode_workflows_so_an_undecodable_row_is_still_counted,
    );
}
