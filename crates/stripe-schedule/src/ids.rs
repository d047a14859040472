//! Typed Stripe ids. A bare `String` never crosses the crate boundary.

connector_transport::id_newtype! {
    /// A customer (`cus_…`).
    pub struct CustomerId(String);
}
connector_transport::id_newtype! {
    /// A product (`prod_…`, or the deterministic id Chairside gives a practice's product).
    pub struct ProductId(String);
}
connector_transport::id_newtype! {
    /// A price (`price_…`).
    pub struct PriceId(String);
}
connector_transport::id_newtype! {
    /// A subscription schedule (`sub_sched_…`).
    pub struct SubscriptionScheduleId(String);
}
connector_transport::id_newtype! {
    /// A subscription (`sub_…`), created by a schedule when it starts.
    pub struct SubscriptionId(String);
}
connector_transport::id_newtype! {
    /// A Checkout Session (`cs_…`).
    pub struct CheckoutSessionId(String);
}
connector_transport::id_newtype! {
    /// A PaymentIntent (`pi_…`).
    pub struct PaymentIntentId(String);
}
connector_transport::id_newtype! {
    /// A saved payment method (`pm_…`).
    pub struct PaymentMethodId(String);
}
connector_transport::id_newtype! {
    /// A SetupIntent (`seti_…`): how a Checkout Session in setup mode saved a card.
    pub struct SetupIntentId(String);
}
connector_transport::id_newtype! {
    /// An invoice (`in_…`).
    pub struct InvoiceId(String);
}
connector_transport::id_newtype! {
    /// A charge (`ch_…`, `py_…`).
    pub struct ChargeId(String);
}
connector_transport::id_newtype! {
    /// A refund (`re_…`, `pyr_…`).
    pub struct RefundId(String);
}
connector_transport::id_newtype! {
    /// A webhook event (`evt_…`): the deduplication key for received webhooks.
    pub struct EventId(String);
}
connector_transport::id_newtype! {
    /// Stripe's id for one API request (`req_…`, from the `Request-Id` header): quote it to
    /// Stripe support.
    pub struct RequestId(String);
}

/// Deserializes a field that Stripe sends either as an id string or, when expanded, as an object
/// with an `id`.
pub(crate) mod expandable {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Expandable<T> {
        Id(T),
        Object { id: T },
    }

    pub(crate) fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(Option::<Expandable<T>>::deserialize(d)?.map(|e| match e {
            Expandable::Id(id) | Expandable::Object { id } => id,
        }))
    }

    pub(crate) fn required<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Ok(match Expandable::<T>::deserialize(d)? {
            Expandable::Id(id) | Expandable::Object { id } => id,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(default, deserialize_with = "expandable::option")]
        customer: Option<CustomerId>,
    }

    #[test]
    fn expandable_fields_accept_an_id_an_object_or_null() {
        let id: Holder = serde_json::from_str(r#"{"customer":"cus_1"}"#).unwrap();
        assert_eq!(id.customer, Some(CustomerId::new("cus_1")));
        let obj: Holder =
            serde_json::from_str(r#"{"customer":{"id":"cus_2","object":"customer"}}"#).unwrap();
        assert_eq!(obj.customer, Some(CustomerId::new("cus_2")));
        let none: Holder = serde_json::from_str(r#"{"customer":null}"#).unwrap();
        assert_eq!(none.customer, None);
        let absent: Holder = serde_json::from_str("{}").unwrap();
        assert_eq!(absent.customer, None);
    }

    #[test]
    fn ids_serialize_as_bare_strings() {
        let id = PaymentIntentId::new("pi_123");
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""pi_123""#);
        assert_eq!(id.to_string(), "pi_123");
    }
}
connector_transport::id_newtype! {
    /// A dispute (`du_…` / `dp_…`).
    pub struct DisputeId(String);
}
