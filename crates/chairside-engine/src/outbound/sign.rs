//! Standard Webhooks signatures (spec v1.0.0, `standard-webhooks/standard-webhooks`,
//! `spec/standard-webhooks.md`): `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}">`, the secret written `whsec_<base64 of 24 to 64
//! random bytes>`.
//!
//! Written here over RustCrypto's `hmac` and `sha2` (already in the workspace) rather than with
//! the `standardwebhooks` crate: its last release (1.0.1, March 2024) trails its repository and
//! pulls a second `base64`. The tests verify our signatures with that crate, as a receiver would.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use sha2::Sha256;

/// The header names.
pub const HEADER_ID: &str = "webhook-id";
/// The attempt's Unix time in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// `v1,<base64>`.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Why a secret was refused. Never names the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// It does not start with `whsec_`.
    #[error("a webhook secret starts with whsec_")]
    Prefix,
    /// What follows `whsec_` is not base64.
    #[error("a webhook secret is whsec_ followed by base64")]
    Base64,
    /// The decoded key is not 24 to 64 bytes.
    #[error("a webhook secret is 24 to 64 random bytes; this one is {0}")]
    Length(usize),
}

/// A signing secret (`whsec_…`), decoded once, never printed.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    ///
    /// # Errors
    /// [`SecretError`]: no prefix, not base64, or not 24 to 64 bytes.
    pub fn parse(text: &SecretString) -> Result<Self, SecretError> {
        let text = text.expose_secret().trim();
        let b64 = text.strip_prefix("whsec_").ok_or(SecretError::Prefix)?;
        let key = B64.decode(b64).map_err(|_| SecretError::Base64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self(key.into()))
    }

    /// A fresh random secret, written out (`chairside` prints it for an operator to hand to the
    /// subscriber).
    pub fn generate() -> SecretString {
        SecretString::from(format!("whsec_{}", B64.encode(rand::random::<[u8; 32]>())))
    }

    /// The `webhook-signature` value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // The key is 24 to 64 bytes: HMAC takes any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> WebhookSecret {
        // 24 made-up bytes.
        WebhookSecret::parse(&SecretString::from(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
        ))
        .unwrap()
    }

    #[test]
    fn a_secret_without_the_prefix_or_of_the_wrong_size_is_refused() {
        let parse = |s: &str| WebhookSecret::parse(&SecretString::from(s.to_owned())).err();
        assert_eq!(
            parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Some(SecretError::Prefix)
        );
        assert_eq!(parse("whsec_not base64!"), Some(SecretError::Base64));
        assert_eq!(parse("whsec_c2hvcnQ="), Some(SecretError::Length(5)));
        assert_eq!(parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None);
    }

    #[test]
    fn the_signature_matches_the_specs_published_example() {
        // The example in the Standard Webhooks spec and its reference libraries.
        let s = secret();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            s.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn the_secret_is_never_printed() {
        assert_eq!(format!("{:?}", secret()), "WebhookSecret([redacted])");
    }

    #[test]
    fn a_generated_secret_parses() {
        assert!(WebhookSecret::parse(&WebhookSecret::generate()).is_ok());
    }
}
