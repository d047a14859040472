//! Typed identifiers. A bare `String` never crosses the crate boundary.

connector_transport::id_newtype! {
    /// Sunbit's id for a purchase (a prequalification or a transaction): the key for status, void
    /// and refund.
    pub struct PurchaseId(String);
}
connector_transport::id_newtype! {
    /// The merchant location as registered with Sunbit: the tenancy key of every call. One per
    /// practice location.
    pub struct SunbitLocation(String);
}
