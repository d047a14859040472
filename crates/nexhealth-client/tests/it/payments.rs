//! Ledger payments and refunds: `POST /payments` with our transaction id, looked up first.

use chrono::TimeZone;
use financing_core::{ErrorKind, Money};
use nexhealth_client::{LedgerDirection, NewLedgerPayment, PatientId, PaymentWrite, TransactionId};
use serde_json::json;
use std::time::Duration;
use wiremock::ResponseTemplate;
use wiremock::matchers::{body_json, query_param};

use crate::helpers::{client, envelope, scoped, server};

fn payment(direction: LedgerDirection, cents: i64) -> NewLedgerPayment {
    NewLedgerPayment {
        patient_id: PatientId::new("115"),
        amount: Money::usd(cents),
        direction,
        transaction_id: TransactionId::new("chairside", "pi_3Ab").unwrap(),
        paid_at: Some(chrono::Utc.with_ymd_and_hms(2026, 5, 20, 21, 0, 0).unwrap()),
        notes: Some("Chairside: payment of $138.50".into()),
    }
}

fn listing(rows: serde_json::Value) -> serde_json::Value {
    let mut body = envelope(rows);
    body["page_info"] = json!({"has_next_page": false, "has_previous_page": false});
    body
}

#[tokio::test]
async fn a_payment_is_posted_negative_in_decimal_dollars_with_its_transaction_id() {
    // Arrange
    let server = server().await;
    scoped("GET", "/payments")
        .and(query_param("patient_id", "115"))
        .and(query_param("transaction_id", "chairside:pi_3Ab"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listing(json!([]))))
        .expect(1)
        .mount(&server)
        .await;
    scoped("POST", "/payments")
        .and(body_json(json!({"payment": {
            "patient_id": 115,
            "amount": -138.5,
            "currency": "USD",
            "transaction_id": "chairside:pi_3Ab",
            "paid_at": "2026-05-20T21:00:00Z",
            "notes": "Chairside: payment of $138.50",
        }})))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let written = client(&server)
        .post_payment_once(&payment(LedgerDirection::Payment, 13_850))
        .await
        .unwrap();

    // Assert
    assert_eq!(written, PaymentWrite::Requested);
}

#[tokio::test]
async fn a_refund_is_posted_positive() {
    // Arrange
    let server = server().await;
    scoped("POST", "/payments")
        .and(body_json(json!({"payment": {
            "patient_id": 115,
            "amount": 25.0,
            "currency": "USD",
            "transaction_id": "chairside:pi_3Ab",
            "paid_at": "2026-05-20T21:00:00Z",
            "notes": "Chairside: payment of $138.50",
        }})))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let done = client(&server)
        .request_payment(&payment(LedgerDirection::Refund, 2_500))
        .await;

    // Assert
    assert!(done.is_ok(), "{done:?}");
}

#[tokio::test]
async fn a_payment_already_in_the_ledger_is_not_posted_again() {
    // Arrange: the ledger holds it (negative: a payment), plus a deleted namesake and another
    // transaction the server did not filter out.
    let server = server().await;
    scoped("GET", "/payments")
        .and(query_param("transaction_id", "chairside:pi_3Ab"))
        .respond_with(ResponseTemplate::new(200).set_body_json(listing(json!([
            {"id": 1, "patient_id": 115, "transaction_id": "chairside:pi_other",
             "payment_amount": {"amount": "-5.00", "currency": "USD"}},
            {"id": 2, "patient_id": 115, "transaction_id": "chairside:pi_3Ab",
             "deleted_at": "2026-05-21T10:00:00Z",
             "payment_amount": {"amount": "-138.50", "currency": "USD"}},
            {"id": 3, "patient_id": 115, "transaction_id": "chairside:pi_3Ab",
             "payment_amount": {"amount": "-138.50", "currency": "USD"}},
        ]))))
        .mount(&server)
        .await;
    scoped("POST", "/payments")
        .respond_with(ResponseTemplate::new(202))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let written = client(&server)
        .post_payment_once(&payment(LedgerDirection::Payment, 13_850))
        .await
        .unwrap();

    // Assert
    let PaymentWrite::AlreadyInLedger(found) = written else {
        panic!("expected the existing payment, got {written:?}");
    };
    assert_eq!(found.id.as_deref(), Some("3"));
    assert_eq!(found.signed_minor, Some(-13_850));
}

#[tokio::test]
async fn a_5xx_or_timeout_on_the_payment_is_indeterminate_and_not_retried() {
    for (status, delay) in [(500, 0), (202, 2_000)] {
        // Arrange
        let server = server().await;
        scoped("POST", "/payments")
            .respond_with(ResponseTemplate::new(status).set_delay(Duration::from_millis(delay)))
            .expect(1)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .request_payment(&payment(LedgerDirection::Payment, 100))
            .await
            .unwrap_err();

        // Assert
        assert_eq!(err.kind(), ErrorKind::Indeterminate, "{status}/{delay}");
    }
}

#[tokio::test]
async fn financial_writes_not_enabled_are_permanent_and_bad_amounts_never_leave() {
    // Arrange
    let server = server().await;
    scoped("POST", "/payments")
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "code": false, "error": ["Forbidden"], "data": null
        })))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    let forbidden = client
        .request_payment(&payment(LedgerDirection::Payment, 100))
        .await
        .unwrap_err();
    let zero = client
        .request_payment(&payment(LedgerDirection::Payment, 0))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(forbidden.kind(), ErrorKind::Permanent);
    assert_eq!(zero.kind(), ErrorKind::Permanent);
}

#[test]
fn a_transaction_id_fits_fifty_characters_and_a_long_key_is_hashed_deterministically() {
    let short = TransactionId::new("chairside", "in_1QxYz").unwrap();
    assert_eq!(short.as_str(), "chairside:in_1QxYz");
    let long_key = format!("ch_{}:123456", "x".repeat(40));
    let a = TransactionId::new("chairside", &long_key).unwrap();
    let b = TransactionId::new("chairside", &long_key).unwrap();
    let other = TransactionId::new("chairside", &format!("{long_key}7")).unwrap();
    assert_eq!(a, b);
    assert_ne!(a, other);
    assert_eq!(a.as_str().len(), 50);
    assert!(a.as_str().starts_with("chairside:"));
    assert!(TransactionId::new("chairside", " ").is_err());
}
