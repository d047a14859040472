//! Outbound webhooks: one in-order queue for every stand-in, signed the way each vendor signs.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};
use url::Url;

use crate::config::WebhookDelivery;
use crate::fault::System;
use crate::server::Shutdown;

/// `t=…,v1=…[,v1=…]`: HMAC-SHA256 over `"{t}.{payload}"`, hex, one `v1` per secret. Stripe's
/// scheme (and, as modelled, Sunbit's).
pub fn sign_stripe_style(payload: &[u8], timestamp: i64, secrets: &[SecretString]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

/// Twilio's `X-Twilio-Signature`: base64(HMAC-SHA1(auth token, URL + each POST parameter's name
/// and value, sorted by name)).
pub fn sign_twilio(url: &str, params: &[(String, String)], auth_token: &SecretString) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// How an outgoing webhook is signed.
#[derive(Clone)]
pub(crate) enum Signer {
    /// `Stripe-Signature`, fresh `t` per attempt.
    Stripe(Vec<SecretString>),
    /// `Sunbit-Signature`, fresh `t` per attempt.
    Sunbit(SecretString),
    /// `X-Twilio-Signature` over the URL and form parameters.
    Twilio(SecretString),
    /// A fixed header (NexHealth's modelled signature is computed by the caller).
    Header(String, String),
}

/// One webhook to deliver.
pub(crate) struct Outgoing {
    pub(crate) system: System,
    pub(crate) label: String,
    pub(crate) event_id: Option<String>,
    pub(crate) url: Url,
    pub(crate) content_type: &'static str,
    pub(crate) body: Bytes,
    pub(crate) signer: Signer,
}

/// The outcome of delivering one webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Who sent it.
    pub system: System,
    /// The event type (`invoice.paid`, `PREQUAL_APPROVED`, `delivered`, ...).
    pub label: String,
    /// The event's id, when the vendor has one.
    pub event_id: Option<String>,
    /// Where it went.
    pub url: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last HTTP status received, if any.
    pub status: Option<u16>,
    /// Whether an attempt got a 2xx.
    pub delivered: bool,
    /// When the last attempt finished.
    pub finished_at: DateTime<Utc>,
}

/// The queue and its log.
pub(crate) struct Webhooks {
    tx: mpsc::UnboundedSender<Outgoing>,
    pending: AtomicUsize,
    idle: Notify,
    log: Mutex<Vec<Delivery>>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("pending", &self.pending.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    pub(crate) fn new() -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                pending: AtomicUsize::new(0),
                idle: Notify::new(),
                log: Mutex::new(Vec::new()),
            },
            rx,
        )
    }

    pub(crate) fn enqueue(&self, out: Outgoing) {
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(out).is_err() {
            self.done_one();
        }
    }

    fn done_one(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until every queued webhook was delivered (or gave up).
    pub(crate) async fn flush(&self) {
        loop {
            let notified = self.idle.notified();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Webhooks queued and not yet finished, and webhooks finished (delivered or given up on).
    pub(crate) fn counts(&self) -> (usize, usize) {
        let finished = self.log.lock().unwrap_or_else(|p| p.into_inner()).len();
        (self.pending.load(Ordering::SeqCst), finished)
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The delivery worker: one at a time, in order, with retries.
    pub(crate) async fn run(
        &self,
        mut rx: mpsc::UnboundedReceiver<Outgoing>,
        http: reqwest::Client,
        cfg: WebhookDelivery,
        shutdown: Shutdown,
    ) {
        loop {
            let out = tokio::select! {
                () = shutdown.wait() => return,
                next = rx.recv() => match next {
                    Some(out) => out,
                    None => return,
                },
            };
            let delivery = deliver(&http, &out, cfg, &shutdown).await;
            self.log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(delivery);
            self.done_one();
        }
    }
}

async fn deliver(
    http: &reqwest::Client,
    out: &Outgoing,
    cfg: WebhookDelivery,
    shutdown: &Shutdown,
) -> Delivery {
    let mut attempts = 0;
    let mut status = None;
    let mut delivered = false;
    let mut wait = cfg.first_retry_after;
    while attempts < cfg.attempts.max(1) && !shutdown.is_stopping() {
        if attempts > 0 {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.wait() => break,
            }
            wait = wait.saturating_mul(2);
        }
        attempts += 1;
        let mut req = http
            .post(out.url.clone())
            .timeout(cfg.timeout)
            .header(reqwest::header::CONTENT_TYPE, out.content_type)
            .body(out.body.clone());
        let now = Utc::now().timestamp();
        req = match &out.signer {
            Signer::Stripe(secrets) => req
                .header(
                    "Stripe-Signature",
                    sign_stripe_style(&out.body, now, secrets),
                )
                .header(
                    "User-Agent",
                    "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                ),
            Signer::Sunbit(secret) => req.header(
                "Sunbit-Signature",
                sign_stripe_style(&out.body, now, std::slice::from_ref(secret)),
            ),
            Signer::Twilio(token) => {
                let params: Vec<(String, String)> = url::form_urlencoded::parse(&out.body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                req.header(
                    "X-Twilio-Signature",
                    sign_twilio(out.url.as_str(), &params, token),
                )
                .header("User-Agent", "TwilioProxy/1.1")
            }
            Signer::Header(name, value) => req.header(name.as_str(), value.as_str()),
        };
        match req.send().await {
            Ok(resp) => {
                status = Some(resp.status().as_u16());
                if resp.status().is_success() {
                    delivered = true;
                    break;
                }
            }
            Err(_) => status = None,
        }
    }
    Delivery {
        system: out.system,
        label: out.label.clone(),
        event_id: out.event_id.clone(),
        url: out.url.to_string(),
        attempts,
        status,
        delivered,
        finished_at: Utc::now(),
    }
}
