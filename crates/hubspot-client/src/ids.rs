//! Typed identifiers. A bare `String` never crosses the crate boundary.

connector_transport::id_newtype! {
    /// HubSpot's internal id of a contact.
    pub struct ContactId(String);
}
connector_transport::id_newtype! {
    /// HubSpot's internal id of a deal.
    pub struct DealId(String);
}
connector_transport::id_newtype! {
    /// HubSpot's internal id of a task.
    pub struct TaskId(String);
}
connector_transport::id_newtype! {
    /// The internal id of a deal stage (a pipeline's stage, as HubSpot's pipelines API lists it;
    /// the default pipeline's are words like `appointmentscheduled`, custom ones are numbers).
    pub struct StageId(String);
}
