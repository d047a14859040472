//! Webhook verification (before parsing) and event mapping.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use financing_core::{ApplicationRef, Decision, LenderId, LenderReference, Money, Offer};
use secrecy::SecretString;
use serde_json::json;
use sunbit_client::{EventType, PurchaseId, WebhookError, WebhookVerifier, sign};

const SECRET: &str = "whsec-test-only";

fn secret() -> SecretString {
    SECRET.into()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 5, 1, 12, 0, 0).unwrap()
}

fn body() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "eventType": "PREQUAL_APPROVED",
        "payload": {
            "purchaseId": "pur-1",
            "location": "smile-main",
            "approvalAmount": "1000.0",
            "purchaseAmountEntered": "1500.0",
            "referral": "wf-0002-finance-2",
            "validUntil": "2030-06-01",
            "representativeEMail": "front-desk@example.test",
            "merchantFeeAmount": "5",
        },
    }))
    .unwrap()
}

fn verifier() -> WebhookVerifier {
    WebhookVerifier::new(secret())
}

#[test]
fn a_validly_signed_webhook_verifies_and_parses_into_a_typed_event() {
    // Arrange
    let body = body();
    let t = now().timestamp();
    let header = sign(&secret(), t, &body);

    // Act
    let verified = verifier().verify(Some(&header), &body, now()).unwrap();
    let event = verified.event().unwrap();

    // Assert
    assert_eq!(verified.timestamp(), t);
    assert_eq!(event.event_type, EventType::PrequalApproved);
    assert_eq!(event.purchase_id, Some(PurchaseId::new("pur-1")));
    assert_eq!(
        event.referral,
        Some(ApplicationRef::new("wf-0002-finance-2"))
    );
    assert_eq!(event.approval_amount, Some(Money::usd(100_000)));
    assert_eq!(event.purchase_amount_entered, Some(Money::usd(150_000)));
    assert_eq!(
        event.valid_until,
        Some(Utc.with_ymd_and_hms(2030, 6, 1, 23, 59, 59).unwrap())
    );
    assert_eq!(
        event.dedup_key().as_str(),
        format!("PREQUAL_APPROVED:pur-1:{t}")
    );
}

#[test]
fn sunbits_published_worked_example_verifies() {
    // The example in Sunbit's "Verify Webhook Signature" guide (a documentation secret, not a
    // credential): proves the scheme is HMAC-SHA256 over `t.body`, hex.
    let secret: SecretString = "DwS3QStMkgKziZxd9NXcvqFkxP4JNA3i".into();
    let body = br#"{"eventType":"MERCHANT_CREATED","payload":{"location":"Merchant location","url":"merchant/application/url","statusReason":"NONE"}}"#;
    let header = "t=1643444288,v1=e1bfa98d067faeea521387c8917b71c96e32e1f9028a3b0b2167c4c7408cdacb";
    let at = Utc.timestamp_opt(1_643_444_300, 0).unwrap();

    let event = WebhookVerifier::new(secret.clone())
        .verify(Some(header), body, at)
        .unwrap()
        .event()
        .unwrap();

    assert_eq!(
        event.event_type,
        EventType::Merchant("MERCHANT_CREATED".into())
    );
    assert_eq!(event.decision(Money::usd(1)), None);
    assert_eq!(sign(&secret, 1_643_444_288, body), header);
}

#[test]
fn a_tampered_body_is_rejected() {
    let body = body();
    let header = sign(&secret(), now().timestamp(), &body);
    let tampered = String::from_utf8(body)
        .unwrap()
        .replace("1000.0", "9000.0")
        .into_bytes();

    let err = verifier()
        .verify(Some(&header), &tampered, now())
        .unwrap_err();

    assert!(matches!(err, WebhookError::SignatureMismatch), "{err:?}");
}

#[test]
fn a_signature_made_with_another_secret_is_rejected() {
    let body = body();
    let header = sign(&"someone-else".into(), now().timestamp(), &body);

    let err = verifier().verify(Some(&header), &body, now()).unwrap_err();

    assert!(matches!(err, WebhookError::SignatureMismatch));
}

#[test]
fn a_tampered_timestamp_is_rejected() {
    let body = body();
    let t = now().timestamp();
    let header = sign(&secret(), t, &body).replace(&format!("t={t}"), &format!("t={}", t + 1));

    let err = verifier().verify(Some(&header), &body, now()).unwrap_err();

    assert!(matches!(err, WebhookError::SignatureMismatch));
}

#[test]
fn a_stale_or_future_timestamp_is_rejected_even_with_a_valid_signature() {
    let body = body();
    let t = now().timestamp();
    let old = sign(&secret(), t - 301, &body);
    let future = sign(&secret(), t + 301, &body);
    let edge = sign(&secret(), t - 300, &body);

    assert!(matches!(
        verifier().verify(Some(&old), &body, now()),
        Err(WebhookError::Stale { age_secs: 301 })
    ));
    assert!(matches!(
        verifier().verify(Some(&future), &body, now()),
        Err(WebhookError::Stale { age_secs: 301 })
    ));
    assert!(verifier().verify(Some(&edge), &body, now()).is_ok());
}

#[test]
fn a_custom_tolerance_is_honoured_and_zero_is_refused() {
    let body = body();
    let header = sign(&secret(), now().timestamp() - 30, &body);
    let strict = verifier().with_tolerance(Duration::from_secs(10)).unwrap();

    assert!(matches!(
        strict.verify(Some(&header), &body, now()),
        Err(WebhookError::Stale { .. })
    ));
    assert!(matches!(
        verifier().with_tolerance(Duration::ZERO),
        Err(WebhookError::ZeroTolerance)
    ));
}

#[test]
fn missing_and_garbage_headers_are_rejected_before_anything_is_parsed() {
    // A body that is not even JSON: rejection must come from the header alone.
    let body = b"not json at all";
    let valid_sig = sign(&secret(), now().timestamp(), body);
    let v1 = valid_sig.split_once(",v1=").unwrap().1;
    let cases: [(Option<&str>, &str); 9] = [
        (None, "missing"),
        (Some(""), "blank"),
        (Some("   "), "blank"),
        (Some("garbage"), "no key=value"),
        (Some("t=abc,v1=00"), "timestamp not a number"),
        (Some("t=1700000000"), "no v1"),
        (Some(&format!("v1={v1}")), "no timestamp"),
        (Some(&format!("t=1,t=2,v1={v1}")), "two timestamps"),
        (Some("t=1700000000,v0=abc"), "only an unknown scheme"),
    ];
    for (header, why) in cases {
        let err = verifier().verify(header, body, now()).unwrap_err();
        assert!(
            matches!(
                err,
                WebhookError::MissingSignature | WebhookError::MalformedSignature
            ),
            "{why}: {err:?}"
        );
        assert_eq!(err.kind(), financing_core::ErrorKind::Permanent);
    }
    assert!(matches!(
        verifier().verify(None, body, now()),
        Err(WebhookError::MissingSignature)
    ));
}

#[test]
fn two_v1_signatures_verify_when_the_second_is_valid() {
    let body = body();
    let t = now().timestamp();
    let valid = sign(&secret(), t, &body);
    let v1 = valid.split_once(",v1=").unwrap().1;
    let wrong = "0".repeat(64);

    let both = format!("t={t},v1={wrong},v1={v1}");
    let with_junk = format!("t={t}, v1=not-hex , v0=abc, v1={v1}");

    assert!(verifier().verify(Some(&both), &body, now()).is_ok());
    assert!(verifier().verify(Some(&with_junk), &body, now()).is_ok());
    let only_wrong = format!("t={t},v1={wrong}");
    assert!(matches!(
        verifier().verify(Some(&only_wrong), &body, now()),
        Err(WebhookError::SignatureMismatch)
    ));
}

#[test]
fn a_verified_body_that_is_not_an_envelope_is_a_decode_error() {
    let body = br#"{"payload":{}}"#;
    let header = sign(&secret(), now().timestamp(), body);

    let verified = verifier().verify(Some(&header), body, now()).unwrap();

    assert!(matches!(verified.event(), Err(WebhookError::Decode(_))));
}

#[test]
fn verifier_debug_hides_the_secret() {
    assert!(!format!("{:?}", verifier()).contains(SECRET));
}

fn event(event_type: &str, payload: serde_json::Value) -> sunbit_client::WebhookEvent {
    let mut envelope = json!({ "eventType": event_type });
    envelope["payload"] = payload;
    let body = serde_json::to_vec(&envelope).unwrap();
    let header = sign(&secret(), now().timestamp(), &body);
    verifier()
        .verify(Some(&header), &body, now())
        .unwrap()
        .event()
        .unwrap()
}

#[test]
fn every_event_type_maps_to_its_decision() {
    let requested = Money::usd(180_000);
    let offer = |cents| Offer {
        lender: LenderId::new("sunbit"),
        amount: Money::usd(cents),
        promotion: None,
        term_months: None,
        apr_bps: None,
        expires_at: None,
        lender_reference: Some(LenderReference::new("pur-1")),
    };
    let cases: Vec<(&str, serde_json::Value, Option<Decision>, &str)> = vec![
        (
            "PREQUAL_APPROVED",
            json!({ "purchaseId": "pur-1", "approvalAmount": "1000.0", "purchaseAmountEntered": "500.0" }),
            Some(Decision::Prequalified {
                offer: offer(100_000),
                requested,
                raw_status: "PREQUAL_APPROVED".into(),
            }),
            "the patient typed less than the approval: still judged against what we asked, and only a prequalification",
        ),
        (
            "PREQUAL_APPROVED",
            json!({ "purchaseId": "pur-1", "approvalAmount": "2000.0", "purchaseAmountEntered": "2000.0" }),
            Some(Decision::Prequalified {
                offer: offer(200_000),
                requested,
                raw_status: "PREQUAL_APPROVED".into(),
            }),
            "a prequalification above the ask is not financing",
        ),
        (
            "PREQUAL_COMPLETED",
            json!({ "purchaseId": "pur-1", "approvalAmount": "1200.0" }),
            Some(Decision::Prequalified {
                offer: offer(120_000),
                requested,
                raw_status: "PREQUAL_COMPLETED".into(),
            }),
            "no entered amount: the amount we asked",
        ),
        (
            "PREQUAL_APPROVED",
            json!({ "purchaseId": "pur-1", "approvalAmount": "0" }),
            Some(Decision::Declined {
                reason: None,
                raw_status: "PREQUAL_APPROVED".into(),
            }),
            "prequalified for nothing is a decline",
        ),
        (
            "PREQUAL_COMPLETED",
            json!({ "purchaseId": "pur-1" }),
            Some(Decision::Unknown("PREQUAL_COMPLETED".into())),
            "no amount: never guess",
        ),
        (
            "PREQUAL_FAILED",
            json!({ "purchaseId": "pur-1" }),
            Some(Decision::Declined {
                reason: None,
                raw_status: "PREQUAL_FAILED".into(),
            }),
            "declined",
        ),
        (
            "PREQUAL_ABORTED",
            json!({ "purchaseId": "pur-1" }),
            Some(Decision::Expired {
                raw_status: "PREQUAL_ABORTED".into(),
            }),
            "the patient left",
        ),
        (
            "TRANSACTION_VOIDED",
            json!({ "purchaseId": "pur-1", "purchaseAmount": 140.0, "netPurchaseAmount": 0 }),
            Some(Decision::Expired {
                raw_status: "TRANSACTION_VOIDED".into(),
            }),
            "voided",
        ),
        (
            "TRANSACTION_REFUNDED",
            json!({ "purchaseId": "pur-1", "purchaseAmount": "140.0", "netPurchaseAmount": "139.0" }),
            None,
            "payment-side",
        ),
        (
            "TEXT_TO_PAY_COMPLETED",
            json!({ "purchaseId": "pur-1", "purchaseAmount": 120.0, "invoice": null }),
            None,
            "payment-side",
        ),
        (
            "CHECKOUT_SDK_FAILED",
            json!({ "purchaseId": "pur-1" }),
            None,
            "payment-side",
        ),
        (
            "SOMETHING_NEW",
            json!({ "purchaseId": "pur-1" }),
            Some(Decision::Unknown("SOMETHING_NEW".into())),
            "unknown events are kept raw for staff",
        ),
    ];
    for (event_type, payload, expected, why) in cases {
        assert_eq!(
            event(event_type, payload).decision(requested),
            expected,
            "{event_type}: {why}"
        );
    }
}

#[test]
fn prequalifications_carry_the_offer_expiry() {
    let e = event(
        "PREQUAL_APPROVED",
        json!({ "purchaseId": "pur-1", "approvalAmount": "2000", "validUntil": "2030-06-01" }),
    );
    let Some(Decision::Prequalified { offer, .. }) = e.decision(Money::usd(180_000)) else {
        panic!("expected a prequalification");
    };
    assert_eq!(
        offer.expires_at,
        Some(Utc.with_ymd_and_hms(2030, 6, 1, 23, 59, 59).unwrap())
    );
}

#[test]
fn dedup_keys_differ_by_event_purchase_and_timestamp() {
    let a = event("PREQUAL_APPROVED", json!({ "purchaseId": "pur-1" }));
    let b = event("PREQUAL_FAILED", json!({ "purchaseId": "pur-1" }));
    let c = event("PREQUAL_APPROVED", json!({ "purchaseId": "pur-2" }));
    assert_ne!(a.dedup_key(), b.dedup_key());
    assert_ne!(a.dedup_key(), c.dedup_key());
    assert_eq!(a.dedup_key(), a.clone().dedup_key());
    let no_purchase = event("PREQUAL_ABORTED", json!({}));
    assert_eq!(
        no_purchase.dedup_key().as_str(),
        format!("PREQUAL_ABORTED::{}", now().timestamp())
    );
}

#[test]
fn a_verified_body_with_a_malformed_field_names_its_path_and_not_its_value() {
    let body = br#"{"eventType":"PREQUAL_APPROVED","payload":{"approvalAmount":"Zebulon-991"}}"#;
    let header = sign(&secret(), now().timestamp(), body);
    let verified = verifier().verify(Some(&header), body, now()).unwrap();

    let err = verified.event().unwrap_err();

    let shown = err.to_string();
    assert!(shown.contains("`payload.approvalAmount`"), "{shown}");
    assert!(!shown.contains("Zebulon"), "{shown}");
}
