//! Typed Stripe ids. A bare `String` never crosses the crate boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! stripe_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw Stripe id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The raw id, as Stripe spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

stripe_id!(
    /// A customer (`cus_…`).
    CustomerId
);
stripe_id!(
    /// A product (`prod_…`, or the deterministic id Chairside gives a practice's product).
    ProductId
);
stripe_id!(
    /// A price (`price_…`).
    PriceId
);
stripe_id!(
    /// A subscription schedule (`sub_sched_…`).
    SubscriptionScheduleId
);
stripe_id!(
    /// A subscription (`sub_…`), created by a schedule when it starts.
    SubscriptionId
);
stripe_id!(
    /// A Checkout Session (`cs_…`).
    CheckoutSessionId
);
stripe_id!(
    /// A PaymentIntent (`pi_…`).
    PaymentIntentId
);
stripe_id!(
    /// A saved payment method (`pm_…`).
    PaymentMethodId
);
stripe_id!(
    /// An invoice (`in_…`).
    InvoiceId
);
stripe_id!(
    /// A charge (`ch_…`, `py_…`).
    ChargeId
);
stripe_id!(
    /// A webhook event (`evt_…`): the deduplication key for received webhooks.
    EventId
);
stripe_id!(
    /// Stripe's id for one API request (`req_…`, from the `Request-Id` header): quote it to
    /// Stripe support.
    RequestId
);

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
