//! [`Client`], [`ClientBuilder`] and the retrying request loop.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use connector_transport::RetryPolicy;
use financing_core::{
    AmountLimits, ApplicationHandle, ApplicationRef, FinancingRequest, LocationId, PollSchedule,
    PollStep,
};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Error, Operation, Result};
use crate::ids::{PurchaseId, SunbitLocation};
use crate::wire::{self, PurchaseQuery};

/// Sunbit publishes no programme minimum or maximum, so none by default; set the practice's
/// contract limits with [`ClientBuilder::limits`].
pub const DEFAULT_LIMITS: AmountLimits = AmountLimits::NONE;

/// Sunbit API credentials from the Developers Portal. Redacted `Debug`.
#[derive(Clone)]
pub struct Credentials {
    /// Sent as the key header on every call.
    pub key: SecretString,
    /// Sent as the secret header on purchase reads and voids.
    pub secret: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// Builds a [`Client`]. The base URL is injected, so tests and the sandbox point it at loopback.
pub struct ClientBuilder {
    base_url: Url,
    credentials: Credentials,
    locations: Vec<(LocationId, String)>,
    send_sms: bool,
    timeout: Duration,
    http: Option<reqwest::Client>,
    retry: RetryPolicy,
    limits: AmountLimits,
    poll_after: Option<Duration>,
    poll_schedule: PollSchedule,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url.as_str())
            .field("credentials", &self.credentials)
            .field("locations", &self.locations.len())
            .field("send_sms", &self.send_sms)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The Sunbit location registered for a practice location. Call once per location.
    pub fn location(mut self, location: LocationId, sunbit: impl Into<String>) -> Self {
        self.locations.push((location, sunbit.into()));
        self
    }

    /// Whether Sunbit texts the link to the patient itself. Default `false`: Chairside sends the
    /// link through its own messaging, which checks the patient's SMS consent (TCPA) and quiet
    /// hours first. Even when `true`, Sunbit can only text a phone that came with the
    /// policy-allowed prefill.
    pub fn send_sms(mut self, send: bool) -> Self {
        self.send_sms = send;
        self
    }

    /// Per-request timeout. Default: 10 s.
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

    /// The amounts Sunbit finances for the practice. Default: [`DEFAULT_LIMITS`].
    pub fn limits(mut self, limits: AmountLimits) -> Self {
        self.limits = limits;
        self
    }

    /// A floor put in [`Decision::Pending`](financing_core::Decision::Pending)'s `poll_after`.
    /// Default: none (the [`poll_schedule`](Self::poll_schedule) paces status reads).
    pub fn poll_after(mut self, poll_after: Duration) -> Self {
        self.poll_after = Some(poll_after);
        self
    }

    /// How often the orchestrator reads a Sunbit application's status. Default:
    /// [`Client::default_poll_schedule`]; the demo compresses it.
    pub fn poll_schedule(mut self, schedule: PollSchedule) -> Self {
        self.poll_schedule = schedule;
        self
    }

    /// Checks the configuration and builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] (kind permanent) when no location is configured, a location is configured
    /// twice or blank, the base URL cannot take paths, or the timeout is zero.
    pub fn build(self) -> Result<Client> {
        if self.base_url.cannot_be_a_base() || !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(Error::Config("the base URL must be an http(s) URL".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config("timeout must be above zero".into()));
        }
        if self.locations.is_empty() {
            return Err(Error::Config("no location has a Sunbit location".into()));
        }
        let mut locations = HashMap::new();
        for (location, sunbit) in self.locations {
            if sunbit.trim().is_empty() {
                return Err(Error::Config(format!(
                    "location {location} has a blank Sunbit location"
                )));
            }
            if locations
                .insert(location.clone(), SunbitLocation::new(sunbit))
                .is_some()
            {
                return Err(Error::Config(format!(
                    "location {location} has two Sunbit locations"
                )));
            }
        }
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
                credentials: self.credentials,
                locations,
                send_sms: self.send_sms,
                timeout: self.timeout,
                retry: self.retry,
                limits: self.limits,
                poll_after: self.poll_after,
                poll_schedule: self.poll_schedule,
            }),
        })
    }
}

/// How to find a purchase: by Sunbit's id, or by our reference before Sunbit's id is known.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PurchaseLookup {
    /// By Sunbit's purchase id.
    Id(PurchaseId),
    /// By our reference (sent as the link's referral, read back as the transaction id).
    Reference(ApplicationRef),
}

impl PurchaseLookup {
    /// The lookup for an application handle.
    ///
    /// [`start_application`](financing_core::FinancingProvider::start_application) cannot know
    /// Sunbit's purchase id (the link response carries only the URL), so it reports our reference
    /// as the lender reference. A handle whose lender reference still equals our reference is
    /// looked up by reference; once the orchestrator has stored Sunbit's purchase id from a webhook,
    /// by id.
    pub fn for_handle(application: &ApplicationHandle) -> Self {
        if application.lender_reference.as_str() == application.reference.as_str() {
            Self::Reference(application.reference.clone())
        } else {
            Self::Id(PurchaseId::new(application.lender_reference.as_str()))
        }
    }
}

/// The Sunbit client. Cheap to clone (one shared connection pool).
///
/// Implements [`FinancingProvider`](financing_core::FinancingProvider); the inherent methods are
/// the typed calls underneath.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    credentials: Credentials,
    locations: HashMap<LocationId, SunbitLocation>,
    send_sms: bool,
    timeout: Duration,
    retry: RetryPolicy,
    limits: AmountLimits,
    poll_after: Option<Duration>,
    poll_schedule: PollSchedule,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("locations", &self.inner.locations.len())
            .finish_non_exhaustive()
    }
}

enum Outcome {
    Body(Vec<u8>),
    NotFound,
}

impl Client {
    /// Starts a builder. `base_url` is Sunbit's API host (or the sandbox's).
    pub fn builder(base_url: Url, credentials: Credentials) -> ClientBuilder {
        ClientBuilder {
            base_url,
            credentials,
            locations: Vec::new(),
            send_sms: false,
            timeout: Duration::from_secs(10),
            http: None,
            retry: RetryPolicy::default(),
            limits: DEFAULT_LIMITS,
            poll_after: None,
            poll_schedule: Self::default_poll_schedule(),
        }
    }

    /// Sunbit's schedule: every 10 s for the first 15 minutes (the patient is on Sunbit's page;
    /// the signed webhook usually comes first), every 2 minutes up to 2 hours, then every 15
    /// minutes; the link lives 7 days ([`wire::LINK_LIFETIME`]) and the patient is reminded a day
    /// before it lapses.
    pub fn default_poll_schedule() -> PollSchedule {
        PollSchedule {
            steps: vec![
                PollStep {
                    until: Duration::from_secs(15 * 60),
                    every: Duration::from_secs(10),
                },
                PollStep {
                    until: Duration::from_secs(2 * 60 * 60),
                    every: Duration::from_secs(2 * 60),
                },
            ],
            then_every: Duration::from_secs(15 * 60),
            session_life: Some(wire::LINK_LIFETIME),
            remind_before_expiry: Duration::from_secs(24 * 60 * 60),
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

    /// The Sunbit location configured for a practice location.
    ///
    /// # Errors
    /// [`Error::UnknownLocation`] (permanent) when the location has none.
    pub fn sunbit_location(&self, location: &LocationId) -> Result<&SunbitLocation> {
        self.inner
            .locations
            .get(location)
            .ok_or_else(|| Error::UnknownLocation {
                location: location.clone(),
            })
    }

    /// Requests a prequalification link for the request: the location, our reference as the
    /// referral, and the patient's phone and details only from [`FinancingRequest::prefill`]
    /// (which the policy leaves `None` in CA and NY). Sunbit texts the link only when
    /// [`ClientBuilder::send_sms`] is on and a phone was given.
    ///
    /// # Errors
    /// Transient (connect errors, 429, 503), indeterminate (timeouts and other 5xx: a link may
    /// have been minted), permanent (4xx, decode, unknown location).
    pub async fn create_online_link(
        &self,
        request: &FinancingRequest,
    ) -> Result<wire::OnlineLinkResponse> {
        let location = self.sunbit_location(&request.location.location_id)?.clone();
        let prefill = request.prefill.as_ref();
        let phone = prefill
            .and_then(|a| a.mobile_phone.clone())
            .filter(|p| !p.trim().is_empty());
        let body = vec![wire::OnlineLinkRequest {
            location,
            referral: request.reference.as_str().to_owned(),
            send_sms: self.inner.send_sms && phone.is_some(),
            customer_phone_number: phone,
            customer_details: prefill.map(|a| wire::CustomerDetails {
                first_name: a.first_name.clone(),
                last_name: a.last_name.clone(),
                email: a.email.clone(),
                address: (!a.address_lines.is_empty()).then(|| a.address_lines.join(", ")),
                city: a.city.clone(),
                state: a.state.map(|s| s.code().to_owned()),
                zip_code: a.postal_code.clone(),
            }),
        }];
        let url = endpoint(&self.inner.base_url, wire::ONLINE_LINK_PATH, &[])?;
        let bytes = self
            .call(
                Operation::CreateLink,
                Method::PUT,
                url,
                None,
                Some(json(&body)?),
            )
            .await?
            .unwrap_or_default();
        decode(Operation::CreateLink, &bytes)
    }

    /// Reads a purchase. `Ok(None)` when looking up by reference and Sunbit has no purchase for it
    /// yet (`404`).
    ///
    /// # Errors
    /// Transient (timeouts, 5xx, 429), permanent (4xx, decode).
    pub async fn get_purchase(&self, lookup: &PurchaseLookup) -> Result<Option<wire::Purchase>> {
        let query = match lookup {
            PurchaseLookup::Id(id) => PurchaseQuery {
                purchase_id: Some(id.clone()),
                transaction_id: None,
            },
            PurchaseLookup::Reference(r) => PurchaseQuery {
                purchase_id: None,
                transaction_id: Some(r.as_str().to_owned()),
            },
        };
        let url = endpoint(&self.inner.base_url, wire::EPAY_PATH, &[])?;
        let not_found_is_none = matches!(lookup, PurchaseLookup::Reference(_));
        let body = self
            .call(
                Operation::GetPurchase,
                Method::GET,
                url,
                Some((&query, not_found_is_none)),
                None,
            )
            .await?;
        body.map(|b| decode(Operation::GetPurchase, &b)).transpose()
    }

    /// Voids a purchase. Prefer
    /// [`FinancingProvider::cancel_application`](financing_core::FinancingProvider::cancel_application),
    /// which reads the purchase first and voids only a completed one.
    ///
    /// # Errors
    /// Transient (connect errors, 429, 503), indeterminate (timeouts and other 5xx: read the
    /// purchase before trying again), permanent (4xx, decode, unknown location).
    pub async fn cancel_purchase(
        &self,
        location: &LocationId,
        reference: &ApplicationRef,
        purchase: &PurchaseId,
    ) -> Result<wire::CancelResponse> {
        let body = wire::CancelRequest {
            transaction_id: reference.as_str().to_owned(),
            location: self.sunbit_location(location)?.clone(),
        };
        let url = endpoint(
            &self.inner.base_url,
            wire::CANCEL_PATH,
            &[purchase.as_str()],
        )?;
        let bytes = self
            .call(
                Operation::CancelPurchase,
                Method::PUT,
                url,
                None,
                Some(json(&body)?),
            )
            .await?
            .unwrap_or_default();
        decode(Operation::CancelPurchase, &bytes)
    }

    /// One logical call with retries on transient failures. `query` carries whether a 404 means
    /// "none" (`Ok(None)`).
    async fn call(
        &self,
        op: Operation,
        method: Method,
        url: Url,
        query: Option<(&PurchaseQuery, bool)>,
        body: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>> {
        // The error table decides what is transient: a link or void that timed out is
        // Indeterminate and not repeated.
        self.inner
            .retry
            .run(|_| async {
                match self
                    .attempt(op, &method, &url, query, body.as_deref())
                    .await?
                {
                    Outcome::Body(b) => Ok(Some(b)),
                    Outcome::NotFound => Ok(None),
                }
            })
            .await
    }

    async fn attempt(
        &self,
        op: Operation,
        method: &Method,
        url: &Url,
        query: Option<(&PurchaseQuery, bool)>,
        body: Option<&[u8]>,
    ) -> Result<Outcome> {
        // The one place the key and secret leave their `SecretString`s: the auth headers.
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .timeout(self.inner.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(wire::KEY_HEADER, self.inner.credentials.key.expose_secret());
        if op != Operation::CreateLink {
            req = req.header(
                wire::SECRET_HEADER,
                self.inner.credentials.secret.expose_secret(),
            );
        }
        if let Some((q, _)) = query {
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
            "sunbit call"
        );
        if status.is_success() {
            let bytes = resp.bytes().await.map_err(|source| Error::Transport {
                operation: op,
                source,
            })?;
            return Ok(Outcome::Body(bytes.to_vec()));
        }
        if status == StatusCode::NOT_FOUND && query.is_some_and(|(_, none)| none) {
            return Ok(Outcome::NotFound);
        }
        Err(Error::Api {
            operation: op,
            status: status.as_u16(),
            retry_after: connector_transport::retry_after(resp.headers()),
        })
    }
}

pub(crate) fn link_expiry() -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(wire::LINK_LIFETIME).unwrap_or(chrono::Duration::zero())
}

fn json(body: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|_| Error::Config("cannot encode a request body".into()))
}

fn decode<T: DeserializeOwned>(operation: Operation, bytes: &[u8]) -> Result<T> {
    connector_transport::decode_json(bytes).map_err(|source| Error::Decode { operation, source })
}

/// `base` plus a route like `/a/{id}/b` (see [`wire`]), each `{...}` replaced in order by a
/// percent-encoded parameter. Keeps any path prefix the base URL has.
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
        let base = Url::parse("http://127.0.0.1:9/sunbit/").unwrap();
        let url = endpoint(&base, "/a/{id}/b", &["p 1/2"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:9/sunbit/a/p%201%2F2/b");
        assert!(endpoint(&base, "/x/{missing}", &[]).is_err());
    }
}
