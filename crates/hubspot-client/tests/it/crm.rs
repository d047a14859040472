use std::time::Duration;

use chrono::{DateTime, Utc};
use connector_transport::RetryPolicy;
use financing_core::{ErrorKind, Money};
use hubspot_client::{Client, ContactId, ContactInput, DealId, DealInput, StageId, TaskInput};
use secrecy::SecretString;
use serde_json::json;
use url::Url;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "pat-test-0000-SECRET";

fn client(server: &MockServer) -> Client {
    Client::builder(
        Url::parse(&format!("{}/", server.uri())).unwrap(),
        SecretString::from(TOKEN.to_owned()),
    )
    .retry(
        RetryPolicy::new()
            .min_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(20))
            .max_attempts(2),
    )
    .timeout(Duration::from_millis(500))
    .build()
    .unwrap()
}

fn contact() -> ContactInput {
    ContactInput {
        email: "testa.patient1@example.test".into(),
        first_name: "Testa".into(),
        last_name: "Patient1".into(),
        phone: Some("+15555550101".into()),
    }
}

fn deal(amount: Option<Money>) -> DealInput {
    DealInput {
        key: "wf_0123456789abcdef01234567".into(),
        name: "Chairside plan tx-1".into(),
        stage: StageId::new("financed-stage"),
        pipeline: Some("default".into()),
        amount,
    }
}

fn batch(id: &str) -> serde_json::Value {
    json!({"status": "COMPLETE", "results": [{"id": id, "new": true, "properties": {}}],
           "startedAt": "2026-06-02T15:00:00Z", "completedAt": "2026-06-02T15:00:01Z"})
}

#[tokio::test]
async fn upsert_contact_sends_the_email_as_the_unique_key_with_the_bearer_token() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/contacts/batch/upsert"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(body_json(json!({"inputs": [{
            "id": "testa.patient1@example.test",
            "idProperty": "email",
            "properties": {
                "email": "testa.patient1@example.test",
                "firstname": "Testa",
                "lastname": "Patient1",
                "phone": "+15555550101"
            }
        }]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch("501")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let id = client(&server).upsert_contact(&contact()).await.unwrap();

    // Assert
    assert_eq!(id, ContactId::new("501"));
}

#[tokio::test]
async fn upsert_deal_sends_the_stage_and_no_amount_unless_given() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/deals/batch/upsert"))
        .and(body_json(json!({"inputs": [{
            "id": "wf_0123456789abcdef01234567",
            "idProperty": "chairside_workflow_id",
            "properties": {
                "chairside_workflow_id": "wf_0123456789abcdef01234567",
                "dealname": "Chairside plan tx-1",
                "dealstage": "financed-stage",
                "pipeline": "default"
            }
        }]})))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch("901")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let id = client(&server).upsert_deal(&deal(None)).await.unwrap();

    // Assert
    assert_eq!(id, DealId::new("901"));
}

#[tokio::test]
async fn upsert_deal_with_an_amount_sends_it_as_a_decimal() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/deals/batch/upsert"))
        .respond_with(ResponseTemplate::new(200).set_body_json(batch("901")))
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .upsert_deal(&deal(Some(Money::usd(80_050))))
        .await
        .unwrap();
    let received = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["inputs"][0]["properties"]["amount"], "800.50");
}

#[tokio::test]
async fn associate_puts_the_default_deal_to_contact_association() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path(
            "/crm/v4/objects/deals/901/associations/default/contacts/501",
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETE", "results": []})),
        )
        .expect(1)
        .mount(&server)
        .await;
    client(&server)
        .associate_deal_with_contact(&DealId::new("901"), &ContactId::new("501"))
        .await
        .unwrap();
}

fn task() -> TaskInput {
    TaskInput {
        subject: "Follow up: financing declined [chairside evt_0123]".into(),
        body: "Call the patient about other ways to pay.".into(),
        due: "2026-06-03T15:00:00Z".parse::<DateTime<Utc>>().unwrap(),
        contact: ContactId::new("501"),
    }
}

#[tokio::test]
async fn ensure_task_creates_a_task_on_the_contact_when_the_search_finds_none() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks/search"))
        .and(body_json(json!({"filterGroups": [{"filters": [{
            "propertyName": "hs_task_subject", "operator": "EQ",
            "value": "Follow up: financing declined [chairside evt_0123]"}]}], "limit": 1})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 0, "results": []})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks"))
        .and(body_json(json!({
            "properties": {
                "hs_timestamp": "1780498800000",
                "hs_task_subject": "Follow up: financing declined [chairside evt_0123]",
                "hs_task_body": "Call the patient about other ways to pay.",
                "hs_task_status": "NOT_STARTED",
                "hs_task_type": "CALL"
            },
            "associations": [{"to": {"id": "501"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}]
        })))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({"id": "7001", "properties": {}})),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let id = client(&server).ensure_task(&task()).await.unwrap();

    // Assert
    assert_eq!(id.as_str(), "7001");
}

#[tokio::test]
async fn ensure_task_creates_nothing_when_the_search_finds_the_task_a_lost_response_made() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks/search"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"total": 1, "results": [{"id": "7001"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": "7002"})))
        .expect(0)
        .mount(&server)
        .await;
    let id = client(&server).ensure_task(&task()).await.unwrap();
    assert_eq!(id.as_str(), "7001");
}

#[tokio::test]
async fn failures_map_to_their_kind_and_never_quote_the_body() {
    for (status, expected, calls) in [
        (401, ErrorKind::Permanent, 1),
        (400, ErrorKind::Permanent, 1),
        (500, ErrorKind::TRANSIENT, 2),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status).set_body_json(
                json!({"message": "Property values were not valid: testa.patient1@example.test"}),
            ))
            .expect(calls)
            .mount(&server)
            .await;
        let err = client(&server)
            .upsert_contact(&contact())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), expected, "{status}");
        assert_eq!(err.status(), Some(status));
        assert!(!err.to_string().contains("example.test"), "{err}");
    }
}

#[tokio::test]
async fn a_429_carries_its_retry_after_and_a_create_is_never_retried_blind() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/deals/batch/upsert"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"total": 0, "results": []})))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/crm/v3/objects/tasks"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server);
    let err = c.upsert_deal(&deal(None)).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(30))
        }
    );
    let err = c.ensure_task(&task()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_transient_for_an_upsert() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(batch("501"))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .upsert_contact(&contact())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
}

#[tokio::test]
async fn a_success_without_results_is_a_decode_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"results": []})))
        .mount(&server)
        .await;
    let err = client(&server)
        .upsert_contact(&contact())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
}
