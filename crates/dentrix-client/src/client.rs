//! [`Client`], [`ClientBuilder`], the OAuth2 token cache and the retry loop.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use financing_core::Backoff;
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use url::Url;

use crate::error::{Error, Result, VendorBody, from_json};
use crate::ids::OrganizationId;
use crate::wire;

/// What Ascend needs to know who is calling: the OAuth2 client and the organization.
#[derive(Clone)]
pub struct Credentials {
    client_id: String,
    client_secret: SecretString,
    organization_id: OrganizationId,
}

impl Credentials {
    /// Client-credentials for one organization.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: SecretString,
        organization_id: OrganizationId,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            organization_id,
        }
    }

    /// The organization these credentials act for.
    pub fn organization_id(&self) -> &OrganizationId {
        &self.organization_id
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("organization_id", &self.organization_id)
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
    backoff: Backoff,
    max_retry_wait: Duration,
    page_size: u32,
    refresh_margin: Duration,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url.as_str())
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("backoff", &self.backoff)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The token endpoint, when it is not `{base_url}/oauth/client_credential/accesstoken`.
    /// `grant_type=client_credentials` is added to its query either way.
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
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Retry schedule for reads (default: [`Backoff::default`]). Writes are never retried blindly.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The longest wait the client sleeps through before a retry (default 30 s). A longer
    /// `Retry-After` is returned to the caller as [`ErrorKind::Transient`](financing_core::ErrorKind)
    /// with the delay, so that a scheduler, not this task, does the waiting.
    pub fn max_retry_wait(mut self, wait: Duration) -> Self {
        self.max_retry_wait = wait;
        self
    }

    /// Records per page when listing (default 100, at most 500).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, wire::MAX_PAGE_SIZE);
        self
    }

    /// How long before its expiry a token is replaced (default 60 s, and never more than half the
    /// token's lifetime).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Builds the client. No request is made until the first call.
    ///
    /// # Errors
    /// [`Error::Config`] (Permanent) when a URL cannot be derived from the base URL, when the
    /// organization id is not a valid header value, or when the HTTP client cannot be built.
    pub fn build(self) -> Result<Client> {
        let base = with_trailing_slash(self.base_url);
        let api_root = base
            .join(wire::API_ROOT)
            .map_err(|_| Error::Config("the base URL cannot hold the API root".into()))?;
        let mut token_url = match self.token_url {
            Some(u) => u,
            None => base
                .join(wire::TOKEN_PATH)
                .map_err(|_| Error::Config("the base URL cannot hold the token path".into()))?,
        };
        token_url
            .query_pairs_mut()
            .append_pair(wire::TOKEN_GRANT_QUERY.0, wire::TOKEN_GRANT_QUERY.1);
        let organization = HeaderValue::from_str(self.credentials.organization_id.as_str())
            .map_err(|_| Error::Config("the organization id is not a valid header value".into()))?;
        let http = match self.http {
            Some(h) => h,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .build()
                .map_err(|_| Error::Config("cannot build the HTTP client".into()))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_root,
                token_url,
                credentials: self.credentials,
                organization,
                timeout: self.timeout,
                backoff: self.backoff,
                max_retry_wait: self.max_retry_wait,
                page_size: self.page_size,
                refresh_margin: self.refresh_margin,
                token: Mutex::new(TokenState::default()),
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

/// A Dentrix Ascend client for one organization. Cheap to clone: clones share the connection pool
/// and the token.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("api_root", &self.inner.api_root.as_str())
            .field("organization_id", &self.inner.credentials.organization_id)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    http: reqwest::Client,
    api_root: Url,
    token_url: Url,
    credentials: Credentials,
    organization: HeaderValue,
    timeout: Duration,
    backoff: Backoff,
    max_retry_wait: Duration,
    pub(crate) page_size: u32,
    refresh_margin: Duration,
    /// One lock around the token: a caller that finds it stale refreshes while holding the lock,
    /// so concurrent callers wait for that one refresh instead of each starting their own.
    token: Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    current: Option<Arc<Token>>,
    generation: u64,
}

struct Token {
    value: SecretString,
    expires_at: Instant,
    generation: u64,
    lifetime: Duration,
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
    /// Reads are safe to repeat; writes (notes) have no idempotency key and are not.
    fn idempotent(&self) -> bool {
        self.method == Method::GET
    }
}

impl Client {
    /// Starts building a client. `base_url` is the host root (`https://prod.hs1api.com/`, or the
    /// sandbox); the API root and the token endpoint are derived from it.
    pub fn builder(base_url: Url, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            base_url,
            credentials,
            token_url: None,
            timeout: Duration::from_secs(10),
            http: None,
            backoff: Backoff::default(),
            max_retry_wait: Duration::from_secs(30),
            page_size: 100,
            refresh_margin: Duration::from_secs(60),
        }
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

    /// Runs a call: bearer token, one refresh on 401, bounded retries with backoff for reads.
    pub(crate) async fn execute(&self, call: &Call<'_>) -> Result<Vec<u8>> {
        let mut attempt: u32 = 1;
        let mut refused: Option<u64> = None;
        let mut refreshed = false;
        loop {
            let result = match self.bearer(refused.take()).await {
                Ok(token) => match self.send_once(call, &token).await {
                    Err(Error::Api { status, .. }) if status == StatusCode::UNAUTHORIZED => {
                        if refreshed {
                            return Err(Error::Auth {
                                operation: call.operation,
                                status,
                            });
                        }
                        // Tokens can be revoked before their expiry: refresh once and repeat.
                        // A 401 means the request was not processed, so this is safe for writes.
                        tracing::debug!(
                            operation = call.operation,
                            "401: refreshing the token once"
                        );
                        refreshed = true;
                        refused = Some(token.generation);
                        continue;
                    }
                    other => other,
                },
                Err(e) => Err(e),
            };
            let err = match result {
                Ok(bytes) => return Ok(bytes),
                Err(e) => e,
            };
            // Writes carry no idempotency key: their failures go back to the caller, who
            // reconciles by marker lookup (DESIGN.md) instead of repeating blindly.
            if !call.idempotent() {
                return Err(err);
            }
            let kind = err.kind();
            match self
                .inner
                .backoff
                .delay(attempt, kind, rand::random::<f64>())
            {
                Some(wait) if wait <= self.inner.max_retry_wait => {
                    tracing::debug!(
                        operation = call.operation,
                        attempt,
                        kind = kind.label(),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                _ => return Err(err),
            }
        }
    }

    async fn send_once(&self, call: &Call<'_>, token: &Token) -> Result<Vec<u8>> {
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
        let mut request = inner
            .http
            .request(call.method.clone(), url)
            .timeout(inner.timeout)
            .header(ACCEPT, "application/json")
            .header(wire::HEADER_ORGANIZATION, inner.organization.clone())
            .bearer_auth(token.value.expose_secret());
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let idempotent = call.idempotent();
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
        if status == StatusCode::FORBIDDEN {
            return Err(Error::OrganizationNotEnabled {
                operation: call.operation,
            });
        }
        let retry_after = retry_after(response.headers());
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

    /// The current token, fetching a new one when there is none, when it is about to expire, or
    /// when the server refused the token of generation `refused`.
    async fn bearer(&self, refused: Option<u64>) -> Result<Arc<Token>> {
        let mut state = self.inner.token.lock().await;
        if let Some(token) = &state.current {
            let margin = self.inner.refresh_margin.min(token.lifetime / 2);
            let fresh = Instant::now() + margin < token.expires_at;
            // Another caller may already have replaced the refused token: use theirs.
            let was_refused = refused == Some(token.generation);
            if fresh && !was_refused {
                return Ok(Arc::clone(token));
            }
        }
        state.generation += 1;
        let token = Arc::new(self.fetch_token(state.generation).await?);
        state.current = Some(Arc::clone(&token));
        Ok(token)
    }

    async fn fetch_token(&self, generation: u64) -> Result<Token> {
        const OPERATION: &str = "fetch access token";
        let inner = &self.inner;
        let form = [
            (wire::FORM_CLIENT_ID, inner.credentials.client_id.as_str()),
            (
                wire::FORM_CLIENT_SECRET,
                inner.credentials.client_secret.expose_secret(),
            ),
        ];
        let response = inner
            .http
            .post(inner.token_url.clone())
            .timeout(inner.timeout)
            .header(ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            // Asking for a token has no side effect: safe to repeat.
            .map_err(|e| Error::Transport {
                operation: OPERATION,
                idempotent: true,
                source: e.without_url(),
            })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
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
        let parsed: wire::TokenResponse = from_json("oauth token", &bytes)?;
        let seconds = match &parsed.expires_in {
            None => 3600,
            Some(wire::RawAmount::Number(n)) => n.as_u64().ok_or_else(|| {
                Error::decode(
                    "oauth token",
                    "expires_in",
                    crate::error::DecodeProblem::InvalidValue,
                )
            })?,
            Some(wire::RawAmount::Text(s)) => s.trim().parse().map_err(|_| {
                Error::decode(
                    "oauth token",
                    "expires_in",
                    crate::error::DecodeProblem::InvalidValue,
                )
            })?,
        };
        if parsed.access_token.is_empty() {
            return Err(Error::decode(
                "oauth token",
                "access_token",
                crate::error::DecodeProblem::Missing,
            ));
        }
        let lifetime = Duration::from_secs(seconds);
        Ok(Token {
            value: SecretString::from(parsed.access_token),
            expires_at: Instant::now() + lifetime,
            generation,
            lifetime,
        })
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    financing_core::parse::retry_after(value, chrono::Utc::now())
}
