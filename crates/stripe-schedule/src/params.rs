//! Request building blocks shared by every resource: [`Metadata`], [`IdempotencyKey`], and the
//! checks that run before anything is sent.

use std::collections::BTreeMap;
use std::fmt;

use financing_core::{Currency, Money, PatientId, PracticeId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::InvalidInput;
use crate::form::FormMap;

/// Metadata key carrying the practice system's patient id on a Chairside customer.
pub const PATIENT_KEY: &str = "chairside_patient";
/// Metadata key carrying the practice id on Chairside customers and products.
pub const PRACTICE_KEY: &str = "chairside_practice";
/// Metadata key the orchestrator uses for its workflow id (schedules, sessions, payments).
pub const WORKFLOW_KEY: &str = "chairside_workflow";
/// Metadata key naming what an off-session charge pays within its workflow (`deposit`,
/// `installment-2`): with [`WORKFLOW_KEY`], what a charge is for, so a reconciliation (and the
/// "never a charge twice" check) can count charges per purpose.
pub const INSTALLMENT_KEY: &str = "chairside_installment";

const MAX_KEYS: usize = 50;
const MAX_KEY_CHARS: usize = 40;
const MAX_VALUE_CHARS: usize = 500;

/// Stripe metadata: at most 50 keys, keys up to 40 characters without `[`/`]`, values up to 500.
///
/// Never PHI (COMPLIANCE.md): opaque ids only, such as the workflow id. Kept sorted, so the same
/// map always encodes to the same body and an idempotent replay sends identical parameters.
/// Checked by every call before it sends anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

/// `null` (which some Stripe objects send) reads as empty.
impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self(
            Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default(),
        ))
    }
}

impl Metadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a pair, builder style.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds or replaces a pair.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.insert(key.into(), value.into());
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Checks Stripe's limits.
    ///
    /// # Errors
    /// [`InvalidInput`] naming the broken rule.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.0.len() > MAX_KEYS {
            return Err(InvalidInput::TooManyMetadataKeys {
                count: self.0.len(),
            });
        }
        for (k, v) in &self.0 {
            let len = k.chars().count();
            if len == 0 {
                return Err(InvalidInput::EmptyMetadataKey);
            }
            if len > MAX_KEY_CHARS {
                return Err(InvalidInput::MetadataKeyTooLong { len });
            }
            if k.contains(['[', ']']) {
                return Err(InvalidInput::MetadataKeyBrackets);
            }
            let len = v.chars().count();
            if len > MAX_VALUE_CHARS {
                return Err(InvalidInput::MetadataValueTooLong { len });
            }
        }
        Ok(())
    }

    /// This map plus the crate's own keys, refusing caller keys that collide with them.
    pub(crate) fn merged(&self, ours: &[(&'static str, &str)]) -> Result<Self, InvalidInput> {
        let mut out = self.clone();
        for (k, v) in ours {
            if self.0.contains_key(*k) {
                return Err(InvalidInput::ReservedMetadataKey(k));
            }
            out.insert(*k, *v);
        }
        out.validate()?;
        Ok(out)
    }

    pub(crate) fn to_form(&self) -> FormMap {
        let mut m = FormMap::new();
        for (k, v) in &self.0 {
            m.insert(k.clone(), v.clone());
        }
        m
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// The `Idempotency-Key` of one POST: 1 to 255 printable ASCII characters.
///
/// Derive it from business ids (the orchestrator uses hash(workflow id, step, sequence)), never
/// from the attempt number: Stripe replays the stored result of the first execution for the same
/// key for at least 24 hours, so a repeated call cannot create a second object. The client's own
/// retries reuse the key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Wraps a key after checking it.
    ///
    /// # Errors
    /// [`InvalidInput::IdempotencyKey`] when empty, over 255 characters, or not printable ASCII.
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidInput> {
        let key = key.into();
        let ok = !key.is_empty() && key.len() <= 255 && key.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(key))
        } else {
            Err(InvalidInput::IdempotencyKey)
        }
    }

    /// A deterministic key: `namespace` plus a SHA-256 digest of `parts`.
    ///
    /// The parts are hashed, so the key reveals nothing of them and has a bounded length. A
    /// namespace that is not 1 to 64 printable ASCII characters is replaced by `chairside`.
    pub fn derive(namespace: &str, parts: &[&str]) -> Self {
        let ns = if !namespace.is_empty()
            && namespace.len() <= 64
            && namespace.bytes().all(|b| b.is_ascii_graphic())
        {
            namespace
        } else {
            "chairside"
        };
        let mut h = Sha256::new();
        for p in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        Self(format!("{ns}:{}", hex::encode(h.finalize())))
    }

    /// The key for creating the Stripe customer of one patient of one practice.
    ///
    /// Derived from (practice, patient) only, so every workflow for that patient, concurrent or
    /// retried, sends the same key and Stripe returns the one customer it created.
    pub fn for_customer(practice: &PracticeId, patient: &PatientId) -> Self {
        Self::derive("chairside-customer", &[practice.as_str(), patient.as_str()])
    }

    /// The key for creating a practice's installment product.
    pub fn for_practice_product(practice: &PracticeId) -> Self {
        Self::derive("chairside-product", &[practice.as_str()])
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Stripe's largest charge: eight digits of minor units.
pub(crate) const MAX_CHARGE: i64 = 99_999_999;

/// Stripe's minimum charge for a currency, in minor units (docs.stripe.com/currencies).
pub(crate) fn minimum_charge(currency: Currency) -> i64 {
    match currency {
        Currency::Gbp => 30,
        _ => 50,
    }
}

/// Only two-decimal currencies: installment splits and all our amounts are in cents.
pub(crate) fn check_currency(currency: Currency) -> Result<(), InvalidInput> {
    if currency.minor_digits() == 2 {
        Ok(())
    } else {
        Err(InvalidInput::CurrencyWithoutMinorUnits(currency.code()))
    }
}

/// A single charge: positive, at least the minimum, at most the maximum, two-decimal currency.
pub(crate) fn check_charge(amount: Money) -> Result<(), InvalidInput> {
    check_currency(amount.currency())?;
    if amount.minor() <= 0 {
        return Err(InvalidInput::NonPositiveAmount);
    }
    let minimum = minimum_charge(amount.currency());
    if amount.minor() < minimum {
        return Err(InvalidInput::BelowMinimumCharge { minimum });
    }
    if amount.minor() > MAX_CHARGE {
        return Err(InvalidInput::AboveMaximumCharge);
    }
    Ok(())
}

/// An id that goes into a URL path.
pub(crate) fn check_id(field: &'static str, id: &str) -> Result<(), InvalidInput> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::BadId(field))
    }
}

/// A text field with a length limit.
pub(crate) fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), InvalidInput> {
    if s.trim().is_empty() {
        return Err(InvalidInput::Empty(field));
    }
    if s.chars().count() > max {
        return Err(InvalidInput::TooLong { field, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_metadata_reads_as_empty() {
        let m: Metadata = serde_json::from_str("null").unwrap();
        assert!(m.is_empty());
        let m: Metadata = serde_json::from_str(r#"{"a":"b"}"#).unwrap();
        assert_eq!(m.get("a"), Some("b"));
    }

    #[test]
    fn metadata_limits_are_enforced() {
        let ok: Metadata = (0..50).map(|i| (format!("k{i}"), "v")).collect();
        assert_eq!(ok.validate(), Ok(()));
        let many: Metadata = (0..51).map(|i| (format!("k{i}"), "v")).collect();
        assert_eq!(
            many.validate(),
            Err(InvalidInput::TooManyMetadataKeys { count: 51 })
        );
        let long_key = Metadata::new().with("k".repeat(41), "v");
        assert_eq!(
            long_key.validate(),
            Err(InvalidInput::MetadataKeyTooLong { len: 41 })
        );
        assert_eq!(Metadata::new().with("k".repeat(40), "v").validate(), Ok(()));
        assert_eq!(
            Metadata::new().with("a[b]", "v").validate(),
            Err(InvalidInput::MetadataKeyBrackets)
        );
        assert_eq!(
            Metadata::new().with("", "v").validate(),
            Err(InvalidInput::EmptyMetadataKey)
        );
        assert_eq!(
            Metadata::new().with("k", "v".repeat(501)).validate(),
            Err(InvalidInput::MetadataValueTooLong { len: 501 })
        );
        assert_eq!(
            Metadata::new().with("k", "é".repeat(500)).validate(),
            Ok(())
        );
    }

    #[test]
    fn merged_metadata_refuses_reserved_keys_and_counts_them() {
        let caller = Metadata::new().with(PATIENT_KEY, "x");
        assert_eq!(
            caller.merged(&[(PATIENT_KEY, "p-1")]),
            Err(InvalidInput::ReservedMetadataKey(PATIENT_KEY))
        );
        let full: Metadata = (0..49).map(|i| (format!("k{i}"), "v")).collect();
        assert_eq!(
            full.merged(&[(PATIENT_KEY, "p"), (PRACTICE_KEY, "q")]),
            Err(InvalidInput::TooManyMetadataKeys { count: 51 })
        );
    }

    #[test]
    fn idempotency_keys_are_checked() {
        assert!(IdempotencyKey::new("wf-1:schedule:0").is_ok());
        assert_eq!(IdempotencyKey::new(""), Err(InvalidInput::IdempotencyKey));
        assert_eq!(
            IdempotencyKey::new("a".repeat(256)),
            Err(InvalidInput::IdempotencyKey)
        );
        assert!(IdempotencyKey::new("a".repeat(255)).is_ok());
        assert_eq!(
            IdempotencyKey::new("has space"),
            Err(InvalidInput::IdempotencyKey)
        );
        assert_eq!(IdempotencyKey::new("é"), Err(InvalidInput::IdempotencyKey));
    }

    #[test]
    fn derived_keys_are_stable_opaque_and_distinct() {
        let practice = PracticeId::new("smile-dental");
        let a = IdempotencyKey::for_customer(&practice, &PatientId::new("p-1"));
        let b = IdempotencyKey::for_customer(&practice, &PatientId::new("p-1"));
        let c = IdempotencyKey::for_customer(&practice, &PatientId::new("p-2"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.as_str().starts_with("chairside-customer:"));
        assert!(!a.as_str().contains("p-1"));
        assert!(IdempotencyKey::new(a.as_str()).is_ok());
        assert_ne!(
            IdempotencyKey::derive("n", &["ab", "c"]),
            IdempotencyKey::derive("n", &["a", "bc"])
        );
    }

    #[test]
    fn charges_must_be_positive_within_limits_and_two_decimal() {
        assert_eq!(check_charge(Money::usd(50)), Ok(()));
        assert_eq!(
            check_charge(Money::usd(0)),
            Err(InvalidInput::NonPositiveAmount)
        );
        assert_eq!(
            check_charge(Money::usd(-5)),
            Err(InvalidInput::NonPositiveAmount)
        );
        assert_eq!(
            check_charge(Money::usd(49)),
            Err(InvalidInput::BelowMinimumCharge { minimum: 50 })
        );
        assert_eq!(
            check_charge(Money::usd(100_000_000)),
            Err(InvalidInput::AboveMaximumCharge)
        );
        assert_eq!(
            check_charge(Money::new(5000, Currency::Jpy)),
            Err(InvalidInput::CurrencyWithoutMinorUnits("jpy"))
        );
    }
}
