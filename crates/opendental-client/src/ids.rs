//! Typed Open Dental ids: the database primary keys, `u64` newtypes.

connector_transport::id_newtype! {
    /// A patient (`patient.PatNum`).
    pub struct PatNum(u64);
}
connector_transport::id_newtype! {
    /// A treatment plan (`treatplan.TreatPlanNum`).
    pub struct TreatPlanNum(u64);
}
connector_transport::id_newtype! {
    /// A procedure copied onto a Saved treatment plan (`proctp.ProcTPNum`).
    pub struct ProcTpNum(u64);
}
connector_transport::id_newtype! {
    /// A procedure (`procedurelog.ProcNum`).
    pub struct ProcNum(u64);
}
connector_transport::id_newtype! {
    /// A procedure attached to an Active or Inactive plan (`treatplanattach.TreatPlanAttachNum`).
    pub struct TreatPlanAttachNum(u64);
}
connector_transport::id_newtype! {
    /// A communication-log entry (`commlog.CommlogNum`).
    pub struct CommlogNum(u64);
}
connector_transport::id_newtype! {
    /// A patient payment (`payment.PayNum`).
    pub struct PayNum(u64);
}
connector_transport::id_newtype! {
    /// A procedure code row (`procedurecode.CodeNum`).
    pub struct CodeNum(u64);
}
connector_transport::id_newtype! {
    /// A provider (`provider.ProvNum`).
    pub struct ProvNum(u64);
}
connector_transport::id_newtype! {
    /// A clinic (`clinic.ClinicNum`); offices without clinics use none.
    pub struct ClinicNum(u64);
}
connector_transport::id_newtype! {
    /// An appointment (`appointment.AptNum`).
    pub struct AptNum(u64);
}
connector_transport::id_newtype! {
    /// An office-defined list entry (`definition.DefNum`), such as a priority or payment type.
    pub struct DefNum(u64);
}

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
