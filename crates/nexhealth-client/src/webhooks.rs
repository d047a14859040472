//! Webhooks: endpoint registration, the `treatment_plan_updated` subscription, verification of
//! deliveries, and reading a verified delivery.
//!
//! How NexHealth signs deliveries is **unconfirmed** (INTEGRATIONS.md): [`verify_webhook`] checks
//! an HMAC-SHA256 of the raw body under the endpoint's `secret_key`, in the header named by
//! [`SIGNATURE_HEADER`] (an inferred name, kept in [`wire`](crate::wire)). Verify before parsing.

use std::fmt;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use url::Url;

use crate::client::Client;
use crate::error::{DecodeProblem, Error, Result, SignatureProblem, from_json};
use crate::ids::{
    CommunicationLogId, DeliveryId, ResourceId, TreatmentPlanId, WebhookEndpointId,
    WebhookSubscriptionId,
};
use crate::wire;

/// The header a delivery's signature arrives in. \[inferred\]: confirm at onboarding.
pub const SIGNATURE_HEADER: &str = wire::SIGNATURE_HEADER;

/// A registered webhook endpoint. `Debug` hides the secret.
#[derive(Clone)]
pub struct WebhookEndpoint {
    /// Endpoint id.
    pub id: WebhookEndpointId,
    /// Where deliveries go.
    pub target_url: String,
    /// The key deliveries are signed with; store it (secrets store) to verify deliveries.
    pub secret_key: Option<SecretString>,
    /// False once NexHealth has deactivated it (after 48 h of failed deliveries).
    pub active: bool,
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A subscription of an endpoint to one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSubscription {
    /// Subscription id.
    pub id: WebhookSubscriptionId,
    /// The endpoint it belongs to.
    pub endpoint_id: WebhookEndpointId,
}

const ENDPOINTS: &str = "webhook_endpoints";
const SUBSCRIPTIONS: &str = "webhook_subscriptions";

impl Client {
    /// Registers `target_url` (HTTPS in production) to receive deliveries.
    ///
    /// Not retried: a timeout or 5xx is Indeterminate; reconcile with
    /// [`Client::list_webhook_endpoints`] (or use [`Client::ensure_webhook_endpoint`]).
    ///
    /// # Errors
    /// Indeterminate: timeout, 5xx other than 503. Transient: connect error, 429, 503.
    /// Permanent: [`Error::Auth`], other 4xx, [`Error::Decode`].
    pub async fn register_webhook_endpoint(&self, target_url: &Url) -> Result<WebhookEndpoint> {
        let body = serde_json::to_value(wire::NewWebhookEndpoint {
            target_url: target_url.to_string(),
            active: true,
        })
        .map_err(|_| Error::Config("the endpoint cannot be encoded".into()))?;
        let envelope: wire::Envelope<wire::WebhookEndpoint> = self
            .post(
                "register webhook endpoint",
                ENDPOINTS,
                &[wire::WEBHOOK_ENDPOINTS],
                body,
            )
            .await?;
        envelope
            .data
            .map(endpoint_from_wire)
            .ok_or_else(|| Error::decode(ENDPOINTS, "data", DecodeProblem::Missing))
    }

    /// Every webhook endpoint of the API key.
    ///
    /// # Errors
    /// Transient: timeouts, connect errors, 429, 5xx. Permanent: [`Error::Auth`], other 4xx,
    /// [`Error::Decode`].
    pub async fn list_webhook_endpoints(&self) -> Result<Vec<WebhookEndpoint>> {
        let envelope: wire::Envelope<Vec<wire::WebhookEndpoint>> = self
            .get(
                "list webhook endpoints",
                ENDPOINTS,
                &[wire::WEBHOOK_ENDPOINTS],
                vec![],
            )
            .await?;
        Ok(envelope
            .data
            .unwrap_or_default()
            .into_iter()
            .map(endpoint_from_wire)
            .collect())
    }

    /// Check-then-act: the endpoint already registered for `target_url`, else a new one.
    ///
    /// # Errors
    /// As [`Client::list_webhook_endpoints`] and [`Client::register_webhook_endpoint`].
    pub async fn ensure_webhook_endpoint(&self, target_url: &Url) -> Result<WebhookEndpoint> {
        let wanted = target_url.as_str();
        if let Some(found) = self
            .list_webhook_endpoints()
            .await?
            .into_iter()
            .find(|e| e.target_url == wanted)
        {
            return Ok(found);
        }
        self.register_webhook_endpoint(target_url).await
    }

    /// Subscribes an endpoint to `treatment_plan_updated` (resource `TreatmentPlan`).
    ///
    /// # Errors
    /// As [`Client::register_webhook_endpoint`].
    pub async fn subscribe_to_treatment_plan_updates(
        &self,
        endpoint: &WebhookEndpointId,
    ) -> Result<WebhookSubscription> {
        let body = serde_json::to_value(wire::NewWebhookSubscription {
            resource_type: wire::TREATMENT_PLAN_RESOURCE.to_owned(),
            event: wire::TREATMENT_PLAN_UPDATED.to_owned(),
            active: true,
        })
        .map_err(|_| Error::Config("the subscription cannot be encoded".into()))?;
        let envelope: wire::Envelope<wire::WebhookSubscription> = self
            .post(
                "subscribe webhook endpoint",
                SUBSCRIPTIONS,
                &[
                    wire::WEBHOOK_ENDPOINTS,
                    endpoint.as_str(),
                    wire::WEBHOOK_SUBSCRIPTIONS,
                ],
                body,
            )
            .await?;
        let raw = envelope
            .data
            .ok_or_else(|| Error::decode(SUBSCRIPTIONS, "data", DecodeProblem::Missing))?;
        Ok(WebhookSubscription {
            id: WebhookSubscriptionId::new(raw.id.into_string()),
            endpoint_id: endpoint.clone(),
        })
    }
}

fn endpoint_from_wire(e: wire::WebhookEndpoint) -> WebhookEndpoint {
    WebhookEndpoint {
        id: WebhookEndpointId::new(e.id.into_string()),
        target_url: e.target_url,
        secret_key: e
            .secret_key
            .filter(|k| !k.is_empty())
            .map(SecretString::from),
        active: e.active.unwrap_or(true),
    }
}

/// Verifies a delivery: `signature` (the [`SIGNATURE_HEADER`] value) must be the HMAC-SHA256 of
/// the raw `body` under the endpoint's `secret`, as hex (optionally prefixed `sha256=`) or base64.
/// The comparison is constant-time. Call it before parsing the body.
///
/// # Errors
/// [`Error::WebhookSignature`] (Permanent): missing, malformed or mismatched signature.
pub fn verify_webhook(secret: &SecretString, signature: Option<&str>, body: &[u8]) -> Result<()> {
    let raw = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(Error::WebhookSignature(SignatureProblem::Missing))?;
    let raw = raw.strip_prefix(wire::SIGNATURE_PREFIX).unwrap_or(raw);
    let provided =
        decode_digest(raw).ok_or(Error::WebhookSignature(SignatureProblem::Malformed))?;
    // The endpoint's secret is the MAC key: this is the one place it is exposed.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| Error::Config("the webhook secret cannot key an HMAC".into()))?;
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(expected.as_slice().ct_eq(&provided)) {
        Ok(())
    } else {
        Err(Error::WebhookSignature(SignatureProblem::Mismatch))
    }
}

/// A 32-byte digest from hex or base64; `None` for anything else.
fn decode_digest(raw: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let bytes = if raw.len() == 64 {
        hex::decode(raw).ok()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(raw).ok()?
    };
    (bytes.len() == 32).then_some(bytes)
}

/// What a verified delivery is about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookEventKind {
    /// `treatment_plan_updated`: fetch the plan and check its status.
    TreatmentPlanUpdated,
    /// A `*_insertion.complete` (or bare `*_insertion`) event: an asynchronous write reached the
    /// EHR.
    InsertionCompleted,
    /// A `*_insertion.failed` event: an asynchronous write did not reach the EHR.
    InsertionFailed,
    /// Any other event, kept raw in [`WebhookEvent::event`].
    Other,
}

/// A verified webhook delivery, reduced to ids. The payload's patient data is never kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The delivery's id, for deduplication, when NexHealth sends one.
    pub delivery_id: Option<DeliveryId>,
    /// The event name, raw.
    pub event: String,
    /// The resource type, raw (`TreatmentPlan`, `CommunicationLog`).
    pub resource_type: Option<String>,
    /// The id of the resource the event is about.
    pub resource_id: Option<ResourceId>,
    /// What the event means to us.
    pub kind: WebhookEventKind,
}

impl WebhookEvent {
    /// The plan, for [`WebhookEventKind::TreatmentPlanUpdated`].
    pub fn treatment_plan_id(&self) -> Option<TreatmentPlanId> {
        match self.kind {
            WebhookEventKind::TreatmentPlanUpdated => self
                .resource_id
                .as_ref()
                .map(|id| TreatmentPlanId::new(id.as_str())),
            _ => None,
        }
    }

    /// The communication log an insertion event is about (its resource id).
    pub fn communication_log_id(&self) -> Option<CommunicationLogId> {
        match self.kind {
            WebhookEventKind::InsertionCompleted | WebhookEventKind::InsertionFailed => self
                .resource_id
                .as_ref()
                .map(|id| CommunicationLogId::new(id.as_str())),
            _ => None,
        }
    }
}

/// Reads a delivery that [`verify_webhook`] accepted.
///
/// # Errors
/// [`Error::Decode`] (Permanent) when the body is not a delivery; the error names the field only.
pub fn parse_webhook_event(body: &[u8]) -> Result<WebhookEvent> {
    let d: wire::WebhookDelivery = from_json("webhook delivery", body)?;
    let kind = if d.event == wire::TREATMENT_PLAN_UPDATED {
        WebhookEventKind::TreatmentPlanUpdated
    } else if d.event.ends_with(wire::INSERTION_FAILED_SUFFIX) {
        WebhookEventKind::InsertionFailed
    } else if d.event.ends_with(wire::INSERTION_COMPLETE_SUFFIX)
        || d.event.ends_with(wire::INSERTION_SUFFIX)
    {
        WebhookEventKind::InsertionCompleted
    } else {
        WebhookEventKind::Other
    };
    Ok(WebhookEvent {
        delivery_id: d.delivery_id.map(|id| DeliveryId::new(id.into_string())),
        resource_id: d.data.as_ref().and_then(resource_id),
        event: d.event,
        resource_type: d.resource_type,
        kind,
    })
}

/// `data.id`, or the `id` of the one object `data` wraps (`{"treatment_plan": {...}}`).
fn resource_id(data: &serde_json::Value) -> Option<ResourceId> {
    let id_of = |v: &serde_json::Value| match v.get("id")? {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    id_of(data)
        .or_else(|| data.as_object()?.values().find_map(id_of))
        .map(ResourceId::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn a_correct_signature_verifies_in_hex_prefixed_hex_and_base64() {
        use base64::Engine as _;
        let secret = SecretString::from("whsec-test-only");
        let body = br#"{"event":"treatment_plan_updated","data":{"id":42}}"#;
        let hex_sig = sign("whsec-test-only", body);
        assert!(verify_webhook(&secret, Some(&hex_sig), body).is_ok());
        assert!(verify_webhook(&secret, Some(&format!("sha256={hex_sig}")), body).is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(&hex_sig).unwrap());
        assert!(verify_webhook(&secret, Some(&b64), body).is_ok());
    }

    #[test]
    fn a_tampered_body_a_wrong_secret_or_a_missing_header_is_rejected() {
        let secret = SecretString::from("whsec-test-only");
        let body = br#"{"event":"treatment_plan_updated","data":{"id":42}}"#;
        let sig = sign("whsec-test-only", body);
        let reject = |s: Option<&str>, b: &[u8], k: &SecretString| match verify_webhook(k, s, b) {
            Err(Error::WebhookSignature(p)) => p,
            other => panic!("{other:?}"),
        };
        let tampered = br#"{"event":"treatment_plan_updated","data":{"id":43}}"#;
        assert_eq!(
            reject(Some(&sig), tampered, &secret),
            SignatureProblem::Mismatch
        );
        let other = SecretString::from("another-secret");
        assert_eq!(reject(Some(&sig), body, &other), SignatureProblem::Mismatch);
        assert_eq!(reject(None, body, &secret), SignatureProblem::Missing);
        assert_eq!(reject(Some("  "), body, &secret), SignatureProblem::Missing);
        assert_eq!(
            reject(Some("zz-not-hex"), body, &secret),
            SignatureProblem::Malformed
        );
        let err = verify_webhook(&secret, Some(&sig), tampered).unwrap_err();
        assert_eq!(err.kind(), financing_core::ErrorKind::Permanent);
        assert!(!err.to_string().contains(&sig));
    }

    #[test]
    fn deliveries_are_read_down_to_their_ids() {
        let plan = parse_webhook_event(
            br#"{"resource_type":"TreatmentPlan","event":"treatment_plan_updated","delivery_id":901,
                "data":{"treatment_plan":{"id":42,"status":"accepted","patient_id":7}}}"#,
        )
        .unwrap();
        assert_eq!(plan.kind, WebhookEventKind::TreatmentPlanUpdated);
        assert_eq!(plan.treatment_plan_id(), Some(TreatmentPlanId::new("42")));
        assert_eq!(plan.delivery_id, Some(DeliveryId::new("901")));

        let done = parse_webhook_event(
            br#"{"resource_type":"CommunicationLog","event":"communication_log_insertion.complete","data":{"id":"77"}}"#,
        )
        .unwrap();
        assert_eq!(done.kind, WebhookEventKind::InsertionCompleted);
        assert_eq!(
            done.communication_log_id(),
            Some(CommunicationLogId::new("77"))
        );

        let failed =
            parse_webhook_event(br#"{"event":"payment_insertion.failed","data":{"id":5}}"#)
                .unwrap();
        assert_eq!(failed.kind, WebhookEventKind::InsertionFailed);
        let bare =
            parse_webhook_event(br#"{"event":"payment_insertion","data":{"id":5}}"#).unwrap();
        assert_eq!(bare.kind, WebhookEventKind::InsertionCompleted);
        let other = parse_webhook_event(br#"{"event":"appointment_created"}"#).unwrap();
        assert_eq!(other.kind, WebhookEventKind::Other);
        assert_eq!(other.resource_id, None);

        let err = parse_webhook_event(br#"{"data":{}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "webhook delivery: cannot decode `event`: missing"
        );
    }
}
