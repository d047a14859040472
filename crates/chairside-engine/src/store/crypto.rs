//! Data at rest: XChaCha20-Poly1305 with keys from the configuration, and a keyed hash for
//! looking phone numbers up without storing them in clear.
//!
//! A [`Keyring`] holds the current key and the previous ones by id. Every value it seals starts
//! with a version byte and the id of the key that sealed it, so rows sealed before a rotation
//! still open, and `chairside rotate-key` can find the rows that are not yet under the current key.

use std::collections::BTreeMap;

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
    /// Sealing failed (a value above [`MAX_PLAINTEXT`] or a cipher fault): nothing is written.
    #[error("a value could not be encrypted, so it was not written")]
    Encrypt,
    /// The value was sealed with a key id the keyring does not hold.
    #[error("sealed with data key id {0}, which is not configured (add it to previous_data_keys)")]
    UnknownKey(u8),
    /// The keyring was given the same key id twice.
    #[error("data key id {0} is configured twice")]
    DuplicateKeyId(u8),
    /// A column that must hold a sealed value holds something else (plain text, or no header).
    #[error("a stored value is not sealed")]
    NotSealed,
}

/// The largest plaintext [`DataKey::seal`] accepts. A workflow document this large is a bug; the
/// limit makes the write fail instead of storing it.
pub const MAX_PLAINTEXT: usize = 1 << 20;

/// The first byte of a value sealed by a [`Keyring`]: the format, then the key id.
const SEALED_V1: u8 = 1;
/// The first byte a migration put in front of patient contacts sealed before key ids existed.
const SEALED_LEGACY: u8 = 0;

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
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`] for a plaintext above [`MAX_PLAINTEXT`] or a cipher fault: the
    /// caller must not store anything.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(CryptoError::Encrypt);
        }
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = chacha20poly1305::aead::Payload {
            msg: plaintext,
            aad: associated,
        };
        let sealed = self
            .cipher()
            .encrypt(&nonce, payload)
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
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

/// The current data key and the previous ones, by id. Its `Debug` prints only the ids.
pub struct Keyring {
    current: u8,
    keys: BTreeMap<u8, DataKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("ids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl From<DataKey> for Keyring {
    /// One key, with id 0 (the id a key has when the configuration names none).
    fn from(key: DataKey) -> Self {
        Self::new(0, key)
    }
}

impl Keyring {
    /// A keyring whose current key is `key` with id `id`.
    pub fn new(id: u8, key: DataKey) -> Self {
        Self {
            current: id,
            keys: BTreeMap::from([(id, key)]),
        }
    }

    /// Adds a previous key: values sealed with it still open; nothing new is sealed with it.
    ///
    /// # Errors
    /// [`CryptoError::DuplicateKeyId`] when `id` is already in the ring.
    pub fn with_previous(mut self, id: u8, key: DataKey) -> Result<Self, CryptoError> {
        if self.keys.contains_key(&id) {
            return Err(CryptoError::DuplicateKeyId(id));
        }
        self.keys.insert(id, key);
        Ok(self)
    }

    /// The id new values are sealed with.
    pub fn current_id(&self) -> u8 {
        self.current
    }

    /// The header every value sealed under the current key starts with.
    pub fn current_header(&self) -> [u8; 2] {
        [SEALED_V1, self.current]
    }

    fn current_key(&self) -> &DataKey {
        // `new` inserts the current key and nothing removes it.
        &self.keys[&self.current]
    }

    /// Seals `plaintext` under the current key: version || key id || nonce || ciphertext.
    ///
    /// # Errors
    /// [`CryptoError::Encrypt`]: nothing may be stored.
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let body = self.current_key().seal(plaintext, associated)?;
        let mut out = Vec::with_capacity(body.len() + 2);
        out.extend(self.current_header());
        out.extend(body);
        Ok(out)
    }

    /// The id of the key that sealed `sealed`, or `None` for the legacy format (no key id).
    ///
    /// # Errors
    /// [`CryptoError::NotSealed`] when the value has no known header.
    pub fn key_id(sealed: &[u8]) -> Result<Option<u8>, CryptoError> {
        match sealed {
            [SEALED_V1, id, ..] => Ok(Some(*id)),
            [SEALED_LEGACY, ..] => Ok(None),
            _ => Err(CryptoError::NotSealed),
        }
    }

    /// Opens a value sealed by [`Keyring::seal`] with any key in the ring, or a legacy value
    /// (sealed before key ids existed) with whichever key opens it.
    ///
    /// # Errors
    /// [`CryptoError::UnknownKey`] for a key id not in the ring, [`CryptoError::NotSealed`] for
    /// a value without a header, [`CryptoError::Decrypt`] for a wrong key, wrong associated data
    /// or tampered bytes.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match Self::key_id(sealed)? {
            Some(id) => self
                .keys
                .get(&id)
                .ok_or(CryptoError::UnknownKey(id))?
                .open(&sealed[2..], associated),
            None => self
                .keys
                .values()
                .find_map(|k| k.open(&sealed[1..], associated).ok())
                .ok_or(CryptoError::Decrypt),
        }
    }

    /// The keyed hash of `value` under the current key.
    pub fn lookup_key(&self, value: &str) -> String {
        self.current_key().lookup_key(value)
    }

    /// The keyed hash of `value` under every key, the current one first: a value recorded
    /// before a rotation is still found.
    pub fn lookup_keys(&self, value: &str) -> Vec<String> {
        let mut out = vec![self.lookup_key(value)];
        out.extend(
            self.keys
                .iter()
                .filter(|(id, _)| **id != self.current)
                .map(|(_, k)| k.lookup_key(value)),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_with_the_same_key_and_context_only() {
        let key = DataKey::generate();
        let sealed = key.seal(b"Janet Doeberg", b"practice-1/p-1").unwrap();
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

    #[test]
    fn a_plaintext_above_the_limit_is_refused_instead_of_sealed() {
        let ring = Keyring::from(DataKey::generate());
        let huge = vec![b'x'; MAX_PLAINTEXT + 1];
        assert!(matches!(
            ring.seal(&huge, b"t:1"),
            Err(CryptoError::Encrypt)
        ));
    }

    #[test]
    fn a_value_sealed_under_a_previous_key_opens_and_an_unknown_key_id_is_named() {
        let a = "11".repeat(32);
        let b = "22".repeat(32);
        let old = Keyring::new(1, DataKey::parse(&a).unwrap());
        let sealed = old.seal(b"Janet", b"t:1").unwrap();
        assert_eq!(Keyring::key_id(&sealed).unwrap(), Some(1));
        let ring = Keyring::new(2, DataKey::parse(&b).unwrap())
            .with_previous(1, DataKey::parse(&a).unwrap())
            .unwrap();
        assert_eq!(ring.open(&sealed, b"t:1").unwrap(), b"Janet");
        assert_eq!(
            Keyring::key_id(&ring.seal(b"x", b"t:1").unwrap()).unwrap(),
            Some(2)
        );
        let without = Keyring::new(2, DataKey::parse(&b).unwrap());
        assert!(matches!(
            without.open(&sealed, b"t:1"),
            Err(CryptoError::UnknownKey(1))
        ));
        assert!(format!("{ring:?}").contains("ids"));
        assert!(!format!("{ring:?}").contains("11"));
    }
}
