//! Open string enums: every vendor enum is `#[non_exhaustive]` with an `Unknown(String)` fallback,
//! so a value Stripe adds later never fails decoding.

/// Declares a `#[non_exhaustive]` enum over Stripe's string values with an `Unknown(String)`
/// fallback, plus `as_str`, `Display`, `Serialize` and a `Deserialize` that never fails on a string.
macro_rules! string_enum {
    (
        $(#[$doc:meta])*
        $name:ident {
            $( $(#[$vdoc:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vdoc])* $variant, )+
            /// A value this version of the crate does not know. Never send it back to Stripe.
            Unknown(String),
        }

        impl $name {
            /// The value as Stripe spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::Unknown(other) => other.as_str(),
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $wire => Self::$variant, )+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Ok(Self::from(s.as_ref()))
            }
        }
    };
}

pub(crate) use string_enum;

string_enum!(
    /// A billing period unit (`recurring[interval]`, `duration[interval]`).
    Interval {
        /// Daily.
        Day => "day",
        /// Weekly.
        Week => "week",
        /// Monthly.
        Month => "month",
        /// Yearly.
        Year => "year",
    }
);

string_enum!(
    /// How a subscription or invoice is collected.
    CollectionMethod {
        /// Stripe charges the default payment method.
        ChargeAutomatically => "charge_automatically",
        /// Stripe emails an invoice the customer pays by its due date.
        SendInvoice => "send_invoice",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_decode_into_unknown_and_round_trip() {
        let known: Interval = serde_json::from_str(r#""month""#).unwrap();
        assert_eq!(known, Interval::Month);
        let new: Interval = serde_json::from_str(r#""fortnight""#).unwrap();
        assert_eq!(new, Interval::Unknown("fortnight".into()));
        assert_eq!(serde_json::to_string(&new).unwrap(), r#""fortnight""#);
        assert_eq!(CollectionMethod::SendInvoice.to_string(), "send_invoice");
    }
}
