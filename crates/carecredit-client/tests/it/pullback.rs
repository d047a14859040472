//! Pullback: request shape, the full status table, error classes, retries, timeouts.

use std::time::Duration;

use carecredit_client::{Operation, PullbackStatus, pullback_decision};
use financing_core::{
    Decision, ErrorKind, FinancingProvider, LenderId, LenderReference, Money, Offer,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{
    MERCHANT, PARTNER, REFERENCE, builder, client, fast_backoff, handle, mount_token, pullback_path,
};

const POLL: Option<Duration> = None;

fn offer(cents: i64, reference: &str) -> Offer {
    Offer {
        lender: LenderId::new("carecredit"),
        amount: Money::usd(cents),
        promotion: None,
        term_months: None,
        apr_bps: None,
        expires_at: None,
        lender_reference: Some(LenderReference::new(reference)),
    }
}

#[tokio::test]
async fn pullback_sends_the_session_id_and_the_partner_ids() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .and(header("authorization", "Bearer tok-1"))
        .and(query_param("partnerCode", PARTNER))
        .and(query_param("partnerTransactionID", REFERENCE))
        .and(query_param("merchantNumber", MERCHANT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sessionId": "sess-1",
            "status": "PreApproved",
            "quickScreenTransactionDetails": { "preApproved": true, "preApprovalAmount": "2000.00" },
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let decision = client(&server).application_status(&handle("sess-1")).await;

    // Assert
    assert_eq!(
        decision.unwrap(),
        Decision::Prequalified {
            offer: offer(200_000, "sess-1"),
            requested: Money::usd(180_000),
            raw_status: "PreApproved".into(),
        }
    );
}

/// Every documented status, plus the amount variants, against the $1,800.00 asked for.
fn status_table() -> Vec<(Value, Decision, &'static str)> {
    let requested = Money::usd(180_000);
    let pending = |raw: &str| Decision::Pending {
        poll_after: POLL,
        raw_status: raw.into(),
    };
    let expired = |raw: &str| Decision::Expired {
        raw_status: raw.into(),
    };
    let declined = |raw: &str| Decision::Declined {
        reason: None,
        raw_status: raw.into(),
    };
    vec![
        (
            json!({ "status": "Created" }),
            pending("Created"),
            "patient not finished",
        ),
        (
            json!({ "status": "Pending" }),
            Decision::UnderReview {
                poll_after: POLL,
                raw_status: "Pending".into(),
            },
            "submitted, under review",
        ),
        (json!({ "status": "Expired" }), expired("Expired"), "lapsed"),
        (
            json!({ "status": "ExpiredBatch" }),
            expired("ExpiredBatch"),
            "batch lapsed",
        ),
        (
            json!({ "status": "Cancelled" }),
            expired("Cancelled"),
            "withdrawn, no decline",
        ),
        (
            json!({ "status": "Completed",
                    "applicationDetails": { "applicationId": "app-9", "creditLine": "2000.00" } }),
            Decision::Approved {
                offer: offer(200_000, "app-9"),
                raw_status: "Completed".into(),
            },
            "credit line covers the request",
        ),
        (
            json!({ "status": "Completed",
                    "applicationDetails": { "applicationId": "app-9", "creditLine": 1000 } }),
            Decision::PartiallyApproved {
                offer: offer(100_000, "app-9"),
                requested,
                raw_status: "Completed".into(),
            },
            "credit line below the request is a counteroffer",
        ),
        (
            json!({ "status": "Completed",
                    "transactionDetails": { "transactionID": "t-1", "transactionAmount": "1800.00" } }),
            Decision::Approved {
                offer: offer(180_000, "sess-x"),
                raw_status: "Completed".into(),
            },
            "a purchase for the full amount",
        ),
        (
            json!({ "status": "Completed" }),
            Decision::Unknown("Completed".into()),
            "no amount: never guess",
        ),
        (
            json!({ "status": "PreApproved",
                    "quickScreenTransactionDetails": { "preApprovalAmount": "1500.00" } }),
            Decision::Prequalified {
                offer: offer(150_000, "sess-x"),
                requested,
                raw_status: "PreApproved".into(),
            },
            "a QuickScreen pre-approval is not financing, whatever its amount",
        ),
        (
            json!({ "status": "Completed",
                    "transactionDetails": { "transactionID": "t-2", "transactionAmount": "1200.00" } }),
            Decision::PartiallyApproved {
                offer: offer(120_000, "sess-x"),
                requested,
                raw_status: "Completed".into(),
            },
            "a purchase below the amount asked is a counteroffer, its gap still owed",
        ),
        (
            json!({ "status": "PreApproved" }),
            Decision::Unknown("PreApproved".into()),
            "no amount: never guess",
        ),
        (
            json!({ "status": "Declined" }),
            declined("Declined"),
            "not pre-approved",
        ),
        (
            json!({ "status": "AccountNotFoundQS" }),
            declined("AccountNotFoundQS"),
            "not prequalified on the soft pull",
        ),
        (
            json!({ "status": "AccountFound", "availableCredit": "3000.00",
                    "lookupDetails": { "accountToken": "acct-1" } }),
            Decision::Cardholder {
                available_credit: Money::usd(300_000),
                lender_reference: Some(LenderReference::new("acct-1")),
            },
            "existing cardholder",
        ),
        (
            json!({ "status": "CallForAuth", "partnerTransactionID": "wf_1-carecredit" }),
            Decision::NeedsStaff {
                instruction: "CareCredit needs an authorization call: call CareCredit Provider Services at 800-859-9975, quote session sess-x (partner transaction wf_1-carecredit), then press Retry to read the decision".into(),
                raw_status: "CallForAuth".into(),
            },
            "staff must call, with the number and the reference to quote",
        ),
        (
            json!({ "status": "DupQS" }),
            Decision::NeedsStaff {
                instruction: "CareCredit reports a duplicate QuickScreen for this patient: find the earlier application in the CareCredit Provider Center or call Provider Services at 800-859-9975, quote session sess-x, then press Retry or mark the task handled".into(),
                raw_status: "DupQS".into(),
            },
            "staff must look",
        ),
        (
            json!({ "status": "BatchError" }),
            Decision::NeedsStaff {
                instruction: "CareCredit reports a batch error: check the batch in the CareCredit Provider Center or call Provider Services at 800-859-9975, quote session sess-x, then press Retry".into(),
                raw_status: "BatchError".into(),
            },
            "staff must look",
        ),
        (
            json!({ "status": "BrandNewStatus" }),
            Decision::Unknown("BrandNewStatus".into()),
            "unknown statuses are kept raw",
        ),
    ]
}

#[tokio::test]
async fn every_pullback_status_maps_to_its_decision() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    let table = status_table();
    for (i, (body, _, _)) in table.iter().enumerate() {
        let mut body = body.clone();
        body["sessionId"] = json!("sess-x");
        Mock::given(method("GET"))
            .and(path(pullback_path(&format!("case-{i}"))))
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

#[test]
fn pullback_decision_keeps_the_raw_status_for_unknown_values() {
    let pullback: carecredit_client::Pullback =
        serde_json::from_value(json!({ "sessionId": "s", "status": "Frobnicated" })).unwrap();
    assert_eq!(
        pullback.status,
        PullbackStatus::Unknown("Frobnicated".into())
    );
    assert_eq!(
        pullback_decision(&pullback, Money::usd(1), None),
        Decision::Unknown("Frobnicated".into())
    );
}

#[tokio::test]
async fn pullback_errors_map_to_their_kinds() {
    let rows: [(u16, Option<&str>, ErrorKind, &str); 8] = [
        (400, None, ErrorKind::Permanent, "invalid input"),
        (404, None, ErrorKind::Permanent, "unknown session"),
        (422, None, ErrorKind::Permanent, "unprocessable"),
        (
            429,
            Some("3"),
            ErrorKind::Transient {
                retry_after: Some(Duration::from_secs(3)),
            },
            "rate limited, honour Retry-After",
        ),
        (429, None, ErrorKind::TRANSIENT, "rate limited"),
        (500, None, ErrorKind::TRANSIENT, "a read is safe to repeat"),
        (502, None, ErrorKind::TRANSIENT, "a read is safe to repeat"),
        (503, None, ErrorKind::TRANSIENT, "unavailable"),
    ];
    for (status, retry_after, expected, why) in rows {
        // Arrange
        let server = MockServer::start().await;
        mount_token(&server, 1).await;
        let mut response = ResponseTemplate::new(status);
        if let Some(ra) = retry_after {
            response = response.insert_header("retry-after", ra);
        }
        Mock::given(method("GET"))
            .and(path(pullback_path("sess-1")))
            .respond_with(response)
            .expect(1)
            .mount(&server)
            .await;

        // Act
        let err = client(&server)
            .application_status(&handle("sess-1"))
            .await
            .unwrap_err();

        // Assert
        assert_eq!(err.kind(), expected, "{status}: {why}");
    }
}

#[tokio::test]
async fn a_pullback_timeout_is_transient() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "sessionId": "sess-1", "status": "Pending" }))
                .set_delay(Duration::from_secs(2)),
        )
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_pullback(&handle("sess-1"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    assert_eq!(err.operation(), Some(Operation::GetPullback));
}

#[tokio::test]
async fn a_pullback_is_retried_after_503s_until_it_succeeds() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "sessionId": "sess-1", "status": "Declined" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let decision = c.application_status(&handle("sess-1")).await;

    // Assert
    assert_eq!(decision.unwrap().label(), "declined");
}

#[tokio::test]
async fn retries_stop_at_max_attempts() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(ResponseTemplate::new(500))
        .expect(3)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let err = c.get_pullback(&handle("sess-1")).await.unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
}

#[tokio::test]
async fn a_retry_after_beyond_the_backoff_cap_is_returned_instead_of_slept_on() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
        .expect(1)
        .mount(&server)
        .await;
    let c = builder(&server).retry(fast_backoff(3)).build().unwrap();

    // Act
    let err = c.get_pullback(&handle("sess-1")).await.unwrap_err();

    // Assert
    assert_eq!(err.kind().retry_after(), Some(Duration::from_secs(3600)));
}

#[tokio::test]
async fn a_pullback_of_an_unexpected_shape_is_a_permanent_decode_error() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "unexpected": true })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_pullback(&handle("sess-1"))
        .await
        .unwrap_err();

    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(matches!(err, carecredit_client::Error::Decode { .. }));
}

#[tokio::test]
async fn a_malformed_pullback_field_is_named_by_its_path_and_its_value_is_never_shown() {
    // Arrange
    let server = MockServer::start().await;
    mount_token(&server, 1).await;
    Mock::given(method("GET"))
        .and(path(pullback_path("sess-1")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sessionId": "sess-1",
            "status": "Approved",
            "applicationDetails": { "creditLine": "Zebulon-991" },
        })))
        .expect(1)
        .mount(&server)
        .await;

    // Act
    let err = client(&server)
        .get_pullback(&handle("sess-1"))
        .await
        .unwrap_err();

    // Assert
    let shown = err.to_string();
    assert!(
        shown.starts_with("get pullback: unexpected response shape"),
        "{shown}"
    );
    assert!(shown.contains("`applicationDetails.creditLine`"), "{shown}");
    assert!(!shown.contains("Zebulon"), "{shown}");
    assert!(!format!("{err:?}").contains("Zebulon"));
    assert_eq!(err.kind(), ErrorKind::Permanent);
}

#[test]
fn a_completed_application_carries_the_promotion_term_and_apr_carecredit_reported() {
    // Arrange
    let pullback: carecredit_client::Pullback = serde_json::from_value(json!({
        "sessionId": "s",
        "status": "Completed",
        "applicationDetails": {
            "applicationId": "APP-1",
            "creditLine": "2500.00",
            "promoCode": "PROMO12",
            "promoDescription": "No interest if paid in full within 12 months",
            "promoTermMonths": 12,
            "apr": "32.99"
        }
    }))
    .unwrap();
    // Act
    let decision = pullback_decision(&pullback, Money::usd(180_000), None);
    // Assert
    let Decision::Approved { offer, .. } = decision else {
        panic!("{decision:?}");
    };
    assert_eq!(
        offer.promotion.as_deref(),
        Some("No interest if paid in full within 12 months")
    );
    assert_eq!(offer.term_months, Some(12));
    assert_eq!(offer.apr_bps, Some(3299));
}

#[test]
fn terms_that_do_not_read_are_left_out_never_guessed() {
    let pullback: carecredit_client::Pullback = serde_json::from_value(json!({
        "sessionId": "s",
        "status": "Completed",
        "applicationDetails": {
            "creditLine": "2500.00",
            "promoCode": "PROMO12",
            "promoTermMonths": 0,
            "apr": "about 30"
        }
    }))
    .unwrap();
    let Decision::Approved { offer, .. } = pullback_decision(&pullback, Money::usd(1), None) else {
        panic!("not approved");
    };
    // Only the code is known: it stands for the promotion; no term, no APR.
    assert_eq!(offer.promotion.as_deref(), Some("PROMO12"));
    assert_eq!((offer.term_months, offer.apr_bps), (None, None));
}
