//! The file as serde reads it: every section a struct, every key optional, values as written.
//! Nothing here is checked beyond its type; [`super::validate`] turns these into settings and
//! reports what is missing or wrong. Numbers, `true`/`false` and lists also accept text, because
//! environment overrides are text.

use std::fmt;

use secrecy::SecretString;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a configuration file")]
pub(super) struct RawConfig {
    pub(super) store: Option<RawStore>,
    pub(super) runner: Option<RawRunner>,
    pub(super) detection: Option<RawDetection>,
    pub(super) http: Option<RawHttp>,
    pub(super) stripe: Option<RawStripe>,
    pub(super) twilio: Option<RawTwilio>,
    pub(super) practices: Option<Vec<RawPractice>>,
    pub(super) outbound: Option<RawOutbound>,
}

/// `[outbound]`: outbound events and their subscribers.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an [outbound] section")]
pub(super) struct RawOutbound {
    pub(super) max_attempts: Option<Int>,
    pub(super) first_retry: Option<String>,
    pub(super) max_retry_delay: Option<String>,
    pub(super) webhooks: Option<Vec<RawWebhook>>,
    pub(super) hubspot: Option<RawHubSpot>,
}

/// `[outbound.hubspot]`: the CRM.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an [outbound.hubspot] section")]
pub(super) struct RawHubSpot {
    pub(super) base_url: Option<String>,
    pub(super) token: Option<Literal>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<String>,
    pub(super) deal_id_property: Option<String>,
    pub(super) pipeline: Option<String>,
    pub(super) amounts: Option<Flag>,
    pub(super) practices: Option<List>,
    pub(super) stages: Option<RawStages>,
}

/// `[outbound.hubspot.stages]`: the account's internal deal stage id per outcome.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an [outbound.hubspot.stages] section")]
pub(super) struct RawStages {
    pub(super) not_converted: Option<String>,
    pub(super) applying: Option<String>,
    pub(super) financed: Option<String>,
    pub(super) declined: Option<String>,
    pub(super) paid: Option<String>,
}

/// `[[outbound.webhooks]]`: one signed webhook endpoint.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an [[outbound.webhooks]] section")]
pub(super) struct RawWebhook {
    pub(super) name: Option<String>,
    pub(super) url: Option<String>,
    pub(super) secret: Option<Literal>,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) events: Option<List>,
    pub(super) practices: Option<List>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [store] section")]
pub(super) struct RawStore {
    pub(super) path: Option<String>,
    pub(super) url: Option<String>,
    pub(super) url_env: Option<String>,
    pub(super) url_file: Option<String>,
    pub(super) data_key: Option<Literal>,
    pub(super) data_key_env: Option<String>,
    pub(super) data_key_file: Option<String>,
    pub(super) data_key_id: Option<Int>,
    pub(super) previous_data_keys: Option<Vec<RawPreviousKey>>,
}

/// `[[store.previous_data_keys]]`: a retired data key, kept so rows sealed with it still open.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [[store.previous_data_keys]] section")]
pub(super) struct RawPreviousKey {
    pub(super) id: Option<Int>,
    pub(super) key: Option<Literal>,
    pub(super) key_env: Option<String>,
    pub(super) key_file: Option<String>,
}

/// `[runner]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [runner] section")]
pub(super) struct RawRunner {
    pub(super) owner: Option<String>,
    pub(super) lease_secs: Option<Int>,
    pub(super) concurrency: Option<Int>,
    pub(super) poll_interval_secs: Option<Int>,
}

/// `[detection]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [detection] section")]
pub(super) struct RawDetection {
    pub(super) max_plan_amount: Option<String>,
}

/// `[http]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an [http] section")]
pub(super) struct RawHttp {
    pub(super) listen: Option<String>,
    pub(super) public_base_url: Option<String>,
    pub(super) patient_link_key: Option<Literal>,
    pub(super) patient_link_key_env: Option<String>,
    pub(super) patient_link_key_file: Option<String>,
    pub(super) patient_link_lifetime: Option<String>,
    pub(super) metrics_token: Option<Literal>,
    pub(super) metrics_token_env: Option<String>,
    pub(super) metrics_token_file: Option<String>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_connections: Option<Int>,
    pub(super) webhook_body_limit: Option<Int>,
    pub(super) form_body_limit: Option<Int>,
    pub(super) trusted_proxies: Option<List>,
    pub(super) login: Option<RawLogin>,
    pub(super) staff: Option<Vec<RawStaff>>,
}

/// `[http.login]`: staff login throttling.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an [http.login] section")]
pub(super) struct RawLogin {
    pub(super) account_free_failures: Option<Int>,
    pub(super) address_free_failures: Option<Int>,
    pub(super) first_delay: Option<String>,
    pub(super) max_delay: Option<String>,
    pub(super) lock_after: Option<Int>,
    pub(super) lock_for: Option<String>,
    pub(super) forget_after: Option<String>,
    pub(super) concurrent_hashes: Option<Int>,
    pub(super) hash_wait: Option<String>,
}

/// `[[http.staff]]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "an [[http.staff]] section")]
pub(super) struct RawStaff {
    pub(super) username: Option<String>,
    pub(super) practice: Option<String>,
    pub(super) password_hash: Option<String>,
}

/// `[stripe]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [stripe] section")]
pub(super) struct RawStripe {
    pub(super) base_url: Option<String>,
    pub(super) api_key: Option<Literal>,
    pub(super) api_key_env: Option<String>,
    pub(super) api_key_file: Option<String>,
    pub(super) webhook_secrets: Option<Literal>,
    pub(super) webhook_secrets_env: Option<String>,
    pub(super) webhook_secrets_file: Option<String>,
}

/// `[twilio]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [twilio] section")]
pub(super) struct RawTwilio {
    pub(super) base_url: Option<String>,
    pub(super) account_sid: Option<String>,
    pub(super) auth_token: Option<Literal>,
    pub(super) auth_token_env: Option<String>,
    pub(super) auth_token_file: Option<String>,
    pub(super) messaging_service_sid: Option<String>,
    pub(super) from: Option<String>,
}

/// `[[practices]]`. The `[practices.pms]` section is kept as a table and read by its `kind`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [[practices]] section")]
pub(super) struct RawPractice {
    pub(super) id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) state: Option<String>,
    pub(super) time_zone: Option<String>,
    pub(super) location_id: Option<String>,
    pub(super) phone: Option<String>,
    pub(super) email: Option<String>,
    pub(super) sms_from: Option<String>,
    pub(super) lab_email: Option<String>,
    pub(super) default_language: Option<String>,
    pub(super) pms: Option<toml::Table>,
    pub(super) lenders: Option<RawLenders>,
    pub(super) payments: Option<RawPayments>,
    pub(super) smtp: Option<RawSmtp>,
    pub(super) reminders: Option<RawReminders>,
    pub(super) policy: Option<RawPolicy>,
    pub(super) notice: Option<RawNotice>,
    pub(super) staff_alerts: Option<RawStaffAlerts>,
}

/// `[practices.staff_alerts]`: new staff tasks emailed to the practice's staff mailbox.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.staff_alerts] section")]
pub(super) struct RawStaffAlerts {
    pub(super) to: Option<String>,
    pub(super) tasks: Option<Vec<String>>,
    pub(super) digest_window: Option<String>,
    pub(super) language: Option<String>,
}

/// `[practices.notice]`: the practice's own notice before any lender link, per language.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.notice] section")]
pub(super) struct RawNotice {
    pub(super) en: Option<String>,
    pub(super) es: Option<String>,
}

/// `[practices.pms]` with `kind = "dentrix"` (read without its `kind`).
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.pms] section")]
pub(super) struct RawDentrix {
    pub(super) base_url: Option<String>,
    pub(super) token_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<Literal>,
    pub(super) client_secret_env: Option<String>,
    pub(super) client_secret_file: Option<String>,
    pub(super) organization_id: Option<String>,
}

/// `[practices.pms]` with `kind = "opendental"` (read without its `kind`).
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.pms] section")]
pub(super) struct RawOpenDental {
    pub(super) base_url: Option<String>,
    pub(super) developer_key: Option<Literal>,
    pub(super) developer_key_env: Option<String>,
    pub(super) developer_key_file: Option<String>,
    pub(super) customer_key: Option<Literal>,
    pub(super) customer_key_env: Option<String>,
    pub(super) customer_key_file: Option<String>,
    pub(super) acceptance: Option<String>,
}

/// `[practices.pms]` with `kind = "nexhealth"` (read without its `kind`).
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.pms] section")]
pub(super) struct RawNexHealth {
    pub(super) base_url: Option<String>,
    pub(super) api_key: Option<Literal>,
    pub(super) api_key_env: Option<String>,
    pub(super) api_key_file: Option<String>,
    pub(super) subdomain: Option<String>,
    pub(super) location_id: Option<String>,
    pub(super) provider_id: Option<String>,
    pub(super) webhook_secret: Option<Literal>,
    pub(super) webhook_secret_env: Option<String>,
    pub(super) webhook_secret_file: Option<String>,
}

/// `[practices.lenders]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.lenders] section")]
pub(super) struct RawLenders {
    pub(super) order: Option<List>,
    pub(super) on_partial: Option<String>,
    pub(super) in_house_fallback: Option<Flag>,
    pub(super) carecredit: Option<RawCareCredit>,
    pub(super) sunbit: Option<RawSunbit>,
    pub(super) cherry: Option<RawLinkLender>,
    pub(super) alphaeon: Option<RawLinkLender>,
    pub(super) lendingclub: Option<RawLinkLender>,
}

/// `[practices.lenders.cherry]`, `[practices.lenders.alphaeon]`, `[practices.lenders.lendingclub]`:
/// a lender without an API, run from the practice's own link (docs/lenders.md).
#[derive(Debug, Deserialize)]
#[serde(expecting = "a link-only lender section")]
pub(super) struct RawLinkLender {
    pub(super) application_link: Option<String>,
    pub(super) display_name: Option<String>,
    pub(super) decide_within: Option<String>,
    pub(super) disclosure_en: Option<String>,
    pub(super) disclosure_es: Option<String>,
    pub(super) min: Option<String>,
    pub(super) max: Option<String>,
}

/// `[practices.lenders.carecredit]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.lenders.carecredit] section")]
pub(super) struct RawCareCredit {
    pub(super) base_url: Option<String>,
    pub(super) token_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<Literal>,
    pub(super) client_secret_env: Option<String>,
    pub(super) client_secret_file: Option<String>,
    pub(super) partner_code: Option<String>,
    pub(super) merchant_number: Option<String>,
    pub(super) min: Option<String>,
    pub(super) max: Option<String>,
}

/// `[practices.lenders.sunbit]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.lenders.sunbit] section")]
pub(super) struct RawSunbit {
    pub(super) base_url: Option<String>,
    pub(super) key: Option<Literal>,
    pub(super) key_env: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) secret: Option<Literal>,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<String>,
    pub(super) location: Option<String>,
    pub(super) webhook_secret: Option<Literal>,
    pub(super) webhook_secret_env: Option<String>,
    pub(super) webhook_secret_file: Option<String>,
    pub(super) min: Option<String>,
    pub(super) max: Option<String>,
}

/// `[practices.payments]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.payments] section")]
pub(super) struct RawPayments {
    pub(super) deposit: Option<String>,
    pub(super) installments: Option<Int>,
    pub(super) interval: Option<String>,
    pub(super) interval_count: Option<Int>,
    pub(super) preference: Option<String>,
}

/// `[practices.smtp]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.smtp] section")]
pub(super) struct RawSmtp {
    pub(super) host: Option<String>,
    pub(super) port: Option<Int>,
    pub(super) security: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<Literal>,
    pub(super) password_env: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) from: Option<String>,
}

/// `[practices.reminders]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.reminders] section")]
pub(super) struct RawReminders {
    pub(super) delays: Option<List>,
    pub(super) give_up_after: Option<String>,
    pub(super) poll_interval: Option<String>,
}

/// `[practices.policy]`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a [practices.policy] section")]
pub(super) struct RawPolicy {
    pub(super) prefill_approved_by_counsel: Option<Flag>,
}

/// A whole number, or text to be read as one.
#[derive(Debug)]
pub(super) enum Int {
    /// Written as a number.
    Is(i64),
    /// Written as text (an override, or quoted in the file).
    Text(String),
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number")
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Int, E> {
                Ok(Int::Is(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Int, E> {
                Ok(Int::Is(i64::try_from(n).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, t: &str) -> Result<Int, E> {
                Ok(Int::Text(t.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `true` or `false`, or text to be read as one.
#[derive(Debug)]
pub(super) enum Flag {
    /// Written as a boolean.
    Is(bool),
    /// Written as text.
    Text(String),
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true or false")
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Flag, E> {
                Ok(Flag::Is(b))
            }
            fn visit_str<E: de::Error>(self, t: &str) -> Result<Flag, E> {
                Ok(Flag::Text(t.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of strings, or one text (a comma-separated list from an override).
#[derive(Debug)]
pub(super) enum List {
    /// Written as a list.
    Is(Vec<String>),
    /// Written as text.
    Text(String),
}

impl<'de> Deserialize<'de> for List {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = List;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list like [\"a\", \"b\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(List::Is(items))
            }
            fn visit_str<E: de::Error>(self, t: &str) -> Result<List, E> {
                Ok(List::Text(t.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A secret written literally (`api_key = "…"`). Whatever its type, it is read without an error
/// that could quote it; its text is kept only to be accepted when an override set it.
pub(super) struct Literal(pub(super) Option<SecretString>);

impl fmt::Debug for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Literal(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Literal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Literal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_str<E: de::Error>(self, t: &str) -> Result<Literal, E> {
                Ok(Literal(Some(SecretString::from(t.trim().to_owned()))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Literal, E> {
                Ok(Literal(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Literal, E> {
                Ok(Literal(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Literal, E> {
                Ok(Literal(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Literal, E> {
                Ok(Literal(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Literal, A::Error> {
                while seq.next_element::<toml::Value>()?.is_some() {}
                Ok(Literal(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Literal, A::Error> {
                while map.next_entry::<String, toml::Value>()?.is_some() {}
                Ok(Literal(None))
            }
        }
        d.deserialize_any(V)
    }
}
