//! [`Client`] and [`ClientBuilder`]. The token cache and the retry policy are
//! `connector-transport`'s; what is NexHealth's here is the authenticate call and the errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connector_transport::{AccessToken, FreshToken, RetryPolicy, TokenCache};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{DecodeProblem, Error, Result, VendorBody, from_json};
use crate::ids::LocationId;
use crate::ratelimit::{Limiter, RateBudget};
use crate::wire;

/// What NexHealth needs to know who is calling: the API key, the institution's subdomain and the
/// location.
#[derive(Clone)]
pub struct Credentials {
    api_key: SecretString,
    subdomain: String,
    location_id: LocationId,
}

impl Credentials {
    /// An API key scoped to one institution (`subdomain`) and location.
    pub fn new(
        api_key: SecretString,
        subdomain: impl Into<String>,
        location_id: LocationId,
    ) -> Self {
        Self {
            api_key,
            subdomain: subdomain.into(),
            location_id,
        }
    }

    /// The institution's subdomain.
    pub fn subdomain(&self) -> &str {
        &self.subdomain
    }

    /// The location.
    pub fn location_id(&self) -> &LocationId {
        &self.location_id
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("subdomain", &self.subdomain)
            .field("location_id", &self.location_id)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`]. Start with [`Client::builder`].
pub struct ClientBuilder {
    base_url: Url,
    credentials: Credentials,
    token_url: Option<Url>,
    timeout: Duration,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    page_size: u32,
    refresh_margin: Duration,
    rate_budget: RateBudget,
    api_version: String,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url.as_str())
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The authentication endpoint, when it is not `{base_url}/authenticates`.
    pub fn token_url(mut self, url: Url) -> Self {
        self.token_url = Some(url);
        self
    }

    /// Per-request timeout (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A shared `reqwest::Client` (connection pool). The per-request timeout still applies.
    /// Build it with `connector_transport::client_builder`, which follows no redirect, as the
    /// default client does: a followed 307 would send the request body to another host.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Retry policy for reads (default: [`RetryPolicy::default`], capped at 20 s of waiting).
    /// Writes are never retried blindly. Pass [`RetryPolicy::none`] when the caller retries
    /// durably itself; a `Retry-After` beyond the policy's budget comes back as
    /// [`ErrorKind::Transient`](financing_core::ErrorKind) with the delay, for a scheduler to wait.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Records per page when listing (`per_page`; default 100, at most 1000).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, wire::MAX_PER_PAGE);
        self
    }

    /// The client-side rate budget (default: NexHealth's documented limits).
    pub fn rate_budget(mut self, budget: RateBudget) -> Self {
        self.rate_budget = budget;
        self
    }

    /// The `Nex-Api-Version` header (default `v3.0.0`).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// How long before its expiry a token is replaced (default 5 min, and never more than half the
    /// token's lifetime).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Builds the client. No request is made until the first call.
    ///
    /// # Errors
    /// [`Error::Config`] (Permanent) when the base URL cannot be a base, when the API version is
    /// not a valid header value, or when the HTTP client cannot be built.
    pub fn build(self) -> Result<Client> {
        let api_root = with_trailing_slash(self.base_url);
        if api_root.cannot_be_a_base() {
            return Err(Error::Config("the base URL cannot be a base".into()));
        }
        let token_url = match self.token_url {
            Some(u) => u,
            None => api_root
                .join(wire::AUTHENTICATES)
                .map_err(|_| Error::Config("the base URL cannot hold /authenticates".into()))?,
        };
        let api_version = HeaderValue::from_str(&self.api_version)
            .map_err(|_| Error::Config("the API version is not a valid header value".into()))?;
        let http = match self.http {
            Some(h) => h,
            None => connector_transport::client_builder(self.timeout)
                .build()
                .map_err(|_| Error::Config("cannot build the HTTP client".into()))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_root,
                token_url,
                credentials: self.credentials,
                api_version,
                limiter: Limiter::new(self.rate_budget),
                timeout: self.timeout,
                retry: self.retry,
                page_size: self.page_size,
                token: TokenCache::new(self.refresh_margin),
            }),
        })
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// A NexHealth client for one institution and location. Cheap to clone: clones share the
/// connection pool, the token and the rate limiter.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_root", &self.inner.api_root.as_str())
            .field("subdomain", &self.inner.credentials.subdomain)
            .field("location_id", &self.inner.credentials.location_id)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    api_root: Url,
    token_url: Url,
    credentials: Credentials,
    api_version: HeaderValue,
    limiter: Limiter,
    timeout: Duration,
    retry: RetryPolicy,
    pub(crate) page_size: u32,
    token: TokenCache,
}

/// One HTTP call, described so that it can be repeated.
pub(crate) struct Call<'a> {
    pub(crate) operation: &'static str,
    pub(crate) method: Method,
    /// Path segments under the API root; each is percent-encoded.
    pub(crate) segments: &'a [&'a str],
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<serde_json::Value>,
}

impl Call<'_> {
    /// Reads are safe to repeat; writes have no idempotency key and are not.
    fn idempotent(&self) -> bool {
        self.method == Method::GET
    }
}

impl Client {
    /// Starts building a client. `base_url` is the API root (`https://nexhealth.info/`, or the
    /// sandbox); the authentication endpoint is derived from it unless set.
    pub fn builder(base_url: Url, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            base_url,
            credentials,
            token_url: None,
            timeout: Duration::from_secs(10),
            http: None,
            retry: RetryPolicy::default(),
            page_size: 100,
            refresh_margin: Duration::from_secs(300),
            rate_budget: RateBudget::default(),
            api_version: wire::API_VERSION.to_owned(),
        }
    }

    /// The location this client acts for.
    pub fn location_id(&self) -> &LocationId {
        &self.inner.credentials.location_id
    }

    /// GETs a resource and decodes it.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        resource: &'static str,
        segments: &[&str],
        query: Vec<(&'static str, String)>,
    ) -> Result<T> {
        let call = Call {
            operation,
            method: Method::GET,
            segments,
            query,
            body: None,
        };
        let bytes = self.execute(&call).await?;
        from_json(resource, &bytes)
    }

    /// GETs every page of a cursor-paged collection, mapping each record with its JSON path
    /// (`data[i]`, `i` counted across pages); the first record that cannot be read fails the
    /// listing (see [`Client::get_pages_tolerant`] for a listing that sets it apart).
    ///
    /// Stops when `has_next_page` is false, at an empty page (even one that offers a next cursor),
    /// and fails when the next cursor does not advance, rather than looping.
    pub(crate) async fn get_pages<T, U>(
        &self,
        operation: &'static str,
        resource: &'static str,
        segments: &[&str],
        query: Vec<(&'static str, String)>,
        map: fn(T, &str) -> Result<U>,
    ) -> Result<Vec<U>>
    where
        T: DeserializeOwned,
    {
        let list = self
            .get_pages_tolerant(operation, resource, segments, query, None, map)
            .await?;
        match list.unreadable.into_iter().next() {
            Some(bad) => Err(bad.error),
            None => Ok(list.items),
        }
    }

    /// Every page like [`Client::get_pages`], each record decoded on its own
    /// ([`connector_transport::decode_each`]): a record that cannot be read (a `null`, a field of
    /// the wrong type, a malformed time or amount) is set apart with its `id` and `changed_field`
    /// when those read, and the others are kept. A body that is not a list envelope still fails.
    pub(crate) async fn get_pages_tolerant<T, U>(
        &self,
        operation: &'static str,
        resource: &'static str,
        segments: &[&str],
        query: Vec<(&'static str, String)>,
        changed_field: Option<&str>,
        map: fn(T, &str) -> Result<U>,
    ) -> Result<connector_transport::TolerantList<U, Error>>
    where
        T: DeserializeOwned,
    {
        let mut out = connector_transport::TolerantList::default();
        let mut end_cursor: Option<String> = None;
        let mut offset = 0usize;
        loop {
            let mut q = query.clone();
            q.push((wire::QUERY_PER_PAGE, self.inner.page_size.to_string()));
            if let Some(c) = &end_cursor {
                q.push((wire::QUERY_END_CURSOR, c.clone()));
            }
            let page: wire::Envelope<Vec<serde_json::Value>> =
                self.get(operation, resource, segments, q).await?;
            let items = page.data.unwrap_or_default();
            let info = page.page_info.unwrap_or_default();
            let count = items.len();
            out.extend(connector_transport::decode_each(
                items,
                offset,
                "id",
                changed_field,
                |index, value| {
                    let at = format!("data[{index}]");
                    let raw: T = connector_transport::decode_value(value)
                        .map_err(|e| crate::error::from_decode(resource, e.nested_in(&at)))?;
                    map(raw, &at)
                },
            ));
            offset += count;
            // An empty page ends the listing even when it claims a next page.
            if count == 0 || !info.has_next_page {
                break;
            }
            let Some(next) = info.end_cursor.filter(|c| !c.is_empty()) else {
                break;
            };
            if end_cursor.as_deref() == Some(next.as_str()) {
                return Err(Error::decode(
                    resource,
                    "page_info.end_cursor",
                    DecodeProblem::PaginationStalled,
                ));
            }
            end_cursor = Some(next);
        }
        Ok(out)
    }

    /// POSTs a JSON body once (never retried blindly) and decodes the answer.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        resource: &'static str,
        segments: &[&str],
        body: serde_json::Value,
    ) -> Result<T> {
        let call = Call {
            operation,
            method: Method::POST,
            segments,
            query: vec![],
            body: Some(body),
        };
        let bytes = self.execute(&call).await?;
        from_json(resource, &bytes)
    }

    /// Runs a call: bearer token, one refresh on 401, the retry policy for reads.
    pub(crate) async fn execute(&self, call: &Call<'_>) -> Result<Vec<u8>> {
        // Writes carry no idempotency key: their failures go back to the caller, who reconciles
        // by lookup (DESIGN.md) instead of repeating blindly.
        let policy = if call.idempotent() {
            self.inner.retry
        } else {
            RetryPolicy::none()
        };
        policy.run(|_| self.authorized(call)).await
    }

    /// One attempt; a 401 refreshes the token (they expire after 1 h, or are revoked) and repeats
    /// once: the request was not processed, so this is safe for writes. A second 401 is
    /// [`Error::Auth`].
    async fn authorized(&self, call: &Call<'_>) -> Result<Vec<u8>> {
        let unauthorized = |e: &Error| matches!(e, Error::Api { status, .. } if *status == StatusCode::UNAUTHORIZED);
        self.inner
            .token
            .authorized(
                || self.fetch_token(),
                |token| self.send_once(call, token),
                unauthorized,
            )
            .await
            .map_err(|e| match e {
                Error::Api { status, .. } if status == StatusCode::UNAUTHORIZED => Error::Auth {
                    operation: call.operation,
                    status,
                },
                e => e,
            })
    }

    async fn send_once(&self, call: &Call<'_>, token: AccessToken) -> Result<Vec<u8>> {
        let inner = &self.inner;
        let mut url = inner.api_root.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| Error::Config("the base URL cannot be a base".into()))?;
            path.pop_if_empty();
            for s in call.segments {
                path.push(s);
            }
        }
        let mut query: Vec<(&str, &str)> = vec![
            (wire::QUERY_SUBDOMAIN, inner.credentials.subdomain.as_str()),
            (
                wire::QUERY_LOCATION_ID,
                inner.credentials.location_id.as_str(),
            ),
        ];
        query.extend(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        let mut request = inner
            .http
            .request(call.method.clone(), url)
            .timeout(inner.timeout)
            .header(ACCEPT, "application/json")
            .header(wire::HEADER_API_VERSION, inner.api_version.clone())
            .bearer_auth(token.secret().expose_secret())
            .query(&query);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let idempotent = call.idempotent();
        let patient_budget = call
            .segments
            .first()
            .is_some_and(|s| wire::is_patient_budget(s));
        inner.limiter.acquire(patient_budget).await;
        let response = request.send().await.map_err(|e| Error::Transport {
            operation: call.operation,
            idempotent,
            source: e.without_url(),
        })?;
        let status = response.status();
        tracing::debug!(
            operation = call.operation,
            status = status.as_u16(),
            "response"
        );
        let retry_after = connector_transport::retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| Error::Transport {
            operation: call.operation,
            idempotent,
            source: e.without_url(),
        })?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(Error::Api {
                operation: call.operation,
                status,
                retry_after,
                idempotent,
                body: VendorBody::new(String::from_utf8_lossy(&bytes).into_owned()),
            })
        }
    }

    async fn fetch_token(&self) -> Result<FreshToken> {
        const OPERATION: &str = "authenticate";
        let inner = &self.inner;
        inner.limiter.acquire(false).await;
        let response = inner
            .http
            .post(inner.token_url.clone())
            .timeout(inner.timeout)
            .header(ACCEPT, "application/json")
            .header(wire::HEADER_API_VERSION, inner.api_version.clone())
            // NexHealth takes the bare API key, without a scheme.
            .header(AUTHORIZATION, inner.credentials.api_key.expose_secret())
            .send()
            .await
            // Authenticating has no side effect: safe to repeat.
            .map_err(|e| Error::Transport {
                operation: OPERATION,
                idempotent: true,
                source: e.without_url(),
            })?;
        let status = response.status();
        let retry_after = connector_transport::retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| Error::Transport {
            operation: OPERATION,
            idempotent: true,
            source: e.without_url(),
        })?;
        if matches!(status.as_u16(), 400 | 401 | 403) {
            return Err(Error::Auth {
                operation: OPERATION,
                status,
            });
        }
        if !status.is_success() {
            return Err(Error::Api {
                operation: OPERATION,
                status,
                retry_after,
                idempotent: true,
                body: VendorBody::new(String::from_utf8_lossy(&bytes).into_owned()),
            });
        }
        let parsed: wire::Envelope<wire::AuthData> = from_json("authenticates", &bytes)?;
        let token = parsed
            .data
            .map(|d| d.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::decode("authenticates", "data.token", DecodeProblem::Missing))?;
        // The JWT's own expiry when readable; else the documented production lifetime.
        let lifetime = jwt_lifetime(&token).unwrap_or(Duration::from_secs(3600));
        Ok(FreshToken {
            secret: SecretString::from(token),
            lifetime,
        })
    }
}

/// Seconds from now until the JWT's `exp` claim, when the token is a readable JWT.
fn jwt_lifetime(token: &str) -> Option<Duration> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: i64,
    }
    let claims: Claims = connector_transport::decode_json(&bytes).ok()?;
    let left = claims.exp - chrono::Utc::now().timestamp();
    u64::try_from(left).ok().map(Duration::from_secs)
}
