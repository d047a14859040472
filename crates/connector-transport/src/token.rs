//! The OAuth2 access-token cache: one token per client, replaced shortly before it expires,
//! fetched once however many callers ask at the same time (single-flight), and dropped on a 401
//! so that the connector can fetch a new one and repeat the call once.
//!
//! The cache does not know how a vendor hands out tokens: the connector passes the fetch. For the
//! common RFC 6749 client-credentials grant, [`ClientCredentials`] is that fetch, parameterised by
//! what differs between vendors (token URL, form or JSON body, credentials in the body or as basic
//! auth, extra fields).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::json::{DecodeError, DecodeProblem, decode_json};

/// A token as the vendor handed it out: the secret and how long it lives.
pub struct FreshToken {
    /// The bearer token.
    pub secret: SecretString,
    /// Its lifetime from now.
    pub lifetime: Duration,
}

impl fmt::Debug for FreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreshToken")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// A cached token, as handed to one call. Remembers which token it is, so that
/// [`TokenCache::invalidate`] drops only that one and not a newer token another caller fetched.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    generation: u64,
}

impl AccessToken {
    /// The bearer token. Expose it only where the auth header is built.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

struct Cached {
    token: AccessToken,
    refresh_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    generation: u64,
}

/// A shared, single-flight cache of one access token.
pub struct TokenCache {
    refresh_margin: Duration,
    /// Held across the fetch: concurrent callers wait for one refresh instead of each starting
    /// their own.
    state: Mutex<State>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("refresh_margin", &self.refresh_margin)
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache that replaces a token `refresh_margin` before its expiry (never more than half the
    /// token's lifetime early).
    pub fn new(refresh_margin: Duration) -> Self {
        Self {
            refresh_margin,
            state: Mutex::new(State::default()),
        }
    }

    /// The cached token, or a new one from `fetch` when there is none or it is about to expire.
    ///
    /// # Errors
    /// Whatever `fetch` returns; nothing is cached then.
    pub async fn get<E, F, Fut>(&self, fetch: F) -> Result<AccessToken, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<FreshToken, E>>,
    {
        let mut state = self.state.lock().await;
        if let Some(cached) = &state.current
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        state.current = None;
        let requested_at = Instant::now();
        let fresh = fetch().await?;
        let margin = self.refresh_margin.min(fresh.lifetime / 2);
        state.generation += 1;
        let token = AccessToken {
            secret: fresh.secret,
            generation: state.generation,
        };
        state.current = Some(Cached {
            token: token.clone(),
            refresh_at: requested_at + fresh.lifetime.saturating_sub(margin),
        });
        Ok(token)
    }

    /// Drops `token` if it is still the cached one (another caller may already have replaced it),
    /// so that the next [`TokenCache::get`] fetches anew.
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.token.generation == token.generation)
        {
            state.current = None;
        }
    }

    /// Runs `send` with a token; when its error is `unauthorized` (a 401), drops the token, fetches
    /// a new one and runs `send` once more. A 401 means the request was not processed, so the
    /// repeat is safe even for a write. A second 401 is returned as is.
    ///
    /// # Errors
    /// The fetch's error, or `send`'s.
    pub async fn authorized<T, E, F, FFut, S, SFut>(
        &self,
        mut fetch: F,
        mut send: S,
        unauthorized: impl Fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> FFut,
        FFut: Future<Output = Result<FreshToken, E>>,
        S: FnMut(AccessToken) -> SFut,
        SFut: Future<Output = Result<T, E>>,
    {
        let token = self.get(&mut fetch).await?;
        match send(token.clone()).await {
            Err(e) if unauthorized(&e) => {
                tracing::debug!("401: refreshing the token once");
                self.invalidate(&token).await;
                let token = self.get(fetch).await?;
                send(token).await
            }
            other => other,
        }
    }
}

/// Where the client id and secret go in a token request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialPlacement {
    /// In the request body, under the configured field names.
    Body,
    /// As HTTP basic auth (RFC 6749 §2.3.1's preferred form).
    Basic,
}

/// How a token request's body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyFormat {
    /// `application/x-www-form-urlencoded` (RFC 6749).
    Form,
    /// `application/json`, as some partners want.
    Json,
}

/// Why a token request failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TokenError {
    /// No usable response (connect error, timeout, cut body).
    Transport(reqwest::Error),
    /// A non-2xx answer. The body is dropped: it can echo credentials.
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// A 2xx whose body is not a token response.
    Decode(DecodeError),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(_) => f.write_str("token request: transport failure"),
            Self::Rejected { status, .. } => write!(f, "token request: HTTP {status}"),
            Self::Decode(e) => write!(f, "token response: {e}"),
        }
    }
}

impl std::error::Error for TokenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(e) => Some(e),
            Self::Decode(e) => Some(e),
            Self::Rejected { .. } => None,
        }
    }
}

/// An OAuth2 client-credentials token request. Defaults: form body, credentials in the body as
/// `client_id` and `client_secret`, no other field (add `grant_type` with [`Self::field`] unless
/// the token URL carries it).
#[derive(Clone)]
pub struct ClientCredentials {
    token_url: reqwest::Url,
    client_id: String,
    client_secret: SecretString,
    placement: CredentialPlacement,
    format: BodyFormat,
    id_field: &'static str,
    secret_field: &'static str,
    fields: Vec<(&'static str, String)>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("placement", &self.placement)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Lifetime>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Lifetime {
    Seconds(u64),
    // Some vendors send the number as a string.
    Text(String),
}

impl ClientCredentials {
    /// Lifetime assumed when the response has no `expires_in`.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

    /// A request to `token_url` for `client_id` and `client_secret`.
    pub fn new(
        token_url: reqwest::Url,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self {
            token_url,
            client_id: client_id.into(),
            client_secret,
            placement: CredentialPlacement::Body,
            format: BodyFormat::Form,
            id_field: "client_id",
            secret_field: "client_secret",
            fields: vec![],
        }
    }

    /// Where the credentials go.
    #[must_use]
    pub fn placement(mut self, placement: CredentialPlacement) -> Self {
        self.placement = placement;
        self
    }

    /// How the body is encoded.
    #[must_use]
    pub fn format(mut self, format: BodyFormat) -> Self {
        self.format = format;
        self
    }

    /// The body field names of the client id and secret (for [`CredentialPlacement::Body`]).
    #[must_use]
    pub fn credential_fields(mut self, id: &'static str, secret: &'static str) -> Self {
        self.id_field = id;
        self.secret_field = secret;
        self
    }

    /// One more body field (`grant_type`, `scope`, …).
    #[must_use]
    pub fn field(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// The token URL.
    pub fn token_url(&self) -> &reqwest::Url {
        &self.token_url
    }

    /// Asks for a token. Asking has no side effect, so it is safe to repeat.
    ///
    /// # Errors
    /// [`TokenError::Transport`], [`TokenError::Rejected`] for a non-2xx, [`TokenError::Decode`]
    /// when the body has no `access_token` or an unreadable `expires_in`.
    pub async fn fetch(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<FreshToken, TokenError> {
        let mut fields: Vec<(&str, &str)> =
            self.fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut request = http
            .post(self.token_url.clone())
            .timeout(timeout)
            .header(http::header::ACCEPT, "application/json");
        match self.placement {
            CredentialPlacement::Basic => {
                request =
                    request.basic_auth(&self.client_id, Some(self.client_secret.expose_secret()));
            }
            CredentialPlacement::Body => {
                fields.push((self.id_field, &self.client_id));
                fields.push((self.secret_field, self.client_secret.expose_secret()));
            }
        }
        request = match self.format {
            BodyFormat::Form => request.form(&fields),
            BodyFormat::Json => request.json(
                &fields
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
                    .collect::<serde_json::Map<_, _>>(),
            ),
        };
        let response = request
            .send()
            .await
            .map_err(|e| TokenError::Transport(e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(TokenError::Rejected {
                status: status.as_u16(),
                retry_after: crate::retry_after(response.headers()),
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| TokenError::Transport(e.without_url()))?;
        let parsed: TokenResponse = decode_json(&bytes).map_err(TokenError::Decode)?;
        let invalid = |path: &str, problem| {
            TokenError::Decode(DecodeError {
                path: path.to_owned(),
                problem,
                line: 0,
                column: 0,
            })
        };
        if parsed.access_token.is_empty() {
            return Err(invalid("access_token", DecodeProblem::Missing));
        }
        let lifetime = match parsed.expires_in {
            None => Self::DEFAULT_LIFETIME,
            Some(Lifetime::Seconds(s)) => Duration::from_secs(s),
            Some(Lifetime::Text(t)) => Duration::from_secs(
                t.trim()
                    .parse()
                    .map_err(|_| invalid("expires_in", DecodeProblem::InvalidValue))?,
            ),
        };
        Ok(FreshToken {
            secret: SecretString::from(parsed.access_token),
            lifetime,
        })
    }
}
