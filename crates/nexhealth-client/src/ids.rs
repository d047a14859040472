//! Typed NexHealth ids. NexHealth sends ids as JSON numbers; they are kept as their decimal text so
//! that a change to string ids does not break callers.

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
    /// A NexHealth location (an office), sent as `location_id`.
    LocationId
);
string_id!(
    /// A treatment plan.
    TreatmentPlanId
);
string_id!(
    /// A patient.
    PatientId
);
string_id!(
    /// A procedure of a plan.
    ProcedureId
);
string_id!(
    /// An appointment.
    AppointmentId
);
string_id!(
    /// A provider.
    ProviderId
);
string_id!(
    /// A registered webhook endpoint.
    WebhookEndpointId
);
string_id!(
    /// A webhook subscription of an endpoint.
    WebhookSubscriptionId
);
string_id!(
    /// A communication log entry (the ledger note).
    CommunicationLogId
);

impl From<TreatmentPlanId> for financing_core::PlanId {
    fn from(id: TreatmentPlanId) -> Self {
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

impl From<&financing_core::PlanId> for TreatmentPlanId {
    fn from(id: &financing_core::PlanId) -> Self {
        TreatmentPlanId::new(id.as_str())
    }
}

string_id!(
    /// A webhook delivery, for deduplication.
    DeliveryId
);
string_id!(
    /// The id of the resource a webhook event is about (a plan, a communication log, a payment).
    ResourceId
);
