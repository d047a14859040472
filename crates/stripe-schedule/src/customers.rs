//! Customers: create, retrieve, list by email, and find-or-create by our metadata.
//!
//! # How a patient gets exactly one customer
//!
//! [`Client::find_or_create_customer`] combines two mechanisms, because neither is enough alone:
//!
//! 1. **Lookup by the list endpoint.** `GET /v1/customers?email=` is strongly consistent, unlike
//!    `/v1/customers/search` (eventually consistent, up to an hour): a customer created a moment
//!    ago is found. The list cannot filter by metadata, so the results for the patient's email are
//!    filtered here on `chairside_practice` + `chairside_patient`. This finds the customer days
//!    or months later, long after an idempotency key has expired.
//! 2. **A creation key derived from (practice, patient)** ([`IdempotencyKey::for_customer`]).
//!    Two concurrent calls both miss in the lookup and both create; with the same key Stripe runs
//!    the creation once and replays the stored response (a 409 while the first is in flight is
//!    retried), so both get the same `cus_` id. This covers patients without an email, for at
//!    least 24 hours.
//!
//! A patient without an email who comes back after the key has expired cannot be found by the
//! list endpoint: the caller must keep the `cus_` id it got (the orchestrator stores it with the
//! patient) and use [`Client::get_customer`].
//!
//! Metadata holds only opaque ids (COMPLIANCE.md); name, email, phone and address go in the
//! customer's own fields, which Stripe needs for receipts.

use std::fmt;

use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PracticeId};
use serde::Deserialize;

use crate::client::{Call, Client};
use crate::error::{Error, InvalidInput, Result};
use crate::form::FormMap;
use crate::ids::{CustomerId, PaymentMethodId, expandable};
use crate::params::{IdempotencyKey, Metadata, PATIENT_KEY, PRACTICE_KEY, check_id, check_text};

/// A Stripe customer. PHI: `Debug` shows the id and metadata only.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Customer {
    /// `cus_…`.
    pub id: CustomerId,
    /// Email, when set.
    #[serde(default)]
    pub email: Option<String>,
    /// Full name, when set.
    #[serde(default)]
    pub name: Option<String>,
    /// Phone, when set.
    #[serde(default)]
    pub phone: Option<String>,
    /// Metadata (opaque ids only).
    #[serde(default)]
    pub metadata: Metadata,
    /// Invoice settings, including the default payment method.
    #[serde(default)]
    pub invoice_settings: Option<CustomerInvoiceSettings>,
    /// Creation time.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub created: Option<DateTime<Utc>>,
    /// Live or test mode.
    #[serde(default)]
    pub livemode: bool,
    /// True for a deleted customer (Stripe then returns only `id` and `deleted`).
    #[serde(default)]
    pub deleted: bool,
}

impl Customer {
    /// The saved card used for invoices and schedules, when there is one.
    pub fn default_payment_method(&self) -> Option<&PaymentMethodId> {
        self.invoice_settings
            .as_ref()
            .and_then(|s| s.default_payment_method.as_ref())
    }

    /// True when the metadata marks this customer as `patient` of `practice`.
    pub fn belongs_to(&self, practice: &PracticeId, patient: &PatientId) -> bool {
        self.metadata.get(PRACTICE_KEY) == Some(practice.as_str())
            && self.metadata.get(PATIENT_KEY) == Some(patient.as_str())
    }
}

impl fmt::Debug for Customer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Customer")
            .field("id", &self.id)
            .field("metadata", &self.metadata)
            .field("deleted", &self.deleted)
            .finish_non_exhaustive()
    }
}

/// A customer's `invoice_settings`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct CustomerInvoiceSettings {
    /// The default payment method for invoices and subscriptions.
    #[serde(default, deserialize_with = "expandable::option")]
    pub default_payment_method: Option<PaymentMethodId>,
}

/// A postal address for a customer. PHI: redacted `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// Street, first line.
    pub line1: Option<String>,
    /// Street, second line.
    pub line2: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province (`CA`).
    pub state: Option<String>,
    /// ZIP or postal code.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country (`US`).
    pub country: Option<String>,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Address")
            .field("country", &self.country)
            .finish_non_exhaustive()
    }
}

/// The customer's own fields (not metadata). PHI: redacted `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CustomerDetails {
    /// Full name (≤ 256 characters).
    pub name: Option<String>,
    /// Email (≤ 512 characters). Sent trimmed and lower-cased, and looked up the same way.
    pub email: Option<String>,
    /// Phone (≤ 20 characters), E.164 preferred.
    pub phone: Option<String>,
    /// Postal address.
    pub address: Option<Address>,
}

impl fmt::Debug for CustomerDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomerDetails")
            .field("has_email", &self.email.is_some())
            .field("has_phone", &self.phone.is_some())
            .finish_non_exhaustive()
    }
}

impl From<&PatientContact> for CustomerDetails {
    fn from(p: &PatientContact) -> Self {
        let name = format!("{} {}", p.first_name.trim(), p.last_name.trim());
        let name = name.trim();
        Self {
            name: (!name.is_empty()).then(|| name.to_owned()),
            email: p.email.clone(),
            phone: p.mobile_phone.clone(),
            address: p.address.as_ref().map(|a| Address {
                line1: a.lines.first().cloned(),
                line2: (a.lines.len() > 1).then(|| a.lines[1..].join(", ")),
                city: Some(a.city.clone()),
                state: a.state.map(|s| s.code().to_owned()),
                postal_code: Some(a.postal_code.clone()),
                country: Some("US".to_owned()),
            }),
        }
    }
}

impl CustomerDetails {
    fn normalized_email(&self) -> Option<String> {
        self.email
            .as_deref()
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty())
    }

    fn validate(&self) -> Result<(), InvalidInput> {
        let opt = |field, v: &Option<String>, max| match v {
            Some(s) if !s.trim().is_empty() => check_text(field, s, max),
            _ => Ok(()),
        };
        opt("name", &self.name, 256)?;
        opt("email", &self.email, 512)?;
        opt("phone", &self.phone, 20)?;
        if let Some(a) = &self.address {
            for (field, v) in [
                ("address line1", &a.line1),
                ("address line2", &a.line2),
                ("address city", &a.city),
                ("address state", &a.state),
                ("address postal_code", &a.postal_code),
                ("address country", &a.country),
            ] {
                opt(field, v, 200)?;
            }
        }
        Ok(())
    }

    fn to_form(&self, form: &mut FormMap) {
        let set = |form: &mut FormMap, k: &str, v: &Option<String>| {
            if let Some(s) = v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                form.insert(k, s);
            }
        };
        set(form, "name", &self.name);
        form.insert_opt("email", self.normalized_email());
        set(form, "phone", &self.phone);
        if let Some(a) = &self.address {
            let mut addr = FormMap::new();
            set(&mut addr, "line1", &a.line1);
            set(&mut addr, "line2", &a.line2);
            set(&mut addr, "city", &a.city);
            set(&mut addr, "state", &a.state);
            set(&mut addr, "postal_code", &a.postal_code);
            set(&mut addr, "country", &a.country);
            if !addr.is_empty() {
                form.insert("address", addr);
            }
        }
    }
}

#[derive(Deserialize)]
struct List<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
}

/// Pages of 100 read by a list ([`Client::list_customers_by_email`],
/// [`Client::list_payment_intents`]) before giving up.
const MAX_PAGES: usize = 10;

impl Client {
    /// Creates a customer: `POST /v1/customers`.
    ///
    /// # Errors
    /// [`Error::Invalid`] before sending (metadata limits, over-long fields); otherwise as
    /// [`Error::kind`] classifies: `Transient` (retry with the same key), `Permanent`, or
    /// `Indeterminate` (a persistent 500: look the customer up before creating again).
    pub async fn create_customer(
        &self,
        details: &CustomerDetails,
        metadata: &Metadata,
        key: &IdempotencyKey,
    ) -> Result<Customer> {
        const OP: &str = "create_customer";
        details.validate().map_err(|r| Error::invalid(OP, r))?;
        metadata.validate().map_err(|r| Error::invalid(OP, r))?;
        let mut form = FormMap::new();
        details.to_form(&mut form);
        if !metadata.is_empty() {
            form.insert("metadata", metadata.to_form());
        }
        self.send(Call::post(OP, &["customers"], form, key)).await
    }

    /// Retrieves a customer: `GET /v1/customers/{id}`. A deleted customer comes back with
    /// [`Customer::deleted`] set.
    ///
    /// # Errors
    /// `Permanent` for a 404 or a malformed id, `Transient` for timeouts and 5xx.
    pub async fn get_customer(&self, id: &CustomerId) -> Result<Customer> {
        const OP: &str = "get_customer";
        check_id("customer id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::get(OP, &["customers", id.as_str()])).await
    }

    /// Every customer whose email is exactly `email` (after trimming and lower-casing): `GET
    /// /v1/customers?email=…&limit=100`, following pages (at most 1,000 customers), newest first.
    ///
    /// # Errors
    /// `Permanent` for an empty email; `Transient` for timeouts and 5xx.
    pub async fn list_customers_by_email(&self, email: &str) -> Result<Vec<Customer>> {
        const OP: &str = "list_customers";
        let email = email.trim().to_lowercase();
        check_text("email", &email, 512).map_err(|r| Error::invalid(OP, r))?;
        self.list_pages(
            OP,
            "customers",
            FormMap::new().with("email", email.as_str()),
            |c: &Customer| c.id.as_str(),
        )
        .await
    }

    /// A list endpoint read page by page (`limit=100`, `starting_after` the last id), at most
    /// [`MAX_PAGES`] pages, in Stripe's order (newest first).
    pub(crate) async fn list_pages<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        resource: &'static str,
        filter: FormMap,
        id: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>> {
        let mut out: Vec<T> = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut query = filter.clone().with("limit", 100_u32);
            if let Some(last) = out.last() {
                query.insert("starting_after", id(last));
            }
            let page: List<T> = self.send(Call::get(op, &[resource]).query(query)).await?;
            let more = page.has_more && !page.data.is_empty();
            out.extend(page.data);
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// The customer marked as `patient` of `practice` among those with `email`, if any. When
    /// several match (created outside Chairside's keys), the oldest wins, so every caller picks
    /// the same one.
    ///
    /// # Errors
    /// As [`Client::list_customers_by_email`].
    pub async fn find_customer(
        &self,
        practice: &PracticeId,
        patient: &PatientId,
        email: &str,
    ) -> Result<Option<Customer>> {
        let all = self.list_customers_by_email(email).await?;
        Ok(all
            .into_iter()
            .filter(|c| !c.deleted && c.belongs_to(practice, patient))
            .min_by_key(|c| (c.created, c.id.clone())))
    }

    /// Finds the patient's customer, or creates it.
    ///
    /// Looks up by email first (when `details` has one); otherwise, or when nothing matches,
    /// creates with `metadata[chairside_practice]` and `metadata[chairside_patient]` under `key`,
    /// which should be [`IdempotencyKey::for_customer`]`(practice, patient)`. With the same key
    /// and different details inside Stripe's 24-hour window, Stripe answers with an
    /// `idempotency_error` (`Permanent`).
    ///
    /// # Why this cannot create two customers for one patient
    ///
    /// It combines two mechanisms, because neither is enough alone:
    ///
    /// 1. **Lookup by the list endpoint.** `GET /v1/customers?email=` is strongly consistent,
    ///    unlike `/v1/customers/search` (eventually consistent, up to an hour): a customer
    ///    created a moment ago is found. The list cannot filter by metadata, so the results for
    ///    the email are filtered here on `chairside_practice` + `chairside_patient` (the oldest
    ///    match wins). This finds the customer days or months later, long after an idempotency
    ///    key has expired.
    /// 2. **A creation key derived from (practice, patient).** Two concurrent calls both miss in
    ///    the lookup and both create; with the same key Stripe runs the creation once and
    ///    replays the stored response (a 409 while the first is in flight is retried), so both
    ///    get the same `cus_` id. This also covers patients without an email, for at least
    ///    24 hours.
    ///
    /// A patient without an email who comes back after the key has expired cannot be found by
    /// the list endpoint: keep the `cus_` id (the orchestrator stores it with the patient) and
    /// use [`Client::get_customer`].
    ///
    /// Metadata holds only opaque ids (COMPLIANCE.md); name, email, phone and address go in the
    /// customer's own fields, which Stripe needs for receipts.
    ///
    /// # Errors
    /// [`Error::Invalid`] before sending; otherwise as [`Client::create_customer`].
    pub async fn find_or_create_customer(
        &self,
        practice: &PracticeId,
        patient: &PatientId,
        details: &CustomerDetails,
        key: &IdempotencyKey,
    ) -> Result<Customer> {
        const OP: &str = "find_or_create_customer";
        check_text("practice id", practice.as_str(), 500).map_err(|r| Error::invalid(OP, r))?;
        check_text("patient id", patient.as_str(), 500).map_err(|r| Error::invalid(OP, r))?;
        details.validate().map_err(|r| Error::invalid(OP, r))?;
        let metadata = Metadata::new()
            .merged(&[
                (PRACTICE_KEY, practice.as_str()),
                (PATIENT_KEY, patient.as_str()),
            ])
            .map_err(|r| Error::invalid(OP, r))?;
        if let Some(email) = details.normalized_email()
            && let Some(found) = self.find_customer(practice, patient, &email).await?
        {
            tracing::debug!(customer = %found.id, "found existing stripe customer");
            return Ok(found);
        }
        self.create_customer(details, &metadata, key).await
    }
}
