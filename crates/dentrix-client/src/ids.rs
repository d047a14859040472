//! Typed Dentrix Ascend ids. Ascend sends most ids as JSON numbers; they are kept as their decimal
//! text so that a change to string ids does not break callers.

connector_transport::id_newtype! {
    /// The organization (a customer of Henry Schein One), sent as `Organization-ID` on every call.
    pub struct OrganizationId(String);
}
connector_transport::id_newtype! {
    /// A treatment-plan case (`TxCaseV1`).
    pub struct TxCaseId(String);
}
connector_transport::id_newtype! {
    /// A patient.
    pub struct PatientId(String);
}
connector_transport::id_newtype! {
    /// A patient procedure (`PatientProcedureV1`).
    pub struct ProcedureId(String);
}
connector_transport::id_newtype! {
    /// A visit of a case (`VisitV1`).
    pub struct VisitId(String);
}
connector_transport::id_newtype! {
    /// An appointment.
    pub struct AppointmentId(String);
}
connector_transport::id_newtype! {
    /// A note on the patient's record.
    pub struct NoteId(String);
}

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
