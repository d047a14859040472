//! The Stripe stand-in: objects, idempotency, schedules, checkout, webhooks.

use std::time::Duration;

use serde_json::Value;

use crate::support::{start, stripe_get, stripe_post};

#[tokio::test]
async fn a_created_customer_is_stored_and_shaped_like_stripes() {
    // Arrange
    let sb = start().await;

    // Act
    let resp = stripe_post(
        &sb,
        "v1/customers",
        "email=avery.1%40example.test&metadata[chairside_patient]=p1",
        Some("k1"),
    )
    .await;

    // Assert
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("cus_"));
    assert_eq!(body["object"], "customer");
    assert_eq!(body["metadata"]["chairside_patient"], "p1");
    let got: Value = stripe_get(&sb, &format!("v1/customers/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, body);
    let listed: Value = stripe_get(&sb, "v1/customers?email=avery.1%40example.test")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["object"], "list");
    assert_eq!(listed["data"][0]["id"], id);
}

#[tokio::test]
async fn the_same_key_and_parameters_replay_the_stored_response() {
    // Arrange
    let sb = start().await;
    let first = stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("same")).await;
    let first_body = first.text().await.unwrap();

    // Act
    let second = stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("same")).await;

    // Assert
    assert_eq!(second.status(), 200);
    assert_eq!(
        second
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    assert_eq!(second.text().await.unwrap(), first_body);
    assert_eq!(sb.stripe().customers().len(), 1);
}

#[tokio::test]
async fn the_same_key_with_different_parameters_is_an_idempotency_error() {
    // Arrange
    let sb = start().await;
    stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("k")).await;

    // Act
    let resp = stripe_post(&sb, "v1/customers", "email=b%40example.test", Some("k")).await;

    // Assert
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "idempotency_error");
    assert_eq!(sb.stripe().customers().len(), 1);
}

#[tokio::test]
async fn a_concurrent_request_with_a_key_in_flight_gets_409() {
    // Arrange
    let sb = start().await;
    sb.stripe().set_processing_delay(Duration::from_millis(300));

    // Act
    let slow = stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("busy"));
    let fast = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("busy")).await
    };
    let (slow, fast) = tokio::join!(slow, fast);

    // Assert
    assert_eq!(slow.status(), 200);
    assert_eq!(fast.status(), 409);
    assert_eq!(sb.stripe().customers().len(), 1);
}

#[tokio::test]
async fn a_validation_failure_is_not_stored_under_its_key() {
    // Arrange
    let sb = start().await;
    let bad = stripe_post(&sb, "v1/products", "description=no-name", Some("p")).await;
    assert_eq!(bad.status(), 400);

    // Act
    let good = stripe_post(&sb, "v1/products", "name=Dental+treatment", Some("p")).await;

    // Assert
    assert_eq!(good.status(), 200);
    assert!(good.headers().get("idempotent-replayed").is_none());
}

#[tokio::test]
async fn a_wrong_api_key_is_refused() {
    // Arrange
    let sb = start().await;

    // Act
    let resp = crate::support::http()
        .get(sb.urls().stripe.join("v1/customers").unwrap())
        .bearer_auth("sk_test_wrong")
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(resp.status(), 401);
}
