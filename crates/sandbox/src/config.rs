//! Configuration of [`crate::Sandbox::start`]. Every field has a working default, so
//! `SandboxConfig::default()` starts a usable sandbox; the credentials it expects are the ones
//! in here (point the clients at them).

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::fault::{FaultRule, System};

/// Everything [`crate::Sandbox::start`] needs.
#[derive(Clone)]
pub struct SandboxConfig {
    /// Seed of every random choice (fault draws, generated ids). Same seed, same run.
    pub seed: u64,
    /// Ports to bind on 127.0.0.1; 0 (the default) picks a free port.
    pub ports: Ports,
    /// How many recorded requests are kept in memory (oldest dropped first); the Stripe JSON
    /// Lines file keeps everything.
    pub max_recorded_requests: usize,
    /// Fault rules in force from the start, per system. Change them later through
    /// [`crate::Sandbox::faults`].
    pub faults: BTreeMap<System, Vec<FaultRule>>,
    /// Faults of the SMTP sink after DATA (indeterminate sends), in force from the start.
    pub smtp_faults: Vec<crate::smtp::SmtpFaultRule>,
    /// How webhooks (Stripe, Sunbit, Twilio callbacks, NexHealth) are delivered.
    pub webhooks: WebhookDelivery,
    /// How seeded patients act on the links they receive.
    pub patients: PatientSimulation,
    /// Stripe.
    pub stripe: StripeConfig,
    /// Twilio.
    pub twilio: TwilioConfig,
    /// Dentrix Ascend.
    pub dentrix: DentrixConfig,
    /// NexHealth.
    pub nexhealth: NexHealthConfig,
    /// Open Dental.
    pub opendental: OpenDentalConfig,
    /// CareCredit.
    pub carecredit: CareCreditConfig,
    /// Sunbit.
    pub sunbit: SunbitConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            ports: Ports::default(),
            max_recorded_requests: 100_000,
            faults: BTreeMap::new(),
            smtp_faults: Vec::new(),
            webhooks: WebhookDelivery::default(),
            patients: PatientSimulation::default(),
            stripe: StripeConfig::default(),
            twilio: TwilioConfig::default(),
            dentrix: DentrixConfig::default(),
            nexhealth: NexHealthConfig::default(),
            opendental: OpenDentalConfig::default(),
            carecredit: CareCreditConfig::default(),
            sunbit: SunbitConfig::default(),
        }
    }
}

impl fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("seed", &self.seed)
            .field("ports", &self.ports)
            .field("faults", &self.faults)
            .field("smtp_faults", &self.smtp_faults)
            .field("webhooks", &self.webhooks)
            .field("patients", &self.patients)
            .field("stripe", &self.stripe)
            .field("twilio", &self.twilio)
            .finish_non_exhaustive()
    }
}

/// Loopback ports, one per stand-in; 0 picks a free one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    /// Stripe.
    pub stripe: u16,
    /// Twilio.
    pub twilio: u16,
    /// The SMTP sink.
    pub smtp: u16,
    /// Dentrix Ascend.
    pub dentrix: u16,
    /// NexHealth.
    pub nexhealth: u16,
    /// Open Dental.
    pub opendental: u16,
    /// CareCredit.
    pub carecredit: u16,
    /// Sunbit.
    pub sunbit: u16,
}

impl Ports {
    /// Consecutive ports from `base`: Stripe, Twilio, SMTP, Dentrix, NexHealth, Open Dental,
    /// CareCredit, Sunbit. Handy for the stand-alone binary.
    pub fn from_base(base: u16) -> Self {
        let p = |i: u16| base.saturating_add(i);
        Self {
            stripe: p(0),
            twilio: p(1),
            smtp: p(2),
            dentrix: p(3),
            nexhealth: p(4),
            opendental: p(5),
            carecredit: p(6),
            sunbit: p(7),
        }
    }
}

/// Webhook delivery: every webhook goes through one in-order queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts per webhook (at least 1). A non-2xx answer or a connection error is retried.
    pub attempts: u32,
    /// Delay before the second attempt; doubles after each failure.
    pub first_retry_after: Duration,
}

impl Default for WebhookDelivery {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            first_retry_after: Duration::from_millis(200),
        }
    }
}

/// How seeded patients react to the messages they receive (see the crate docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PatientSimulation {
    /// Whether patients act at all. Off: only [`crate::Sandbox::act_on_link`] makes them act.
    pub enabled: bool,
    /// How long a patient takes between receiving a message and acting on it.
    pub think_time: Duration,
    /// Whether a patient follows a loopback link that is not a sandbox page (the orchestrator's
    /// patient page, say) and acts on the sandbox links found in it.
    pub follow_loopback_pages: bool,
    /// Whether a patient pays a Stripe checkout link they receive (unless their persona never
    /// completes anything).
    pub pay_checkout_links: bool,
}

impl Default for PatientSimulation {
    fn default() -> Self {
        Self {
            enabled: true,
            think_time: Duration::from_millis(10),
            follow_loopback_pages: true,
            pay_checkout_links: true,
        }
    }
}

/// The Stripe stand-in.
#[derive(Clone)]
pub struct StripeConfig {
    /// The secret key clients must send as `Authorization: Bearer …`.
    pub secret_key: SecretString,
    /// Where signed events are POSTed; none means events are only stored. Changeable at runtime.
    pub webhook_url: Option<Url>,
    /// The `whsec_…` signing secrets; one `v1` signature per secret (a rolled secret).
    pub webhook_secrets: Vec<SecretString>,
    /// Append every `/v1/` request as a JSON Lines line in `conformance.py`'s format.
    pub request_log: Option<PathBuf>,
    /// Bill the first installment of a schedule that starts `now` right away, as Stripe does.
    /// Off: only [`crate::StripeHandle::advance_schedules`] bills.
    pub bill_on_start: bool,
    /// Bill the next installment of every active schedule this often (a clock); off when `None`.
    pub advance_every: Option<Duration>,
    /// Metadata key naming the patient on customers (for [`crate::StripeHandle::customers_per_patient`]).
    pub patient_metadata_key: String,
    /// Metadata key naming the workflow on schedules, sessions and payment intents.
    pub workflow_metadata_key: String,
    /// Metadata key naming the installment number on payment intents.
    pub installment_metadata_key: String,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            secret_key: SecretString::from("sk_test_sandbox"),
            webhook_url: None,
            webhook_secrets: vec![SecretString::from("whsec_sandbox")],
            request_log: None,
            bill_on_start: true,
            advance_every: None,
            patient_metadata_key: "chairside_patient".into(),
            workflow_metadata_key: "chairside_workflow".into(),
            installment_metadata_key: "chairside_installment".into(),
        }
    }
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("webhook_url", &self.webhook_url.as_ref().map(Url::as_str))
            .field("webhook_secrets", &self.webhook_secrets.len())
            .field("request_log", &self.request_log)
            .field("bill_on_start", &self.bill_on_start)
            .field("advance_every", &self.advance_every)
            .finish_non_exhaustive()
    }
}

/// The Twilio stand-in.
#[derive(Clone)]
pub struct TwilioConfig {
    /// The account SID (`AC…`) in the path and the Basic auth user.
    pub account_sid: String,
    /// The auth token: the Basic auth password and the key of `X-Twilio-Signature`.
    pub auth_token: SecretString,
    /// Where inbound replies (STOP, HELP, free text) are POSTed. Changeable at runtime.
    pub inbound_url: Option<Url>,
    /// Whether to POST `sent`/`delivered` status callbacks to a message's `StatusCallback`.
    pub status_callbacks: bool,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            account_sid: "AC5a4db0c0000000000000000000000001".into(),
            auth_token: SecretString::from("sandbox-twilio-auth-token"),
            inbound_url: None,
            status_callbacks: true,
        }
    }
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("inbound_url", &self.inbound_url.as_ref().map(Url::as_str))
            .field("status_callbacks", &self.status_callbacks)
            .finish_non_exhaustive()
    }
}

/// The Dentrix Ascend stand-in.
#[derive(Clone)]
pub struct DentrixConfig {
    /// OAuth2 client id.
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
    /// The `Organization-ID` every call must carry.
    pub organization_id: String,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
}

impl Default for DentrixConfig {
    fn default() -> Self {
        Self {
            client_id: "sandbox-dentrix-client".into(),
            client_secret: SecretString::from("sandbox-dentrix-secret"),
            organization_id: "sandbox-org".into(),
            token_ttl: Duration::from_secs(3600),
        }
    }
}

impl fmt::Debug for DentrixConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DentrixConfig")
            .field("client_id", &self.client_id)
            .field("organization_id", &self.organization_id)
            .finish_non_exhaustive()
    }
}

/// The NexHealth stand-in.
#[derive(Clone)]
pub struct NexHealthConfig {
    /// The API key exchanged for a JWT at `/authenticates`.
    pub api_key: SecretString,
    /// The `subdomain` every call must name.
    pub subdomain: String,
    /// The location id plans and patients belong to.
    pub location_id: u64,
    /// The provider of the location's plans; `POST /patients` requires `provider.provider_id`
    /// to name it, as NexHealth requires a provider.
    pub provider_id: u64,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
}

impl Default for NexHealthConfig {
    fn default() -> Self {
        Self {
            api_key: SecretString::from("sandbox-nexhealth-key"),
            subdomain: "sandbox-practice".into(),
            location_id: 4242,
            provider_id: 1,
            token_ttl: Duration::from_secs(3600),
        }
    }
}

impl fmt::Debug for NexHealthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NexHealthConfig")
            .field("subdomain", &self.subdomain)
            .field("location_id", &self.location_id)
            .finish_non_exhaustive()
    }
}

/// The Open Dental stand-in.
#[derive(Clone)]
pub struct OpenDentalConfig {
    /// The developer key in `Authorization: ODFHIR {developer}/{customer}`.
    pub developer_key: SecretString,
    /// The customer key.
    pub customer_key: SecretString,
}

impl Default for OpenDentalConfig {
    fn default() -> Self {
        Self {
            developer_key: SecretString::from("sandboxDeveloperKey"),
            customer_key: SecretString::from("sandboxCustomerKey"),
        }
    }
}

impl fmt::Debug for OpenDentalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenDentalConfig").finish_non_exhaustive()
    }
}

/// The CareCredit stand-in.
#[derive(Clone)]
pub struct CareCreditConfig {
    /// OAuth2 client id of the technology partner.
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
    /// Lifetime of issued tokens.
    pub token_ttl: Duration,
    /// How long a portal session lives before the pullback answers `Expired`: 30 minutes, as
    /// CareCredit's (the demo compresses it).
    pub session_life: Duration,
}

impl Default for CareCreditConfig {
    fn default() -> Self {
        Self {
            client_id: "sandbox-carecredit-partner".into(),
            client_secret: SecretString::from("sandbox-carecredit-secret"),
            token_ttl: Duration::from_secs(3600),
            session_life: Duration::from_secs(30 * 60),
        }
    }
}

impl fmt::Debug for CareCreditConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CareCreditConfig")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The Sunbit stand-in.
#[derive(Clone)]
pub struct SunbitConfig {
    /// The `sunbit-key` header clients must send.
    pub api_key: String,
    /// The `sunbit-secret` header clients must send.
    pub api_secret: SecretString,
    /// Where signed webhook events are POSTed. Changeable at runtime.
    pub webhook_url: Option<Url>,
    /// Where events of applications at a Sunbit location are POSTed instead of `webhook_url`:
    /// each practice registers its own endpoint (`/webhooks/sunbit/{practice}`).
    pub location_webhook_urls: HashMap<String, Url>,
    /// The webhook signing secret.
    pub webhook_secret: SecretString,
}

impl Default for SunbitConfig {
    fn default() -> Self {
        Self {
            api_key: "sandbox-sunbit-key".into(),
            api_secret: SecretString::from("sandbox-sunbit-secret"),
            webhook_url: None,
            location_webhook_urls: HashMap::new(),
            webhook_secret: SecretString::from("sandbox-sunbit-webhook-secret"),
        }
    }
}

impl fmt::Debug for SunbitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SunbitConfig")
            .field("api_key", &self.api_key)
            .field("webhook_url", &self.webhook_url.as_ref().map(Url::as_str))
            .field("location_webhook_urls", &self.location_webhook_urls.len())
            .finish_non_exhaustive()
    }
}
