//! Typed NexHealth ids. NexHealth sends ids as JSON numbers; they are kept as their decimal text so
//! that a change to string ids does not break callers.

connector_transport::id_newtype! {
    /// A NexHealth location (an office), sent as `location_id`.
    pub struct LocationId(String);
}
connector_transport::id_newtype! {
    /// A treatment plan.
    pub struct TreatmentPlanId(String);
}
connector_transport::id_newtype! {
    /// A patient.
    pub struct PatientId(String);
}
connector_transport::id_newtype! {
    /// A procedure of a plan.
    pub struct ProcedureId(String);
}
connector_transport::id_newtype! {
    /// An appointment.
    pub struct AppointmentId(String);
}
connector_transport::id_newtype! {
    /// A provider.
    pub struct ProviderId(String);
}
connector_transport::id_newtype! {
    /// A registered webhook endpoint.
    pub struct WebhookEndpointId(String);
}
connector_transport::id_newtype! {
    /// A webhook subscription of an endpoint.
    pub struct WebhookSubscriptionId(String);
}
connector_transport::id_newtype! {
    /// A communication log entry (the ledger note).
    pub struct CommunicationLogId(String);
}

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

connector_transport::id_newtype! {
    /// A webhook delivery, for deduplication.
    pub struct DeliveryId(String);
}
connector_transport::id_newtype! {
    /// The id of the resource a webhook event is about (a plan, a communication log, a payment).
    pub struct ResourceId(String);
}
