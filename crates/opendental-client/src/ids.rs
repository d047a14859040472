//! Typed Open Dental ids: the database primary keys, `u64` newtypes.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! num_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw key.
            pub const fn new(id: u64) -> Self {
                Self(id)
            }

            /// The raw key.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<u64> for $name {
            fn from(id: u64) -> Self {
                Self(id)
            }
        }
    };
}

num_id!(
    /// A patient (`patient.PatNum`).
    PatNum
);
num_id!(
    /// A treatment plan (`treatplan.TreatPlanNum`).
    TreatPlanNum
);
num_id!(
    /// A procedure copied onto a Saved treatment plan (`proctp.ProcTPNum`).
    ProcTpNum
);
num_id!(
    /// A procedure (`procedurelog.ProcNum`).
    ProcNum
);
num_id!(
    /// A procedure attached to an Active or Inactive plan (`treatplanattach.TreatPlanAttachNum`).
    TreatPlanAttachNum
);
num_id!(
    /// A communication-log entry (`commlog.CommlogNum`).
    CommlogNum
);
num_id!(
    /// A patient payment (`payment.PayNum`).
    PayNum
);
num_id!(
    /// A procedure code row (`procedurecode.CodeNum`).
    CodeNum
);
num_id!(
    /// A provider (`provider.ProvNum`).
    ProvNum
);
num_id!(
    /// A clinic (`clinic.ClinicNum`); offices without clinics use none.
    ClinicNum
);
num_id!(
    /// An appointment (`appointment.AptNum`).
    AptNum
);
num_id!(
    /// An office-defined list entry (`definition.DefNum`), such as a priority or payment type.
    DefNum
);

impl PatNum {
    /// The patient id in the shared domain's form.
    pub fn to_patient_id(self) -> financing_core::PatientId {
        financing_core::PatientId::new(self.0.to_string())
    }
}

impl TreatPlanNum {
    /// The plan id in the shared domain's form.
    pub fn to_plan_id(self) -> financing_core::PlanId {
        financing_core::PlanId::new(self.0.to_string())
    }
}
