//! The Twilio stand-in: `Messages.json` create, list and fetch with Basic auth, Twilio-shaped
//! JSON and errors, opt-outs (21610), signed status callbacks and inbound replies.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use url::Url;

use crate::error::SandboxError;
use crate::fault::System;
use crate::hub::Hub;
use crate::webhook::{Outgoing, Signer, sign_twilio};
use crate::world::phone_key;

/// The keywords Twilio treats as an opt-out on long codes.
const STOP_WORDS: [&str; 8] = [
    "STOP",
    "UNSUBSCRIBE",
    "END",
    "QUIT",
    "STOPALL",
    "REVOKE",
    "OPTOUT",
    "CANCEL",
];
/// The keywords that opt back in.
const START_WORDS: [&str; 3] = ["START", "UNSTOP", "YES"];
/// The number a Messaging Service sends from, in callbacks and inbound replies.
const SERVICE_NUMBER: &str = "+15005550006";

/// A text the Twilio stand-in accepted (or received from a patient).
#[derive(Clone, Serialize)]
pub struct SmsRecord {
    /// `SM…`.
    pub sid: String,
    /// Recipient, as sent.
    pub to: String,
    /// Sender number, when sent from a number.
    pub from: Option<String>,
    /// Messaging Service, when sent through one.
    pub messaging_service_sid: Option<String>,
    /// The text.
    pub body: String,
    /// The latest status (`queued`, `sent`, `delivered`, `undelivered`, `received`).
    pub status: String,
    /// Error code, for `undelivered`.
    pub error_code: Option<u32>,
    /// `outbound-api` or `inbound`.
    pub direction: String,
    /// Where status callbacks go.
    pub status_callback: Option<String>,
    /// When it was created.
    pub date_created: DateTime<Utc>,
}

impl fmt::Debug for SmsRecord {
    // Numbers and bodies are PHI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsRecord")
            .field("sid", &self.sid)
            .field("status", &self.status)
            .field("direction", &self.direction)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct TwilioData {
    rng: StdRng,
    messages: Vec<SmsRecord>,
    /// (recipient phone key, sender) pairs that opted out. A sender is a number or an `MG…` sid.
    opted_out: BTreeSet<(String, String)>,
    /// The last sender that texted each phone (replies go back to it).
    last_sender: HashMap<String, String>,
}

/// The Twilio stand-in's state.
pub(crate) struct TwilioState {
    data: Mutex<TwilioData>,
    account_sid: String,
    auth_token: SecretString,
    inbound_url: Mutex<Option<Url>>,
    status_callbacks: bool,
}

impl fmt::Debug for TwilioState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioState").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rfc2822(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

fn is_e164(s: &str) -> bool {
    s.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()))
}

/// Segments as Twilio counts them: GSM-7 160/153, otherwise UCS-2 70/67.
fn segments(body: &str) -> usize {
    let gsm = body.chars().all(|c| c.is_ascii() && c != '`');
    let (single, multi) = if gsm { (160, 153) } else { (70, 67) };
    let n = body.chars().count();
    if n <= single { 1 } else { n.div_ceil(multi) }
}

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        })),
    )
        .into_response()
}

impl TwilioState {
    pub(crate) fn new(cfg: &crate::config::TwilioConfig, seed: u64) -> Self {
        Self {
            data: Mutex::new(TwilioData {
                rng: StdRng::seed_from_u64(seed ^ 0x0054_5749_4c49),
                messages: Vec::new(),
                opted_out: BTreeSet::new(),
                last_sender: HashMap::new(),
            }),
            account_sid: cfg.account_sid.clone(),
            auth_token: cfg.auth_token.clone(),
            inbound_url: Mutex::new(cfg.inbound_url.clone()),
            status_callbacks: cfg.status_callbacks,
        }
    }

    fn sid(&self, prefix: &str) -> String {
        let mut d = lock(&self.data);
        let bytes: [u8; 16] = d.rng.r#gen();
        format!("{prefix}{}", hex::encode(bytes))
    }

    fn authorized(&self, headers: &HeaderMap, path_sid: &str) -> bool {
        let Some(raw) = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(raw.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, pass)) = text.split_once(':') else {
            return false;
        };
        user == self.account_sid
            && path_sid == self.account_sid
            && bool::from(
                pass.as_bytes()
                    .ct_eq(self.auth_token.expose_secret().as_bytes()),
            )
    }

    fn message_json(&self, m: &SmsRecord) -> Value {
        let uri = format!(
            "/2010-04-01/Accounts/{}/Messages/{}.json",
            self.account_sid, m.sid
        );
        json!({
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": m.body,
            "date_created": rfc2822(m.date_created),
            "date_sent": if matches!(m.status.as_str(), "queued" | "accepted") { Value::Null } else { json!(rfc2822(m.date_created)) },
            "date_updated": rfc2822(Utc::now()),
            "direction": m.direction,
            "error_code": m.error_code,
            "error_message": null,
            "from": m.from.clone().or_else(|| m.messaging_service_sid.as_ref().map(|_| SERVICE_NUMBER.to_owned())),
            "messaging_service_sid": m.messaging_service_sid,
            "num_media": "0",
            "num_segments": segments(&m.body).to_string(),
            "price": null,
            "price_unit": "USD",
            "sid": m.sid,
            "status": m.status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": m.to,
            "uri": uri,
        })
    }
}

/// The router.
pub(crate) fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{sid}/Messages.json",
            get(list_messages).post(create_message),
        )
        .route(
            "/2010-04-01/Accounts/{sid}/Messages/{msid}",
            get(fetch_message),
        )
        .with_state(hub)
}

fn unauthorized() -> Response {
    twilio_error(StatusCode::UNAUTHORIZED, 20003, "Authenticate")
}

async fn create_message(
    State(hub): State<Arc<Hub>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let st = &hub.twilio;
    if !st.authorized(&headers, &sid) {
        return unauthorized();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let Some(to) = get("To") else {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number is required.",
        );
    };
    if !is_e164(to) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21211,
            "The 'To' number is not a valid phone number.",
        );
    }
    let from = get("From").map(str::to_owned);
    let mss = get("MessagingServiceSid").map(str::to_owned);
    let sender = match (&from, &mss) {
        (_, Some(s)) => s.clone(),
        (Some(f), None) => f.clone(),
        (None, None) => {
            return twilio_error(
                StatusCode::BAD_REQUEST,
                21603,
                "A 'From' phone number is required.",
            );
        }
    };
    let Some(text) = form.get("Body").filter(|b| !b.is_empty()).cloned() else {
        return twilio_error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    };
    let key = phone_key(to);
    if lock(&st.data)
        .opted_out
        .contains(&(key.clone(), sender.clone()))
    {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            21610,
            "Attempt to send to unsubscribed recipient",
        );
    }
    let record = SmsRecord {
        sid: st.sid("SM"),
        to: to.to_owned(),
        from,
        messaging_service_sid: mss.clone(),
        body: text.clone(),
        status: if mss.is_some() { "accepted" } else { "queued" }.into(),
        error_code: None,
        direction: "outbound-api".into(),
        status_callback: get("StatusCallback").map(str::to_owned),
        date_created: Utc::now(),
    };
    let json = st.message_json(&record);
    {
        let mut d = lock(&st.data);
        d.last_sender.insert(key, sender);
        d.messages.push(record.clone());
    }
    // Delivery happens after the answer, as at Twilio.
    let patient = hub.world.patient_by_phone(to);
    let bg = hub.clone();
    tokio::spawn(async move {
        deliver(&bg, &record, patient.as_ref()).await;
    });
    (StatusCode::CREATED, axum::Json(json)).into_response()
}

/// Moves a message to its final status, with callbacks, and lets the patient read it.
async fn deliver(
    hub: &Arc<Hub>,
    record: &SmsRecord,
    patient: Option<&crate::world::PatientRecord>,
) {
    let st = &hub.twilio;
    // A seeded patient's home phone is a landline: Twilio reports 30006.
    let landline = patient.is_some_and(|p| {
        p.seed.mobile_phone.as_deref().map(phone_key) != Some(phone_key(&record.to))
    });
    let (final_status, error) = if landline {
        ("undelivered", Some(30006))
    } else {
        ("delivered", None)
    };
    let steps: &[&str] = if landline {
        &["sent", final_status]
    } else {
        &["sent", "delivered"]
    };
    for status in steps {
        {
            let mut d = lock(&st.data);
            if let Some(m) = d.messages.iter_mut().find(|m| m.sid == record.sid) {
                m.status = (*status).to_owned();
                if *status == "undelivered" {
                    m.error_code = error;
                }
            }
        }
        if st.status_callbacks
            && let Some(cb) = record
                .status_callback
                .as_deref()
                .and_then(|u| Url::parse(u).ok())
        {
            let mut params: Vec<(String, String)> = vec![
                ("AccountSid".into(), st.account_sid.clone()),
                ("ApiVersion".into(), "2010-04-01".into()),
                (
                    "From".into(),
                    record.from.clone().unwrap_or_else(|| SERVICE_NUMBER.into()),
                ),
                ("MessageSid".into(), record.sid.clone()),
                ("MessageStatus".into(), (*status).to_owned()),
                ("SmsSid".into(), record.sid.clone()),
                ("SmsStatus".into(), (*status).to_owned()),
                ("To".into(), record.to.clone()),
            ];
            if let Some(mss) = &record.messaging_service_sid {
                params.push(("MessagingServiceSid".into(), mss.clone()));
            }
            if *status == "undelivered"
                && let Some(code) = error
            {
                params.push(("ErrorCode".into(), code.to_string()));
            }
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            hub.webhooks.enqueue(Outgoing {
                system: System::Twilio,
                label: (*status).to_owned(),
                event_id: Some(record.sid.clone()),
                url: cb,
                content_type: "application/x-www-form-urlencoded",
                body: body.into(),
                signer: Signer::Twilio(st.auth_token.clone()),
            });
        }
    }
    if final_status == "delivered"
        && let Some(p) = patient
    {
        crate::sim::on_message(hub.clone(), p.key, record.body.clone()).await;
    }
}

async fn list_messages(
    State(hub): State<Arc<Hub>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let st = &hub.twilio;
    if !st.authorized(&headers, &sid) {
        return unauthorized();
    }
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let page_size: usize = q
        .get("PageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
        .clamp(1, 1000);
    let page: usize = q.get("Page").and_then(|v| v.parse().ok()).unwrap_or(0);
    let to = q.get("To").map(|v| phone_key(v));
    let from = q.get("From").map(|v| phone_key(v));
    let all: Vec<Value> = {
        let d = lock(&st.data);
        d.messages
            .iter()
            .rev()
            .filter(|m| to.as_ref().is_none_or(|t| phone_key(&m.to) == *t))
            .filter(|m| {
                from.as_ref()
                    .is_none_or(|f| m.from.as_deref().map(phone_key).as_ref() == Some(f))
            })
            .map(|m| st.message_json(m))
            .collect()
    };
    let start = page * page_size;
    let items: Vec<Value> = all.iter().skip(start).take(page_size).cloned().collect();
    let base = format!("/2010-04-01/Accounts/{sid}/Messages.json");
    let mut filters = String::new();
    if let Some(t) = q.get("To") {
        filters.push_str("&To=");
        filters.push_str(&url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>());
    }
    let next = (start + page_size < all.len())
        .then(|| format!("{base}?PageSize={page_size}&Page={}{filters}", page + 1));
    let prev =
        (page > 0).then(|| format!("{base}?PageSize={page_size}&Page={}{filters}", page - 1));
    axum::Json(json!({
        "end": start + items.len().saturating_sub(1),
        "first_page_uri": format!("{base}?PageSize={page_size}&Page=0{filters}"),
        "messages": items,
        "next_page_uri": next,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": prev,
        "start": start,
        "uri": format!("{base}?PageSize={page_size}&Page={page}{filters}"),
    }))
    .into_response()
}

async fn fetch_message(
    State(hub): State<Arc<Hub>>,
    Path((sid, msid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let st = &hub.twilio;
    if !st.authorized(&headers, &sid) {
        return unauthorized();
    }
    let msid = msid.trim_end_matches(".json");
    let found = lock(&st.data)
        .messages
        .iter()
        .find(|m| m.sid == msid)
        .cloned();
    match found {
        Some(m) => axum::Json(st.message_json(&m)).into_response(),
        None => twilio_error(
            StatusCode::NOT_FOUND,
            20404,
            "The requested resource was not found",
        ),
    }
}

/// Inspection and control of the Twilio stand-in. Cheap to clone.
#[derive(Clone)]
pub struct TwilioHandle {
    hub: Arc<Hub>,
}

impl fmt::Debug for TwilioHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioHandle").finish_non_exhaustive()
    }
}

impl TwilioHandle {
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// Every text, sent and received, oldest first.
    pub fn messages(&self) -> Vec<SmsRecord> {
        lock(&self.hub.twilio.data).messages.clone()
    }

    /// Texts sent to `phone` (any formatting), oldest first.
    pub fn messages_to(&self, phone: &str) -> Vec<SmsRecord> {
        let key = phone_key(phone);
        self.messages()
            .into_iter()
            .filter(|m| m.direction == "outbound-api" && phone_key(&m.to) == key)
            .collect()
    }

    /// Where inbound replies are POSTed from now on.
    pub fn set_inbound_url(&self, url: Option<Url>) {
        *lock(&self.hub.twilio.inbound_url) = url;
    }

    /// Whether `phone` opted out of texts from `sender` (a number or an `MG…` sid).
    pub fn is_opted_out(&self, phone: &str, sender: &str) -> bool {
        lock(&self.hub.twilio.data)
            .opted_out
            .contains(&(phone_key(phone), sender.to_owned()))
    }

    /// The `X-Twilio-Signature` the stand-in sends for a POST of `params` to `url`.
    pub fn sign(&self, url: &str, params: &[(String, String)]) -> String {
        sign_twilio(url, params, &self.hub.twilio.auth_token)
    }

    /// The patient at `from` texts `body` back to the sender that last texted them: stored,
    /// applied as Twilio would (STOP and the other opt-out words block further texts from that
    /// sender with 21610; START lifts it), and POSTed, signed, to the inbound URL. Waits for the
    /// delivery; returns the inbound message's sid.
    ///
    /// # Errors
    /// [`SandboxError::InvalidState`] when nobody texted `from` yet (there is no number to reply
    /// to).
    pub async fn send_inbound(&self, from: &str, body: &str) -> Result<String, SandboxError> {
        let st = &self.hub.twilio;
        let key = phone_key(from);
        let sender =
            lock(&st.data)
                .last_sender
                .get(&key)
                .cloned()
                .ok_or(SandboxError::InvalidState {
                    system: System::Twilio,
                    what: "no text was sent to this number, so there is nothing to reply to",
                })?;
        let word = body.trim().to_ascii_uppercase();
        let opt_out_type = if STOP_WORDS.contains(&word.as_str()) {
            lock(&st.data)
                .opted_out
                .insert((key.clone(), sender.clone()));
            Some("STOP")
        } else if START_WORDS.contains(&word.as_str()) {
            lock(&st.data)
                .opted_out
                .remove(&(key.clone(), sender.clone()));
            Some("START")
        } else if word == "HELP" || word == "INFO" {
            Some("HELP")
        } else {
            None
        };
        let (to_number, mss) = if sender.starts_with("MG") {
            (SERVICE_NUMBER.to_owned(), Some(sender.clone()))
        } else {
            (sender.clone(), None)
        };
        let sid = st.sid("SM");
        lock(&st.data).messages.push(SmsRecord {
            sid: sid.clone(),
            to: to_number.clone(),
            from: Some(from.to_owned()),
            messaging_service_sid: mss.clone(),
            body: body.to_owned(),
            status: "received".into(),
            error_code: None,
            direction: "inbound".into(),
            status_callback: None,
            date_created: Utc::now(),
        });
        let Some(url) = lock(&st.inbound_url).clone() else {
            return Ok(sid);
        };
        let mut params: Vec<(String, String)> = vec![
            ("AccountSid".into(), st.account_sid.clone()),
            ("ApiVersion".into(), "2010-04-01".into()),
            ("Body".into(), body.to_owned()),
            ("From".into(), from.to_owned()),
            ("MessageSid".into(), sid.clone()),
            ("NumMedia".into(), "0".into()),
            ("NumSegments".into(), segments(body).to_string()),
            ("SmsMessageSid".into(), sid.clone()),
            ("SmsSid".into(), sid.clone()),
            ("SmsStatus".into(), "received".into()),
            ("To".into(), to_number),
        ];
        if let Some(m) = mss {
            params.push(("MessagingServiceSid".into(), m));
        }
        if let Some(t) = opt_out_type {
            params.push(("OptOutType".into(), t.into()));
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        self.hub.webhooks.enqueue(Outgoing {
            system: System::Twilio,
            label: "inbound".into(),
            event_id: Some(sid.clone()),
            url,
            content_type: "application/x-www-form-urlencoded",
            body: form.into(),
            signer: Signer::Twilio(st.auth_token.clone()),
        });
        self.hub.webhooks.flush().await;
        Ok(sid)
    }
}
