//! A webhook endpoint as a [`Subscriber`]: each event POSTed as JSON, signed per Standard
//! Webhooks (`webhook-id` = the event's id, the same on every attempt; `webhook-timestamp` = the
//! attempt's time; `webhook-signature` = `v1,<base64 HMAC-SHA256>`).
//!
//! Outcomes (the spec's table): 2xx delivered; 410 the endpoint is gone, give up; anything else
//! (3xx, since redirects are not followed, 4xx, 5xx, a timeout, a refused connection) is retried,
//! no sooner than a `Retry-After`.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::PracticeId;
use url::Url;

use super::events::EventType;
use super::sign::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, WebhookSecret};
use super::{DeliveryError, Subscriber};
use crate::store::outbox::StoredEvent;

/// One endpoint: where, with which secret, which events of which practices.
#[derive(Clone)]
pub struct WebhookEndpoint {
    id: String,
    url: Url,
    secret: WebhookSecret,
    types: Option<HashSet<EventType>>,
    practices: Option<HashSet<PracticeId>>,
    http: reqwest::Client,
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("host", &self.url.host_str())
            .finish_non_exhaustive()
    }
}

/// The spec recommends a 15 to 30 s request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

impl WebhookEndpoint {
    /// An endpoint named `name` (its subscriber id is `webhook:{name}`) receiving every event of
    /// every practice, with its own HTTP client (no redirects, [`DEFAULT_TIMEOUT`]).
    ///
    /// # Errors
    /// The HTTP client could not be built (TLS setup).
    pub fn new(name: &str, url: Url, secret: WebhookSecret) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            id: format!("webhook:{name}"),
            url,
            secret,
            types: None,
            practices: None,
            http,
        })
    }

    /// Only these event types (default all).
    #[must_use]
    pub fn types(mut self, types: impl IntoIterator<Item = EventType>) -> Self {
        self.types = Some(types.into_iter().collect());
        self
    }

    /// Only these practices' events (default all).
    #[must_use]
    pub fn practices(mut self, practices: impl IntoIterator<Item = PracticeId>) -> Self {
        self.practices = Some(practices.into_iter().collect());
        self
    }

    /// Replaces the request timeout.
    ///
    /// # Errors
    /// The HTTP client could not be built.
    pub fn timeout(mut self, timeout: Duration) -> Result<Self, reqwest::Error> {
        self.http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(self)
    }
}

#[async_trait]
impl Subscriber for WebhookEndpoint {
    fn id(&self) -> &str {
        &self.id
    }

    fn wants(&self, event: &StoredEvent) -> bool {
        let type_ok = self.types.as_ref().is_none_or(|types| {
            EventType::from_label(&event.kind).is_some_and(|t| types.contains(&t))
        });
        let practice_ok = self.practices.as_ref().is_none_or(|practices| {
            practices.contains(&PracticeId::new(event.practice_id.as_str()))
        });
        type_ok && practice_ok
    }

    async fn deliver(
        &self,
        event: &StoredEvent,
        _attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<u16>, DeliveryError> {
        let timestamp = now.timestamp();
        let signature = self.secret.sign(&event.event_id, timestamp, &event.payload);
        let response = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_ID, &event.event_id)
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .body(event.payload.clone())
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "the request failed"
                };
                DeliveryError::retry(None, what)
            })?;
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return Ok(Some(code));
        }
        if code == 410 {
            return Err(DeliveryError::give_up(
                Some(code),
                "the endpoint answered 410 Gone",
            ));
        }
        let mut error = DeliveryError::retry(Some(code), "the endpoint refused the event");
        error.retry = Some(connector_transport::retry_after(response.headers()));
        Err(error)
    }
}
