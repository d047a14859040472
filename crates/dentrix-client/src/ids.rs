//! Typed Dentrix Ascend ids. Ascend sends most ids as JSON numbers; they are kept as their decimal
//! text so that a change to string ids does not break callers.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a raw id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The raw id.
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
    /// The organization (a customer of Henry Schein One), sent as `Organization-ID` on every call.
    OrganizationId
);
string_id!(
    /// A treatment-plan case (`TxCaseV1`).
    TxCaseId
);
string_id!(
    /// A patient.
    PatientId
);
string_id!(
    /// A patient procedure (`PatientProcedureV1`).
    ProcedureId
);
string_id!(
    /// A visit of a case (`VisitV1`).
    VisitId
);
string_id!(
    /// An appointment.
    AppointmentId
);
string_id!(
    /// A note on the patient's record.
    NoteId
);

impl From<TxCaseId> for financing_core::PlanId {
    fn from(id: TxCaseId) -> Self {
        financing_core::PlanId::new(id.0)
    }
}

impl From<PatientId> for financing_core::PatientId {
    fn from(id: PatientId) -> Self {
        financing_core::PatientId::new(id.0)
    }
}

impl From<&financing_core::PatientId> for PatientId {
    fn from(id: &financing_core::PatientId) -> Self {
        PatientId::new(id.as_str())
    }
}

impl From<&financing_core::PlanId> for TxCaseId {
    fn from(id: &financing_core::PlanId) -> Self {
        TxCaseId::new(id.as_str())
    }
}
