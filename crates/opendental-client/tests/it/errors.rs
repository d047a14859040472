//! Each error class, retries and timeouts.

use std::time::Duration;

use financing_core::ErrorKind;
use opendental_client::{Error, Operation, TreatPlanNum, TreatPlanQuery};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{builder, client, fixture};

#[tokio::test]
async fn statuses_on_a_read_map_to_the_documented_kinds_with_bounded_retries() {
    // (status, Retry-After, expected kind, requests made)
    let rows: &[(u16, Option<&str>, ErrorKind, u64)] = &[
        (400, None, ErrorKind::Permanent, 1),
        (401, None, ErrorKind::Permanent, 1),
        (403, None, ErrorKind::Permanent, 1),
        (404, None, ErrorKind::Permanent, 1),
        (500, None, ErrorKind::TRANSIENT, 3),
        (502, None, ErrorKind::TRANSIENT, 3),
        (503, None, ErrorKind::TRANSIENT, 3),
        (
            429,
            Some("0"),
            ErrorKind::Transient {
                retry_after: Some(Duration::ZERO),
            },
            3,
        ),
    ];
    for &(status, retry_after, expected, requests) in rows {
        // Arrange
        let server = MockServer::start().await;
        let mut response =
            ResponseTemplate::new(status).set_body_string("Patient Testa Fixture: not allowed");
        if let Some(secs) = retry_after {
            response = response.insert_header("Retry-After", secs);
        }
        Mock::given(method("GET"))
            .and(path("/api/v1/proctps"))
            .respond_with(response)
            .expect(requests)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .list_proc_tps(TreatPlanNum::new(1786))
            .await
            .unwrap_err();

        // Assert
        assert_eq!(err.kind(), expected, "HTTP {status}");
        assert_eq!(err.status(), Some(status));
        assert_eq!(err.operation(), Some(Operation::ListProcTps));
        assert_eq!(err.to_string(), format!("list proctps: HTTP {status}"));
        assert!(
            !format!("{err:?}").contains("Testa"),
            "Debug leaks the body"
        );
        if let Error::Api { body, .. } = &err {
            assert!(body.expose().contains("not allowed"), "kept for staff");
        }
        server.verify().await;
    }
}

#[tokio::test]
async fn a_transient_5xx_on_a_read_is_retried_until_it_succeeds() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("treatplans")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let plans = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap();

    // Assert
    assert_eq!(plans.len(), 3);
}

#[tokio::test]
async fn a_long_retry_after_is_returned_to_the_caller_instead_of_slept() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "120"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        err.kind(),
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(120))
        }
    );
}

#[tokio::test]
async fn a_read_that_times_out_is_transient_and_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!([]))
                .set_delay(Duration::from_millis(500)),
        )
        .expect(3)
        .mount(&server)
        .await;
    let client = builder(&server)
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();

    // Act
    let err = client
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    assert_eq!(err.to_string(), "list treatplans: timed out");
}

#[tokio::test]
async fn a_refused_connection_is_a_transient_connect_error() {
    // Arrange: a port that was just free.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = opendental_client::Client::builder(
        url::Url::parse(&format!("http://127.0.0.1:{port}/api/v1")).unwrap(),
        opendental_client::SecretString::from("d"),
        opendental_client::SecretString::from("c"),
    )
    .retry(crate::helpers::FAST_BACKOFF)
    .build()
    .unwrap();

    // Act
    let err = client
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    assert_eq!(
        err.to_string(),
        "list treatplans: could not connect to Open Dental"
    );
}

#[tokio::test]
async fn a_decode_error_is_permanent_and_not_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/treatplans"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>eConnector offline</html>"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .list_treat_plans(&TreatPlanQuery::new())
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(
        err.to_string()
            .starts_with("list treatplans: could not decode the response: treatplan: not JSON")
    );
}
