//! Shared fixtures. Patients are obviously made up.

use std::time::Duration;
use sunbit_client::RetryPolicy;

use financing_core::{
    Applicant, ApplicationHandle, ApplicationRef, FinancingRequest, LenderLocation,
    LenderReference, LocationId, Money, PracticeId, UsState,
};
use sunbit_client::{Client, ClientBuilder, Credentials};
use wiremock::{MockServer, Request};

pub(crate) const KEY: &str = "test-sunbit-key";
pub(crate) const SECRET: &str = "test-sunbit-secret";
pub(crate) const SUNBIT_LOCATION: &str = "smile-main";
pub(crate) const REFERENCE: &str = "wf-0002-finance-2";
pub(crate) const LOCATION: &str = "main-st";
pub(crate) const LINK_PATH: &str = "/purchase/api/v1/online-link";
pub(crate) const EPAY_PATH: &str = "/epay/api/v1/epay";

pub(crate) fn cancel_path(purchase: &str) -> String {
    format!("/epay/api/v1/epay/cancel/{purchase}")
}

pub(crate) fn builder(server: &MockServer) -> ClientBuilder {
    Client::builder(
        server.uri().parse().unwrap(),
        Credentials {
            key: KEY.into(),
            secret: SECRET.into(),
        },
    )
    .location(LocationId::new(LOCATION), SUNBIT_LOCATION)
    .timeout(Duration::from_millis(500))
    .retry(RetryPolicy::none())
}

pub(crate) fn client(server: &MockServer) -> Client {
    builder(server).build().unwrap()
}

/// Retries fast enough for tests.
pub(crate) fn fast_backoff(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .min_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(10))
        .max_attempts(max_attempts)
        .max_total_wait(Duration::from_secs(1))
        .jitter(false)
}

/// True when the request carries no secret header.
pub(crate) fn no_secret_header(req: &Request) -> bool {
    !req.headers.contains_key("sunbit-secret")
}

pub(crate) fn location() -> LenderLocation {
    LenderLocation {
        practice_id: PracticeId::new("smile-test-dental"),
        location_id: LocationId::new(LOCATION),
        state: UsState::TX,
    }
}

pub(crate) fn applicant() -> Applicant {
    Applicant {
        first_name: "Marisol".into(),
        last_name: "Testcase".into(),
        mobile_phone: Some("+15555550100".into()),
        email: Some("marisol@example.test".into()),
        address_lines: vec!["1 Fixture Way".into(), "Suite 2".into()],
        city: Some("Sampletown".into()),
        state: Some(UsState::TX),
        postal_code: Some("75001".into()),
        date_of_birth: None,
    }
}

pub(crate) fn request(prefill: Option<Applicant>) -> FinancingRequest {
    FinancingRequest {
        reference: ApplicationRef::new(REFERENCE),
        location: location(),
        amount: Money::usd(180_000),
        prefill,
        lookup: None,
        return_url: None,
    }
}

/// A handle as `start_application` leaves it: the lender reference is our reference.
pub(crate) fn handle_by_reference() -> ApplicationHandle {
    handle(REFERENCE)
}

pub(crate) fn handle(lender_reference: &str) -> ApplicationHandle {
    ApplicationHandle {
        reference: ApplicationRef::new(REFERENCE),
        lender_reference: LenderReference::new(lender_reference),
        location: location(),
        amount: Money::usd(180_000),
    }
}
