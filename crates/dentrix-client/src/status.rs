//! A treatment-plan case's status.
//!
//! A leaf module: [`crate::wire`] maps the vendor's values onto it, and the resource module
//! gives it its methods, so neither imports the other for it.

/// A case's status. Open: a value we do not know is kept raw, never a decode failure.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CaseStatus {
    /// Created, not yet presented (`NEW`, the only value seen in public evidence).
    New,
    /// Presented to the patient.
    Proposed,
    /// The patient accepted the case: the one status Chairside acts on.
    Accepted,
    /// The patient rejected the case.
    Rejected,
    /// Treatment is done.
    Completed,
    /// A value this crate does not know, as Ascend sent it.
    Unknown(String),
}
