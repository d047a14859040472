use std::time::Duration;

use financing_core::ErrorKind;
use secrecy::SecretString;
use serde_json::json;
use stripe_schedule::RetryPolicy;
use stripe_schedule::{Client, CustomerDetails, CustomerId, Error, Metadata};
use url::Url;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::{StripeMock, fixture_with, key};

fn customer() -> serde_json::Value {
    fixture_with("customer", json!({"id": "cus_retry"}))
}

fn details() -> CustomerDetails {
    CustomerDetails {
        name: Some("Retry Fixture".into()),
        ..Default::default()
    }
}

async fn mount_sequence(
    stripe: &StripeMock,
    first: ResponseTemplate,
    first_times: u64,
    then: ResponseTemplate,
) {
    stripe
        .mount(
            Mock::given(method("POST"))
                .and(path("/v1/customers"))
                .respond_with(first)
                .up_to_n_times(first_times)
                .with_priority(1),
        )
        .await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .and(path("/v1/customers"))
                .respond_with(then)
                .with_priority(2),
        )
        .await;
}

fn keys(requests: &[wiremock::Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_500_then_200_makes_two_calls_with_the_same_key_and_body() {
    // Arrange
    let stripe = StripeMock::start().await;
    mount_sequence(
        &stripe,
        ResponseTemplate::new(500),
        1,
        ResponseTemplate::new(200).set_body_json(customer()),
    )
    .await;
    // Act
    let c = stripe
        .client()
        .create_customer(&details(), &Metadata::new(), &key("wf-1:customer"))
        .await
        .unwrap();
    // Assert
    assert_eq!(c.id, CustomerId::new("cus_retry"));
    let requests = stripe.finish().await;
    assert_eq!(requests.len(), 2);
    assert_eq!(keys(&requests), ["wf-1:customer", "wf-1:customer"]);
    assert_eq!(requests[0].body, requests[1].body);
}

#[tokio::test]
async fn a_400_makes_one_call() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(400).set_body_json(
                    json!({"error": {"type": "invalid_request_error", "code": "parameter_missing"}}),
                ))
                .expect(1),
        )
        .await;
    // Act
    let err = stripe
        .client()
        .create_customer(&details(), &Metadata::new(), &key("k"))
        .await
        .unwrap_err();
    // Assert
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(matches!(&err, Error::Api(a) if a.attempts == 1), "{err:?}");
    stripe.finish().await;
}

#[tokio::test]
async fn a_replayed_500_stops_retrying_and_is_indeterminate() {
    // Arrange: the first 500 is retried; Stripe then replays the stored 500.
    let stripe = StripeMock::start().await;
    mount_sequence(
        &stripe,
        ResponseTemplate::new(500),
        1,
        ResponseTemplate::new(500).insert_header("idempotent-replayed", "true"),
    )
    .await;
    // Act
    let err = stripe
        .client()
        .create_customer(&details(), &Metadata::new(), &key("k"))
        .await
        .unwrap_err();
    // Assert
    assert_eq!(err.kind(), ErrorKind::Indeterminate);
    assert_eq!(stripe.finish().await.len(), 2);
}

#[tokio::test]
async fn a_409_then_200_succeeds_on_the_retry() {
    let stripe = StripeMock::start().await;
    mount_sequence(
        &stripe,
        ResponseTemplate::new(409),
        1,
        ResponseTemplate::new(200).set_body_json(customer()),
    )
    .await;
    let c = stripe
        .client()
        .create_customer(&details(), &Metadata::new(), &key("k"))
        .await;
    assert!(c.is_ok(), "{c:?}");
    assert_eq!(stripe.finish().await.len(), 2);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_max_wait_returns_at_once_with_the_delay() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "60"))
                .expect(1),
        )
        .await;
    let client = stripe.client_with(|b| {
        b.retry(crate::helpers::fast_backoff().max_total_wait(Duration::from_secs(1)))
    });
    // Act
    let err = client
        .create_customer(&details(), &Metadata::new(), &key("k"))
        .await
        .unwrap_err();
    // Assert
    assert_eq!(
        err.kind(),
        ErrorKind::Transient {
            retry_after: Some(Duration::from_secs(60))
        }
    );
    stripe.finish().await;
}

#[tokio::test]
async fn retry_policy_none_never_retries() {
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("GET"))
                .respond_with(ResponseTemplate::new(503))
                .expect(1),
        )
        .await;
    let client = stripe.client_with(|b| b.retry(RetryPolicy::none()));
    let err = client
        .get_customer(&CustomerId::new("cus_1"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    stripe.finish().await;
}

#[tokio::test]
async fn a_refused_connection_is_transient_after_every_attempt() {
    // Arrange: a port that nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let client = Client::builder(SecretString::from("sk_test_x".to_owned()))
        .base_url(Url::parse(&format!("http://127.0.0.1:{port}")).unwrap())
        .retry(crate::helpers::fast_backoff())
        .build()
        .unwrap();
    // Act
    let err = client
        .list_customers_by_email("testy@example.test")
        .await
        .unwrap_err();
    // Assert
    assert_eq!(err.kind(), ErrorKind::TRANSIENT);
    assert!(
        matches!(
            err,
            Error::Transport {
                timeout: false,
                attempts: 3,
                ..
            }
        ),
        "{err:?}"
    );
    // The error never carries the URL: its query string holds the email.
    let shown = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
    assert!(
        !shown.contains("testy") && !shown.contains("/v1/customers"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_base_url_path_is_kept_as_a_prefix() {
    // Arrange
    let stripe = StripeMock::start().await;
    stripe
        .mount(
            Mock::given(method("GET"))
                .and(path("/stripe/v1/customers/cus_1"))
                .respond_with(ResponseTemplate::new(200).set_body_json(customer()))
                .expect(1),
        )
        .await;
    let base = stripe.url().join("/stripe/").unwrap();
    let client = stripe.client_with(|b| b.base_url(base));
    // Act
    let c = client.get_customer(&CustomerId::new("cus_1")).await;
    // Assert
    assert!(c.is_ok(), "{c:?}");
    stripe.finish_under("/stripe").await;
}

#[test]
fn client_futures_and_errors_can_cross_threads() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}
    let client = Client::builder(SecretString::from("sk_test_x".to_owned()))
        .build()
        .unwrap();
    let d = details();
    let m = Metadata::new();
    let k = key("k");
    // Never polled: this only proves the future is Send (usable from tokio::spawn and axum).
    let fut = client.create_customer(&d, &m, &k);
    assert_send(&fut);
    assert_error::<Error>();
    assert_error::<stripe_schedule::webhook::WebhookError>();
    // And a connector error converts into the shared provider error.
    let e = financing_core::ProviderError::from_classified(Error::Config(
        stripe_schedule::ConfigError::EmptyApiKey,
    ));
    assert_eq!(e.kind(), ErrorKind::Permanent);
}
