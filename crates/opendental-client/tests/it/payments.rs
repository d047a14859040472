//! payments: created once per marker.

use chrono::NaiveDate;
use financing_core::{Currency, ErrorKind, Money};
use opendental_client::{Error, NewPayment, PatNum, PayNum, WriteOutcome};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{AUTH, client, fixture};

fn deposit(marker: &str) -> NewPayment {
    NewPayment::new(PatNum::new(9001), Money::usd(12_999))
        .pay_date(NaiveDate::from_ymd_opt(2024, 3, 9).unwrap())
        .pay_note(format!("Deposit via Stripe pi_test_456 {marker}"))
}

#[tokio::test]
async fn create_payment_posts_the_amount_as_a_decimal_string() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/payments"))
        .and(header("Authorization", AUTH))
        .and(body_json(json!({
            "PayAmt": "129.99",
            "PatNum": 9001,
            "PayDate": "2024-03-09",
            "PayNote": "Deposit via Stripe pi_test_456 [chairside:wf-43]",
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("payment_created")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let created = client(&server)
        .create_payment(&deposit("[chairside:wf-43]"))
        .await
        .unwrap()
        .unwrap();

    // Assert
    assert_eq!(created.pay_num, PayNum::new(56990));
    assert_eq!(created.pay_amt, Money::usd(12_999));
    assert_eq!(created.clinic_num, None);
}

#[tokio::test]
async fn list_payments_decodes_whole_dollar_strings() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/payments"))
        .and(query_param("PatNum", "9001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("payments")))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let payments = client(&server)
        .list_payments(PatNum::new(9001))
        .await
        .unwrap();

    // Assert
    assert_eq!(payments[0].pay_amt, Money::usd(33_900), "\"339\"");
    assert_eq!(payments[1].pay_amt, Money::usd(15_000));
    assert_eq!(payments[1].payment_source, "API");
    assert!(!format!("{:?}", payments[1]).contains("pi_test"));
}

#[tokio::test]
async fn create_payment_once_does_not_pay_twice() {
    // Arrange: the marker is already on a payment.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/payments"))
        .and(query_param("PatNum", "9001"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("payments")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/payments"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;

    // Act
    let outcome = client(&server)
        .create_payment_once(&deposit("[chairside:wf-42]"), "[chairside:wf-42]")
        .await
        .unwrap();

    // Assert
    assert!(
        matches!(outcome, WriteOutcome::AlreadyWritten(ref p) if p.pay_num == PayNum::new(56952))
    );
}

#[tokio::test]
async fn create_payment_once_reconciles_after_an_indeterminate_failure() {
    // Arrange: the first POST fails with a 502 after the office recorded the payment; the retry's
    // lookup finds it.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/payments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/v1/payments"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/payments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([fixture("payment_created")])))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let payment = deposit("[chairside:wf-43]");

    // Act
    let first = client
        .create_payment_once(&payment, "[chairside:wf-43]")
        .await
        .unwrap_err();
    let second = client
        .create_payment_once(&payment, "[chairside:wf-43]")
        .await
        .unwrap();

    // Assert
    assert_eq!(first.kind(), ErrorKind::Indeterminate);
    assert!(
        matches!(second, WriteOutcome::AlreadyWritten(ref p) if p.pay_num == PayNum::new(56990))
    );
}

#[tokio::test]
async fn create_payment_refuses_zero_and_foreign_currency_amounts_without_a_request() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&server)
        .await;
    let client = client(&server);

    // Act
    let zero = client
        .create_payment(&NewPayment::new(PatNum::new(9001), Money::usd(0)))
        .await
        .unwrap_err();
    let cad = client
        .create_payment(&NewPayment::new(
            PatNum::new(9001),
            Money::new(100, Currency::Cad),
        ))
        .await
        .unwrap_err();

    // Assert
    assert!(matches!(zero, Error::InvalidRequest { .. }));
    assert!(matches!(cad, Error::InvalidRequest { .. }));
    assert_eq!(cad.kind(), ErrorKind::Permanent);
}
