//! Building the client.

use carecredit_client::{Client, Credentials, DEFAULT_LIMITS, Error, PartnerCode};
use financing_core::{AmountLimits, ErrorKind, FinancingProvider, LocationId, Money};
use wiremock::MockServer;

use crate::helpers::{MERCHANT, builder, client};

fn credentials() -> Credentials {
    Credentials {
        partner_code: PartnerCode::new("CHAIRSIDE-TEST"),
        client_id: "test-client".into(),
        client_secret: "do-not-print-me".into(),
    }
}

#[test]
fn build_rejects_a_merchant_number_that_is_not_sixteen_digits_without_echoing_it() {
    // Arrange
    let b = Client::builder("http://127.0.0.1:9".parse().unwrap(), credentials())
        .merchant(LocationId::new("main-st"), "53481200000");

    // Act
    let err = b.build().unwrap_err();

    // Assert
    assert!(matches!(err, Error::Config(_)));
    assert_eq!(err.kind(), ErrorKind::Permanent);
    let shown = err.to_string();
    assert!(
        shown.contains("main-st") && !shown.contains("53481200000"),
        "{shown}"
    );
}

#[test]
fn build_rejects_no_locations_and_duplicate_locations() {
    let none = Client::builder("http://127.0.0.1:9".parse().unwrap(), credentials()).build();
    assert!(matches!(none, Err(Error::Config(_))));
    let twice = Client::builder("http://127.0.0.1:9".parse().unwrap(), credentials())
        .merchant(LocationId::new("main-st"), MERCHANT)
        .merchant(LocationId::new("main-st"), "5348120000000002")
        .build();
    assert!(matches!(twice, Err(Error::Config(_))));
}

#[test]
fn debug_output_hides_the_client_secret() {
    let b = Client::builder("http://127.0.0.1:9".parse().unwrap(), credentials())
        .merchant(LocationId::new("main-st"), MERCHANT);
    assert!(!format!("{b:?}").contains("do-not-print-me"));
    let c = b.build().unwrap();
    assert!(!format!("{c:?}").contains("do-not-print-me"));
}

#[tokio::test]
async fn limits_default_to_the_two_hundred_dollar_promotion_minimum_and_are_configurable() {
    let server = MockServer::start().await;
    let default = client(&server);
    assert_eq!(default.limits(), DEFAULT_LIMITS);
    assert!(!default.limits().admits(Money::usd(19_999)));
    assert!(default.limits().admits(Money::usd(20_000)));
    let custom = AmountLimits {
        min: Some(Money::usd(50_000)),
        max: Some(Money::usd(2_500_000)),
    };
    let configured = builder(&server).limits(custom).build().unwrap();
    assert_eq!(configured.limits(), custom);
    assert_eq!(configured.id().as_str(), "carecredit");
    assert_eq!(configured.display_name(), "CareCredit");
}
