//! The error table, row by row, retry counts, and the client-side rate limit.

use std::time::{Duration, Instant};

use financing_core::ErrorKind;
use nexhealth_client::RetryPolicy;
use nexhealth_client::{Client, Error, PatientId, RateBudget};
use url::Url;
use wiremock::ResponseTemplate;

use crate::helpers::{builder, client, credentials, fixture, scoped, server};

#[tokio::test]
async fn error_statuses_on_reads_map_to_their_kind_and_retry_count() {
    // (status, kind, requests made: 3 = retried up to the backoff's max_attempts)
    let rows = [
        (503, ErrorKind::TRANSIENT, 3),
        (500, ErrorKind::TRANSIENT, 3),
        (504, ErrorKind::TRANSIENT, 3),
        (408, ErrorKind::TRANSIENT, 3),
        (404, ErrorKind::Permanent, 1),
        (403, ErrorKind::Permanent, 1),
        (400, ErrorKind::Permanent, 1),
    ];
    for (status, kind, calls) in rows {
        // Arrange
        let server = server().await;
        scoped("GET", "/patients/115")
            .respond_with(
                ResponseTemplate::new(status).set_body_string("Sample Testperson 1990-11-30"),
            )
            .expect(calls)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .get_patient(&PatientId::new("115"))
            .await
            .unwrap_err();

        // Assert
        assert_eq!(err.kind(), kind, "HTTP {status}");
        assert!(matches!(err, Error::Api { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains("Testperson"));
    }
}

#[tokio::test]
async fn a_429_with_retry_after_is_transient_with_the_delay() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "9"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("115"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        err.kind(),
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(9))
        }
    );
}

#[tokio::test]
async fn a_429_with_a_short_retry_after_is_retried_and_succeeds() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server).get_patient(&PatientId::new("115")).await;

    // Assert
    assert!(patient.is_ok(), "{patient:?}");
}

#[tokio::test]
async fn a_read_that_times_out_is_transient_after_bounded_retries() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/115")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(fixture("patient.json"))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(3)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("115"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    assert_eq!(err.to_string(), "get patient: timed out");
}

#[tokio::test]
async fn a_connect_error_is_transient() {
    // Arrange
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Client::builder(
        Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
        credentials(),
    )
    .retry(RetryPolicy::none())
    .build()
    .unwrap();

    // Act
    let err = client
        .get_patient(&PatientId::new("115"))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
}

#[tokio::test]
async fn a_2xx_body_that_is_not_json_is_a_permanent_decode_error() {
    // Arrange
    let server = server().await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(200).set_body_string("not json"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("115"))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn the_client_spaces_requests_to_stay_inside_the_rate_budget() {
    // Arrange: 20 requests/s with a burst of 2; six calls (one authentication, five reads) need
    // at least four intervals of 50 ms.
    let server = server().await;
    scoped("GET", "/patients/115")
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient.json")))
        .expect(5)
        .mount(&server)
        .await;
    let client = builder(&server)
        .rate_budget(RateBudget {
            per_second: 20,
            patients_per_minute: 0,
            other_per_minute: 0,
        })
        .build()
        .unwrap();
    let start = Instant::now();

    // Act
    for _ in 0..5 {
        client.get_patient(&PatientId::new("115")).await.unwrap();
    }

    // Assert
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(195), "{took:?}");
}
