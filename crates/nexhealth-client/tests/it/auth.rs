//! `POST /authenticates`: request shape, caching, expiry from the JWT, refresh on 401, one
//! shared refresh for concurrent callers.

use std::time::Duration;

use financing_core::ErrorKind;
use nexhealth_client::{Client, Error, PatientId};
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    auth_body, auth_mock, auth_request, bearer, builder, client, credentials, fixture, jwt, scoped,
    token,
};

fn patient_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(fixture("patient.json"))
}

#[tokio::test]
async fn every_call_sends_bearer_token_api_version_subdomain_and_location() {
    // Arrange
    let server = MockServer::start().await;
    auth_mock(&token()).expect(1).mount(&server).await;
    scoped("GET", "/patients/115")
        .and(header("authorization", bearer(&token()).as_str()))
        .and(header("nex-api-version", "v3.0.0"))
        .and(header("accept", "application/json"))
        .respond_with(patient_ok())
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server).get_patient(&PatientId::new("115")).await;

    // Assert
    assert!(patient.is_ok(), "{patient:?}");
}

#[tokio::test]
async fn the_token_is_cached_across_calls() {
    // Arrange
    let server = MockServer::start().await;
    auth_mock(&token()).expect(1).mount(&server).await;
    scoped("GET", "/patients/115")
        .respond_with(patient_ok())
        .expect(3)
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    for _ in 0..3 {
        client.get_patient(&PatientId::new("115")).await.unwrap();
    }

    // Assert: checked when the server drops.
}

#[tokio::test]
async fn a_token_whose_jwt_expiry_is_near_is_replaced_before_the_next_call() {
    // Arrange: the JWT says it expires in one second.
    let server = MockServer::start().await;
    auth_mock(&jwt("short", 1)).expect(2).mount(&server).await;
    scoped("GET", "/patients/115")
        .respond_with(patient_ok())
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    client.get_patient(&PatientId::new("115")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.get_patient(&PatientId::new("115")).await.unwrap();

    // Assert: two authentications, checked on drop.
}

#[tokio::test]
async fn an_expired_token_refused_with_401_is_refreshed_once_and_the_call_succeeds() {
    // Arrange
    let server = MockServer::start().await;
    let old = jwt("old", 3600);
    let new = jwt("new", 3600);
    auth_mock(&old)
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    auth_mock(&new).expect(1).mount(&server).await;
    scoped("GET", "/patients/115")
        .and(header("authorization", bearer(&old).as_str()))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;
    scoped("GET", "/patients/115")
        .and(header("authorization", bearer(&new).as_str()))
        .respond_with(patient_ok())
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server).get_patient(&PatientId::new("115")).await;

    // Assert
    assert_eq!(patient.unwrap().id, PatientId::new("115"));
}

#[tokio::test]
async fn two_concurrent_callers_share_exactly_one_authentication() {
    // Arrange
    let server = MockServer::start().await;
    auth_request()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(auth_body(&token()))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    scoped("GET", "/patients/115")
        .respond_with(patient_ok())
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);
    let other = client.clone();
    let id = PatientId::new("115");

    // Act
    let (a, b) = tokio::join!(client.get_patient(&id), other.get_patient(&id));

    // Assert
    assert!(a.is_ok() && b.is_ok());
}

#[tokio::test]
async fn a_second_401_after_one_refresh_is_a_permanent_auth_error() {
    // Arrange
    let server = MockServer::start().await;
    auth_mock(&token()).expect(2).mount(&server).await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("115"))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn an_api_key_refused_by_authenticates_is_a_permanent_auth_error() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/authenticates"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("115"))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("check the API key"));
}

#[tokio::test]
async fn the_authentication_url_and_api_version_are_injectable() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth/elsewhere"))
        .and(header("nex-api-version", "v20240412"))
        .respond_with(ResponseTemplate::new(200).set_body_json(auth_body(&token())))
        .expect(1)
        .mount(&server)
        .await;
    scoped("GET", "/patients/115")
        .and(header("nex-api-version", "v20240412"))
        .respond_with(patient_ok())
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server)
        .token_url(Url::parse(&format!("{}/auth/elsewhere", server.uri())).unwrap())
        .api_version("v20240412")
        .build()
        .unwrap();

    // Act
    let patient = client.get_patient(&PatientId::new("115")).await;

    // Assert
    assert!(patient.is_ok(), "{patient:?}");
}

#[test]
fn debug_output_of_credentials_and_builder_hides_the_api_key() {
    let shown = format!("{:?}", credentials());
    assert!(!shown.contains("fake-api-key"), "{shown}");
    let b = Client::builder(Url::parse("http://127.0.0.1:1/").unwrap(), credentials());
    assert!(!format!("{b:?}").contains("fake-api-key"));
}
