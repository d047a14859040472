//! Settlement: Sunbit's purchase completion, read under our reference; nothing is ever charged
//! by reading.

use financing_core::{
    ApplicationRef, ErrorKind, FinancingProvider, Money, Settlement, SettlementRequest,
};
use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{EPAY_PATH, KEY, REFERENCE, SECRET, client, location};

fn request() -> SettlementRequest {
    SettlementRequest {
        reference: ApplicationRef::new(REFERENCE),
        location: location(),
        amount: Money::usd(80_000),
    }
}

async fn purchase(server: &MockServer, status: u16, body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .and(query_param("transactionId", REFERENCE))
        .and(header("sunbit-key", KEY))
        .and(header("sunbit-secret", SECRET))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn settle_reports_a_completed_purchase_as_charged_with_sunbits_id() {
    // Arrange
    let server = MockServer::start().await;
    purchase(
        &server,
        200,
        json!({ "purchaseId": "pur-9", "status": "COMPLETED" }),
    )
    .await;

    // Act
    let settled = client(&server).settle(&request()).await.unwrap();

    // Assert
    assert!(
        matches!(&settled, Settlement::Charged { purchase } if purchase.as_str() == "pur-9"),
        "{settled:?}"
    );
}

#[tokio::test]
async fn settle_leaves_an_incomplete_or_missing_purchase_to_staff() {
    for (status, body) in [
        (
            200,
            json!({ "purchaseId": "pur-9", "status": "INCOMPLETE" }),
        ),
        (404, json!({})),
    ] {
        // Arrange
        let server = MockServer::start().await;
        purchase(&server, status, body).await;

        // Act
        let settled = client(&server).settle(&request()).await.unwrap();

        // Assert
        assert_eq!(settled, Settlement::Manual, "{status}");
    }
}

#[tokio::test]
async fn settle_fails_for_good_on_a_voided_purchase() {
    // Arrange
    let server = MockServer::start().await;
    purchase(
        &server,
        200,
        json!({ "purchaseId": "pur-9", "status": "VOIDED" }),
    )
    .await;

    // Act
    let err = client(&server).settle(&request()).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("voided"), "{err}");
}
