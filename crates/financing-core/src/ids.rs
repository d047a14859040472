//! Typed identifiers shared across crates. A bare `String` never crosses a crate boundary.

connector_transport::id_newtype! {
    /// A practice (a customer of Chairside), as named in the configuration.
    pub struct PracticeId(String);
}
connector_transport::id_newtype! {
    /// A practice location (an office), as the practice system numbers it.
    pub struct LocationId(String);
}
connector_transport::id_newtype! {
    /// A patient's id in the practice system. Opaque; not PHI by itself.
    pub struct PatientId(String);
}
connector_transport::id_newtype! {
    /// A treatment plan's (case's) id in the practice system.
    pub struct PlanId(String);
}
connector_transport::id_newtype! {
    /// A lender plug-in's stable id (`carecredit`, `sunbit`, `inhouse`), as used in configuration.
    pub struct LenderId(String);
}
connector_transport::id_newtype! {
    /// Our reference for one financing application, carried through every lender call
    /// (CareCredit's partner transaction id, Sunbit's referral). Derived from the workflow, so a
    /// retried start finds the existing session instead of opening a second.
    pub struct ApplicationRef(String);
}
connector_transport::id_newtype! {
    /// The lender's own id for an application, session or purchase.
    pub struct LenderReference(String);
}
