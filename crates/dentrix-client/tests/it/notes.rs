//! Patient notes: write with a marker, find by marker, check-then-act.

use std::time::Duration;

use dentrix_client::{NoteMarker, NoteWrite, PatientId};
use financing_core::ErrorKind;
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{BEARER, ORG, api, client, envelope, fixture, server};

fn marker(s: &str) -> NoteMarker {
    NoteMarker::new(s).unwrap()
}

#[tokio::test]
async fn create_patient_note_posts_the_text_with_the_marker_tag() {
    // Arrange
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(api("patientnotes")))
        .and(header("authorization", BEARER))
        .and(header("organization-id", ORG))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(json!({
            "patient": { "id": 9001 },
            "note": "Financing: in-house plan\n\n[chairside:wf-5001-2]"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("patientnote_created.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let note = client(&server)
        .create_patient_note(
            &PatientId::new("9001"),
            &marker("wf-5001-2"),
            "Financing: in-house plan\n",
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(note.id.as_str(), "4100");
    assert!(note.has_marker(&marker("wf-5001-2")));
    assert!(!format!("{note:?}").contains("in-house"));
}

#[tokio::test]
async fn find_patient_note_finds_the_note_carrying_the_marker() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patientnotes")))
        .and(query_param("filter", "patient.id==9001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patientnotes.json")))
        .expect(2)
        .mount(&server)
        .await;
    let client = client(&server);
    let patient = PatientId::new("9001");

    // Act
    let found = client
        .find_patient_note(&patient, &marker("wf-5001-1"))
        .await
        .unwrap();
    let absent = client
        .find_patient_note(&patient, &marker("wf-5001"))
        .await
        .unwrap();

    // Assert: a marker that is a prefix of another does not match it.
    assert_eq!(found.map(|n| n.id.as_str().to_owned()), Some("4002".into()));
    assert_eq!(absent, None);
}

#[tokio::test]
async fn ensure_patient_note_writes_nothing_when_the_marker_is_already_there() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patientnotes")))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("patientnotes.json")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(api("patientnotes")))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .ensure_patient_note(&PatientId::new("9001"), &marker("wf-5001-1"), "again")
        .await
        .unwrap();

    // Assert
    assert!(matches!(outcome, NoteWrite::AlreadyWritten(_)));
    assert_eq!(outcome.note().id.as_str(), "4002");
}

#[tokio::test]
async fn ensure_patient_note_writes_the_note_when_the_marker_is_absent() {
    // Arrange
    let server = server().await;
    Mock::given(method("GET"))
        .and(path(api("patientnotes")))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(api("patientnotes")))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("patientnote_created.json")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .ensure_patient_note(
            &PatientId::new("9001"),
            &marker("wf-5001-2"),
            "Financing: in-house plan",
        )
        .await
        .unwrap();

    // Assert
    assert!(matches!(outcome, NoteWrite::Written(_)));
}

#[tokio::test]
async fn a_500_on_a_note_write_is_indeterminate_and_not_retried() {
    // Arrange
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(api("patientnotes")))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .create_patient_note(&PatientId::new("9001"), &marker("wf-1"), "text")
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn a_timed_out_note_write_is_indeterminate_and_not_retried() {
    // Arrange
    let server = server().await;
    Mock::given(method("POST"))
        .and(path(api("patientnotes")))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(2)))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .create_patient_note(&PatientId::new("9001"), &marker("wf-1"), "text")
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
    assert!(err.to_string().contains("timed out"), "{err}");
}
