use financing_core::{ErrorKind, Money};
use serde_json::json;
use stripe_schedule::{
    ChargeOutcome, CustomerId, Error, ErrorCode, InvalidInput, Metadata, OffSessionCharge,
    PaymentIntentId, PaymentIntentStatus, PaymentMethodId, WORKFLOW_KEY,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    StripeMock, assert_error_table, assert_times_out, call, fixture_with, form_is, key,
    stripe_request,
};

fn charge() -> OffSessionCharge {
    OffSessionCharge {
        customer: CustomerId::new("cus_1"),
        payment_method: PaymentMethodId::new("pm_card_1"),
        amount: Money::usd(33_334),
        metadata: Metadata::new().with(WORKFLOW_KEY, "wf-42"),
    }
}

fn intent_json(status: &str) -> serde_json::Value {
    fixture_with(
        "payment_intent",
        json!({"id": "pi_1", "status": status, "amount": 33334, "customer": "cus_1",
               "payment_method": "pm_card_1", "last_payment_error": null,
               "metadata": {"chairside_workflow": "wf-42"}}),
    )
}

async fn charge_against(response: ResponseTemplate) -> ChargeOutcome {
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .and(path("/v1/payment_intents"))
                .respond_with(response)
                .expect(1),
        )
        .await;
    let outcome = stripe
        .client()
        .charge_off_session(&charge(), &key("wf-42:charge"))
        .await
        .expect("an outcome, not an error");
    stripe.finish().await;
    outcome
}

#[tokio::test]
async fn charge_off_session_sends_confirm_and_off_session_with_the_key() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("POST", "/v1/payment_intents", Some("wf-42:charge"))
                .and(form_is(&[
                    ("amount", "33334"),
                    ("currency", "usd"),
                    ("customer", "cus_1"),
                    ("payment_method", "pm_card_1"),
                    ("confirm", "true"),
                    ("off_session", "true"),
                    ("metadata[chairside_workflow]", "wf-42"),
                ]))
                .respond_with(ResponseTemplate::new(200).set_body_json(intent_json("succeeded")))
                .expect(1),
        )
        .await;
    // Act
    let outcome = stripe
        .client()
        .charge_off_session(&charge(), &key("wf-42:charge"))
        .await
        .unwrap();
    // Assert
    match outcome {
        ChargeOutcome::Succeeded(pi) => {
            assert_eq!(pi.id, PaymentIntentId::new("pi_1"));
            assert_eq!(pi.money(), Some(Money::usd(33_334)));
        }
        other => panic!("expected success, got {other:?}"),
    }
    stripe.finish().await;
}

#[tokio::test]
async fn a_402_decline_is_a_declined_outcome_with_the_decline_code() {
    // Arrange
    let response = ResponseTemplate::new(402)
        .insert_header("request-id", "req_decline")
        .set_body_json(json!({"error": {
            "type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_intent": intent_json("requires_payment_method"),
            "payment_method": {"id": "pm_card_1", "object": "payment_method"}}}));
    // Act
    let outcome = charge_against(response).await;
    // Assert
    match outcome {
        ChargeOutcome::Declined(f) => {
            assert_eq!(f.code, Some(ErrorCode::CardDeclined));
            assert_eq!(f.decline_code.as_deref(), Some("insufficient_funds"));
            assert_eq!(f.payment_intent, Some(PaymentIntentId::new("pi_1")));
            assert_eq!(
                f.request_id.map(|r| r.as_str().to_owned()).as_deref(),
                Some("req_decline")
            );
        }
        other => panic!("expected a decline, got {other:?}"),
    }
}

#[tokio::test]
async fn a_402_authentication_required_asks_for_the_patient_on_session() {
    // Arrange
    let response = ResponseTemplate::new(402).set_body_json(json!({"error": {
        "type": "card_error", "code": "authentication_required",
        "decline_code": "authentication_required",
        "payment_intent": intent_json("requires_payment_method")}}));
    // Act
    let outcome = charge_against(response).await;
    // Assert
    assert!(
        matches!(&outcome, ChargeOutcome::AuthenticationRequired(f)
            if f.payment_intent == Some(PaymentIntentId::new("pi_1"))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_402_with_an_unknown_code_is_still_a_decline() {
    let response = ResponseTemplate::new(402).set_body_json(json!({"error": {
        "type": "card_error", "code": "a_code_from_the_future"}}));
    let outcome = charge_against(response).await;
    assert!(
        matches!(&outcome, ChargeOutcome::Declined(f)
            if f.code == Some(ErrorCode::Unknown("a_code_from_the_future".into()))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn statuses_in_a_200_map_to_outcomes() {
    for (status, check) in [
        (
            "processing",
            (|o: &ChargeOutcome| matches!(o, ChargeOutcome::Processing(_)))
                as fn(&ChargeOutcome) -> bool,
        ),
        ("requires_action", |o| {
            matches!(o, ChargeOutcome::AuthenticationRequired(_))
        }),
        ("requires_payment_method", |o| {
            matches!(o, ChargeOutcome::Declined(_))
        }),
        ("requires_capture", |o| matches!(o, ChargeOutcome::Other(_))),
        ("a_new_status", |o| {
            matches!(o, ChargeOutcome::Other(pi)
                if pi.status == PaymentIntentStatus::Unknown("a_new_status".into()))
        }),
    ] {
        let outcome =
            charge_against(ResponseTemplate::new(200).set_body_json(intent_json(status))).await;
        assert!(check(&outcome), "{status}: {outcome:?}");
    }
}

#[tokio::test]
async fn charge_off_session_refuses_bad_input_before_sending() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200))
                .expect(0),
        )
        .await;
    let cases = [
        (
            OffSessionCharge {
                amount: Money::usd(0),
                ..charge()
            },
            InvalidInput::NonPositiveAmount,
        ),
        (
            OffSessionCharge {
                amount: Money::usd(-1),
                ..charge()
            },
            InvalidInput::NonPositiveAmount,
        ),
        (
            OffSessionCharge {
                amount: Money::usd(49),
                ..charge()
            },
            InvalidInput::BelowMinimumCharge { minimum: 50 },
        ),
        (
            OffSessionCharge {
                metadata: Metadata::new().with("bad]key", "v"),
                ..charge()
            },
            InvalidInput::MetadataKeyBrackets,
        ),
    ];
    for (c, want) in cases {
        // Act
        let err = stripe
            .client()
            .charge_off_session(&c, &key("k"))
            .await
            .unwrap_err();
        // Assert
        assert!(
            matches!(&err, Error::Invalid { reason, .. } if *reason == want),
            "want {want:?}, got {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Permanent);
    }
    stripe.finish().await;
}

#[tokio::test]
async fn charge_off_session_classifies_every_error_status() {
    assert_error_table(
        "POST",
        "/v1/payment_intents",
        call(|c| async move { c.charge_off_session(&charge(), &key("k")).await }),
        // A 402 card error is an outcome here, tested above.
        &["402 card error"],
    )
    .await;
}

#[tokio::test]
async fn charge_off_session_times_out_as_transient() {
    assert_times_out(
        "POST",
        "/v1/payment_intents",
        intent_json("succeeded"),
        call(|c| async move { c.charge_off_session(&charge(), &key("k")).await }),
    )
    .await;
}

#[tokio::test]
async fn get_payment_intent_sends_a_get_by_id_and_decodes_the_fixture() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request(
                "GET",
                "/v1/payment_intents/pi_1PgafyB7WZ01zgkWSjxsAJo3",
                None,
            )
            .respond_with(
                ResponseTemplate::new(200).set_body_json(crate::helpers::fixture("payment_intent")),
            )
            .expect(1),
        )
        .await;
    // Act
    let pi = stripe
        .client()
        .get_payment_intent(&PaymentIntentId::new("pi_1PgafyB7WZ01zgkWSjxsAJo3"))
        .await
        .unwrap();
    // Assert
    assert_eq!(pi.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(pi.amount, 1099);
    assert!(pi.last_payment_error.is_some());
    stripe.finish().await;
}

#[tokio::test]
async fn get_payment_intent_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/payment_intents/pi_1",
        call(|c| async move { c.get_payment_intent(&PaymentIntentId::new("pi_1")).await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn get_payment_intent_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/payment_intents/pi_1",
        intent_json("succeeded"),
        call(|c| async move { c.get_payment_intent(&PaymentIntentId::new("pi_1")).await }),
    )
    .await;
}

fn intent_list(data: Vec<serde_json::Value>, has_more: bool) -> serde_json::Value {
    json!({"object": "list", "url": "/v1/payment_intents", "has_more": has_more,
           "data": serde_json::Value::Array(data)})
}

fn intent_with(id: &str, status: &str) -> serde_json::Value {
    let mut v = intent_json(status);
    v["id"] = json!(id);
    v
}

#[tokio::test]
async fn list_payment_intents_reads_the_customers_intents_following_pages() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/payment_intents", None)
                .and(form_is(&[("customer", "cus_1"), ("limit", "100")]))
                .respond_with(ResponseTemplate::new(200).set_body_json(intent_list(
                    vec![
                        intent_with("pi_b", "succeeded"),
                        intent_with("pi_a", "requires_payment_method"),
                    ],
                    true,
                )))
                .expect(1),
        )
        .await;
    stripe
        .mount(
            stripe_request("GET", "/v1/payment_intents", None)
                .and(form_is(&[
                    ("customer", "cus_1"),
                    ("limit", "100"),
                    ("starting_after", "pi_a"),
                ]))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(intent_list(vec![intent_with("pi_0", "processing")], false)),
                )
                .expect(1),
        )
        .await;
    // Act
    let all = stripe
        .client()
        .list_payment_intents(&CustomerId::new("cus_1"))
        .await
        .unwrap();
    // Assert
    let got: Vec<_> = all
        .iter()
        .map(|p| (p.id.as_str(), p.status.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("pi_b", PaymentIntentStatus::Succeeded),
            ("pi_a", PaymentIntentStatus::RequiresPaymentMethod),
            ("pi_0", PaymentIntentStatus::Processing),
        ]
    );
    assert_eq!(all[0].metadata.get(WORKFLOW_KEY), Some("wf-42"));
    stripe.finish().await;
}

#[tokio::test]
async fn list_payment_intents_refuses_a_malformed_customer_before_sending() {
    let stripe = StripeMock::start().await;
    let err = stripe
        .client()
        .list_payment_intents(&CustomerId::new("cus 1/../x"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Permanent));
    stripe.finish().await;
}

#[tokio::test]
async fn list_payment_intents_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/payment_intents",
        call(|c| async move { c.list_payment_intents(&CustomerId::new("cus_1")).await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn list_payment_intents_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/payment_intents",
        intent_list(vec![], false),
        call(|c| async move { c.list_payment_intents(&CustomerId::new("cus_1")).await }),
    )
    .await;
}
