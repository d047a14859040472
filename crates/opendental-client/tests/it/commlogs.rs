//! commlogs: the ledger note, written once per marker.

use std::time::Duration;

use chrono::NaiveDateTime;
use financing_core::ErrorKind;
use opendental_client::{
    CommMode, CommlogNum, Error, NewCommlog, PatNum, SentOrReceived, WriteOutcome,
};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AUTH, builder, client, fixture};

fn note(marker: &str) -> NewCommlog {
    NewCommlog::new(
        PatNum::new(9001),
        format!("Financing arranged: Sunbit, $650.00. {marker}"),
    )
    .comm_date_time(
        NaiveDateTime::parse_from_str("2024-03-09 15:20:00", "%Y-%m-%d %H:%M:%S").unwrap(),
    )
    .comm_type_name("Financial")
    .mode(CommMode::None)
    .sent_or_received(SentOrReceived::Neither)
}

fn expected_body(marker: &str) -> serde_json::Value {
    json!({
        "PatNum": 9001,
        "Note": format!("Financing arranged: Sunbit, $650.00. {marker}"),
        "CommDateTime": "2024-03-09 15:20:00",
        "commType": "Financial",
        "Mode_": "None",
        "SentOrReceived": "Neither",
    })
}

#[tokio::test]
async fn create_commlog_posts_the_documented_body_with_the_odfhir_header() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .and(header("Authorization", AUTH))
        .and(header("Content-Type", "application/json"))
        .and(body_json(expected_body("[chairside:wf-43]")))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("commlog_created")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let created = client(&server)
        .create_commlog(&note("[chairside:wf-43]"))
        .await
        .unwrap();

    // Assert
    let created = created.unwrap();
    assert_eq!(created.commlog_num, CommlogNum::new(15));
    assert_eq!(created.mode, CommMode::None);
    assert!(
        !format!("{created:?}").contains("Sunbit"),
        "Debug leaves out the note"
    );
}

#[tokio::test]
async fn create_commlog_accepts_an_empty_201_from_older_versions() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let created = client(&server).create_commlog(&note("[m]")).await.unwrap();

    // Assert
    assert_eq!(created, None);
}

#[tokio::test]
async fn list_commlogs_decodes_every_entry_for_the_patient() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/commlogs"))
        .and(header("Authorization", AUTH))
        .and(query_param("PatNum", "9001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("commlogs")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let logs = client(&server)
        .list_commlogs(PatNum::new(9001))
        .await
        .unwrap();

    // Assert
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].mode, CommMode::Phone);
    assert_eq!(logs[1].comm_type_name, "Financial");
    assert_eq!(
        logs[1].comm_type.map(|d| d.get()),
        Some(241),
        "\"241\" string key"
    );
    assert_eq!(logs[1].sent_or_received, SentOrReceived::Neither);
}

#[tokio::test]
async fn write_commlog_once_finds_an_existing_note_and_posts_nothing() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/commlogs"))
        .and(query_param("PatNum", "9001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("commlogs")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .write_commlog_once(&note("[chairside:wf-42]"), "[chairside:wf-42]")
        .await
        .unwrap();

    // Assert
    assert!(!outcome.was_created());
    assert_eq!(
        outcome.row().map(|c| c.commlog_num),
        Some(CommlogNum::new(14))
    );
}

#[tokio::test]
async fn write_commlog_once_writes_when_the_marker_is_absent() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/commlogs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("commlogs")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .and(body_json(expected_body("[chairside:wf-43]")))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("commlog_created")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .write_commlog_once(&note("[chairside:wf-43]"), "[chairside:wf-43]")
        .await
        .unwrap();

    // Assert
    assert!(
        matches!(outcome, WriteOutcome::Created(Some(ref c)) if c.commlog_num == CommlogNum::new(15))
    );
}

#[tokio::test]
async fn a_500_on_create_is_indeterminate_and_never_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .respond_with(ResponseTemplate::new(500).set_body_string("Error for Testa Fixture"))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .create_commlog(&note("[m]"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
    assert_eq!(err.to_string(), "create commlog: HTTP 500");
}

#[tokio::test]
async fn a_timeout_on_create_is_indeterminate_and_never_retried() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(500)))
        .expect(1)
        .mount(&server)
        .await;
    let client = builder(&server)
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();

    // Act
    let err = client.create_commlog(&note("[m]")).await.unwrap_err();

    // Assert
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn a_429_on_create_is_retried_because_nothing_was_written() {
    // Arrange: one throttle, then success.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/commlogs"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("commlog_created")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let created = client(&server).create_commlog(&note("[m]")).await.unwrap();

    // Assert
    assert!(created.is_some());
}

#[tokio::test]
async fn write_commlog_once_refuses_a_note_without_its_marker_before_any_request() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .write_commlog_once(&note("[chairside:wf-1]"), "[chairside:wf-2]")
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(err, Error::InvalidRequest { .. }));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}
