//! Cancelling: read first, void only a completed purchase.

use financing_core::{ErrorKind, FinancingProvider};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    EPAY_PATH, KEY, REFERENCE, SECRET, SUNBIT_LOCATION, builder, cancel_path, client, fast_backoff,
    handle, handle_by_reference,
};

async fn mount_purchase(server: &MockServer, query: (&str, &str), body: serde_json::Value) {
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .and(query_param(query.0, query.1))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(server)
        .await;
}

async fn mount_void(server: &MockServer, purchase: &str, expected: u64) {
    Mock::given(method("PUT"))
        .and(path(cancel_path(purchase)))
        .and(header("sunbit-key", KEY))
        .and(header("sunbit-secret", SECRET))
        .and(body_json(
            json!({ "transactionId": REFERENCE, "location": SUNBIT_LOCATION }),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "purchaseId": purchase, "status": "VOIDED" })),
        )
        .expect(expected)
        .mount(server)
        .await;
}

#[tokio::test]
async fn cancel_reads_the_purchase_then_voids_a_completed_one() {
    // Arrange
    let server = MockServer::start().await;
    mount_purchase(
        &server,
        ("purchaseId", "pur-1"),
        json!({ "purchaseId": "pur-1", "status": "COMPLETED", "approvalAmount": "1800.0" }),
    )
    .await;
    mount_void(&server, "pur-1", 1).await;

    // Act
    let cancelled = client(&server).cancel_application(&handle("pur-1")).await;

    // Assert
    assert!(cancelled.is_ok());
}

#[tokio::test]
async fn cancel_by_reference_voids_the_purchase_id_it_reads() {
    // Arrange
    let server = MockServer::start().await;
    mount_purchase(
        &server,
        ("transactionId", REFERENCE),
        json!({ "purchaseId": "pur-7", "status": "COMPLETED" }),
    )
    .await;
    mount_void(&server, "pur-7", 1).await;

    // Act
    let cancelled = client(&server)
        .cancel_application(&handle_by_reference())
        .await;

    // Assert
    assert!(cancelled.is_ok());
}

#[tokio::test]
async fn cancel_leaves_incomplete_and_voided_purchases_alone() {
    for status in ["INCOMPLETE", "VOIDED"] {
        // Arrange
        let server = MockServer::start().await;
        mount_purchase(
            &server,
            ("purchaseId", "pur-1"),
            json!({ "purchaseId": "pur-1", "status": status }),
        )
        .await;
        mount_void(&server, "pur-1", 0).await;

        // Act
        let cancelled = client(&server).cancel_application(&handle("pur-1")).await;

        // Assert
        assert!(cancelled.is_ok(), "{status}");
    }
}

#[tokio::test]
async fn cancel_with_no_purchase_yet_does_nothing() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    mount_void(&server, REFERENCE, 0).await;

    // Act
    let cancelled = client(&server)
        .cancel_application(&handle_by_reference())
        .await;

    // Assert
    assert!(cancelled.is_ok());
}

#[tokio::test]
async fn a_5xx_voiding_is_indeterminate_and_never_blind_retried() {
    // Arrange
    let server = MockServer::start().await;
    mount_purchase(
        &server,
        ("purchaseId", "pur-1"),
        json!({ "purchaseId": "pur-1", "status": "COMPLETED" }),
    )
    .await;
    Mock::given(method("PUT"))
        .and(path(cancel_path("pur-1")))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let err = c.cancel_application(&handle("pur-1")).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
}
