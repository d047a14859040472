//! Typed identifiers shared across crates. A bare `String` never crosses a crate boundary.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The raw identifier.
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
    };
}

string_id!(
    /// A practice (a customer of Chairside), as named in the configuration.
    PracticeId
);
string_id!(
    /// A practice location (an office), as the practice system numbers it.
    LocationId
);
string_id!(
    /// A patient's id in the practice system. Opaque; not PHI by itself.
    PatientId
);
string_id!(
    /// A treatment plan's (case's) id in the practice system.
    PlanId
);
string_id!(
    /// A lender plug-in's stable id (`carecredit`, `sunbit`, `inhouse`), as used in configuration.
    LenderId
);
string_id!(
    /// Our reference for one financing application, carried through every lender call
    /// (CareCredit's partner transaction id, Sunbit's referral). Derived from the workflow, so a
    /// retried start finds the existing session instead of opening a second.
    ApplicationRef
);
string_id!(
    /// The lender's own id for an application, session or purchase.
    LenderReference
);
