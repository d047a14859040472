//! Shared helpers.

use std::time::Duration;

use sandbox::{Sandbox, SandboxConfig};

/// A sandbox with default settings.
pub(crate) async fn start() -> Sandbox {
    start_with(SandboxConfig::default()).await
}

/// A sandbox with `config`.
pub(crate) async fn start_with(config: SandboxConfig) -> Sandbox {
    Sandbox::start(config).await.expect("sandbox starts")
}

/// A plain HTTP client with a short timeout.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

/// The Stripe secret key of the default configuration.
pub(crate) const STRIPE_KEY: &str = "sk_test_sandbox";

/// POSTs a form to the Stripe stand-in.
pub(crate) async fn stripe_post(
    sb: &Sandbox,
    path: &str,
    form: &str,
    key: Option<&str>,
) -> reqwest::Response {
    let mut req = http()
        .post(sb.urls().stripe.join(path).expect("url"))
        .bearer_auth(STRIPE_KEY)
        .header("Stripe-Version", sandbox::STRIPE_API_VERSION)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    req.send().await.expect("request sent")
}

/// GETs from the Stripe stand-in.
pub(crate) async fn stripe_get(sb: &Sandbox, path_and_query: &str) -> reqwest::Response {
    http()
        .get(sb.urls().stripe.join(path_and_query).expect("url"))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .expect("request sent")
}
