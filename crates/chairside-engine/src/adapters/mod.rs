//! Adapters from the connector crates to the runner's ports.

pub mod dentrix;
pub mod messaging;
pub mod nexhealth;
pub mod opendental;
pub mod stripe;

use financing_core::{Classify, ErrorKind, ProviderError};

use crate::ports::ExternalError;

/// Wraps a classified connector error.
pub(crate) fn external<E>(err: E) -> ExternalError
where
    E: Classify + std::error::Error + Send + Sync + 'static,
{
    ProviderError::from_classified(err)
}

/// A permanent error for data the adapter itself finds wrong (no PHI in `message`).
pub(crate) fn invalid(message: impl Into<String>) -> ExternalError {
    ProviderError::new(ErrorKind::Permanent, message.into())
}
