//! [`Client`] and [`ClientBuilder`]. The token cache and the retry policy are
//! `connector-transport`'s; what is Ascend's here is the token form and the error mapping.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connector_transport::{
    AccessToken, ClientCredentials, FreshToken, RetryPolicy, TokenCache, TokenError,
};
use reqwest::header::{ACCEPT, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Result, VendorBody, decode_problem, from_json};
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
    retry: RetryPolicy,
    page_size: u32,
    refresh_margin: Duration,
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
            None => connector_transport::client_builder(self.timeout)
                .build()
                .map_err(|_| Error::Config("cannot build the HTTP client".into()))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                api_root,
                token_request: ClientCredentials::new(
                    token_url,
                    self.credentials.client_id.clone(),
                    self.credentials.client_secret.clone(),
                )
                .credential_fields(wire::FORM_CLIENT_ID, wire::FORM_CLIENT_SECRET),
                credentials: self.credentials,
                organization,
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
    credentials: Credentials,
    organization: HeaderValue,
    timeout: Duration,
    retry: RetryPolicy,
    pub(crate) page_size: u32,
    token_request: ClientCredentials,
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
            retry: RetryPolicy::default(),
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

    /// Runs a call: bearer token, one refresh on 401, the retry policy for reads.
    pub(crate) async fn execute(&self, call: &Call<'_>) -> Result<Vec<u8>> {
        // Writes carry no idempotency key: their failures go back to the caller, who reconciles
        // by marker lookup (DESIGN.md) instead of repeating blindly.
        let policy = if call.idempotent() {
            self.inner.retry
        } else {
            RetryPolicy::none()
        };
        policy.run(|_| self.authorized(call)).await
    }

    /// One attempt; a 401 refreshes the token and repeats once (the request was not processed,
    /// so this is safe for writes). A second 401 is [`Error::Auth`].
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
        let mut request = inner
            .http
            .request(call.method.clone(), url)
            .timeout(inner.timeout)
            .header(ACCEPT, "application/json")
            .header(wire::HEADER_ORGANIZATION, inner.organization.clone())
            .bearer_auth(token.secret().expose_secret());
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

    /// A new token from the token endpoint (`grant_type` rides in its query).
    async fn fetch_token(&self) -> Result<FreshToken> {
        const OPERATION: &str = "fetch access token";
        let inner = &self.inner;
        inner
            .token_request
            .fetch(&inner.http, inner.timeout)
            .await
            .map_err(|e| match e {
                // Asking for a token has no side effect: safe to repeat.
                TokenError::Transport(source) => Error::Transport {
                    operation: OPERATION,
                    idempotent: true,
                    source,
                },
                TokenError::Rejected { status, .. } if matches!(status, 400 | 401 | 403) => {
                    Error::Auth {
                        operation: OPERATION,
                        status: StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
                    }
                }
                TokenError::Rejected {
                    status,
                    retry_after,
                } => Error::Api {
                    operation: OPERATION,
                    status: StatusCode::from_u16(status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    retry_after,
                    idempotent: true,
                    body: VendorBody::new(String::new()),
                },
                TokenError::Decode(d) => {
                    Error::decode("oauth token", d.path, decode_problem(d.problem))
                }
                other => Error::Config(format!("token request: {other}")),
            })
    }
}
