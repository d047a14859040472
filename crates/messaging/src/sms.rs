//! SMS over Twilio's REST API: `Messages.json` create and list, with the consent ledger consulted
//! before every send.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use connector_transport::RetryPolicy;
use financing_core::PracticeId;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::consent::{ConsentLedger, OptOutState};
use crate::error::{Error, Operation, Result};
use crate::ids::{AccountSid, MessageSid, MessagingServiceSid, PhoneNumber, TwilioErrorCode};
use crate::segments::{SegmentInfo, segment_info};

/// Twilio's production API origin.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const PAGE_SIZE: &str = "100";
const DEFAULT_MAX_PAGES: u32 = 20;

/// A message's delivery status. Unknown values decode into [`MessageStatus::Unknown`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageStatus {
    /// Queued for sending (the first status of a message sent with `From`; no callback for it).
    Queued,
    /// Twilio is sending it.
    Sending,
    /// The carrier took it.
    Sent,
    /// Sending failed (see the error code).
    Failed,
    /// The handset confirmed delivery.
    Delivered,
    /// The carrier could not deliver it (see the error code).
    Undelivered,
    /// An inbound message is arriving.
    Receiving,
    /// An inbound message arrived.
    Received,
    /// Accepted by a Messaging Service (its first status; no callback for it).
    Accepted,
    /// Scheduled for later.
    Scheduled,
    /// Read (WhatsApp and RCS only).
    Read,
    /// Some segments were delivered.
    PartiallyDelivered,
    /// A scheduled message was canceled.
    Canceled,
    /// A status this crate does not know yet.
    Unknown(String),
}

impl MessageStatus {
    /// Twilio's name for the status.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Receiving => "receiving",
            Self::Received => "received",
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Read => "read",
            Self::PartiallyDelivered => "partially_delivered",
            Self::Canceled => "canceled",
            Self::Unknown(s) => s,
        }
    }

    /// Decodes Twilio's name; never fails.
    pub fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "sending" => Self::Sending,
            "sent" => Self::Sent,
            "failed" => Self::Failed,
            "delivered" => Self::Delivered,
            "undelivered" => Self::Undelivered,
            "receiving" => Self::Receiving,
            "received" => Self::Received,
            "accepted" => Self::Accepted,
            "scheduled" => Self::Scheduled,
            "read" => Self::Read,
            "partially_delivered" => Self::PartiallyDelivered,
            "canceled" => Self::Canceled,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// True when the message did not (fully) reach the patient: fall back to email or staff.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            Self::Failed | Self::Undelivered | Self::PartiallyDelivered | Self::Canceled
        )
    }

    /// True when no further status will follow for an outbound message.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Delivered | Self::Read) || self.is_failure()
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MessageStatus {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MessageStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

/// Who a text is sent from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsFrom {
    /// One of the practice's Twilio numbers (`From`).
    Number(PhoneNumber),
    /// A Messaging Service, which picks the number (`MessagingServiceSid`).
    MessagingService(MessagingServiceSid),
}

/// A text to send.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingSms {
    /// The practice whose opt-out record applies.
    pub practice: PracticeId,
    /// The patient's number.
    pub to: PhoneNumber,
    /// The sender.
    pub from: SmsFrom,
    /// The text (see [`ComposedSms`](crate::ComposedSms)). PHI: never logged.
    pub body: String,
    /// Where Twilio posts status callbacks.
    pub status_callback: Option<Url>,
}

impl fmt::Debug for OutgoingSms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingSms")
            .field("practice", &self.practice)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// A text Twilio accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentSms {
    /// Twilio's id: store it, match status callbacks by it.
    pub sid: MessageSid,
    /// The first status (`queued` or `accepted`).
    pub status: MessageStatus,
    /// Our segment count for the body.
    pub segments: SegmentInfo,
    /// Twilio's own segment count, when it reported one.
    pub twilio_segments: Option<u32>,
}

/// The result of [`SmsClient::send`]. Only [`SmsOutcome::Sent`] means a text left.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum SmsOutcome {
    /// Twilio accepted the text.
    Sent(SentSms),
    /// Nothing was sent: the consent ledger says the number opted out of this practice's texts.
    /// Fall back to email.
    Suppressed {
        /// When the opt-out was recorded.
        opted_out_at: DateTime<Utc>,
    },
    /// Twilio refused with error 21610: the patient replied STOP to this sender. Record an
    /// opt-out (`ConsentSource::CarrierOptOut`) and fall back to email.
    RecipientOptedOut,
}

/// A message found by [`SmsClient::list_messages_to`], for reconciling an indeterminate send.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Twilio's id.
    pub sid: MessageSid,
    /// The current status.
    pub status: MessageStatus,
    /// When Twilio created it.
    pub date_created: Option<DateTime<Utc>>,
    /// When it was sent, once it was.
    pub date_sent: Option<DateTime<Utc>>,
    /// The sender number, when it is one.
    pub from: Option<PhoneNumber>,
    /// The Messaging Service, when one sent it.
    pub messaging_service_sid: Option<MessagingServiceSid>,
    /// Twilio's error code, for failed messages.
    pub error_code: Option<TwilioErrorCode>,
    body: Option<String>,
}

impl MessageRecord {
    /// True when the message's text is exactly `text`: the strongest reconciliation evidence.
    pub fn body_matches(&self, text: &str) -> bool {
        self.body.as_deref() == Some(text)
    }

    /// True when the message's text has digest `digest` ([`body_digest`]): the same evidence,
    /// for a caller that journalled only the digest (no PHI at rest).
    pub fn body_digest_matches(&self, digest: &str) -> bool {
        self.body
            .as_deref()
            .is_some_and(|b| body_digest(b) == digest)
    }
}

/// A digest of a text's body that names nothing in it (SHA-1, hex): journalled before a send so
/// the send can be found again by [`SmsClient::list_messages_to`] if its answer is lost.
pub fn body_digest(body: &str) -> String {
    use sha1::Digest;
    let d = sha1::Sha1::digest(body.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for MessageRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageRecord")
            .field("sid", &self.sid)
            .field("status", &self.status)
            .field("date_created", &self.date_created)
            .field("error_code", &self.error_code)
            .finish_non_exhaustive()
    }
}

/// Sends texts through Twilio and looks them up. Cheap to clone.
#[derive(Clone)]
pub struct SmsClient {
    http: reqwest::Client,
    base: String,
    account_sid: AccountSid,
    auth_token: SecretString,
    ledger: Arc<dyn ConsentLedger>,
    retry: RetryPolicy,
    max_pages: u32,
}

impl fmt::Debug for SmsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsClient")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Builds an [`SmsClient`].
pub struct SmsClientBuilder {
    base_url: Option<Url>,
    account_sid: AccountSid,
    auth_token: SecretString,
    ledger: Arc<dyn ConsentLedger>,
    timeout: Duration,
    retry: RetryPolicy,
    http: Option<reqwest::Client>,
    max_pages: u32,
}

impl fmt::Debug for SmsClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsClientBuilder")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl SmsClientBuilder {
    /// The API origin (default [`DEFAULT_BASE_URL`]): wiremock in tests, the sandbox in the demo.
    /// Plain `http` is accepted for loopback hosts only: the auth token travels in every request.
    pub fn base_url(mut self, url: Url) -> Self {
        self.base_url = Some(url);
        self
    }

    /// Per-request timeout (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retry policy for transient failures (default: [`RetryPolicy::default`], at most 20 s of
    /// waiting in all; a longer `Retry-After` comes back as a transient error carrying the delay).
    /// Only 429s and connect errors are transient for a send: a timeout or 5xx after a POST may
    /// have sent the message. Pass [`RetryPolicy::none`] when the caller retries durably itself.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// A shared `reqwest` client. Its own timeout applies instead of [`Self::timeout`].
    /// Build it with `connector_transport::client_builder`, which follows no redirect, as the
    /// default client does: a followed 307 would send the request body to another host.
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Most pages [`SmsClient::list_messages_to`] reads (default 20 pages of 100).
    pub fn max_pages(mut self, pages: u32) -> Self {
        self.max_pages = pages.max(1);
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`Error::Config`] (permanent) for a base URL that is not `https` (or `http` on loopback),
    /// has a query, or an account SID that is not alphanumeric.
    pub fn build(self) -> Result<SmsClient> {
        let base_url = match self.base_url {
            Some(u) => u,
            None => Url::parse(DEFAULT_BASE_URL).map_err(|_| Error::Config {
                reason: "default Twilio URL".into(),
            })?,
        };
        let secure =
            base_url.scheme() == "https" || (base_url.scheme() == "http" && is_loopback(&base_url));
        if !secure || base_url.query().is_some() || base_url.cannot_be_a_base() {
            return Err(Error::Config {
                reason: "Twilio base URL must be https (http only on loopback), without a query"
                    .into(),
            });
        }
        let sid = self.account_sid.as_str();
        if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Config {
                reason: "Twilio account SID must be alphanumeric".into(),
            });
        }
        let http = match self.http {
            Some(c) => c,
            None => connector_transport::client_builder(self.timeout)
                .build()
                .map_err(|_| Error::Config {
                    reason: "cannot build the HTTP client".into(),
                })?,
        };
        Ok(SmsClient {
            http,
            base: base_url.as_str().trim_end_matches('/').to_owned(),
            account_sid: self.account_sid,
            auth_token: self.auth_token,
            ledger: self.ledger,
            retry: self.retry,
            max_pages: self.max_pages,
        })
    }
}

#[derive(Deserialize)]
struct CreatedMessage {
    sid: MessageSid,
    status: MessageStatus,
    #[serde(default, deserialize_with = "lenient_u32")]
    num_segments: Option<u32>,
}

#[derive(Deserialize)]
struct MessagePage {
    messages: Vec<WireMessage>,
    #[serde(default)]
    next_page_uri: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    sid: MessageSid,
    status: MessageStatus,
    #[serde(default)]
    date_created: Option<String>,
    #[serde(default)]
    date_sent: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    messaging_service_sid: Option<MessagingServiceSid>,
    #[serde(default, deserialize_with = "lenient_u32")]
    error_code: Option<u32>,
    #[serde(default)]
    body: Option<String>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(default, deserialize_with = "lenient_u32")]
    code: Option<u32>,
}

/// Twilio sends some numbers as strings (`"num_segments": "1"`); accept both, and anything else
/// as absent rather than failing the decode.
fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u32>, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Twilio's dates are RFC 2822 (`Thu, 30 Jul 2015 20:12:31 +0000`).
fn twilio_date(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc2822(s).ok())
        .map(|d| d.with_timezone(&Utc))
}

impl SmsClient {
    /// Starts a builder. `ledger` is consulted before every send.
    pub fn builder(
        account_sid: AccountSid,
        auth_token: SecretString,
        ledger: Arc<dyn ConsentLedger>,
    ) -> SmsClientBuilder {
        SmsClientBuilder {
            base_url: None,
            account_sid,
            auth_token,
            ledger,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            http: None,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base, self.account_sid
        )
    }

    /// Sends a text, unless the ledger says the number opted out of the practice's texts.
    ///
    /// The ledger is checked here whatever the caller has checked: a number marked opted out
    /// never receives a text from this crate. Consent type and quiet hours remain the caller's
    /// checks. Transient failures (429, connect errors) are retried under the client's retry policy;
    /// nothing else is, because Twilio has no idempotency key.
    ///
    /// # Errors
    /// - Transient: 429 / 20429 or connect errors after the last retry; a transient ledger error.
    /// - Indeterminate: a timeout or 5xx, or an undecodable 2xx: the text may have been sent.
    ///   Reconcile with [`SmsClient::list_messages_to`] before sending again.
    /// - Permanent: other 4xx (bad number, bad credentials), an empty body.
    pub async fn send(&self, sms: &OutgoingSms) -> Result<SmsOutcome> {
        if let OptOutState::OptedOut { at, .. } =
            self.ledger.opt_out_state(&sms.practice, &sms.to).await?
        {
            tracing::info!(practice = %sms.practice, "sms suppressed: number opted out");
            return Ok(SmsOutcome::Suppressed { opted_out_at: at });
        }
        if sms.body.trim().is_empty() {
            return Err(Error::Config {
                reason: "empty SMS body".into(),
            });
        }
        let mut form: Vec<(&str, &str)> = vec![("To", sms.to.as_e164())];
        match &sms.from {
            SmsFrom::Number(n) => form.push(("From", n.as_e164())),
            SmsFrom::MessagingService(s) => form.push(("MessagingServiceSid", s.as_str())),
        }
        form.push(("Body", &sms.body));
        if let Some(cb) = &sms.status_callback {
            form.push(("StatusCallback", cb.as_str()));
        }
        let url = self.messages_url();
        let result = self
            .with_retries(Operation::CreateMessage, || {
                self.http
                    .post(&url)
                    .basic_auth(
                        self.account_sid.as_str(),
                        Some(self.auth_token.expose_secret()),
                    )
                    .form(&form)
            })
            .await;
        match result {
            Ok((status, bytes)) => {
                let created: CreatedMessage = decode(Operation::CreateMessage, status, &bytes)?;
                let segments = segment_info(&sms.body);
                tracing::info!(
                    message_sid = %created.sid,
                    status = %created.status,
                    segments = segments.segments,
                    "sms sent"
                );
                Ok(SmsOutcome::Sent(SentSms {
                    sid: created.sid,
                    status: created.status,
                    segments,
                    twilio_segments: created.num_segments,
                }))
            }
            Err(e) if e.twilio_code() == Some(TwilioErrorCode::RECIPIENT_OPTED_OUT) => {
                tracing::info!(practice = %sms.practice, "sms refused by Twilio: recipient opted out");
                Ok(SmsOutcome::RecipientOptedOut)
            }
            Err(e) => Err(e),
        }
    }

    /// Messages sent to `to` that Twilio created at or after `since`, newest first: the lookup
    /// that reconciles an [`Indeterminate`](financing_core::ErrorKind::Indeterminate) send.
    ///
    /// Follows `next_page_uri` until a page holds only messages sent before `since`, or the
    /// page limit is reached. Match a candidate with [`MessageRecord::body_matches`].
    ///
    /// # Errors
    /// - Transient: connect errors, timeouts, 429 and 5xx after the last retry.
    /// - Permanent: other 4xx, or an undecodable page.
    pub async fn list_messages_to(
        &self,
        to: &PhoneNumber,
        since: DateTime<Utc>,
    ) -> Result<Vec<MessageRecord>> {
        let mut found = Vec::new();
        let first = self.messages_url();
        let mut next: Option<(String, bool)> = Some((first, true));
        let mut pages = 0;
        while let Some((url, first_page)) = next.take() {
            pages += 1;
            let (status, bytes) = self
                .with_retries(Operation::ListMessages, || {
                    let req = self.http.request(Method::GET, &url).basic_auth(
                        self.account_sid.as_str(),
                        Some(self.auth_token.expose_secret()),
                    );
                    if first_page {
                        req.query(&[("To", to.as_e164()), ("PageSize", PAGE_SIZE)])
                    } else {
                        req
                    }
                })
                .await?;
            let page: MessagePage = decode(Operation::ListMessages, status, &bytes)?;
            let mut page_has_recent = false;
            for m in page.messages {
                let date_created = twilio_date(m.date_created.as_deref());
                let date_sent = twilio_date(m.date_sent.as_deref());
                let recent = date_created.is_none_or(|d| d >= since);
                // A message not sent yet has no date_sent; its place in the order is not
                // documented, so such a page never ends the walk.
                page_has_recent |= recent || date_sent.is_none();
                if recent {
                    found.push(MessageRecord {
                        sid: m.sid,
                        status: m.status,
                        date_created,
                        date_sent,
                        from: m.from.as_deref().and_then(|f| PhoneNumber::parse(f).ok()),
                        messaging_service_sid: m.messaging_service_sid,
                        error_code: m.error_code.map(TwilioErrorCode),
                        body: m.body,
                    });
                }
            }
            match page.next_page_uri {
                Some(uri) if page_has_recent && pages < self.max_pages => {
                    next = Some((self.origin_join(&uri), false));
                }
                Some(_) if page_has_recent => {
                    tracing::warn!(pages, "list messages: page limit reached");
                }
                _ => {}
            }
        }
        tracing::info!(found = found.len(), pages, "list messages done");
        Ok(found)
    }

    /// `next_page_uri` is a path from the API root (`/2010-04-01/…`); keep our base (which may
    /// carry a path prefix for the sandbox).
    fn origin_join(&self, uri: &str) -> String {
        format!("{}{}", self.base, uri)
    }

    /// Runs a request, retrying transient failures under the retry policy. Returns the 2xx status and body.
    async fn with_retries<F>(&self, op: Operation, make: F) -> Result<(StatusCode, Vec<u8>)>
    where
        F: Fn() -> reqwest::RequestBuilder,
    {
        self.retry
            .run(|attempt| {
                let req = make();
                async move {
                    let started = Instant::now();
                    let result = attempt_once(op, req).await;
                    match &result {
                        Ok(_) => {
                            tracing::debug!(%op, attempt, elapsed_ms = started.elapsed().as_millis() as u64, "twilio ok");
                        }
                        Err(e) => {
                            tracing::warn!(%op, attempt, kind = %e.kind(), error = %e, "twilio call failed");
                        }
                    }
                    result
                }
            })
            .await
    }
}

async fn attempt_once(
    op: Operation,
    req: reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>)> {
    let transport = |e: reqwest::Error| Error::Transport {
        op,
        source: e.without_url(),
    };
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status();
    let retry_after = connector_transport::retry_after(resp.headers());
    let body = resp.bytes().await.map_err(transport)?.to_vec();
    if status.is_success() {
        return Ok((status, body));
    }
    let code = connector_transport::decode_json::<ApiErrorBody>(&body)
        .ok()
        .and_then(|b| b.code)
        .map(TwilioErrorCode);
    Err(Error::Api {
        op,
        status: status.as_u16(),
        code,
        retry_after,
    })
}

fn decode<T: DeserializeOwned>(op: Operation, status: StatusCode, body: &[u8]) -> Result<T> {
    connector_transport::decode_json(body).map_err(|source| Error::Decode {
        op,
        status: status.as_u16(),
        source,
    })
}
