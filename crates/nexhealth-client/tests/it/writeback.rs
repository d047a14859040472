//! The ledger note as an asynchronous write: requested, then confirmed or failed.

use financing_core::ErrorKind;
use nexhealth_client::{
    CommunicationLogId, NoteMarker, NoteWrite, PatientId, WriteState, parse_webhook_event,
};
use serde_json::json;
use std::time::Duration;
use wiremock::ResponseTemplate;
use wiremock::matchers::{body_json, header, query_param};

use crate::helpers::{bearer, client, envelope, fixture, scoped, server, token};

fn marker(s: &str) -> NoteMarker {
    NoteMarker::new(s).unwrap()
}

#[tokio::test]
async fn request_ledger_note_posts_the_marked_text_and_starts_requested() {
    // Arrange
    let server = server().await;
    scoped("POST", "/communication_logs")
        .and(header("authorization", bearer(&token()).as_str()))
        .and(body_json(json!({
            "patient_id": 115,
            "location_id": 21,
            "note": "Financing: CareCredit $1,000.00\n\n[chairside:wf-423-1]"
        })))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("communication_log_created.json")),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let note = client(&server)
        .request_ledger_note(
            &PatientId::new("115"),
            &marker("wf-423-1"),
            "Financing: CareCredit $1,000.00",
        )
        .await
        .unwrap();

    // Assert
    assert_eq!(note.state, WriteState::Requested);
    assert_eq!(note.id, Some(CommunicationLogId::new("7701")));
    assert!(note.has_marker(&marker("wf-423-1")));
    assert!(!format!("{note:?}").contains("CareCredit"));
}

#[tokio::test]
async fn an_insertion_webhook_moves_the_note_to_confirmed_or_failed() {
    // Arrange
    let server = server().await;
    scoped("POST", "/communication_logs")
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("communication_log_created.json")),
        )
        .mount(&server)
        .await;
    let client = client(&server);
    let mut note = client
        .request_ledger_note(&PatientId::new("115"), &marker("wf-423-1"), "text")
        .await
        .unwrap();
    let unrelated =
        parse_webhook_event(br#"{"event":"communication_log_insertion.complete","data":{"id":1}}"#)
            .unwrap();
    let failed = parse_webhook_event(
        br#"{"event":"communication_log_insertion.failed","data":{"id":7701}}"#,
    )
    .unwrap();
    let done = parse_webhook_event(
        br#"{"event":"communication_log_insertion.complete","data":{"id":7701}}"#,
    )
    .unwrap();

    // Act + Assert
    assert!(!note.apply(&unrelated));
    assert_eq!(note.state, WriteState::Requested);
    assert!(note.apply(&failed));
    assert_eq!(note.state, WriteState::Failed);
    assert!(note.apply(&done));
    assert_eq!(note.state, WriteState::Confirmed);
}

#[tokio::test]
async fn get_ledger_note_is_confirmed_once_the_ehr_id_is_present() {
    // Arrange
    let server = server().await;
    scoped("GET", "/communication_logs/7701")
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 7701, "patient_id": 115, "note": "x [chairside:wf-423-1]", "foreign_id": "88002"
        }))))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    scoped("GET", "/communication_logs/7702")
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!({
            "id": 7702, "patient_id": 115, "note": "y", "foreign_id": null
        }))))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    let written = client
        .get_ledger_note(&CommunicationLogId::new("7701"))
        .await
        .unwrap();
    let pending = client
        .get_ledger_note(&CommunicationLogId::new("7702"))
        .await
        .unwrap();

    // Assert
    assert_eq!(written.state, WriteState::Confirmed);
    assert_eq!(pending.state, WriteState::Requested);
}

#[tokio::test]
async fn ensure_ledger_note_writes_nothing_when_the_marker_is_already_there() {
    // Arrange
    let server = server().await;
    scoped("GET", "/communication_logs")
        .and(query_param("patient_id", "115"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("communication_logs.json")))
        .expect(1)
        .mount(&server)
        .await;
    scoped("POST", "/communication_logs")
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .ensure_ledger_note(&PatientId::new("115"), &marker("wf-423-1"), "again")
        .await
        .unwrap();

    // Assert
    assert!(matches!(outcome, NoteWrite::AlreadyRequested(_)));
    assert_eq!(outcome.note().state, WriteState::Confirmed);
}

#[tokio::test]
async fn ensure_ledger_note_requests_the_write_when_the_marker_is_absent() {
    // Arrange
    let server = server().await;
    scoped("GET", "/communication_logs")
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("communication_logs.json")))
        .expect(1)
        .mount(&server)
        .await;
    scoped("POST", "/communication_logs")
        .respond_with(
            ResponseTemplate::new(202).set_body_json(fixture("communication_log_created.json")),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .ensure_ledger_note(&PatientId::new("115"), &marker("wf-424-1"), "new note")
        .await
        .unwrap();

    // Assert
    assert!(matches!(outcome, NoteWrite::Requested(_)));
}

#[tokio::test]
async fn a_5xx_or_timeout_on_the_write_is_indeterminate_and_not_retried() {
    for (status, delay) in [(500, 0), (502, 0), (202, 2_000)] {
        // Arrange
        let server = server().await;
        scoped("POST", "/communication_logs")
            .respond_with(ResponseTemplate::new(status).set_delay(Duration::from_millis(delay)))
            .expect(1)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .request_ledger_note(&PatientId::new("115"), &marker("wf-1"), "t")
            .await
            .unwrap_err();

        // Assert
        assert_eq!(
            err.kind(),
            ErrorKind::Indeterminate,
            "HTTP {status} after {delay} ms"
        );
    }
}

#[tokio::test]
async fn a_403_on_the_write_is_permanent() {
    // Arrange: writes need NexHealth's approval.
    let server = server().await;
    scoped("POST", "/communication_logs")
        .respond_with(ResponseTemplate::new(403))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .request_ledger_note(&PatientId::new("115"), &marker("wf-1"), "t")
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
}
