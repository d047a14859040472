use chrono::{Duration, Utc};
use financing_core::{Currency, ErrorKind, Money};
use serde_json::json;
use stripe_schedule::{
    CheckoutPaymentStatus, CheckoutSessionId, CheckoutStatus, CustomerId, Error, InvalidInput,
    Metadata, PayLinkRequest, WORKFLOW_KEY,
};
use url::Url;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    StripeMock, assert_error_table, assert_times_out, call, fixture_with, form_is, key,
    stripe_request,
};

fn request() -> PayLinkRequest {
    PayLinkRequest {
        customer: CustomerId::new("cus_1"),
        amount: Money::usd(25_000),
        client_reference_id: "wf-42".into(),
        expires_at: Some(Utc::now() + Duration::hours(2)),
        save_card: true,
        success_url: Some(Url::parse("https://pay.example.test/done?w=wf-42").unwrap()),
        cancel_url: Some(Url::parse("https://pay.example.test/back").unwrap()),
        metadata: Metadata::new().with(WORKFLOW_KEY, "wf-42"),
        payment_metadata: Metadata::new().with(WORKFLOW_KEY, "wf-42"),
    }
}

fn session_json(status: &str, payment_status: &str) -> serde_json::Value {
    fixture_with(
        "checkout.session",
        json!({"id": "cs_test_1", "customer": "cus_1", "status": status,
               "payment_status": payment_status, "client_reference_id": "wf-42",
               "amount_total": 25000, "currency": "usd"}),
    )
}

#[tokio::test]
async fn create_checkout_session_sends_a_single_use_payment_link_request() {
    // Arrange
    let stripe = StripeMock::start().await;
    let r = request();
    let expires = r.expires_at.unwrap().timestamp().to_string();
    stripe
        .mount(
            stripe_request("POST", "/v1/checkout/sessions", Some("wf-42:paylink"))
                .and(form_is(&[
                    ("mode", "payment"),
                    ("customer", "cus_1"),
                    ("client_reference_id", "wf-42"),
                    ("line_items[0][price_data][currency]", "usd"),
                    (
                        "line_items[0][price_data][product_data][name]",
                        "Dental treatment",
                    ),
                    ("line_items[0][price_data][unit_amount]", "25000"),
                    ("line_items[0][quantity]", "1"),
                    ("expires_at", &expires),
                    ("success_url", "https://pay.example.test/done?w=wf-42"),
                    ("cancel_url", "https://pay.example.test/back"),
                    ("metadata[chairside_workflow]", "wf-42"),
                    ("payment_intent_data[setup_future_usage]", "off_session"),
                    ("payment_intent_data[metadata][chairside_workflow]", "wf-42"),
                ]))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(session_json("open", "unpaid")),
                )
                .expect(1),
        )
        .await;
    // Act
    let s = stripe
        .client()
        .create_checkout_session(&r, &key("wf-42:paylink"))
        .await
        .unwrap();
    // Assert
    assert_eq!(s.id, CheckoutSessionId::new("cs_test_1"));
    assert_eq!(s.status, Some(CheckoutStatus::Open));
    assert_eq!(s.payment_status, CheckoutPaymentStatus::Unpaid);
    assert!(s.url.is_some());
    assert_eq!(s.total(), Some(Money::usd(25_000)));
    stripe.finish().await;
}

#[tokio::test]
async fn create_checkout_session_leaves_the_card_unsaved_unless_asked() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("POST", "/v1/checkout/sessions", Some("k"))
                .and(form_is(&[
                    ("mode", "payment"),
                    ("customer", "cus_1"),
                    ("client_reference_id", "wf-42"),
                    ("line_items[0][price_data][currency]", "usd"),
                    (
                        "line_items[0][price_data][product_data][name]",
                        "Dental treatment",
                    ),
                    ("line_items[0][price_data][unit_amount]", "25000"),
                    ("line_items[0][quantity]", "1"),
                ]))
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(session_json("open", "unpaid")),
                )
                .expect(1),
        )
        .await;
    let r = PayLinkRequest {
        save_card: false,
        expires_at: None,
        success_url: None,
        cancel_url: None,
        metadata: Metadata::new(),
        payment_metadata: Metadata::new(),
        ..request()
    };
    // Act
    let s = stripe.client().create_checkout_session(&r, &key("k")).await;
    // Assert
    assert!(s.is_ok(), "{s:?}");
    stripe.finish().await;
}

#[tokio::test]
async fn create_checkout_session_refuses_bad_input_before_sending() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(200))
                .expect(0),
        )
        .await;
    let cases: Vec<(PayLinkRequest, InvalidInput)> = vec![
        (
            PayLinkRequest {
                amount: Money::usd(0),
                ..request()
            },
            InvalidInput::NonPositiveAmount,
        ),
        (
            PayLinkRequest {
                amount: Money::new(5_000, Currency::Jpy),
                ..request()
            },
            InvalidInput::CurrencyWithoutMinorUnits("jpy"),
        ),
        (
            PayLinkRequest {
                expires_at: Some(Utc::now() + Duration::minutes(10)),
                ..request()
            },
            InvalidInput::ExpiresAt,
        ),
        (
            PayLinkRequest {
                expires_at: Some(Utc::now() + Duration::hours(25)),
                ..request()
            },
            InvalidInput::ExpiresAt,
        ),
        (
            PayLinkRequest {
                client_reference_id: "x".repeat(201),
                ..request()
            },
            InvalidInput::ClientReferenceId,
        ),
        (
            PayLinkRequest {
                payment_metadata: (0..51).map(|i| (format!("k{i}"), "v")).collect(),
                ..request()
            },
            InvalidInput::TooManyMetadataKeys { count: 51 },
        ),
    ];
    for (r, want) in cases {
        // Act
        let err = stripe
            .client()
            .create_checkout_session(&r, &key("k"))
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
async fn create_checkout_session_classifies_every_error_status() {
    assert_error_table(
        "POST",
        "/v1/checkout/sessions",
        call(|c| async move { c.create_checkout_session(&request(), &key("k")).await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn create_checkout_session_times_out_as_transient() {
    assert_times_out(
        "POST",
        "/v1/checkout/sessions",
        session_json("open", "unpaid"),
        call(|c| async move { c.create_checkout_session(&request(), &key("k")).await }),
    )
    .await;
}

#[tokio::test]
async fn get_checkout_session_sends_a_get_by_id_and_decodes_the_fixture() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/checkout/sessions/cs_test_1", None)
                .respond_with(
                    ResponseTemplate::new(200).set_body_json(session_json("complete", "paid")),
                )
                .expect(1),
        )
        .await;
    // Act
    let s = stripe
        .client()
        .get_checkout_session(&CheckoutSessionId::new("cs_test_1"))
        .await
        .unwrap();
    // Assert
    assert_eq!(s.status, Some(CheckoutStatus::Complete));
    assert_eq!(s.payment_status, CheckoutPaymentStatus::Paid);
    assert_eq!(
        s.payment_intent.as_ref().map(|p| p.as_str()),
        Some("pi_1PgafyB7WZ01zgkWSjxsAJo3")
    );
    assert_eq!(s.client_reference_id.as_deref(), Some("wf-42"));
    stripe.finish().await;
}

#[tokio::test]
async fn get_checkout_session_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/checkout/sessions/cs_test_1",
        call(|c| async move {
            c.get_checkout_session(&CheckoutSessionId::new("cs_test_1"))
                .await
        }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn get_checkout_session_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/checkout/sessions/cs_test_1",
        session_json("open", "unpaid"),
        call(|c| async move {
            c.get_checkout_session(&CheckoutSessionId::new("cs_test_1"))
                .await
        }),
    )
    .await;
}

#[tokio::test]
async fn expire_checkout_session_posts_expire_with_the_key() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request(
                "POST",
                "/v1/checkout/sessions/cs_test_1/expire",
                Some("wf-42:expire"),
            )
            .and(form_is(&[]))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(session_json("expired", "unpaid")),
            )
            .expect(1),
        )
        .await;
    // Act
    let s = stripe
        .client()
        .expire_checkout_session(&CheckoutSessionId::new("cs_test_1"), &key("wf-42:expire"))
        .await
        .unwrap();
    // Assert
    assert_eq!(s.status, Some(CheckoutStatus::Expired));
    stripe.finish().await;
}

#[tokio::test]
async fn expire_checkout_session_classifies_every_error_status() {
    assert_error_table(
        "POST",
        "/v1/checkout/sessions/cs_test_1/expire",
        call(|c| async move {
            c.expire_checkout_session(&CheckoutSessionId::new("cs_test_1"), &key("k"))
                .await
        }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn expire_checkout_session_times_out_as_transient() {
    assert_times_out(
        "POST",
        "/v1/checkout/sessions/cs_test_1/expire",
        session_json("expired", "unpaid"),
        call(|c| async move {
            c.expire_checkout_session(&CheckoutSessionId::new("cs_test_1"), &key("k"))
                .await
        }),
    )
    .await;
}
