//! OAuth2 client credentials: request shape, caching, shared refresh, 401 handling.

use std::time::Duration;

use carecredit_client::{Error, Operation};
use financing_core::{ErrorKind, FinancingProvider};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TOKEN_PATH, builder, client, handle, mount_token, pullback_path, token_body};

fn pending() -> serde_json::Value {
    json!({ "sessionId": "sess-1", "status": "Pending" })
}

async fn mount_pullback(server: &MockServer, bearer: &str, expected: u64) {
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .and(header("authorization", format!("Bearer {bearer}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(pending()))
        .expect(expected)
        .mount(server)
        .await;
}

#[tokio::test]
async fn token_request_sends_client_credentials_as_json_and_the_token_as_bearer() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "client_id": "test-client",
            "client_secret": "test-client-secret",
            "grantType": "client_credentials",
            "scope": "prefill pullback lookup",
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", 3600)))
        .expect(1)
        .mount(&server)
        .await;
    mount_pullback(&server, "tok-1", 1).await;

    // Act
    let decision = client(&server).application_status(&handle("sess-1")).await;

    // Assert
    assert_eq!(decision.unwrap().label(), "under_review");
}

#[tokio::test]
async fn token_url_can_point_elsewhere_than_the_api() {
    // Arrange
    let api = MockServer::start().await;
    let auth = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/custom/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", 3600)))
        .expect(1)
        .mount(&auth)
        .await;
    mount_pullback(&api, "tok-1", 1).await;
    let c = builder(&api)
        .token_url(format!("{}/custom/token", auth.uri()).parse().unwrap())
        .build()
        .unwrap();

    // Act
    let decision = c.application_status(&handle("sess-1")).await;

    // Assert
    assert!(decision.is_ok());
}

#[tokio::test]
async fn token_is_cached_across_calls() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    mount_pullback(&server, "tok-1", 3).await;
    let c = client(&server);

    // Act
    for _ in 0..3 {
        c.application_status(&handle("sess-1")).await.unwrap();
    }

    // Assert: expectations checked when the server drops.
}

#[tokio::test]
async fn concurrent_callers_share_one_token_refresh() {
    // Arrange: a slow token endpoint, so both callers arrive while the fetch is in flight.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(token_body("tok-1", 3600))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_pullback(&server, "tok-1", 2).await;
    let c = client(&server);
    let (h1, h2) = (handle("sess-1"), handle("sess-1"));

    // Act
    let (a, b) = tokio::join!(c.application_status(&h1), c.application_status(&h2));

    // Assert
    assert!(a.is_ok() && b.is_ok());
}

#[tokio::test]
async fn a_token_inside_its_refresh_margin_is_replaced_before_the_next_call() {
    // Arrange: a one-second token; the margin (capped at half the lifetime) makes it stale after
    // half a second.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", 1)))
        .expect(2)
        .mount(&server)
        .await;
    mount_pullback(&server, "tok-1", 2).await;
    let c = client(&server);

    // Act
    c.application_status(&handle("sess-1")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.application_status(&handle("sess-1")).await.unwrap();

    // Assert: two token fetches, checked on drop.
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_repeats_the_call() {
    // Arrange: the first token is rejected, the second accepted.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", 3600)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-2", 3600)))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    mount_pullback(&server, "tok-2", 1).await;

    // Act
    let decision = client(&server).application_status(&handle("sess-1")).await;

    // Assert
    assert_eq!(decision.unwrap().label(), "under_review");
}

#[tokio::test]
async fn a_second_401_after_refreshing_is_permanent() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 2).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;
    let c = builder(&server)
        .retry(crate::helpers::fast_backoff(3))
        .build()
        .unwrap();

    // Act
    let err = c.get_pullback(&handle("sess-1")).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(err.status(), Some(401));
}

#[tokio::test]
async fn rejected_client_credentials_are_permanent_and_nothing_else_is_called() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    mount_pullback(&server, "tok-1", 0).await;

    // Act
    let err = client(&server)
        .get_pullback(&handle("sess-1"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(err.operation(), Some(Operation::FetchToken));
    assert!(matches!(err, Error::Api { status: 401, .. }));
}

#[tokio::test]
async fn a_token_endpoint_outage_is_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    mount_token(&server, 1).await;
    mount_pullback(&server, "tok-1", 1).await;
    let c = builder(&server)
        .retry(crate::helpers::fast_backoff(2))
        .build()
        .unwrap();

    // Act
    let pullback = c.get_pullback(&handle("sess-1")).await;

    // Assert
    assert!(pullback.is_ok());
}
