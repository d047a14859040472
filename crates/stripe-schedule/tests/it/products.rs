use financing_core::PracticeId;
use serde_json::json;
use stripe_schedule::{IdempotencyKey, ProductId, practice_product_id};
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{
    StripeMock, assert_error_table, assert_times_out, call, fixture_with, form_is, stripe_request,
};

fn product_json(id: &str) -> serde_json::Value {
    fixture_with(
        "product",
        json!({"id": id, "name": "Dental treatment plan", "metadata": {"chairside_practice": "smile"}}),
    )
}

fn missing() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"error": {
        "type": "invalid_request_error", "code": "resource_missing", "param": "id"}}))
}

#[tokio::test]
async fn ensure_practice_product_reuses_an_existing_product_without_creating() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/products/chairside_practice_smile", None)
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(product_json("chairside_practice_smile")),
                )
                .expect(1),
        )
        .await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(500))
                .expect(0),
        )
        .await;
    // Act
    let id = stripe
        .client()
        .ensure_practice_product(&PracticeId::new("smile"), "Dental treatment plan")
        .await
        .unwrap();
    // Assert
    assert_eq!(id, ProductId::new("chairside_practice_smile"));
    stripe.finish().await;
}

#[tokio::test]
async fn ensure_practice_product_creates_it_with_its_fixed_id_and_practice_key_on_a_404() {
    // Arrange
    let stripe = StripeMock::start().await;
    let practice = PracticeId::new("smile");
    let k = IdempotencyKey::for_practice_product(&practice);
    stripe
        .mount(
            stripe_request("GET", "/v1/products/chairside_practice_smile", None)
                .respond_with(missing())
                .expect(1),
        )
        .await;
    stripe
        .mount(
            stripe_request("POST", "/v1/products", Some(k.as_str()))
                .and(form_is(&[
                    ("id", "chairside_practice_smile"),
                    ("name", "Dental treatment plan"),
                    ("metadata[chairside_practice]", "smile"),
                ]))
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(product_json("chairside_practice_smile")),
                )
                .expect(1),
        )
        .await;
    // Act
    let id = stripe
        .client()
        .ensure_practice_product(&practice, "Dental treatment plan")
        .await
        .unwrap();
    // Assert
    assert_eq!(id, practice_product_id(&practice));
    stripe.finish().await;
}

#[tokio::test]
async fn ensure_practice_product_uses_a_product_created_concurrently_elsewhere() {
    // Arrange: missing at first, then "already exists" on create, then there.
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            stripe_request("GET", "/v1/products/chairside_practice_smile", None)
                .respond_with(missing())
                .up_to_n_times(1)
                .with_priority(1)
                .expect(1),
        )
        .await;
    stripe
        .mount(
            stripe_request("GET", "/v1/products/chairside_practice_smile", None)
                .respond_with(
                    ResponseTemplate::new(200)
                        .set_body_json(product_json("chairside_practice_smile")),
                )
                .with_priority(2)
                .expect(1),
        )
        .await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
                    "type": "invalid_request_error", "code": "resource_already_exists"}})))
                .expect(1),
        )
        .await;
    // Act
    let id = stripe
        .client()
        .ensure_practice_product(&PracticeId::new("smile"), "Dental treatment plan")
        .await
        .unwrap();
    // Assert
    assert_eq!(id.as_str(), "chairside_practice_smile");
    stripe.finish().await;
}

#[tokio::test]
async fn ensure_practice_product_refuses_an_empty_name_before_sending() {
    let stripe = StripeMock::start().await;
    let err = stripe
        .client()
        .ensure_practice_product(&PracticeId::new("smile"), "  ")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), financing_core::ErrorKind::Permanent);
    assert!(stripe.finish().await.is_empty());
}

#[tokio::test]
async fn get_product_classifies_every_error_status() {
    assert_error_table(
        "GET",
        "/v1/products/prod_1",
        call(|c| async move { c.get_product(&ProductId::new("prod_1")).await }),
        &[],
    )
    .await;
}

#[tokio::test]
async fn create_product_classifies_every_error_status() {
    // The lookup misses (404 is permanent and not retried), then the create meets each row.
    for row in crate::helpers::error_rows() {
        let stripe = StripeMock::start().await;
        stripe
            .mount(Mock::given(method("GET")).respond_with(missing()).expect(1))
            .await;
        stripe
            .mount(
                Mock::given(method("POST"))
                    .respond_with(row.response.clone())
                    .expect(row.calls),
            )
            .await;
        let err = stripe
            .client()
            .ensure_practice_product(&PracticeId::new("smile"), "Plan")
            .await
            .unwrap_err();
        assert_eq!(err.kind(), row.post_kind, "{}", row.name);
        stripe.finish().await;
    }
}

#[tokio::test]
async fn get_product_times_out_as_transient() {
    assert_times_out(
        "GET",
        "/v1/products/prod_1",
        product_json("prod_1"),
        call(|c| async move { c.get_product(&ProductId::new("prod_1")).await }),
    )
    .await;
}
