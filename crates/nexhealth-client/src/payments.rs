//! Ledger payments and refunds: `POST /payments` (asynchronous, 202) and `GET /payments`.
//!
//! NexHealth writes a payment to the EHR later, so a payment goes requested → in the ledger. It
//! takes no idempotency key: each write carries our `transaction_id`, and
//! [`Client::post_payment_once`] looks for it before writing (NexHealth's own recipe: "poll
//! `GET /payments` by `transaction_id`", docs.nexhealth.com/docs/sample-app-payment-posting).
//! Signs follow NexHealth's ledger: a payment is negative (it reduces the patient's balance), a
//! refund positive; callers pass positive amounts and say which one it is.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use financing_core::Money;
use sha2::{Digest, Sha256};

use crate::client::{Call, Client};
use crate::error::{DecodeProblem, Error, Result};
use crate::ids::PatientId;
use crate::wire;

const RESOURCE: &str = "payments";

/// Our id for one ledger write (`transaction_id`): `{prefix}:{key}`, at most 50 characters. A
/// key too long for that is replaced by a hash of it, so the id stays deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId(String);

impl TransactionId {
    /// `prefix` names the API originator (`chairside`); `key` is what makes the write unique
    /// (a Stripe payment's id, a refund's key).
    ///
    /// # Errors
    /// [`Error::Config`] (Permanent) for an empty prefix or key, or a prefix that leaves no room.
    pub fn new(prefix: &str, key: &str) -> Result<Self> {
        let prefix = prefix.trim();
        let key = key.trim();
        if prefix.is_empty() || key.is_empty() || prefix.len() + 1 + 16 > wire::TRANSACTION_ID_MAX {
            return Err(Error::Config(
                "a NexHealth transaction id needs a short prefix and a key".into(),
            ));
        }
        let plain = format!("{prefix}:{key}");
        if plain.len() <= wire::TRANSACTION_ID_MAX && plain.is_ascii() {
            return Ok(Self(plain));
        }
        let room = wire::TRANSACTION_ID_MAX - prefix.len() - 1;
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        Ok(Self(format!(
            "{prefix}:{}",
            &digest[..room.min(digest.len())]
        )))
    }

    /// The id as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which way the money goes in the patient's ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LedgerDirection {
    /// The patient paid: posted as a negative amount.
    Payment,
    /// Money went back to the patient: posted as a positive amount.
    Refund,
}

/// A ledger write to request. The notes may hold PHI: `Debug` shows ids only.
#[derive(Clone)]
pub struct NewLedgerPayment {
    /// The patient.
    pub patient_id: PatientId,
    /// The amount, above zero; [`LedgerDirection`] gives the sign NexHealth wants.
    pub amount: Money,
    /// Payment or refund.
    pub direction: LedgerDirection,
    /// Our id for the write.
    pub transaction_id: TransactionId,
    /// When the money moved.
    pub paid_at: Option<DateTime<Utc>>,
    /// The note the EHR keeps with it.
    pub notes: Option<String>,
}

impl fmt::Debug for NewLedgerPayment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewLedgerPayment")
            .field("patient_id", &self.patient_id)
            .field("direction", &self.direction)
            .field("transaction_id", &self.transaction_id)
            .finish_non_exhaustive()
    }
}

/// A payment NexHealth has read back from the EHR's ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerPayment {
    /// NexHealth's id.
    pub id: Option<String>,
    /// The transaction id it carries.
    pub transaction_id: String,
    /// The signed amount in minor units, as the ledger holds it (a payment is negative).
    pub signed_minor: Option<i64>,
}

/// What [`Client::post_payment_once`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaymentWrite {
    /// The ledger already holds a payment with this transaction id; nothing was written.
    AlreadyInLedger(LedgerPayment),
    /// The write was requested now (202): NexHealth writes it to the EHR later.
    Requested,
}

impl Client {
    /// `POST /payments`: requests the ledger write. The answer (202) means queued.
    ///
    /// # Errors
    /// [`Error::Config`] (Permanent) for an amount that is not above zero. Indeterminate: a
    /// timeout or 5xx other than 503 (the write may be queued: look it up before writing again).
    /// Transient: connect error, 429, 503. Permanent: [`Error::Auth`], other 4xx (a 403 when
    /// NexHealth has not enabled financial writes for the key).
    pub async fn request_payment(&self, payment: &NewLedgerPayment) -> Result<()> {
        if payment.amount.minor() <= 0 {
            return Err(Error::Config(
                "a ledger payment's amount must be above zero".into(),
            ));
        }
        let signed = match payment.direction {
            LedgerDirection::Payment => format!("-{}", payment.amount.to_decimal_string()),
            LedgerDirection::Refund => payment.amount.to_decimal_string(),
        };
        let amount: serde_json::Number = signed
            .parse()
            .map_err(|_| Error::Config("the amount cannot be encoded".into()))?;
        let body = serde_json::to_value(wire::NewPaymentBody {
            payment: wire::NewPayment {
                patient_id: wire::RawId::from_text(payment.patient_id.as_str()),
                amount,
                currency: payment.amount.currency().code().to_ascii_uppercase(),
                transaction_id: payment.transaction_id.as_str().to_owned(),
                paid_at: payment
                    .paid_at
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                notes: payment.notes.clone(),
            },
        })
        .map_err(|_| Error::Config("the payment cannot be encoded".into()))?;
        // 202 with no documented body: the answer's status is the whole answer.
        self.execute(&Call {
            operation: "create payment",
            method: reqwest::Method::POST,
            segments: &[wire::PAYMENTS],
            query: vec![],
            body: Some(body),
        })
        .await?;
        Ok(())
    }

    /// The patient's ledger payments carrying `transaction_id` (deleted ones left out), every
    /// page. A write NexHealth has queued but not yet read back from the EHR is not listed.
    ///
    /// # Errors
    /// Transient: timeouts, connect errors, 429, 5xx. Permanent: [`Error::Auth`], 4xx,
    /// [`Error::Decode`].
    pub async fn find_payments(
        &self,
        patient: &PatientId,
        transaction_id: &TransactionId,
    ) -> Result<Vec<LedgerPayment>> {
        let found = self
            .get_pages(
                "list payments",
                RESOURCE,
                &[wire::PAYMENTS],
                vec![
                    (wire::QUERY_PATIENT_ID, patient.as_str().to_owned()),
                    (
                        wire::QUERY_TRANSACTION_ID,
                        transaction_id.as_str().to_owned(),
                    ),
                ],
                payment_from_wire,
            )
            .await?;
        // The filter is the server's; the check is ours (a server that ignores it finds nothing).
        Ok(found
            .into_iter()
            .flatten()
            .filter(|p| p.transaction_id == transaction_id.as_str())
            .collect())
    }

    /// Check-then-act: the ledger payment carrying the write's transaction id if there is one,
    /// else a new request. Calling it again after an Indeterminate error is the reconciliation,
    /// as far as NexHealth allows: a write queued but not yet in the EHR is not seen by the
    /// lookup (NexHealth documents reads lagging writes), so the caller keeps its own record of
    /// what it requested.
    ///
    /// # Errors
    /// As [`Client::find_payments`] and [`Client::request_payment`].
    pub async fn post_payment_once(&self, payment: &NewLedgerPayment) -> Result<PaymentWrite> {
        let found = self
            .find_payments(&payment.patient_id, &payment.transaction_id)
            .await?;
        if let Some(existing) = found.into_iter().next() {
            return Ok(PaymentWrite::AlreadyInLedger(existing));
        }
        self.request_payment(payment).await?;
        Ok(PaymentWrite::Requested)
    }
}

/// A listed payment; `None` for a deleted one or one without a transaction id.
fn payment_from_wire(raw: wire::LedgerPayment, at: &str) -> Result<Option<LedgerPayment>> {
    if raw
        .deleted_at
        .as_deref()
        .is_some_and(|d| !d.trim().is_empty())
    {
        return Ok(None);
    }
    let Some(transaction_id) = raw.transaction_id.filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    let signed_minor = match &raw.payment_amount {
        None => None,
        Some(price) => Some(signed_minor(price).ok_or_else(|| {
            Error::decode(
                RESOURCE,
                format!("{at}.payment_amount.amount"),
                DecodeProblem::MalformedMoney,
            )
        })?),
    };
    Ok(Some(LedgerPayment {
        id: raw.id.map(wire::RawId::into_string),
        transaction_id,
        signed_minor,
    }))
}

fn signed_minor(price: &wire::Price) -> Option<i64> {
    let text = match &price.amount {
        wire::RawAmount::Number(n) => n.to_string(),
        wire::RawAmount::Text(s) => s.trim().to_owned(),
    };
    let (negative, digits) = text
        .strip_prefix('-')
        .map_or((false, text.as_str()), |rest| (true, rest));
    let currency = price
        .currency
        .as_deref()
        .map_or(Ok(financing_core::Currency::Usd), str::parse)
        .ok()?;
    let minor = Money::parse(digits, currency).ok()?.minor();
    Some(if negative { -minor } else { minor })
}
