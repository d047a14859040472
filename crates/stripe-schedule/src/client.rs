//! [`Client`], [`ClientBuilder`], authentication and retries.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_transport::RetryPolicy;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use connector_transport::decode_json;

use crate::error::{ApiError, ConfigError, Error, ErrorObject, Method, Result};
use crate::form::{FormMap, encode};
use crate::ids::RequestId;
use crate::params::IdempotencyKey;

/// The API version every request pins (`Stripe-Version`). Configure webhook endpoints with the
/// same `api_version`: events are rendered in the endpoint's version, not the request's.
pub const API_VERSION: &str = "2026-10-28.endive";

/// Stripe's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com/";

/// Per-request timeout when none is configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A Stripe API client. Cheap to clone (an `Arc` inside).
///
/// Every request carries `Authorization: Bearer …` and `Stripe-Version: 2026-10-28.endive`;
/// every POST carries the caller's `Idempotency-Key`. Connection errors, timeouts, 409, 424, 429
/// and 5xx are retried under the configured [`RetryPolicy`] (same key, same body), honouring
/// `Stripe-Should-Retry` and `Retry-After`; other 4xx never are.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    api_key: SecretString,
    timeout: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hand-written so the key can never be printed.
        f.debug_struct("Client")
            .field("base", &self.inner.base.as_str())
            .field("timeout", &self.inner.timeout)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    api_key: SecretString,
    base_url: Option<Url>,
    timeout: Duration,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("api_key", &"[redacted]")
            .field("base_url", &self.base_url.as_ref().map(Url::as_str))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a builder with a secret key (`sk_…` or a restricted `rk_…`).
    pub fn builder(api_key: SecretString) -> ClientBuilder {
        ClientBuilder {
            api_key,
            base_url: None,
            timeout: DEFAULT_TIMEOUT,
            http: None,
            retry: RetryPolicy::default(),
        }
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }
}

impl ClientBuilder {
    /// Sends requests somewhere other than `https://api.stripe.com` (a test server, the sandbox).
    /// A path in the URL is kept as a prefix.
    #[must_use]
    pub fn base_url(mut self, url: Url) -> Self {
        self.base_url = Some(url);
        self
    }

    /// Timeout of each attempt (default 30 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Uses a shared `reqwest::Client` (connection pool). The per-attempt timeout still applies.
    /// Build it with `connector_transport::client_builder`, which follows no redirect, as the
    /// default client does: a followed 307 would send the request body to another host.
    #[must_use]
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The retry policy (default: [`RetryPolicy::default`]: 0.5 s doubling to 5 s, three
    /// attempts, at most 20 s of waiting; a longer `Retry-After` ends the call with a transient
    /// error so the caller can schedule the retry instead). [`RetryPolicy::none`] turns retries
    /// off.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] (kind `Permanent`): an empty or non-header-safe key, a base URL that is
    /// not http(s), a zero timeout, or a failure to build the HTTP client.
    pub fn build(self) -> Result<Client> {
        let key = self.api_key.expose_secret();
        if key.is_empty() {
            return Err(ConfigError::EmptyApiKey.into());
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ConfigError::ApiKeyNotHeaderSafe.into());
        }
        let base = match self.base_url {
            Some(u) => u,
            None => Url::parse(DEFAULT_BASE_URL).map_err(|_| ConfigError::BaseUrl)?,
        };
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConfigError::BaseUrl.into());
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout.into());
        }
        let http = match self.http {
            Some(h) => h,
            None => connector_transport::client_builder(self.timeout)
                .user_agent(concat!(
                    "chairside-stripe-schedule/",
                    env!("CARGO_PKG_VERSION")
                ))
                .build()
                .map_err(ConfigError::HttpClient)?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                api_key: self.api_key,
                timeout: self.timeout,
                retry: self.retry,
            }),
        })
    }
}

/// What one request is.
pub(crate) struct Call<'a> {
    pub(crate) op: &'static str,
    pub(crate) method: Method,
    pub(crate) path: &'a [&'a str],
    pub(crate) form: FormMap,
    pub(crate) key: Option<&'a IdempotencyKey>,
}

impl<'a> Call<'a> {
    pub(crate) fn get(op: &'static str, path: &'a [&'a str]) -> Self {
        Self {
            op,
            method: Method::Get,
            path,
            form: FormMap::new(),
            key: None,
        }
    }

    pub(crate) fn post(
        op: &'static str,
        path: &'a [&'a str],
        form: FormMap,
        key: &'a IdempotencyKey,
    ) -> Self {
        Self {
            op,
            method: Method::Post,
            path,
            form,
            key: Some(key),
        }
    }

    pub(crate) fn query(mut self, form: FormMap) -> Self {
        self.form = form;
        self
    }
}

impl Client {
    /// Sends a call with retries and decodes a 2xx body.
    pub(crate) async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let mut url = self.inner.base.clone();
        {
            let mut segs = url.path_segments_mut().map_err(|()| ConfigError::BaseUrl)?;
            segs.pop_if_empty();
            segs.push("v1");
            segs.extend(call.path);
        }
        let encoded = encode(&call.form);
        let body = match call.method {
            Method::Get => {
                if !encoded.is_empty() {
                    url.set_query(Some(&encoded));
                }
                None
            }
            Method::Post => Some(encoded),
        };
        // The caller decides what a final failure means (a 404 can be expected).
        self.inner
            .retry
            .run(|attempt| {
                let (call, url, body) = (&call, &url, body.as_deref());
                async move {
                    let started = Instant::now();
                    let out = self.attempt::<T>(call, url, body).await;
                    match out {
                        Ok(value) => {
                            tracing::debug!(
                                op = call.op,
                                attempt,
                                latency_ms = started.elapsed().as_millis() as u64,
                                "stripe call succeeded"
                            );
                            Ok(value)
                        }
                        Err(mut err) => {
                            match &mut err {
                                Error::Transport { attempts, .. } => *attempts = attempt,
                                Error::Api(api) => api.attempts = attempt,
                                _ => {}
                            }
                            tracing::debug!(
                                op = call.op,
                                attempt,
                                status = err.status(),
                                request_id = err.request_id().map(RequestId::as_str),
                                kind = err.kind().label(),
                                "stripe call failed"
                            );
                            Err(err)
                        }
                    }
                }
            })
            .await
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        url: &Url,
        body: Option<&str>,
    ) -> Result<T> {
        let op = call.op;
        let transport = |source: reqwest::Error| Error::Transport {
            op,
            timeout: source.is_timeout(),
            attempts: 1,
            // The URL can carry a query string with an email address: never keep it.
            source: source.without_url(),
        };
        let mut req = match call.method {
            Method::Get => self.inner.http.get(url.clone()),
            Method::Post => self.inner.http.post(url.clone()),
        };
        req = req
            .timeout(self.inner.timeout)
            .headers(self.auth_headers())
            .header("Stripe-Version", API_VERSION);
        if let Some(key) = call.key {
            req = req.header("Idempotency-Key", key.as_str());
        }
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.to_owned());
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let request_id = header_str(&headers, "request-id").map(RequestId::new);
        let bytes = resp.bytes().await.map_err(transport)?;
        if (200..300).contains(&status) {
            return decode_json::<T>(&bytes).map_err(|source| Error::Decode {
                op,
                status,
                request_id,
                source,
            });
        }
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: ErrorObject,
        }
        // A body that is not Stripe's error object (a proxy's HTML page) still classifies by
        // status: an empty error object, not a decode error.
        let error = decode_json::<Envelope>(&bytes)
            .map(|e| e.error)
            .unwrap_or_default();
        Err(Error::Api(Box::new(ApiError {
            op,
            method: call.method,
            status,
            error,
            request_id,
            should_retry: header_str(&headers, "stripe-should-retry").and_then(|v| match v {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            }),
            retry_after: connector_transport::retry_after(&headers),
            replayed: header_str(&headers, "idempotent-replayed") == Some("true"),
            attempts: 1,
        })))
    }

    fn auth_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // The one place the key is exposed. Checked to be header-safe in `build`.
        if let Ok(mut value) =
            HeaderValue::from_str(&format!("Bearer {}", self.inner.api_key.expose_secret()))
        {
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn debug_never_prints_the_key() {
        let builder = Client::builder(key("sk_test_supersecret"));
        assert!(!format!("{builder:?}").contains("supersecret"));
        let client = builder.build().unwrap();
        assert!(!format!("{client:?}").contains("supersecret"));
    }

    #[test]
    fn build_refuses_bad_configuration() {
        assert!(matches!(
            Client::builder(key("")).build(),
            Err(Error::Config(ConfigError::EmptyApiKey))
        ));
        assert!(matches!(
            Client::builder(key("sk test")).build(),
            Err(Error::Config(ConfigError::ApiKeyNotHeaderSafe))
        ));
        assert!(matches!(
            Client::builder(key("sk_test"))
                .base_url(Url::parse("ftp://example.test").unwrap())
                .build(),
            Err(Error::Config(ConfigError::BaseUrl))
        ));
        assert!(matches!(
            Client::builder(key("sk_test"))
                .timeout(Duration::ZERO)
                .build(),
            Err(Error::Config(ConfigError::ZeroTimeout))
        ));
    }

    #[test]
    fn the_default_base_url_is_stripe() {
        let client = Client::builder(key("sk_test")).build().unwrap();
        assert_eq!(client.base_url().as_str(), "https://api.stripe.com/");
    }
}
