//! Fault injection, observed by a plain reqwest client.

use std::time::{Duration, Instant};

use sandbox::{Fault, FaultRule, System};

use crate::support::{STRIPE_KEY, http, start, stripe_post};

#[tokio::test]
async fn a_429_rule_answers_with_retry_after_without_running_the_handler() {
    // Arrange
    let sb = start().await;
    sb.faults().push(
        System::Stripe,
        FaultRule::new(Fault::too_many_requests(2))
            .on("POST", "/v1/customers")
            .times(1),
    );

    // Act
    let first = stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("k")).await;
    let second = stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("k")).await;

    // Assert
    assert_eq!(first.status(), 429);
    assert_eq!(first.headers()["retry-after"], "2");
    assert_eq!(second.status(), 200);
    assert!(second.headers().get("idempotent-replayed").is_none());
    assert_eq!(sb.stripe().customers().len(), 1);
    let recorded = sb.requests(System::Stripe);
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].faults, vec!["status_429".to_owned()]);
    assert_eq!(recorded[0].status, Some(429));
}

#[tokio::test]
async fn a_500_rule_only_hits_its_route() {
    // Arrange
    let sb = start().await;
    sb.faults().set(
        System::Stripe,
        vec![FaultRule::new(Fault::status(500)).on("POST", "/v1/products")],
    );

    // Act
    let product = stripe_post(&sb, "v1/products", "name=X", None).await;
    let customer = stripe_post(&sb, "v1/customers", "email=a%40example.test", None).await;

    // Assert
    assert_eq!(product.status(), 500);
    assert_eq!(customer.status(), 200);
}

#[tokio::test]
async fn a_lost_response_is_applied_but_the_client_sees_a_connection_error() {
    // Arrange
    let sb = start().await;
    sb.faults().push(
        System::Stripe,
        FaultRule::new(Fault::applied_then_reset())
            .on("POST", "/v1/customers")
            .times(1),
    );

    // Act
    let result = http()
        .post(sb.urls().stripe.join("v1/customers").unwrap())
        .bearer_auth(STRIPE_KEY)
        .header("Idempotency-Key", "lost")
        .body("email=a%40example.test")
        .send()
        .await;
    let retry = stripe_post(&sb, "v1/customers", "email=a%40example.test", Some("lost")).await;

    // Assert
    let err = result.expect_err("the response is lost");
    assert!(!err.is_status());
    assert_eq!(sb.stripe().customers().len(), 1);
    assert_eq!(retry.status(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn a_hung_response_makes_the_client_time_out_after_the_effect() {
    // Arrange
    let sb = start().await;
    sb.faults().push(
        System::Stripe,
        FaultRule::new(Fault::applied_then_hang()).times(1),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    // Act
    let result = client
        .post(sb.urls().stripe.join("v1/customers").unwrap())
        .bearer_auth(STRIPE_KEY)
        .body("email=a%40example.test")
        .send()
        .await;

    // Assert
    assert!(result.expect_err("times out").is_timeout());
    assert_eq!(sb.stripe().customers().len(), 1);
}

#[tokio::test]
async fn a_connection_reset_applies_nothing() {
    // Arrange
    let sb = start().await;
    sb.faults().push(
        System::Stripe,
        FaultRule::new(Fault::ConnectionReset).times(1),
    );

    // Act
    let result = http()
        .post(sb.urls().stripe.join("v1/customers").unwrap())
        .bearer_auth(STRIPE_KEY)
        .body("email=a%40example.test")
        .send()
        .await;

    // Assert
    assert!(result.is_err());
    assert!(sb.stripe().customers().is_empty());
}

#[tokio::test]
async fn latency_and_slow_drip_delay_the_answer_but_keep_it_intact() {
    // Arrange
    let sb = start().await;
    sb.faults().set(
        System::Stripe,
        vec![
            FaultRule::new(Fault::latency(Duration::from_millis(120))),
            FaultRule::new(Fault::SlowDrip {
                chunk: 64,
                interval: Duration::from_millis(5),
            }),
        ],
    );
    let started = Instant::now();

    // Act
    let resp = stripe_post(&sb, "v1/customers", "email=a%40example.test", None).await;
    let body: serde_json::Value = resp.json().await.unwrap();

    // Assert
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(body["object"], "customer");
}

#[tokio::test]
async fn the_same_seed_draws_the_same_faults() {
    // Arrange
    let draws = |seed: u64| async move {
        let mut config = sandbox::SandboxConfig {
            seed,
            ..Default::default()
        };
        config.faults.insert(
            System::Stripe,
            vec![FaultRule::new(Fault::status(503)).probability(0.5)],
        );
        let sb = crate::support::start_with(config).await;
        let mut out = Vec::new();
        for _ in 0..12 {
            out.push(
                stripe_post(&sb, "v1/products", "name=X", None)
                    .await
                    .status()
                    .as_u16(),
            );
        }
        out
    };

    // Act
    let a = draws(42).await;
    let b = draws(42).await;

    // Assert
    assert_eq!(a, b);
    assert!(a.contains(&503) && a.contains(&200));
}
