//! A treatment plan's status.
//!
//! A leaf module: [`crate::wire`] maps the vendor's values onto it, and the resource module
//! gives it its methods, so neither imports the other for it.

/// A plan's status. Open: a value we do not know is kept raw, never a decode failure.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PlanStatus {
    /// `not_applicable`.
    NotApplicable,
    /// `proposed`.
    Proposed,
    /// `accepted`: the one status Chairside acts on.
    Accepted,
    /// `rejected`.
    Rejected,
    /// `completed`.
    Completed,
    /// A value this crate does not know, as NexHealth sent it (empty when the status was null).
    Unknown(String),
}
