//! `GET /v1/refunds?charge=`: each refund of a charge, by id.

use financing_core::{ErrorKind, Money};
use serde_json::json;
use stripe_schedule::{ChargeId, Error, RefundStatus};
use wiremock::ResponseTemplate;

use crate::helpers::{
    StripeMock, assert_error_table, assert_times_out, call, fixture_with, form_is, stripe_request,
};

fn refund(id: &str, amount: i64, status: &str) -> serde_json::Value {
    fixture_with(
        "refund",
        json!({"id": id, "amount": amount, "charge": "ch_1", "status": status, "created": 1_700_000_000}),
    )
}

fn list(data: Vec<serde_json::Value>, has_more: bool) -> serde_json::Value {
    json!({"object": "list", "url": "/v1/refunds", "has_more": has_more,
           "data": serde_json::Value::Array(data)})
}

#[tokio::test]
async fn list_refunds_reads_every_refund_of_the_charge_following_pages() {
    // Arrange: two pages, newest first; one refund failed.
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/refunds", None)
                .and(form_is(&[("charge", "ch_1"), ("limit", "100")]))
                .respond_with(ResponseTemplate::new(200).set_body_json(list(
                    vec![
                        refund("re_3", 1_000, "failed"),
                        refund("re_2", 2_500, "pending"),
                    ],
                    true,
                )))
                .expect(1),
        )
        .await;
    stripe
        .mount(
            stripe_request("GET", "/v1/refunds", None)
                .and(form_is(&[
                    ("charge", "ch_1"),
                    ("limit", "100"),
                    ("starting_after", "re_2"),
                ]))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(list(vec![refund("re_1", 5_000, "succeeded")], false)),
                )
                .expect(1),
        )
        .await;

    // Act
    let all = stripe
        .client()
        .list_refunds(&ChargeId::new("ch_1"))
        .await
        .unwrap();

    // Assert
    let got: Vec<_> = all
        .iter()
        .map(|r| (r.id.as_str(), r.money(), r.status.returns_money()))
        .collect();
    assert_eq!(
        got,
        [
            ("re_3", Some(Money::usd(1_000)), false),
            ("re_2", Some(Money::usd(2_500)), true),
            ("re_1", Some(Money::usd(5_000)), true),
        ]
    );
    assert_eq!(all[2].status, RefundStatus::Succeeded);
    assert_eq!(all[2].charge.as_ref().map(ChargeId::as_str), Some("ch_1"));
    stripe.finish().await;
}

#[tokio::test]
async fn list_refunds_refuses_a_malformed_charge_before_sending() {
    let stripe = StripeMock::start().await;
    let err = stripe
        .client()
        .list_refunds(&ChargeId::new("ch_1&charge=ch_2"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(matches!(err.kind(), ErrorKind::Permanent));
    stripe.finish().await;
}

#[tokio::test]
async fn list_refunds_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/refunds",
        call(|c| async move { c.list_refunds(&ChargeId::new("ch_1")).await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn list_refunds_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/refunds",
        list(vec![], false),
        call(|c| async move { c.list_refunds(&ChargeId::new("ch_1")).await }),
    )
    .await;
}

#[tokio::test]
async fn a_garbage_refund_list_is_a_decode_error() {
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/refunds", None).respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"object": "list", "data": [{"id": 7}]})),
            ),
        )
        .await;
    let err = stripe
        .client()
        .list_refunds(&ChargeId::new("ch_1"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    stripe.finish().await;
}
