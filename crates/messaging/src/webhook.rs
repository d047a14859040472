//! Twilio webhooks: `X-Twilio-Signature` verification, then status callbacks and inbound texts.
//!
//! The only way to get at a webhook's fields is through [`WebhookVerifier::verify`], so a body is
//! never parsed before its signature is checked.
//!
//! Twilio signs `base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value, sorted
//! by name, no separators))`. The URL must be the one Twilio called, exactly as configured
//! (scheme, host, path and query): a proxy that rewrites it breaks verification. Like Twilio's
//! own helper libraries, the URL is also tried without its port and with the scheme's default
//! port, because Twilio and proxies disagree about spelling it.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;
use subtle::ConstantTimeEq;

use financing_core::PracticeId;

use crate::consent::{
    ConsentChange, ConsentLedger, ConsentSource, InboundIntent, LedgerError, OptOutState,
    classify_inbound,
};
use crate::error::{Error, Result};
use crate::ids::{AccountSid, MessageSid, PhoneNumber, TwilioErrorCode};
use crate::sms::MessageStatus;

/// The header that carries Twilio's signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// Computes Twilio's signature for a URL and its POST parameters.
///
/// Parameters are sorted by name, and by value for repeated names, then appended to the URL as
/// `name` + `value` with no separators.
pub fn compute_signature(
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.expose_secret().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// The URL as given, without its port, and with the scheme's default port.
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => 443,
        "http" => 80,
        _ => return out,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    // A port follows the last ':' unless that ':' is inside an IPv6 literal.
    let host = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => &hostport[..i],
        _ => hostport,
    };
    let without = format!("{scheme}://{userinfo}{host}{tail}");
    let with = format!("{scheme}://{userinfo}{host}:{default_port}{tail}");
    for v in [without, with] {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Verifies Twilio webhooks for one account (or one Webhooks-Rule key).
#[derive(Clone)]
pub struct WebhookVerifier {
    auth_token: SecretString,
}

impl fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookVerifier").finish_non_exhaustive()
    }
}

impl WebhookVerifier {
    /// A verifier keyed with the account's auth token.
    pub fn new(auth_token: SecretString) -> Self {
        Self { auth_token }
    }

    /// Checks the signature of a form-encoded webhook, then decodes its parameters.
    ///
    /// `url` is the full URL Twilio called, query included; `body` the raw
    /// `application/x-www-form-urlencoded` body; `signature` the `X-Twilio-Signature` header.
    /// The comparison is constant-time.
    ///
    /// # Errors
    /// [`Error::BadSignature`] (permanent) when the header is missing or matches no URL variant.
    /// Answer 403 and do not look at the body.
    pub fn verify(&self, url: &str, body: &[u8], signature: Option<&str>) -> Result<VerifiedForm> {
        let signature = signature.map(str::trim).ok_or(Error::BadSignature)?;
        let params: Vec<(String, String)> = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let mut ok = subtle::Choice::from(0);
        for candidate in url_variants(url) {
            let expected = compute_signature(&self.auth_token, &candidate, &params);
            ok |= expected.as_bytes().ct_eq(signature.as_bytes());
        }
        if bool::from(ok) {
            Ok(VerifiedForm { params })
        } else {
            tracing::warn!("twilio webhook rejected: bad signature");
            Err(Error::BadSignature)
        }
    }
}

/// The parameters of a webhook whose signature checked out. PHI: `Debug` shows names only.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedForm {
    params: Vec<(String, String)>,
}

impl fmt::Debug for VerifiedForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.params.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("VerifiedForm")
            .field("names", &names)
            .finish()
    }
}

impl VerifiedForm {
    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Decodes a message status callback.
    ///
    /// # Errors
    /// [`Error::Webhook`] (permanent) when `MessageSid` or the status is missing.
    pub fn status_callback(&self) -> Result<StatusCallback> {
        let message_sid = self.non_empty("MessageSid").ok_or(Error::Webhook {
            reason: "status callback without MessageSid",
        })?;
        // `SmsStatus` is the older name Twilio still sends alongside.
        let status = self
            .non_empty("MessageStatus")
            .or_else(|| self.non_empty("SmsStatus"))
            .ok_or(Error::Webhook {
                reason: "status callback without MessageStatus",
            })?;
        Ok(StatusCallback {
            message_sid: MessageSid::new(message_sid),
            status: MessageStatus::parse(status),
            error_code: self
                .non_empty("ErrorCode")
                .and_then(|c| c.parse().ok())
                .map(TwilioErrorCode),
            account_sid: self.non_empty("AccountSid").map(AccountSid::new),
        })
    }

    /// Decodes an inbound text. `received_at` is when the webhook arrived (Twilio sends no
    /// timestamp); it orders consent changes.
    ///
    /// # Errors
    /// [`Error::Webhook`] (permanent) when `MessageSid`, `From` or `To` is missing or `From` is
    /// not an E.164 number.
    pub fn inbound_message(&self, received_at: DateTime<Utc>) -> Result<InboundMessage> {
        let message_sid = self
            .non_empty("MessageSid")
            .or_else(|| self.non_empty("SmsSid"))
            .ok_or(Error::Webhook {
                reason: "inbound message without MessageSid",
            })?;
        let from = self
            .non_empty("From")
            .and_then(|f| PhoneNumber::parse(f).ok())
            .ok_or(Error::Webhook {
                reason: "inbound message without an E.164 From",
            })?;
        let to = self
            .non_empty("To")
            .and_then(|t| PhoneNumber::parse(t).ok())
            .ok_or(Error::Webhook {
                reason: "inbound message without an E.164 To",
            })?;
        Ok(InboundMessage {
            message_sid: MessageSid::new(message_sid),
            from,
            to,
            body: self.get("Body").unwrap_or_default().to_owned(),
            opt_out_type: self.non_empty("OptOutType").map(OptOutType::parse),
            received_at,
        })
    }
}

/// A delivery status callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusCallback {
    /// The message it is about.
    pub message_sid: MessageSid,
    /// Its new status.
    pub status: MessageStatus,
    /// Twilio's error code, on failure.
    pub error_code: Option<TwilioErrorCode>,
    /// The account, when sent.
    pub account_sid: Option<AccountSid>,
}

/// Twilio's Advanced Opt-Out classification of an inbound text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OptOutType {
    /// An opt-out keyword.
    Stop,
    /// An opt-in keyword.
    Start,
    /// A help keyword.
    Help,
    /// A value this crate does not know yet.
    Unknown(String),
}

impl OptOutType {
    /// Decodes Twilio's value (case-insensitive); never fails.
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "STOP" => Self::Stop,
            "START" => Self::Start,
            "HELP" => Self::Help,
            _ => Self::Unknown(s.to_owned()),
        }
    }
}

/// A text a patient sent to one of the practice's numbers. PHI: `Debug` shows the SID only.
#[derive(Clone, PartialEq, Eq)]
pub struct InboundMessage {
    /// Twilio's id.
    pub message_sid: MessageSid,
    /// The patient's number.
    pub from: PhoneNumber,
    /// The practice's number it was sent to.
    pub to: PhoneNumber,
    /// The text.
    pub body: String,
    /// Twilio's keyword classification, with Advanced Opt-Out.
    pub opt_out_type: Option<OptOutType>,
    /// When the webhook arrived.
    pub received_at: DateTime<Utc>,
}

impl InboundMessage {
    /// What the text asks for: Twilio's `OptOutType` when it gave a known one, else
    /// [`classify_inbound`] on the body.
    pub fn intent(&self) -> InboundIntent {
        match self.opt_out_type {
            Some(OptOutType::Stop) => InboundIntent::OptOut,
            Some(OptOutType::Start) => InboundIntent::OptIn,
            Some(OptOutType::Help) => InboundIntent::Help,
            _ => classify_inbound(&self.body),
        }
    }
}

impl fmt::Debug for InboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundMessage")
            .field("message_sid", &self.message_sid)
            .field("opt_out_type", &self.opt_out_type)
            .finish_non_exhaustive()
    }
}

/// What [`apply_inbound`] did with an inbound text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InboundOutcome {
    /// The classification.
    pub intent: InboundIntent,
    /// The number's state after the message.
    pub state: OptOutState,
    /// True when staff must review the message (a free-text refusal).
    pub staff_task: bool,
    /// True when the patient asked for HELP: answer with the `help_reply` template.
    pub reply_with_help: bool,
}

/// Applies an inbound text (already signature-verified) to the ledger: opt-outs and refusals
/// revoke consent for the practice at once, opt-ins restore it, HELP asks for a reply.
///
/// Twilio's `OptOutType` (Advanced Opt-Out) wins over our own reading of the body.
///
/// # Errors
/// [`LedgerError`] when the change could not be recorded; the webhook should then fail so that
/// Twilio retries it.
pub async fn apply_inbound(
    ledger: &dyn ConsentLedger,
    practice: &PracticeId,
    message: &InboundMessage,
) -> Result<InboundOutcome, LedgerError> {
    let intent = message.intent();
    let source = if intent == InboundIntent::Refusal {
        ConsentSource::InboundFreeText
    } else {
        ConsentSource::InboundKeyword
    };
    let state = if intent.revokes_consent() {
        let change = ConsentChange::opt_out(message.received_at, source);
        ledger.record(practice, &message.from, &change).await?
    } else if intent.restores_consent() {
        let change = ConsentChange::opt_in(message.received_at, source);
        ledger.record(practice, &message.from, &change).await?
    } else {
        ledger.opt_out_state(practice, &message.from).await?
    };
    tracing::info!(
        message_sid = %message.message_sid,
        intent = ?intent,
        opted_out = state.is_opted_out(),
        "inbound sms applied"
    );
    Ok(InboundOutcome {
        intent,
        state,
        staff_task: intent.needs_staff_task(),
        reply_with_help: intent == InboundIntent::Help,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_variants_add_and_remove_the_port() {
        assert_eq!(
            url_variants("https://a.example/x?y=1"),
            vec![
                "https://a.example/x?y=1".to_owned(),
                "https://a.example:443/x?y=1".to_owned()
            ]
        );
        assert_eq!(
            url_variants("http://u:p@a.example:1234"),
            vec![
                "http://u:p@a.example:1234".to_owned(),
                "http://u:p@a.example".to_owned(),
                "http://u:p@a.example:80".to_owned()
            ]
        );
        assert_eq!(url_variants("https://[::1]/x")[1], "https://[::1]:443/x");
    }
}
