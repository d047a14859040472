//! Shared fixtures. Patients are obviously made up.

use carecredit_client::RetryPolicy;
use std::time::Duration;

use carecredit_client::{Client, ClientBuilder, Credentials, PartnerCode};
use chrono::NaiveDate;
use financing_core::{
    Applicant, ApplicationHandle, ApplicationRef, FinancingRequest, LenderLocation,
    LenderReference, LocationId, Money, PracticeId, UsState,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub(crate) const MERCHANT: &str = "5348120000000001";
pub(crate) const PARTNER: &str = "CHAIRSIDE-TEST";
pub(crate) const REFERENCE: &str = "wf-0001-finance-1";
pub(crate) const LOCATION: &str = "main-st";
pub(crate) const TOKEN_PATH: &str = "/oauth2/v1/token";
pub(crate) const SESSIONS_PATH: &str = "/v1/prefill/sessions";
pub(crate) const LOOKUP_PATH: &str = "/v1/cardholders/lookup";

pub(crate) fn pullback_path(session: &str) -> String {
    format!("/v1/prefill/sessions/{session}/pullback")
}

pub(crate) fn builder(server: &MockServer) -> ClientBuilder {
    Client::builder(
        server.uri().parse().unwrap(),
        Credentials {
            partner_code: PartnerCode::new(PARTNER),
            client_id: "test-client".into(),
            client_secret: "test-client-secret".into(),
        },
    )
    .merchant(LocationId::new(LOCATION), MERCHANT)
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

pub(crate) fn token_body(token: &str, expires_in: u64) -> Value {
    json!({ "access_token": token, "token_type": "Bearer", "expires_in": expires_in })
}

/// A token endpoint that hands out `tok-1` for an hour.
pub(crate) async fn mount_token(server: &MockServer, expected_calls: u64) {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", 3600)))
        .expect(expected_calls)
        .named("token")
        .mount(server)
        .await;
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
        date_of_birth: NaiveDate::from_ymd_opt(1980, 2, 3),
    }
}

pub(crate) fn request(prefill: Option<Applicant>, lookup: Option<Applicant>) -> FinancingRequest {
    FinancingRequest {
        reference: ApplicationRef::new(REFERENCE),
        location: location(),
        amount: Money::usd(180_000),
        prefill,
        lookup,
        return_url: None,
    }
}

pub(crate) fn handle(session: &str) -> ApplicationHandle {
    ApplicationHandle {
        reference: ApplicationRef::new(REFERENCE),
        lender_reference: LenderReference::new(session),
        location: location(),
        amount: Money::usd(180_000),
    }
}
