//! Building the client.

use financing_core::{AmountLimits, ErrorKind, FinancingProvider, LocationId, Money};
use sunbit_client::{Client, Credentials, DEFAULT_LIMITS, Error};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{builder, client};

fn credentials() -> Credentials {
    Credentials {
        key: "key-do-not-print".into(),
        secret: "secret-do-not-print".into(),
    }
}

#[test]
fn build_rejects_missing_blank_and_duplicate_locations() {
    let base = || "http://127.0.0.1:9".parse().unwrap();
    let none = Client::builder(base(), credentials()).build();
    assert!(matches!(none, Err(Error::Config(_))));
    let blank = Client::builder(base(), credentials())
        .location(LocationId::new("main-st"), " ")
        .build();
    assert!(matches!(blank, Err(Error::Config(_))));
    let twice = Client::builder(base(), credentials())
        .location(LocationId::new("main-st"), "a")
        .location(LocationId::new("main-st"), "b")
        .build();
    let err = twice.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Permanent);
    assert!(err.to_string().contains("main-st"));
}

#[test]
fn debug_output_hides_the_key_and_secret() {
    let b = Client::builder("http://127.0.0.1:9".parse().unwrap(), credentials())
        .location(LocationId::new("main-st"), "smile-main");
    let shown = format!("{b:?}");
    assert!(!shown.contains("do-not-print"), "{shown}");
    let c = b.build().unwrap();
    assert!(!format!("{c:?}").contains("do-not-print"));
}

#[tokio::test]
async fn limits_default_to_none_and_are_configurable() {
    let server = MockServer::start().await;
    assert_eq!(client(&server).limits(), DEFAULT_LIMITS);
    let custom = AmountLimits {
        min: Some(Money::usd(6_000)),
        max: Some(Money::usd(2_000_000)),
    };
    let c = builder(&server).limits(custom).build().unwrap();
    assert_eq!(c.limits(), custom);
    assert_eq!(c.id().as_str(), "sunbit");
    assert_eq!(c.display_name(), "Sunbit");
}

#[tokio::test]
async fn sunbit_has_no_cardholder_lookup() {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&server)
        .await;
    let found = client(&server)
        .lookup_cardholder(&crate::helpers::request(None))
        .await
        .unwrap();
    assert_eq!(found, None);
}
