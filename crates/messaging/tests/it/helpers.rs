//! Shared fixtures. Every patient here is made up.

use std::sync::Arc;
use std::time::Duration;

use financing_core::PracticeId;
use messaging::RetryPolicy;
use messaging::{
    AccountSid, ConsentLedger, InMemoryConsentLedger, OutgoingSms, PhoneNumber, SmsClient, SmsFrom,
};
use secrecy::SecretString;
use url::Url;
use wiremock::MockServer;

pub(crate) const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
pub(crate) const AUTH_TOKEN: &str = "test-auth-token";
pub(crate) const PATIENT_PHONE: &str = "+15555550123";
pub(crate) const PRACTICE_PHONE: &str = "+15555550100";

pub(crate) fn practice() -> PracticeId {
    PracticeId::new("bright-smiles")
}

pub(crate) fn patient_phone() -> PhoneNumber {
    PhoneNumber::parse(PATIENT_PHONE).expect("fixture phone")
}

/// Retries quickly, so retry tests do not sleep for seconds.
pub(crate) fn fast_backoff(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .min_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .max_attempts(max_attempts)
        .max_total_wait(Duration::from_secs(1))
}

pub(crate) fn sms_client(server: &MockServer, ledger: Arc<dyn ConsentLedger>) -> SmsClient {
    SmsClient::builder(
        AccountSid::new(ACCOUNT_SID),
        SecretString::from(AUTH_TOKEN),
        ledger,
    )
    .base_url(Url::parse(&server.uri()).expect("mock url"))
    .timeout(Duration::from_millis(500))
    .retry(fast_backoff(3))
    .build()
    .expect("client")
}

pub(crate) fn empty_ledger() -> Arc<InMemoryConsentLedger> {
    Arc::new(InMemoryConsentLedger::new())
}

pub(crate) fn outgoing(body: &str) -> OutgoingSms {
    OutgoingSms {
        practice: practice(),
        to: patient_phone(),
        from: SmsFrom::Number(PhoneNumber::parse(PRACTICE_PHONE).expect("fixture phone")),
        body: body.to_owned(),
        status_callback: Some(
            Url::parse("https://chairside.example.test/webhooks/twilio").expect("url"),
        ),
    }
}

pub(crate) fn messages_path() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
}

/// `Authorization: Basic base64(AccountSid:AuthToken)`.
pub(crate) fn basic_auth_header() -> String {
    use base64::Engine as _;
    let raw = format!("{ACCOUNT_SID}:{AUTH_TOKEN}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}
