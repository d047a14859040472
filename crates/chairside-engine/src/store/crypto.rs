//! Patient contact fields at rest: XChaCha20-Poly1305 with a key from the configuration, and a
//! keyed hash for looking phone numbers up without storing them in clear.

use chacha20poly1305::aead::{Aead, KeyInit, OsRng};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

/// Why the key or a ciphertext was refused. Never carries plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The configured key is not 32 bytes of hex or base64.
    #[error("the data key must be 32 bytes, given as 64 hex characters or base64")]
    BadKey,
    /// A stored value failed authentication (wrong key, or tampered data).
    #[error("a stored patient record could not be decrypted (wrong data key or tampered data)")]
    Decrypt,
}

/// The data key. Its `Debug` prints nothing of the key.
pub struct DataKey {
    key: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A key from 64 hex characters or standard base64 of 32 bytes.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`].
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        use base64::Engine as _;
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .ok_or(CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self {
            key: SecretBox::new(Box::new(key)),
        })
    }

    /// A fresh random key (the demo and tests).
    pub fn generate() -> Self {
        let key: [u8; 32] = XChaCha20Poly1305::generate_key(&mut OsRng).into();
        Self {
            key: SecretBox::new(Box::new(key)),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.key.expose_secret().into())
    }

    /// Encrypts `plaintext`; the output is nonce || ciphertext.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = chacha20poly1305::aead::Payload {
            msg: plaintext,
            aad: associated,
        };
        // Encryption with a valid key and a fresh nonce cannot fail for in-memory buffers.
        let sealed = self.cipher().encrypt(&nonce, payload).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    /// Decrypts what [`DataKey::seal`] produced with the same associated data.
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] for a wrong key, wrong associated data or tampered bytes.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 24 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, body) = sealed.split_at(24);
        let payload = chacha20poly1305::aead::Payload {
            msg: body,
            aad: associated,
        };
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// A keyed hash (HMAC-SHA256, hex) for looking values up without storing them.
    pub fn lookup_key(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"lookup:");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_the_same_key_and_context_only() {
        let key = DataKey::generate();
        let sealed = key.seal(b"Janet Doeberg", b"practice-1/p-1");
        assert!(
            !sealed.windows(5).any(|w| w == b"Janet"),
            "plaintext must not appear"
        );
        assert_eq!(
            key.open(&sealed, b"practice-1/p-1").unwrap(),
            b"Janet Doeberg"
        );
        assert!(
            key.open(&sealed, b"practice-1/p-2").is_err(),
            "bound to its row"
        );
        assert!(
            DataKey::generate()
                .open(&sealed, b"practice-1/p-1")
                .is_err()
        );
        let mut tampered = sealed.clone();
        tampered[30] ^= 1;
        assert!(key.open(&tampered, b"practice-1/p-1").is_err());
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_never_print() {
        let hex_key = "00".repeat(32);
        let key = DataKey::parse(&hex_key).unwrap();
        assert_eq!(format!("{key:?}"), "DataKey(..)");
        assert!(DataKey::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert!(matches!(DataKey::parse("short"), Err(CryptoError::BadKey)));
        assert_eq!(
            key.lookup_key("+15555550100"),
            key.lookup_key("+15555550100")
        );
        assert_ne!(
            key.lookup_key("+15555550100"),
            key.lookup_key("+15555550101")
        );
    }
}
