//! Card on file: Checkout in setup mode, and reading the SetupIntent it completed.

use chrono::{Duration, Utc};
use financing_core::{Currency, ErrorKind};
use serde_json::json;
use stripe_schedule::{
    CardSetupRequest, CheckoutMode, CheckoutSessionId, CustomerId, Error, InvalidInput, Metadata,
    PaymentMethodId, SetupIntentId, SetupIntentStatus, WORKFLOW_KEY,
};
use url::Url;

use crate::helpers::{
    StripeMock, assert_error_table, assert_times_out, call, fixture_with, form_is, key,
    stripe_request,
};

fn request() -> CardSetupRequest {
    CardSetupRequest {
        customer: CustomerId::new("cus_1"),
        currency: Currency::Usd,
        client_reference_id: "wf-42".into(),
        expires_at: Some(Utc::now() + Duration::hours(3)),
        success_url: Some(Url::parse("https://pay.example.test/saved").unwrap()),
        cancel_url: None,
        metadata: Metadata::new().with(WORKFLOW_KEY, "wf-42"),
    }
}

fn setup_session_json() -> serde_json::Value {
    fixture_with(
        "checkout.session",
        json!({"id": "cs_test_setup", "customer": "cus_1", "mode": "setup", "status": "open",
               "payment_status": "no_payment_required", "client_reference_id": "wf-42",
               "amount_total": null, "currency": "usd", "setup_intent": null,
               "url": "https://checkout.stripe.test/c/pay/cs_test_setup"}),
    )
}

fn setup_intent_json(status: &str) -> serde_json::Value {
    fixture_with(
        "setup_intent",
        json!({"id": "seti_1", "status": status, "customer": "cus_1",
               "payment_method": "pm_card_1", "metadata": {}}),
    )
}

#[tokio::test]
async fn create_card_setup_session_sends_setup_mode_with_customer_and_currency_and_no_line_items() {
    // Arrange
    let stripe = StripeMock::start().await;
    let r = request();
    let expires = r.expires_at.unwrap().timestamp().to_string();
    stripe
        .mount(
            stripe_request("POST", "/v1/checkout/sessions", Some("wf-42:card_setup:7"))
                .and(form_is(&[
                    ("mode", "setup"),
                    ("customer", "cus_1"),
                    ("currency", "usd"),
                    ("client_reference_id", "wf-42"),
                    ("expires_at", &expires),
                    ("success_url", "https://pay.example.test/saved"),
                    ("metadata[chairside_workflow]", "wf-42"),
                ]))
                .respond_with(
                    wiremock::ResponseTemplate::new(200).set_body_json(setup_session_json()),
                )
                .expect(1),
        )
        .await;
    // Act
    let session = stripe
        .client()
        .create_card_setup_session(&r, &key("wf-42:card_setup:7"))
        .await
        .unwrap();
    // Assert
    assert_eq!(session.id, CheckoutSessionId::new("cs_test_setup"));
    assert_eq!(session.mode, Some(CheckoutMode::Setup));
    assert_eq!(session.setup_intent, None);
    assert!(session.url.is_some());
    stripe.finish().await;
}

#[tokio::test]
async fn create_card_setup_session_refuses_an_expiry_outside_stripes_window_before_sending() {
    // Arrange
    let stripe = StripeMock::start().await;
    let mut r = request();
    r.expires_at = Some(Utc::now() + Duration::minutes(10));
    // Act
    let err = stripe
        .client()
        .create_card_setup_session(&r, &key("k"))
        .await
        .unwrap_err();
    // Assert: nothing was sent (the mock has no route and records nothing)
    assert!(matches!(
        err,
        Error::Invalid {
            reason: InvalidInput::ExpiresAt,
            ..
        }
    ));
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(stripe.finish().await.is_empty());
}

#[tokio::test]
async fn create_card_setup_session_maps_errors_and_timeouts() {
    assert_error_table(
        "POST",
        "/v1/checkout/sessions",
        call(|c| async move { c.create_card_setup_session(&request(), &key("k")).await }),
        &[],
    )
    .await;
    assert_times_out(
        "POST",
        "/v1/checkout/sessions",
        setup_session_json(),
        call(|c| async move { c.create_card_setup_session(&request(), &key("k")).await }),
    )
    .await;
}

#[tokio::test]
async fn a_completed_setup_session_names_its_setup_intent() {
    // Arrange
    let mut body = setup_session_json();
    body["status"] = json!("complete");
    body["setup_intent"] = json!("seti_1");
    body["url"] = json!(null);
    // Act
    let session: stripe_schedule::CheckoutSession = serde_json::from_value(body).unwrap();
    // Assert
    assert_eq!(session.setup_intent, Some(SetupIntentId::new("seti_1")));
}

#[tokio::test]
async fn get_setup_intent_reads_the_saved_payment_method() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/setup_intents/seti_1", None)
                .respond_with(
                    wiremock::ResponseTemplate::new(200)
                        .set_body_json(setup_intent_json("succeeded")),
                )
                .expect(1),
        )
        .await;
    // Act
    let seti = stripe
        .client()
        .get_setup_intent(&SetupIntentId::new("seti_1"))
        .await
        .unwrap();
    // Assert
    assert_eq!(seti.status, SetupIntentStatus::Succeeded);
    assert_eq!(seti.payment_method, Some(PaymentMethodId::new("pm_card_1")));
    assert_eq!(seti.customer, Some(CustomerId::new("cus_1")));
    stripe.finish().await;
}

#[tokio::test]
async fn get_setup_intent_maps_errors_and_timeouts() {
    let id = || SetupIntentId::new("seti_1");
    assert_error_table(
        "GET",
        "/v1/setup_intents/seti_1",
        call(move |c| async move { c.get_setup_intent(&id()).await }),
        &[],
    )
    .await;
    assert_times_out(
        "GET",
        "/v1/setup_intents/seti_1",
        setup_intent_json("succeeded"),
        call(move |c| async move { c.get_setup_intent(&id()).await }),
    )
    .await;
}
