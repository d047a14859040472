//! One product per practice, for installment prices (a schedule phase item's `price_data` needs
//! an existing product id).
//!
//! The product gets a deterministic id ([`practice_product_id`]), so "created once and reused"
//! holds forever, not just for an idempotency key's 24 hours: [`Client::ensure_practice_product`]
//! retrieves it by id and creates it only on a 404, under a key derived from the practice.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use chrono::{DateTime, Utc};
use financing_core::PracticeId;

use crate::client::{Call, Client};
use crate::error::{Error, ErrorCode, Result};
use crate::form::FormMap;
use crate::ids::ProductId;
use crate::params::{IdempotencyKey, Metadata, PRACTICE_KEY, check_id, check_text};

/// A Stripe product.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Product {
    /// `prod_…` or our deterministic id.
    pub id: ProductId,
    /// Name shown on invoices and receipts.
    #[serde(default)]
    pub name: String,
    /// False for an archived product.
    #[serde(default)]
    pub active: bool,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// Creation time.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub created: Option<DateTime<Utc>>,
}

/// The product id Chairside uses for a practice: `chairside_practice_<id>` when the practice id
/// is short and made of letters, digits, `-` and `_`; otherwise a SHA-256 digest stands in for it.
pub fn practice_product_id(practice: &PracticeId) -> ProductId {
    let raw = practice.as_str();
    let simple = !raw.is_empty()
        && raw.len() <= 40
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if simple {
        ProductId::new(format!("chairside_practice_{raw}"))
    } else {
        let digest = hex::encode(Sha256::digest(raw.as_bytes()));
        ProductId::new(format!("chairside_practice_{}", &digest[..32]))
    }
}

impl Client {
    /// Retrieves a product: `GET /v1/products/{id}`.
    ///
    /// # Errors
    /// `Permanent` for a 404 or a malformed id; `Transient` for timeouts and 5xx.
    pub async fn get_product(&self, id: &ProductId) -> Result<Product> {
        const OP: &str = "get_product";
        check_id("product id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::get(OP, &["products", id.as_str()])).await
    }

    /// Returns the practice's installment product, creating it the first time
    /// (`POST /v1/products` with `id`, `name`, `metadata[chairside_practice]`, and the key
    /// [`IdempotencyKey::for_practice_product`]). `name` appears on invoices: keep it generic
    /// (for example "Dental treatment plan"), never a procedure.
    ///
    /// The product has a deterministic id ([`practice_product_id`]), so "created once and
    /// reused" holds forever, not just for an idempotency key's 24 hours: it is retrieved by id
    /// and created only on a 404. A create that meets `resource_already_exists` (another
    /// instance won a race) retrieves it instead.
    ///
    /// An archived product is returned as it is; schedules priced on it fail at Stripe, which
    /// is a `Permanent` error for staff.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty or over-long name; otherwise `Transient`, `Permanent` or
    /// `Indeterminate` as [`Error::kind`] classifies.
    pub async fn ensure_practice_product(
        &self,
        practice: &PracticeId,
        name: &str,
    ) -> Result<ProductId> {
        const OP: &str = "ensure_practice_product";
        check_text("product name", name, 250).map_err(|r| Error::invalid(OP, r))?;
        let metadata = Metadata::new()
            .merged(&[(PRACTICE_KEY, practice.as_str())])
            .map_err(|r| Error::invalid(OP, r))?;
        let id = practice_product_id(practice);
        match self.get_product(&id).await {
            Ok(p) => return Ok(p.id),
            Err(e) if e.status() == Some(404) => {}
            Err(e) => return Err(e),
        }
        let form = FormMap::new()
            .with("id", id.as_str())
            .with("name", name.trim())
            .with("metadata", metadata.to_form());
        let key = IdempotencyKey::for_practice_product(practice);
        match self
            .send::<Product>(Call::post(OP, &["products"], form, &key))
            .await
        {
            Ok(p) => Ok(p.id),
            // Created by another instance between our lookup and our create, under a key that
            // has since expired: it is there, so use it.
            Err(e)
                if e.stripe_error().and_then(|o| o.code.as_ref())
                    == Some(&ErrorCode::ResourceAlreadyExists) =>
            {
                Ok(self.get_product(&id).await?.id)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_deterministic_and_url_safe() {
        assert_eq!(
            practice_product_id(&PracticeId::new("smile-dental")).as_str(),
            "chairside_practice_smile-dental"
        );
        let odd = practice_product_id(&PracticeId::new("Smile Dental / Main St"));
        assert!(odd.as_str().starts_with("chairside_practice_"));
        assert!(
            odd.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        assert_eq!(
            odd,
            practice_product_id(&PracticeId::new("Smile Dental / Main St"))
        );
    }
}
