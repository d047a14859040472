//! The error table, row by row: each outcome maps to its `ErrorKind`, and reads are retried
//! exactly as often as the table says.

use std::time::Duration;

use dentrix_client::RetryPolicy;
use dentrix_client::{Client, Error, NoteMarker, PatientId};
use financing_core::ErrorKind;
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{api, client, credentials, fixture, server};

async fn get_with(status: u16, expected_calls: u64) -> Error {
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(
            ResponseTemplate::new(status).set_body_string("Janet Doeberg, DOB 1980-02-03"),
        )
        .expect(expected_calls)
        .mount(&server)
        .await;
    client(&server)
        .get_patient(&PatientId::new("9001"))
        .await
        .unwrap_err()
}

async fn post_with(status: u16) -> Error {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(api("patientnotes")))
        .respond_with(ResponseTemplate::new(status).set_body_string("Janet Doeberg"))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .create_patient_note(
            &PatientId::new("9001"),
            &NoteMarker::new("wf-1").unwrap(),
            "t",
        )
        .await
        .unwrap_err()
}

#[tokio::test]
async fn error_statuses_on_reads_map_to_their_kind_and_retry_count() {
    // (status, kind, requests made: 3 = retried up to the backoff's max_attempts)
    let rows = [
        // 503: not processed, retry.
        (503, ErrorKind::TRANSIENT, 3),
        // Any 5xx on a read is safe to repeat.
        (500, ErrorKind::TRANSIENT, 3),
        (502, ErrorKind::TRANSIENT, 3),
        (408, ErrorKind::TRANSIENT, 3),
        // Other 4xx: repeating cannot help.
        (404, ErrorKind::Permanent, 1),
        (400, ErrorKind::Permanent, 1),
        (409, ErrorKind::Permanent, 1),
    ];
    for (status, kind, calls) in rows {
        // Arrange + Act
        let err = get_with(status, calls).await;

        // Assert
        assert_eq!(err.kind(), kind, "HTTP {status}");
        let shown = err.to_string();
        assert_eq!(shown, format!("get patient: HTTP {}", err_status(&err)));
        assert!(
            !format!("{shown} {err:?}").contains("Janet"),
            "HTTP {status}: {err:?}"
        );
    }
}

fn err_status(err: &Error) -> String {
    match err {
        Error::Api { status, .. } => status.to_string(),
        other => panic!("not an API error: {other:?}"),
    }
}

#[tokio::test]
async fn error_statuses_on_writes_are_never_retried_and_5xx_is_indeterminate() {
    let rows = [
        // The note may have been written: reconcile by marker.
        (500, ErrorKind::Indeterminate),
        (502, ErrorKind::Indeterminate),
        (504, ErrorKind::Indeterminate),
        // Not processed: safe to try again later.
        (503, ErrorKind::TRANSIENT),
        (429, ErrorKind::TRANSIENT),
        // A bad request stays bad.
        (400, ErrorKind::Permanent),
        (422, ErrorKind::Permanent),
    ];
    for (status, kind) in rows {
        // Arrange + Act
        let err = post_with(status).await;

        // Assert
        assert_eq!(err.kind(), kind, "HTTP {status}");
        assert!(!format!("{err} {err:?}").contains("Janet"));
    }
}

#[tokio::test]
async fn a_403_is_a_permanent_organization_not_enabled_error() {
    // Arrange + Act
    let err = get_with(403, 1).await;

    // Assert
    assert!(
        matches!(err, Error::OrganizationNotEnabled { .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("organization is not enabled"));
}

#[tokio::test]
async fn a_429_with_a_long_retry_after_is_returned_with_the_delay_and_not_slept_through() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "7"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("9001"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        err.kind(),
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(7))
        }
    );
}

#[tokio::test]
async fn a_429_with_a_short_retry_after_is_retried_and_succeeds() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patient.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let patient = client(&server).get_patient(&PatientId::new("9001")).await;

    // Assert
    assert!(patient.is_ok(), "{patient:?}");
}

#[tokio::test]
async fn a_read_that_times_out_is_transient_after_bounded_retries() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
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
        .get_patient(&PatientId::new("9001"))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::Transport { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    assert_eq!(err.to_string(), "get patient: timed out");
}

#[tokio::test]
async fn a_connect_error_is_transient() {
    // Arrange: a port that was just free.
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
        .get_patient(&PatientId::new("9001"))
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
    Mock::given(method("GET"))
        .and(path(api("patients/9001")))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_patient(&PatientId::new("9001"))
        .await
        .unwrap_err();

    // Assert
    assert!(
        matches!(
            err,
            Error::Decode {
                resource: "patients",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[test]
fn a_bad_organization_id_is_a_permanent_configuration_error() {
    let creds = dentrix_client::Credentials::new(
        "c",
        secrecy::SecretString::from("s"),
        dentrix_client::OrganizationId::new("bad\nid"),
    );
    let err = Client::builder(Url::parse("http://127.0.0.1:1/").unwrap(), creds)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[tokio::test]
async fn a_redirected_note_is_a_permanent_error_and_its_text_goes_nowhere_else() {
    // Arrange: the note's POST answered with a 308 to another host, which must see nothing.
    let server = server().await;
    let elsewhere = wiremock::MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(api("patientnotes")))
        .respond_with(
            ResponseTemplate::new(308)
                .insert_header("location", format!("{}/notes", elsewhere.uri()).as_str()),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&elsewhere)
        .await;

    // Act
    let err = client(&server)
        .create_patient_note(
            &PatientId::new("9001"),
            &NoteMarker::new("wf-1").unwrap(),
            "Financing arranged for Testpatient",
        )
        .await
        .unwrap_err();

    // Assert: the redirect is the vendor's answer, not followed and not retried.
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert_eq!(
        err.to_string(),
        "create patient note: HTTP 308 Permanent Redirect"
    );
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}
