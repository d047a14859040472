//! Cardholder lookup.

use financing_core::{Decision, ErrorKind, FinancingProvider, LenderReference, Money};
use serde_json::json;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    LOOKUP_PATH, MERCHANT, PARTNER, REFERENCE, applicant, builder, client, fast_backoff,
    mount_token, request,
};

#[tokio::test]
async fn lookup_sends_name_phone_and_zip_with_the_partner_ids_and_finds_a_cardholder() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(LOOKUP_PATH))
        .and(header("authorization", "Bearer tok-1"))
        .and(body_json(json!({
            "partnerCode": PARTNER,
            "partnerTransactionID": REFERENCE,
            "merchantNumber": MERCHANT,
            "lookupDetails": {
                "firstName": "Marisol",
                "lastName": "Testcase",
                "phoneNumber": "+15555550100",
                "zipCode": "75001",
            },
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "AccountFound",
            "availableCredit": "2500.00",
            "lookupDetails": { "accountToken": "acct-tok-1" },
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let found = client(&server)
        .lookup_cardholder(&request(None, Some(applicant())))
        .await
        .unwrap();

    // Assert
    assert_eq!(
        found,
        Some(Decision::Cardholder {
            available_credit: Money::usd(250_000),
            lender_reference: Some(LenderReference::new("acct-tok-1")),
        })
    );
}

#[tokio::test]
async fn lookup_returns_none_when_no_account_is_found() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(LOOKUP_PATH))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "status": "AccountNotFoundQS" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let found = client(&server)
        .lookup_cardholder(&request(None, Some(applicant())))
        .await
        .unwrap();

    // Assert
    assert_eq!(found, None);
}

#[tokio::test]
async fn lookup_without_a_usable_identity_sends_nothing() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let c = client(&server);
    let mut no_phone_no_zip = applicant();
    no_phone_no_zip.mobile_phone = None;
    no_phone_no_zip.postal_code = Some("  ".into());

    // Act
    let without_lookup = c.lookup_cardholder(&request(Some(applicant()), None)).await;
    let without_contact = c
        .lookup_cardholder(&request(None, Some(no_phone_no_zip)))
        .await;

    // Assert
    assert_eq!(without_lookup.unwrap(), None);
    assert_eq!(without_contact.unwrap(), None);
}

#[tokio::test]
async fn lookup_sends_only_what_it_has_name_and_zip() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    let mut who = applicant();
    who.mobile_phone = None;
    Mock::given(method("POST"))
        .and(path(LOOKUP_PATH))
        .and(body_json(json!({
            "partnerCode": PARTNER,
            "partnerTransactionID": REFERENCE,
            "merchantNumber": MERCHANT,
            "lookupDetails": { "firstName": "Marisol", "lastName": "Testcase", "zipCode": "75001" },
        })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "status": "AccountNotFound" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let found = client(&server)
        .lookup_cardholder(&request(None, Some(who)))
        .await;

    // Assert
    assert_eq!(found.unwrap(), None);
}

#[tokio::test]
async fn lookup_has_no_side_effect_so_a_5xx_is_retried() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(LOOKUP_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(LOOKUP_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "status": "AccountFound",
            "availableCredit": 900,
        })))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let found = c
        .lookup_cardholder(&request(None, Some(applicant())))
        .await
        .unwrap();

    // Assert
    assert!(matches!(
        found,
        Some(Decision::Cardholder { available_credit, lender_reference: None })
            if available_credit == Money::usd(90_000)
    ));
}

#[tokio::test]
async fn lookup_failing_on_every_attempt_is_transient() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("POST"))
        .and(path(LOOKUP_PATH))
        .respond_with(ResponseTemplate::new(502))
        .expect(2)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(2)).build().unwrap();

    // Act
    let err = c
        .lookup_cardholder(&request(None, Some(applicant())))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
}
