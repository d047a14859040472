//! Shared set-up: a wiremock server with a token endpoint, and a client pointed at it.

use std::time::Duration;

use dentrix_client::RetryPolicy;
use dentrix_client::{Client, Credentials, OrganizationId};
use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{body_string_contains, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

pub(crate) const TOKEN: &str = "tok-1";
pub(crate) const BEARER: &str = "Bearer tok-1";
pub(crate) const ORG: &str = "org-77";
pub(crate) const TOKEN_PATH: &str = "/oauth/client_credential/accesstoken";

pub(crate) fn api(resource: &str) -> String {
    format!("/ascend-gateway/api/v1/{resource}")
}

pub(crate) fn fixture(name: &str) -> Value {
    let file = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

pub(crate) fn token_body(token: &str, expires_in: &str) -> Value {
    json!({ "access_token": token, "token_type": "BearerToken", "expires_in": expires_in })
}

/// A token request as our client sends it: the grant type in the query, the client in the form.
pub(crate) fn token_request() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(TOKEN_PATH))
        .and(query_param("grant_type", "client_credentials"))
        .and(body_string_contains("client_id=test-client"))
        .and(body_string_contains("client_secret=not-a-real-secret"))
}

/// The token endpoint as Apigee answers it; matches only our client's form.
pub(crate) fn token_mock(token: &str, expires_in: &str) -> Mock {
    token_request()
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body(token, expires_in)))
}

/// A server whose token endpoint hands out `tok-1` for an hour, any number of times.
pub(crate) async fn server() -> MockServer {
    let server = MockServer::start().await;
    token_mock(TOKEN, "3599").mount(&server).await;
    server
}

pub(crate) fn credentials() -> Credentials {
    Credentials::new(
        "test-client",
        SecretString::from("not-a-real-secret"),
        OrganizationId::new(ORG),
    )
}

/// Fast retries (three attempts, a few milliseconds apart) and a short timeout.
pub(crate) fn fast_backoff() -> RetryPolicy {
    RetryPolicy::default()
        .min_delay(Duration::from_millis(1))
        .max_delay(Duration::from_millis(5))
        .max_attempts(3)
        .max_total_wait(Duration::from_secs(1))
}

pub(crate) fn client(server: &MockServer) -> Client {
    Client::builder(Url::parse(&server.uri()).unwrap(), credentials())
        .timeout(Duration::from_millis(500))
        .retry(fast_backoff())
        .build()
        .unwrap()
}

pub(crate) fn envelope(data: Value) -> Value {
    let mut body = json!({ "warnings": [], "errors": [], "meta": {} });
    body["data"] = data;
    body
}
