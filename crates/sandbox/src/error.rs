//! The sandbox's error type.

use crate::fault::System;

/// Why a sandbox call failed. Messages name the operation, never patient data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// A stand-in could not bind its loopback port.
    #[error("binding the {system} stand-in failed")]
    Bind {
        /// The stand-in (`smtp` for the mail sink).
        system: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The Stripe JSON Lines request log could not be opened.
    #[error("opening the Stripe request log failed")]
    RequestLog(#[source] std::io::Error),
    /// No seeded patient has that key.
    #[error("unknown patient key")]
    UnknownPatient,
    /// No seeded plan has that key.
    #[error("unknown plan key")]
    UnknownPlan,
    /// No object with that id exists in the stand-in.
    #[error("{system}: no such {kind}")]
    NotFound {
        /// The stand-in.
        system: System,
        /// What was looked up (`application`, `invoice`, ...).
        kind: &'static str,
    },
    /// A seed was not usable.
    #[error("invalid seed: {0}")]
    InvalidSeed(&'static str),
    /// The operation is not possible in the object's current state.
    #[error("{system}: {what}")]
    InvalidState {
        /// The stand-in.
        system: System,
        /// What was wrong.
        what: &'static str,
    },
}
