//! The HTTP client every connector builds when the embedder gives it none, and the one the
//! orchestrator shares between its connectors.

use std::time::Duration;

/// A `reqwest` client builder as every connector's default client is made: `timeout` on each
/// request and **no redirect followed**.
///
/// A vendor's API answers its calls; it does not send them elsewhere. A 307 or 308 that reqwest
/// followed would send the same request, body included (patient details, amounts), to whatever
/// host the `Location` names, and the call's authorization with it when the host is the same.
/// With redirects off the 3xx reaches the connector, which reports it as the vendor's error with
/// its status, like any answer it does not expect. It also spares every call reqwest's redirect
/// layer (a copy of the URL per request).
///
/// Add what else the caller needs (`pool_max_idle_per_host`, a proxy) before `build()`.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
}
