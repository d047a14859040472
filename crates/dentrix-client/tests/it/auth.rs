//! OAuth2 client credentials: request shape, caching, refresh before expiry, refresh on 401,
//! one shared refresh for concurrent callers.

use std::time::Duration;

use dentrix_client::{Client, Error, PatientId};
use financing_core::ErrorKind;
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    BEARER, ORG, TOKEN_PATH, api, client, credentials, fixture, token_body, token_mock,
    token_request,
};

fn patient_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(fixture("patient.json"))
}

#[tokio::test]
async fn every_call_sends_the_bearer_token_and_the_organization_id() {
    // Arrange
    let server = MockServer::start().await;
    token_request()
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", "3599")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .and(header("authorization", BEARER))
        .and(header("organization-id", ORG))
        .and(header("accept", "application/json"))
        .respond_with(patient_ok())
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server).get_patient(&PatientId::new("9001")).await;

    // Assert
    assert!(patient.is_ok(), "{patient:?}");
}

#[tokio::test]
async fn the_token_is_cached_across_calls() {
    // Arrange
    let server = MockServer::start().await;
    token_mock("tok-1", "3599").expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .and(header("authorization", BEARER))
        .respond_with(patient_ok())
        .expect(3)
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    for _ in 0..3 {
        client.get_patient(&PatientId::new("9001")).await.unwrap();
    }

    // Assert: the mocks' expectations are checked when the server drops.
}

#[tokio::test]
async fn a_token_about_to_expire_is_replaced_before_the_next_call() {
    // Arrange: a one-second token is stale after half its lifetime.
    let server = MockServer::start().await;
    token_mock("tok-1", "1").expect(2).mount(&server).await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(patient_ok())
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    client.get_patient(&PatientId::new("9001")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    client.get_patient(&PatientId::new("9001")).await.unwrap();

    // Assert: two token requests, checked on drop.
}

#[tokio::test]
async fn an_expired_token_refused_with_401_is_refreshed_once_and_the_call_succeeds() {
    // Arrange: the first token is refused, the second accepted.
    let server = MockServer::start().await;
    token_mock("tok-old", "3599")
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_mock("tok-new", "3599").expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .and(header("authorization", "Bearer tok-old"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .and(header("authorization", "Bearer tok-new"))
        .respond_with(patient_ok())
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server).get_patient(&PatientId::new("9001")).await;

    // Assert
    assert_eq!(patient.unwrap().id, PatientId::new("9001"));
}

#[tokio::test]
async fn two_concurrent_callers_share_exactly_one_token_request() {
    // Arrange: a slow token endpoint, so both callers arrive while the first fetch is in flight.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(token_body("tok-1", "3599"))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .and(header("authorization", BEARER))
        .respond_with(patient_ok())
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);
    let id = PatientId::new("9001");

    // Act
    let other = client.clone();
    let (a, b) = tokio::join!(client.get_patient(&id), other.get_patient(&id));

    // Assert
    assert!(a.is_ok() && b.is_ok());
}

#[tokio::test]
async fn a_second_401_after_one_refresh_is_a_permanent_auth_error() {
    // Arrange
    let server = MockServer::start().await;
    token_mock("tok-1", "3599").expect(2).mount(&server).await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(ResponseTemplate::new(401).set_body_string("Janet Doeberg is not yours"))
        .expect(2)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("9001"))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("refused the credentials"));
    assert!(!err.to_string().contains("Janet"));
}

#[tokio::test]
async fn credentials_rejected_by_the_token_endpoint_are_a_permanent_auth_error() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("9001"))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retried_like_a_read() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    token_mock("tok-1", "3599").expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(patient_ok())
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server).get_patient(&PatientId::new("9001")).await;

    // Assert
    assert!(patient.is_ok(), "{patient:?}");
}

#[tokio::test]
async fn the_token_endpoint_url_is_injectable() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/custom/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", "3599")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .and(header("authorization", BEARER))
        .respond_with(patient_ok())
        .expect(1)
        .mount(&server)
        .await;
    let token_url = Url::parse(&format!("{}/custom/token", server.uri())).unwrap();
    let client = Client::builder(Url::parse(&server.uri()).unwrap(), credentials())
        .token_url(token_url)
        .build()
        .unwrap();

    // Act
    let patient = client.get_patient(&PatientId::new("9001")).await;

    // Assert
    assert!(patient.is_ok(), "{patient:?}");
}

#[test]
fn debug_output_of_credentials_and_builder_hides_the_secret() {
    let shown = format!("{:?}", credentials());
    assert!(!shown.contains("not-a-real-secret"), "{shown}");
    let builder = Client::builder(Url::parse("http://127.0.0.1:1/").unwrap(), credentials());
    let shown = format!("{builder:?}");
    assert!(!shown.contains("not-a-real-secret"), "{shown}");
    assert!(shown.contains(ORG));
}
