//! The practice-system stand-ins and what they share.

pub(crate) mod dentrix;
pub(crate) mod nexhealth;
pub(crate) mod opendental;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Issued bearer tokens and their expiry.
#[derive(Debug)]
pub(crate) struct TokenStore {
    prefix: &'static str,
    inner: Mutex<(StdRng, HashMap<String, Instant>)>,
}

impl TokenStore {
    pub(crate) fn new(prefix: &'static str, seed: u64) -> Self {
        Self {
            prefix,
            inner: Mutex::new((StdRng::seed_from_u64(seed), HashMap::new())),
        }
    }

    pub(crate) fn issue(&self, ttl: Duration) -> String {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: [u8; 24] = g.0.r#gen();
        let token = format!("{}{}", self.prefix, hex::encode(bytes));
        g.1.insert(token.clone(), Instant::now() + ttl);
        token
    }

    /// Stores a token made elsewhere (a JWT).
    pub(crate) fn insert(&self, token: String, ttl: Duration) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.insert(token, Instant::now() + ttl);
    }

    /// Random bytes, hex-encoded, from the store's seeded generator.
    pub(crate) fn random_hex(&self, n: usize) -> String {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let bytes: Vec<u8> = (0..n).map(|_| g.0.r#gen::<u8>()).collect();
        hex::encode(bytes)
    }

    pub(crate) fn valid(&self, token: &str) -> bool {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.1.get(token).is_some_and(|until| *until > Instant::now())
    }

    pub(crate) fn revoke_all(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clear();
    }
}

/// The bearer token of a request.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Cents as a decimal string in whole units (`"1300.00"`): what the practice systems send, and
/// never a float.
pub(crate) fn cents_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// The practice systems' own state (beyond the shared world).
#[derive(Debug)]
pub(crate) struct PmsState {
    pub(crate) dentrix_tokens: TokenStore,
    pub(crate) nexhealth_tokens: TokenStore,
    pub(crate) nexhealth: nexhealth::NexState,
    /// Hostile data in the Dentrix Ascend and NexHealth change listings, for tests of bad records.
    pub(crate) listing_tamper: Mutex<ListingTamper>,
}

/// Field overrides per plan and raw extra rows in a practice system's plan listing (`txcases`,
/// `treatment_plans`). Listings only: a plan's own GET is served as seeded.
#[derive(Debug, Default)]
pub(crate) struct ListingTamper {
    plan_fields: HashMap<(crate::persona::Pms, String), serde_json::Map<String, serde_json::Value>>,
    extra_rows: HashMap<crate::persona::Pms, Vec<serde_json::Value>>,
}

impl PmsState {
    fn tamper(&self) -> std::sync::MutexGuard<'_, ListingTamper> {
        self.listing_tamper
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves this plan's listing row with `field` set to `value`.
    pub(crate) fn override_listed_plan(
        &self,
        pms: crate::persona::Pms,
        pms_id: &str,
        field: &str,
        value: serde_json::Value,
    ) {
        self.tamper()
            .plan_fields
            .entry((pms, pms_id.to_owned()))
            .or_default()
            .insert(field.to_owned(), value);
    }

    /// Lists this raw row too.
    pub(crate) fn extra_listed_row(&self, pms: crate::persona::Pms, row: serde_json::Value) {
        self.tamper().extra_rows.entry(pms).or_default().push(row);
    }

    /// A listing row with its overrides applied.
    pub(crate) fn listed(
        &self,
        pms: crate::persona::Pms,
        pms_id: &str,
        mut row: serde_json::Value,
    ) -> serde_json::Value {
        if let (Some(patch), serde_json::Value::Object(map)) = (
            self.tamper().plan_fields.get(&(pms, pms_id.to_owned())),
            &mut row,
        ) {
            for (k, v) in patch {
                map.insert(k.clone(), v.clone());
            }
        }
        row
    }

    /// The extra raw rows of a listing.
    pub(crate) fn extra_rows(&self, pms: crate::persona::Pms) -> Vec<serde_json::Value> {
        self.tamper()
            .extra_rows
            .get(&pms)
            .cloned()
            .unwrap_or_default()
    }
}

impl PmsState {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            dentrix_tokens: TokenStore::new("dtx_", seed ^ 0x4454),
            nexhealth_tokens: TokenStore::new("", seed ^ 0x4e48),
            nexhealth: nexhealth::NexState::default(),
            listing_tamper: Mutex::new(ListingTamper::default()),
        }
    }
}
