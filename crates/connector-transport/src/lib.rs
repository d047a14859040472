//! What every Chairside HTTP connector shares, once: the default HTTP client, which follows no
//! redirect ([`client_builder`]), the retry policy ([`RetryPolicy`], capped
//! below the runner's 60 s lease), the `Retry-After` reader ([`retry_after`]), the OAuth2 token
//! cache ([`TokenCache`], [`ClientCredentials`]), JSON decoding whose errors name the field path
//! and never the value ([`decode_json`]), and the id-newtype macro ([`id_newtype!`]).
//!
//! It holds no domain and knows no vendor: each connector keeps its own error table and maps it
//! to a [`RetryHint`] through [`Retryable`], and keeps its vendor's field names in its `wire.rs`.
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use connector_transport::{RetryHint, RetryPolicy, Retryable, decode_json, retry_after};
//!
//! #[derive(Debug)]
//! enum Error { Busy(Option<Duration>), Other }
//!
//! impl Retryable for Error {
//!     fn retry_hint(&self) -> RetryHint {
//!         match self {
//!             Error::Busy(after) => RetryHint::Retry { after: *after },
//!             Error::Other => RetryHint::Stop,
//!         }
//!     }
//! }
//!
//! # async fn run(http: reqwest::Client) -> Result<(), Error> {
//! // A GET is idempotent: let the shared policy retry it.
//! let body: serde_json::Value = RetryPolicy::default()
//!     .run(|_attempt| async {
//!         let resp = http.get("https://api.example.test/v1/things").send().await
//!             .map_err(|_| Error::Busy(None))?;
//!         if resp.status().as_u16() == 429 {
//!             return Err(Error::Busy(retry_after(resp.headers())));
//!         }
//!         let bytes = resp.bytes().await.map_err(|_| Error::Busy(None))?;
//!         decode_json(&bytes).map_err(|_| Error::Other)
//!     })
//!     .await?;
//! # let _ = body; Ok(()) }
//! ```
//!
//! # Features
//!
//! Everything but the macro sits behind the default feature `http`. `financing-core`, which must
//! stay free of HTTP, depends on this crate with `default-features = false` for the macro alone.
//! The other way round (the macro in `financing-core`, re-exported here) would make this
//! vendor-neutral transport depend on the domain; this way the macro is defined once, in the crate
//! that owns "what every client repeats", and the domain pulls in only serde.

#[cfg(feature = "http")]
mod client;
mod id;

#[cfg(feature = "http")]
mod json;
#[cfg(feature = "http")]
mod retry;
#[cfg(feature = "http")]
mod retry_after;
#[cfg(feature = "http")]
mod token;

#[cfg(feature = "http")]
pub use client::client_builder;
#[cfg(feature = "http")]
pub use json::{
    DecodeError, DecodeProblem, TolerantList, UnreadableItem, decode_each, decode_json,
    decode_list_tolerant, decode_value, field_text,
};
#[cfg(feature = "http")]
pub use retry::{RetryHint, RetryPolicy, Retryable};
#[cfg(feature = "http")]
pub use retry_after::{parse_retry_after, retry_after};
#[cfg(feature = "http")]
pub use token::{
    AccessToken, BodyFormat, ClientCredentials, CredentialPlacement, FreshToken, TokenCache,
    TokenError,
};
