//! Purchase status: request shape, the status table, error classes, retries, timeouts.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use financing_core::{
    Decision, ErrorKind, FinancingProvider, LenderId, LenderReference, Money, Offer,
};
use serde_json::{Value, json};
use sunbit_client::{Operation, PurchaseId, PurchaseLookup};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    EPAY_PATH, KEY, REFERENCE, SECRET, builder, client, fast_backoff, handle, handle_by_reference,
};

const POLL: Option<Duration> = None;

fn offer(cents: i64, purchase: &str, expires: Option<chrono::DateTime<Utc>>) -> Offer {
    Offer {
        lender: LenderId::new("sunbit"),
        amount: Money::usd(cents),
        promotion: None,
        term_months: None,
        apr_bps: None,
        expires_at: expires,
        lender_reference: Some(LenderReference::new(purchase)),
    }
}

#[tokio::test]
async fn status_before_the_purchase_id_is_known_asks_by_transaction_id_with_key_and_secret() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .and(query_param("transactionId", REFERENCE))
        .and(query_param_is_missing("purchaseId"))
        .and(header("sunbit-key", KEY))
        .and(header("sunbit-secret", SECRET))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "purchaseId": "pur-1",
            "status": "INCOMPLETE",
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let decision = client(&server)
        .application_status(&handle_by_reference())
        .await;

    // Assert
    assert_eq!(
        decision.unwrap(),
        Decision::Pending {
            poll_after: POLL,
            raw_status: "INCOMPLETE".into()
        }
    );
}

#[tokio::test]
async fn status_once_the_purchase_id_is_known_asks_by_purchase_id() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .and(query_param("purchaseId", "pur-1"))
        .and(query_param_is_missing("transactionId"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "purchaseId": "pur-1", "status": "VOIDED" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let decision = client(&server).application_status(&handle("pur-1")).await;

    // Assert
    assert_eq!(
        decision.unwrap(),
        Decision::Expired {
            raw_status: "VOIDED".into()
        }
    );
}

#[tokio::test]
async fn no_purchase_yet_for_our_reference_is_pending() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let decision = client(&server)
        .application_status(&handle_by_reference())
        .await;

    // Assert
    assert_eq!(
        decision.unwrap(),
        Decision::Pending {
            poll_after: POLL,
            raw_status: sunbit_client::NO_PURCHASE_YET.into()
        }
    );
}

#[tokio::test]
async fn a_404_for_a_known_purchase_id_is_permanent() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .application_status(&handle("pur-404"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

/// Every status, plus the amount variants, against the $1,800.00 asked for.
fn status_table() -> Vec<(Value, Decision, &'static str)> {
    let end_of = |y, m, d| Some(Utc.with_ymd_and_hms(y, m, d, 23, 59, 59).unwrap());
    vec![
        (
            json!({ "status": "COMPLETED", "approvalAmount": "1800.0",
                    "purchaseAmountEntered": "1800.0", "validUntil": "2099-09-01" }),
            Decision::Approved {
                offer: offer(180_000, "case", end_of(2099, 9, 1)),
                raw_status: "COMPLETED".into(),
            },
            "approved for the amount",
        ),
        (
            json!({ "status": "COMPLETED", "approvalAmount": "1000.0",
                    "purchaseAmountEntered": "1000.0" }),
            Decision::PartiallyApproved {
                offer: offer(100_000, "case", None),
                requested: Money::usd(180_000),
                raw_status: "COMPLETED".into(),
            },
            "the patient typed the lower approval: still a counteroffer against what we asked",
        ),
        (
            json!({ "status": "COMPLETED", "approvalAmount": "5000.0", "purchaseAmount": "1200.0",
                    "purchaseAmountEntered": "1200.0" }),
            Decision::PartiallyApproved {
                offer: offer(120_000, "case", None),
                requested: Money::usd(180_000),
                raw_status: "COMPLETED".into(),
            },
            "a purchase below the ask finances only the purchase, whatever the credit line",
        ),
        (
            json!({ "status": "COMPLETED", "approvalAmount": 1000 }),
            Decision::PartiallyApproved {
                offer: offer(100_000, "case", None),
                requested: Money::usd(180_000),
                raw_status: "COMPLETED".into(),
            },
            "no entered amount: compare with what we asked",
        ),
        (
            json!({ "status": "COMPLETED", "purchaseAmount": 1800.0 }),
            Decision::Approved {
                offer: offer(180_000, "case", None),
                raw_status: "COMPLETED".into(),
            },
            "a completed purchase for the amount",
        ),
        (
            json!({ "status": "COMPLETED" }),
            Decision::Unknown("COMPLETED".into()),
            "no amount: never guess",
        ),
        (
            json!({ "status": "INCOMPLETE", "approvalAmount": "2500.0", "validUntil": "2000-01-01" }),
            Decision::Expired {
                raw_status: "INCOMPLETE".into(),
            },
            "the offer lapsed",
        ),
        (
            json!({ "status": "INCOMPLETE", "approvalAmount": "2500.0", "validUntil": "2099-01-01" }),
            Decision::Prequalified {
                offer: offer(250_000, "case", end_of(2099, 1, 1)),
                requested: Money::usd(180_000),
                raw_status: "INCOMPLETE".into(),
            },
            "prequalified, not checked out yet: not financing",
        ),
        (
            json!({ "status": "INCOMPLETE" }),
            Decision::Pending {
                poll_after: POLL,
                raw_status: "INCOMPLETE".into(),
            },
            "the patient has not finished",
        ),
        (
            json!({ "status": "VOIDED" }),
            Decision::Expired {
                raw_status: "VOIDED".into(),
            },
            "voided: no credit decision",
        ),
        (
            json!({ "status": "ON_HOLD" }),
            Decision::Unknown("ON_HOLD".into()),
            "unknown statuses are kept raw",
        ),
    ]
}

#[tokio::test]
async fn every_purchase_status_maps_to_its_decision() {
    // Arrange
    let server = MockServer::start().await;
    let table = status_table();
    for (i, (body, _, _)) in table.iter().enumerate() {
        let mut body = body.clone();
        body["purchaseId"] = json!("case");
        Mock::given(method("GET"))
            .and(path(EPAY_PATH))
            .and(query_param("purchaseId", format!("case-{i}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .expect(1)
            .mount(&server)
            .await;
    }
    let c = client(&server);

    for (i, (_, expected, why)) in table.into_iter().enumerate() {
        // Act
        let decision = c.application_status(&handle(&format!("case-{i}"))).await;

        // Assert
        assert_eq!(decision.unwrap(), expected, "case {i}: {why}");
    }
}

#[tokio::test]
async fn purchase_read_errors_map_to_their_kinds() {
    let rows: [(u16, ErrorKind, &str); 8] = [
        (400, ErrorKind::Permanent, "bad input"),
        (401, ErrorKind::Permanent, "bad key"),
        (403, ErrorKind::Permanent, "bad credentials"),
        (422, ErrorKind::Permanent, "unprocessable"),
        (429, ErrorKind::TRANSIENT, "rate limited"),
        (500, ErrorKind::TRANSIENT, "a read is safe to repeat"),
        (502, ErrorKind::TRANSIENT, "a read is safe to repeat"),
        (503, ErrorKind::TRANSIENT, "unavailable"),
    ];
    for (status, expected, why) in rows {
        // Arrange
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(EPAY_PATH))
            .respond_with(ResponseTemplate::new(status))
            .expect(1)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .get_purchase(&PurchaseLookup::Id(PurchaseId::new("pur-1")))
            .await
            .unwrap_err();

        // Assert
        assert_eq!(err.kind(), expected, "{status}: {why}");
        assert_eq!(err.operation(), Some(Operation::GetPurchase));
    }
}

#[tokio::test]
async fn a_purchase_read_is_retried_after_a_5xx() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "purchaseId": "pur-1", "status": "VOIDED" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let decision = c.application_status(&handle("pur-1")).await;

    // Assert
    assert_eq!(decision.unwrap().label(), "expired");
}

#[tokio::test]
async fn a_purchase_read_timeout_is_transient() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": "INCOMPLETE" }))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .application_status(&handle("pur-1"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
}

#[tokio::test]
async fn a_purchase_of_an_unexpected_shape_is_a_permanent_decode_error() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "approvalAmount": "x" })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_purchase(&PurchaseLookup::Id(PurchaseId::new("pur-1")))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(matches!(err, sunbit_client::Error::Decode { .. }));
}

#[tokio::test]
async fn a_malformed_purchase_field_is_named_by_its_path_and_its_value_is_never_shown() {
    // Arrange
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(EPAY_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": "COMPLETED", "approvalAmount": "Zebulon-991" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_purchase(&PurchaseLookup::Id(PurchaseId::new("pur-1")))
        .await
        .unwrap_err();

    // Assert
    let shown = err.to_string();
    assert!(
        shown.starts_with("get purchase: unexpected response shape"),
        "{shown}"
    );
    assert!(shown.contains("`approvalAmount`"), "{shown}");
    assert!(!shown.contains("Zebulon"), "{shown}");
    assert!(!format!("{err:?}").contains("Zebulon"));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[test]
fn a_completed_purchase_carries_the_term_and_apr_the_patient_chose() {
    // Arrange
    let purchase: sunbit_client::Purchase = serde_json::from_value(json!({
        "purchaseId": "p-1", "status": "COMPLETED", "purchaseAmount": "1800.00",
        "term": 24, "apr": "9.99"
    }))
    .unwrap();
    // Act
    let decision =
        sunbit_client::purchase_decision(&purchase, Money::usd(180_000), Utc::now(), POLL);
    // Assert
    let Decision::Approved { offer, .. } = decision else {
        panic!("{decision:?}");
    };
    assert_eq!((offer.term_months, offer.apr_bps), (Some(24), Some(999)));
    // A prequalification states no plan yet.
    let prequal: sunbit_client::Purchase = serde_json::from_value(json!({
        "purchaseId": "p-1", "status": "INCOMPLETE", "approvalAmount": "1800.00",
        "term": 24, "apr": "9.99"
    }))
    .unwrap();
    let Decision::Prequalified { offer, .. } =
        sunbit_client::purchase_decision(&prequal, Money::usd(180_000), Utc::now(), POLL)
    else {
        panic!("not prequalified");
    };
    assert_eq!((offer.term_months, offer.apr_bps), (None, None));
}
