//! [`Client`] and [`ClientBuilder`]. The token cache and the retry policy are
//! `connector-transport`'s; CareCredit's token request and error mapping stay here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_transport::{AccessToken, FreshToken, RetryPolicy, TokenCache};

use chrono::Utc;
use financing_core::{
    AmountLimits, ApplicationHandle, ApplicationRef, FinancingRequest, LocationId, Money,
    PollSchedule, PollStep,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Operation, Result};
use crate::ids::{MerchantNumber, PartnerCode};
use crate::wire::{self, Amount, LandingPage, PartnerQuery};

/// The partner's credentials: issued to Chairside as a CareCredit technology partner, shared by
/// every practice. Redacted `Debug`.
#[derive(Clone)]
pub struct Credentials {
    /// The partner code sent with every call.
    pub partner_code: PartnerCode,
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("partner_code", &self.partner_code)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// CareCredit's programme minimum: deferred-interest promotions start at $200.00
/// (carecredit.com/fair-financing-principles). No maximum is public; set one per practice with
/// [`ClientBuilder::limits`].
pub const DEFAULT_LIMITS: AmountLimits = AmountLimits {
    min: Some(Money::usd(20_000)),
    max: None,
};

/// Builds a [`Client`]. Every URL is injected, so tests and the sandbox point it at loopback.
pub struct ClientBuilder {
    base_url: Url,
    token_url: Option<Url>,
    credentials: Credentials,
    scope: String,
    merchants: Vec<(LocationId, String)>,
    timeout: Duration,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    limits: AmountLimits,
    landing_page: LandingPage,
    allow_ssn_and_dob: bool,
    refresh_margin: Duration,
    poll_after: Option<Duration>,
    poll_schedule: PollSchedule,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url.as_str())
            .field("token_url", &self.token_url.as_ref().map(Url::as_str))
            .field("credentials", &self.credentials)
            .field("locations", &self.merchants.len())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("allow_ssn_and_dob", &self.allow_ssn_and_dob)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Where the OAuth2 token comes from. Default: the base URL plus
    /// [`wire::TOKEN_PATH`].
    pub fn token_url(mut self, url: Url) -> Self {
        self.token_url = Some(url);
        self
    }

    /// The OAuth2 scope. Default: [`wire::DEFAULT_SCOPE`].
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The merchant number of a practice location (16 digits, checked by [`build`](Self::build)).
    /// Call once per location.
    pub fn merchant(mut self, location: LocationId, merchant_number: impl Into<String>) -> Self {
        self.merchants.push((location, merchant_number.into()));
        self
    }

    /// Per-request timeout, token requests included. Default: 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Shares a reqwest client (connection pool). The per-request timeout still applies.
    /// Build it with `connector_transport::client_builder`, which follows no redirect, as the
    /// default client does: a followed 307 would send the request body to another host.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Retry policy for transient failures. Default: [`RetryPolicy::default`] (at most 20 s of
    /// waiting in all). A server's `Retry-After` beyond the policy's budget is not slept on: the
    /// error is returned so the caller can reschedule. Pass [`RetryPolicy::none`] when the caller
    /// retries durably itself.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The amounts this lender finances for the practice. Default: [`DEFAULT_LIMITS`].
    pub fn limits(mut self, limits: AmountLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The hosted page the patient lands on. Default: [`LandingPage::Apply`].
    pub fn landing_page(mut self, page: LandingPage) -> Self {
        self.landing_page = page;
        self
    }

    /// Allows sending SSN and date of birth in CareCredit's encrypted `cipher` fields. Off by
    /// default: the patient types them on CareCredit's page and Chairside never sees them
    /// (COMPLIANCE.md §8). Turn on only where counsel and the partner agreement require it.
    pub fn allow_ssn_and_dob(mut self, allow: bool) -> Self {
        self.allow_ssn_and_dob = allow;
        self
    }

    /// How long before its expiry a token is refreshed. Default: 60 s (never more than half the
    /// token's lifetime).
    pub fn token_refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// A floor put in [`Decision::Pending`](financing_core::Decision::Pending)'s `poll_after`.
    /// Default: none (the [`poll_schedule`](Self::poll_schedule) paces status reads).
    pub fn poll_after(mut self, poll_after: Duration) -> Self {
        self.poll_after = Some(poll_after);
        self
    }

    /// How often the orchestrator pulls back a session and how long a session lives. Default:
    /// [`Client::default_poll_schedule`]; the demo compresses it.
    pub fn poll_schedule(mut self, schedule: PollSchedule) -> Self {
        self.poll_schedule = schedule;
        self
    }

    /// Checks the configuration and builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] (kind permanent) when a merchant number is not 16 digits, a location is
    /// configured twice, no location is configured, a URL cannot take paths, the client id is
    /// empty, or the timeout is zero.
    pub fn build(self) -> Result<Client> {
        for url in std::iter::once(&self.base_url).chain(self.token_url.as_ref()) {
            if url.cannot_be_a_base() || !matches!(url.scheme(), "http" | "https") {
                return Err(Error::Config(
                    "base and token URLs must be http(s) URLs".into(),
                ));
            }
        }
        if self.credentials.client_id.trim().is_empty() {
            return Err(Error::Config("client id is empty".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config("timeout must be above zero".into()));
        }
        if self.merchants.is_empty() {
            return Err(Error::Config("no location has a merchant number".into()));
        }
        let mut merchants = HashMap::new();
        for (location, number) in self.merchants {
            // The message names the location, never the number.
            let number = MerchantNumber::new(&number)
                .map_err(|e| Error::Config(format!("location {location}: {e}")))?;
            if merchants.insert(location.clone(), number).is_some() {
                return Err(Error::Config(format!(
                    "location {location} has two merchant numbers"
                )));
            }
        }
        let token_url = match self.token_url {
            Some(u) => u,
            None => endpoint(&self.base_url, wire::TOKEN_PATH, &[])?,
        };
        let http = match self.http {
            Some(h) => h,
            None => connector_transport::client_builder(self.timeout)
                .build()
                .map_err(|_| Error::Config("cannot build the HTTP client".into()))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url: self.base_url,
                token_url,
                credentials: self.credentials,
                scope: self.scope,
                merchants,
                timeout: self.timeout,
                retry: self.retry,
                limits: self.limits,
                landing_page: self.landing_page,
                allow_ssn_and_dob: self.allow_ssn_and_dob,
                poll_after: self.poll_after,
                poll_schedule: self.poll_schedule,
                token: TokenCache::new(self.refresh_margin),
            }),
        })
    }
}

/// The CareCredit client. Cheap to clone (one shared token cache and connection pool).
///
/// Implements [`FinancingProvider`](financing_core::FinancingProvider); the inherent methods are
/// the typed calls underneath, for callers that want CareCredit's own answers.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    token_url: Url,
    credentials: Credentials,
    scope: String,
    merchants: HashMap<LocationId, MerchantNumber>,
    timeout: Duration,
    retry: RetryPolicy,
    limits: AmountLimits,
    landing_page: LandingPage,
    allow_ssn_and_dob: bool,
    poll_after: Option<Duration>,
    poll_schedule: PollSchedule,
    token: TokenCache,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("partner_code", &self.inner.credentials.partner_code)
            .field("locations", &self.inner.merchants.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Starts a builder. `base_url` is CareCredit's API root (or the sandbox's).
    pub fn builder(base_url: Url, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            base_url,
            token_url: None,
            credentials,
            scope: wire::DEFAULT_SCOPE.to_owned(),
            merchants: Vec::new(),
            timeout: Duration::from_secs(10),
            http: None,
            retry: RetryPolicy::default(),
            limits: DEFAULT_LIMITS,
            landing_page: LandingPage::default(),
            allow_ssn_and_dob: false,
            refresh_margin: Duration::from_secs(60),
            poll_after: None,
            poll_schedule: Self::default_poll_schedule(),
        }
    }

    /// CareCredit's schedule: a portal session lasts 30 minutes ([`wire::SESSION_LIFETIME`]), so
    /// the pullback is read every 5 s for the first 10 minutes (the patient is on CareCredit's
    /// page), every 20 s until 5 minutes past the session's end (the lapse is seen within
    /// seconds), then every 5 minutes (a decision under review, up to 24 h). The patient is
    /// reminded 10 minutes before the session lapses.
    pub fn default_poll_schedule() -> PollSchedule {
        PollSchedule {
            steps: vec![
                PollStep {
                    until: Duration::from_secs(10 * 60),
                    every: Duration::from_secs(5),
                },
                PollStep {
                    until: wire::SESSION_LIFETIME + Duration::from_secs(5 * 60),
                    every: Duration::from_secs(20),
                },
            ],
            then_every: Duration::from_secs(5 * 60),
            session_life: Some(wire::SESSION_LIFETIME),
            remind_before_expiry: Duration::from_secs(10 * 60),
            staff_decides_within: None,
        }
    }

    /// The schedule this client was built with.
    pub fn configured_poll_schedule(&self) -> PollSchedule {
        self.inner.poll_schedule.clone()
    }

    /// The configured amount limits.
    pub fn amount_limits(&self) -> AmountLimits {
        self.inner.limits
    }

    pub(crate) fn poll_interval(&self) -> Option<Duration> {
        self.inner.poll_after
    }

    /// The merchant number configured for a location.
    ///
    /// # Errors
    /// [`Error::UnknownLocation`] (permanent) when the location has none.
    pub fn merchant_number(&self, location: &LocationId) -> Result<&MerchantNumber> {
        self.inner
            .merchants
            .get(location)
            .ok_or_else(|| Error::UnknownLocation {
                location: location.clone(),
            })
    }

    fn partner(&self, location: &LocationId, reference: &ApplicationRef) -> Result<PartnerQuery> {
        Ok(PartnerQuery {
            partner_code: self.inner.credentials.partner_code.clone(),
            partner_transaction_id: reference.as_str().to_owned(),
            merchant_number: self.merchant_number(location)?.clone(),
        })
    }

    /// Finds the prefill session already opened for `reference` at `location`, if any.
    ///
    /// # Errors
    /// Transient (timeouts, 5xx, 429), permanent (4xx other than 404, decode, unknown location).
    pub async fn find_session(
        &self,
        location: &LocationId,
        reference: &ApplicationRef,
    ) -> Result<Option<wire::PrefillSession>> {
        let query = self.partner(location, reference)?;
        let url = endpoint(&self.inner.base_url, wire::PREFILL_SESSIONS_PATH, &[])?;
        let body = self
            .call(Operation::FindSession, Method::GET, url, Some(&query), None)
            .await?;
        body.map(|b| decode(Operation::FindSession, &b)).transpose()
    }

    /// Opens a prefill session for the request: the amount, our reference as partner transaction
    /// id, the location's merchant number, and the prefill exactly as given in
    /// [`FinancingRequest::prefill`] (which the policy leaves `None` in CA and NY).
    ///
    /// `ssn` and the prefill's date of birth are sent only when the builder allowed it
    /// ([`ClientBuilder::allow_ssn_and_dob`]); otherwise they are dropped here.
    ///
    /// Prefer [`FinancingProvider::start_application`](financing_core::FinancingProvider::start_application),
    /// which looks for an existing session first.
    ///
    /// # Errors
    /// Transient (connect errors, 429, 503), indeterminate (timeouts and other 5xx: the session
    /// may exist, so find it before opening another), permanent (4xx, [`Error::TrainingSuspended`],
    /// decode, unknown location).
    pub async fn create_session(
        &self,
        request: &FinancingRequest,
        ssn: Option<SecretString>,
    ) -> Result<wire::PrefillSession> {
        let partner = self.partner(&request.location.location_id, &request.reference)?;
        let applicant = request.prefill.as_ref();
        let cipher = if self.inner.allow_ssn_and_dob {
            let dob = applicant
                .and_then(|a| a.date_of_birth)
                .map(|d| SecretString::from(d.format("%Y-%m-%d").to_string()));
            (ssn.is_some() || dob.is_some()).then_some(wire::Cipher {
                ssn,
                date_of_birth: dob,
            })
        } else {
            if ssn.is_some() || applicant.is_some_and(|a| a.date_of_birth.is_some()) {
                tracing::warn!(
                    operation = %Operation::CreateSession,
                    "SSN or date of birth given but not allowed by configuration; dropped"
                );
            }
            None
        };
        let body = wire::PrefillSessionRequest {
            partner,
            landing_page: self.inner.landing_page.clone(),
            purchase_amount: Amount(request.amount),
            return_url: request.return_url.clone(),
            applicant: applicant.map(|a| wire::PrefillApplicant {
                first_name: a.first_name.clone(),
                last_name: a.last_name.clone(),
                address1: a.address_lines.first().cloned(),
                address2: (a.address_lines.len() > 1).then(|| a.address_lines[1..].join(", ")),
                city: a.city.clone(),
                state: a.state.map(|s| s.code().to_owned()),
                zip_code: a.postal_code.clone(),
                mobile_phone: a.mobile_phone.clone(),
                email_address: a.email.clone(),
            }),
            cipher,
        };
        let url = endpoint(&self.inner.base_url, wire::PREFILL_SESSIONS_PATH, &[])?;
        let bytes = self
            .call(
                Operation::CreateSession,
                Method::POST,
                url,
                None,
                Some(json(&body)?),
            )
            .await?
            .unwrap_or_default();
        decode(Operation::CreateSession, &bytes)
    }

    /// Pulls back a session's outcome.
    ///
    /// # Errors
    /// Transient (timeouts, 5xx, 429), permanent (4xx, decode, unknown location).
    pub async fn get_pullback(&self, application: &ApplicationHandle) -> Result<wire::Pullback> {
        let query = self.partner(&application.location.location_id, &application.reference)?;
        let url = endpoint(
            &self.inner.base_url,
            wire::PULLBACK_PATH,
            &[application.lender_reference.as_str()],
        )?;
        let bytes = self
            .call(Operation::GetPullback, Method::GET, url, Some(&query), None)
            .await?
            .unwrap_or_default();
        decode(Operation::GetPullback, &bytes)
    }

    /// Looks up an existing cardholder by name plus phone and/or ZIP. `Ok(None)` without calling
    /// CareCredit when the request has no [`FinancingRequest::lookup`], or it lacks a name or both
    /// phone and ZIP.
    ///
    /// # Errors
    /// Transient (timeouts, 5xx, 429), permanent (4xx, decode, unknown location).
    pub async fn lookup_account(
        &self,
        request: &FinancingRequest,
    ) -> Result<Option<wire::CardholderLookupResponse>> {
        let Some(who) = request.lookup.as_ref() else {
            return Ok(None);
        };
        let nonblank = |s: &Option<String>| s.as_ref().filter(|v| !v.trim().is_empty()).cloned();
        let criteria = wire::LookupCriteria {
            first_name: who.first_name.clone(),
            last_name: who.last_name.clone(),
            phone_number: nonblank(&who.mobile_phone),
            zip_code: nonblank(&who.postal_code),
        };
        if criteria.first_name.trim().is_empty()
            || criteria.last_name.trim().is_empty()
            || (criteria.phone_number.is_none() && criteria.zip_code.is_none())
        {
            return Ok(None);
        }
        let body = wire::CardholderLookupRequest {
            partner: self.partner(&request.location.location_id, &request.reference)?,
            criteria,
        };
        let url = endpoint(&self.inner.base_url, wire::CARDHOLDER_LOOKUP_PATH, &[])?;
        let bytes = self
            .call(
                Operation::LookupCardholder,
                Method::POST,
                url,
                None,
                Some(json(&body)?),
            )
            .await?
            .unwrap_or_default();
        decode(Operation::LookupCardholder, &bytes).map(Some)
    }

    /// One logical call under the retry policy (the error table decides what is transient); each
    /// attempt refreshes the token once on a 401 (nothing was done on CareCredit's side, so
    /// repeating is safe even for a POST). `Ok(None)` only for a 404 on
    /// [`Operation::FindSession`].
    async fn call(
        &self,
        op: Operation,
        method: Method,
        url: Url,
        query: Option<&PartnerQuery>,
        body: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        let unauthorized = |e: &Error| matches!(e, Error::Api { status: 401, .. });
        self.inner
            .retry
            .run(|_| {
                self.inner.token.authorized(
                    || self.fetch_token(),
                    |token| self.attempt(op, &method, &url, query, body.as_deref(), token),
                    unauthorized,
                )
            })
            .await
    }

    async fn attempt(
        &self,
        op: Operation,
        method: &Method,
        url: &Url,
        query: Option<&PartnerQuery>,
        body: Option<&[u8]>,
        token: AccessToken,
    ) -> Result<Option<Vec<u8>>> {
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .timeout(self.inner.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            // The one place the access token leaves its `SecretString`.
            .bearer_auth(token.secret().expose_secret());
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_vec());
        }
        let started = Instant::now();
        let resp = req.send().await.map_err(|source| Error::Transport {
            operation: op,
            source,
        })?;
        let status = resp.status();
        tracing::debug!(
            operation = %op,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "carecredit call"
        );
        if status.is_success() {
            let bytes = resp.bytes().await.map_err(|source| Error::Transport {
                operation: op,
                source,
            })?;
            return Ok(Some(bytes.to_vec()));
        }
        match status {
            StatusCode::UNAUTHORIZED => Err(api_error(op, status, None)),
            StatusCode::NOT_FOUND if op == Operation::FindSession => Ok(None),
            StatusCode::UNPROCESSABLE_ENTITY => {
                // Read only to recognise CareCredit's fixed text; the body is dropped here and
                // never stored, logged or displayed.
                let text = resp.text().await.unwrap_or_default();
                if text.contains(wire::TRAINING_SUSPENDED) {
                    Err(Error::TrainingSuspended { operation: op })
                } else {
                    Err(api_error(op, status, None))
                }
            }
            _ => {
                let retry_after = connector_transport::retry_after(resp.headers());
                Err(api_error(op, status, retry_after))
            }
        }
    }

    async fn fetch_token(&self) -> Result<FreshToken> {
        let op = Operation::FetchToken;
        let body = wire::TokenRequest {
            client_id: self.inner.credentials.client_id.clone(),
            client_secret: self.inner.credentials.client_secret.clone(),
            grant_type: wire::GRANT_TYPE_CLIENT_CREDENTIALS.to_owned(),
            scope: self.inner.scope.clone(),
        };
        let resp = self
            .inner
            .http
            .post(self.inner.token_url.clone())
            .timeout(self.inner.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(json(&body)?)
            .send()
            .await
            .map_err(|source| Error::Transport {
                operation: op,
                source,
            })?;
        let status = resp.status();
        tracing::debug!(operation = %op, status = status.as_u16(), "carecredit token");
        if !status.is_success() {
            return Err(api_error(
                op,
                status,
                connector_transport::retry_after(resp.headers()),
            ));
        }
        let bytes = resp.bytes().await.map_err(|source| Error::Transport {
            operation: op,
            source,
        })?;
        let token: wire::TokenResponse = decode(op, &bytes)?;
        Ok(FreshToken {
            secret: token.access_token,
            lifetime: Duration::from_secs(token.expires_in),
        })
    }
}

pub(crate) fn started_expiry(
    session: &wire::PrefillSession,
    created_now: bool,
) -> Option<chrono::DateTime<Utc>> {
    session.expires_at.or_else(|| {
        created_now.then(|| {
            Utc::now()
                + chrono::Duration::from_std(wire::SESSION_LIFETIME)
                    .unwrap_or(chrono::Duration::zero())
        })
    })
}

fn api_error(operation: Operation, status: StatusCode, retry_after: Option<Duration>) -> Error {
    Error::Api {
        operation,
        status: status.as_u16(),
        retry_after,
    }
}

fn json(body: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|_| Error::Config("cannot encode a request body".into()))
}

fn decode<T: DeserializeOwned>(operation: Operation, bytes: &[u8]) -> Result<T> {
    connector_transport::decode_json(bytes).map_err(|source| Error::Decode { operation, source })
}

/// `base` plus a route like `/a/{id}/b` (see [`wire`]), each `{...}` replaced in
/// order by a percent-encoded parameter. Keeps any path prefix the base URL has.
fn endpoint(base: &Url, route: &str, params: &[&str]) -> Result<Url> {
    let mut url = base.clone();
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| Error::Config("base URL cannot take paths".into()))?;
        segments.pop_if_empty();
        let mut params = params.iter();
        for seg in route.split('/').filter(|s| !s.is_empty()) {
            if seg.starts_with('{') {
                let value = params
                    .next()
                    .ok_or_else(|| Error::Config("route parameter missing".into()))?;
                segments.push(value);
            } else {
                segments.push(seg);
            }
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_keep_the_base_prefix_and_encode_parameters() {
        let base = Url::parse("http://127.0.0.1:9/carecredit/").unwrap();
        let url = endpoint(&base, "/a/{id}/b", &["s 1/2"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/carecredit/a/s%201%2F2/b");
        let bare = Url::parse("http://127.0.0.1:9").unwrap();
        assert_eq!(endpoint(&bare, "/x/y", &[]).unwrap().path(), "/x/y");
        assert!(endpoint(&bare, "/x/{missing}", &[]).is_err());
    }
}
