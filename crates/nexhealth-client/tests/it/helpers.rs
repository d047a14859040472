//! Shared set-up: a wiremock server with `/authenticates`, and a client pointed at it.

use std::time::Duration;

use base64::Engine as _;
use nexhealth_client::RetryPolicy;
use nexhealth_client::{Client, Credentials, LocationId, RateBudget};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub(crate) const API_KEY: &str = "fake-api-key";
pub(crate) const SUBDOMAIN: &str = "demo-dental";
pub(crate) const LOCATION: &str = "21";

/// A JWT-shaped token (unsigned: the client never verifies it) expiring `seconds` from now.
pub(crate) fn jwt(subject: &str, seconds: i64) -> String {
    let enc = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let exp = chrono::Utc::now().timestamp() + seconds;
    format!(
        "{}.{}.sig",
        enc(json!({ "alg": "HS256" })),
        enc(json!({ "sub": subject, "exp": exp }))
    )
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub(crate) fn fixture(name: &str) -> Value {
    let file = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

pub(crate) fn auth_body(token: &str) -> Value {
    json!({ "code": true, "data": { "token": token }, "description": "Authenticated", "error": [] })
}

/// `POST /authenticates` as our client sends it: the bare API key, the API version.
pub(crate) fn auth_request() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path("/authenticates"))
        .and(header("authorization", API_KEY))
        .and(header("nex-api-version", "v3.0.0"))
}

pub(crate) fn auth_mock(token: &str) -> Mock {
    auth_request().respond_with(ResponseTemplate::new(200).set_body_json(auth_body(token)))
}

/// A server whose `/authenticates` hands out `token()` any number of times.
pub(crate) async fn server() -> MockServer {
    let server = MockServer::start().await;
    auth_mock(&token()).mount(&server).await;
    server
}

/// The standard token: valid for an hour.
pub(crate) fn token() -> String {
    // Deterministic per test run: the expiry is far enough away that the value does not matter.
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| jwt("api-user", 3600)).clone()
}

pub(crate) fn credentials() -> Credentials {
    Credentials::new(
        SecretString::from(API_KEY),
        SUBDOMAIN,
        LocationId::new(LOCATION),
    )
}

pub(crate) fn fast_backoff() -> RetryPolicy {
    RetryPolicy::default()
        .min_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .max_attempts(3)
        .max_total_wait(Duration::from_secs(1))
}

pub(crate) fn builder(server: &MockServer) -> nexhealth_client::ClientBuilder {
    Client::builder(Url::parse(&server.uri()).unwrap(), credentials())
        .timeout(Duration::from_millis(500))
        .retry(fast_backoff())
        .rate_budget(RateBudget::UNLIMITED)
}

pub(crate) fn client(server: &MockServer) -> Client {
    builder(server).build().unwrap()
}

/// Matches the scope every resource call carries.
pub(crate) fn scoped(http_method: &str, p: &str) -> MockBuilder {
    use wiremock::matchers::query_param;
    Mock::given(method(http_method))
        .and(path(p.to_owned()))
        .and(query_param("subdomain", SUBDOMAIN))
        .and(query_param("location_id", LOCATION))
}

pub(crate) fn envelope(data: Value) -> Value {
    let mut body = json!({ "code": true, "error": [] });
    body["data"] = data;
    body
}
