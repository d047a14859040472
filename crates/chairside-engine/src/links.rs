//! Patient page links and their tokens. [`PatientLinks`] builds `/p/{token}` URLs; a token is
//! `base64url(expiry "." generation "." workflow id) "." base64url(HMAC-SHA256)`.
//!
//! A token is bound to one workflow, one link generation and one expiry; the MAC covers all three
//! (with a domain label, so a MAC made with the same key for another purpose, or a token of the
//! earlier format, never verifies here). Verification checks the MAC in constant time before it
//! reads anything else, then the expiry. The generation is checked against the store by the
//! caller ([`LinkStore`](crate::store::LinkStore)): cancelling a workflow bumps it, which revokes
//! every link issued for that workflow and no other.
//!
//! Lenders get [`PatientLinks::return_link`], `/r/{reference}`: an opaque reference that the
//! HTTP surface maps to the workflow and exchanges for a freshly issued link, so no patient token
//! ever leaves for a third party.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use chairside_workflow::WorkflowId;
use url::Url;

/// Builds signed, expiring patient page links (`/p/{token}`), bound to one workflow.
#[derive(Clone)]
pub struct PatientLinks {
    base: Url,
    key: secrecy::SecretString,
    lifetime: chrono::Duration,
}

impl std::fmt::Debug for PatientLinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatientLinks")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl PatientLinks {
    /// Links under `public_base_url` (the HTTP surface's), signed with `key`, valid `lifetime`.
    pub fn new(public_base_url: Url, key: secrecy::SecretString, lifetime: Duration) -> Self {
        Self {
            base: public_base_url,
            key,
            lifetime: chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::days(7)),
        }
    }

    /// The patient page of `workflow` at link `generation` (the store's current one), as of `now`.
    pub fn link(&self, workflow: &WorkflowId, generation: u64, now: DateTime<Utc>) -> Url {
        let token = sign_patient_token(workflow, generation, now + self.lifetime, &self.key);
        under(&self.base, &format!("p/{token}"))
    }

    /// The patient's own intake page of intake `intake` (`/i/{token}`): the token is derived from
    /// the intake id under this key ([`crate::intake::intake_link_token`]), so a send and every
    /// re-send rebuild the same link without it being stored.
    pub fn intake_link(&self, intake: &str) -> Url {
        under(
            &self.base,
            &format!("i/{}", crate::intake::intake_link_token(intake, &self.key)),
        )
    }

    /// The lender return URL for an opaque return `reference`: `/r/{reference}`. It carries no
    /// token; the HTTP surface exchanges it for a fresh patient page link.
    pub fn return_link(&self, reference: &str) -> Url {
        under(&self.base, &format!("r/{reference}"))
    }
}

/// `rest` under the base URL's path, without a query.
pub fn under(base: &Url, rest: &str) -> Url {
    let mut url = base.clone();
    let path = format!("{}/{rest}", url.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url
}

/// Separates the uses of the key: bump the version to retire every token at once. v2 added the
/// link generation.
const DOMAIN: &[u8] = b"chairside/patient-page/v2\0";
/// Longer than any token we make; anything longer is refused before any work.
const MAX_TOKEN_LEN: usize = 256;
/// The longest workflow id accepted inside a token.
const MAX_ID_LEN: usize = 64;

/// Why a patient token was refused. The page shows the same plain error for every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a token of ours (wrong shape, bad encoding, too long).
    #[error("malformed patient token")]
    Malformed,
    /// The MAC does not match: tampered, or signed with another key.
    #[error("patient token signature does not match")]
    BadSignature,
    /// Genuine but past its expiry.
    #[error("patient token expired")]
    Expired,
}

fn mac(payload: &str, key: &SecretString) -> [u8; 32] {
    // The one place the patient-page key is exposed: as the HMAC key.
    let mut m = Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(DOMAIN);
    m.update(payload.as_bytes());
    m.finalize().into_bytes().into()
}

/// What a genuine token says. Its generation still has to match the store's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatientToken {
    /// The workflow it is bound to.
    pub workflow: WorkflowId,
    /// The link generation it was issued at.
    pub generation: u64,
    /// When it stops being valid.
    pub expires_at: DateTime<Utc>,
}

/// Signs a patient-page token for `workflow` at link `generation`, valid until `expires_at`.
pub fn sign_patient_token(
    workflow: &WorkflowId,
    generation: u64,
    expires_at: DateTime<Utc>,
    key: &SecretString,
) -> String {
    let payload = B64.encode(format!(
        "{}.{generation}.{workflow}",
        expires_at.timestamp()
    ));
    let sig = B64.encode(mac(&payload, key));
    format!("{payload}.{sig}")
}

/// Verifies a patient-page token at `now`: genuine and not expired. The caller still checks
/// [`PatientToken::generation`] against the store.
///
/// # Errors
/// [`TokenError::Malformed`], [`TokenError::BadSignature`] or [`TokenError::Expired`].
pub fn verify_patient_token(
    token: &str,
    key: &SecretString,
    now: DateTime<Utc>,
) -> Result<PatientToken, TokenError> {
    let token = read_patient_token(token, key)?;
    if now >= token.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(token)
}

/// Checks a patient-page token's MAC and reads it, whatever its expiry: what the expired page's
/// "send me a new link" form needs to know which workflow to ask for.
///
/// # Errors
/// [`TokenError::Malformed`] or [`TokenError::BadSignature`].
pub fn read_patient_token(token: &str, key: &SecretString) -> Result<PatientToken, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
    if !bool::from(mac(payload, key).as_slice().ct_eq(&sig)) {
        return Err(TokenError::BadSignature);
    }
    let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
    let payload = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
    let mut parts = payload.splitn(3, '.');
    let (Some(expiry), Some(generation), Some(id)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let expiry: i64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    let expires_at = DateTime::from_timestamp(expiry, 0).ok_or(TokenError::Malformed)?;
    let generation: u64 = generation.parse().map_err(|_| TokenError::Malformed)?;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::Malformed);
    }
    Ok(PatientToken {
        workflow: WorkflowId::new(id),
        generation,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SecretString {
        SecretString::from("patient-page-key-for-tests-only-0123456789")
    }

    fn wf() -> WorkflowId {
        WorkflowId::new("wf_0123456789abcdef01234567")
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_token_verifies_to_its_workflow_until_it_expires() {
        // Arrange
        let token = sign_patient_token(&wf(), 3, at(2_000_000_000), &key());
        // Act and assert
        assert_eq!(
            verify_patient_token(&token, &key(), at(1_999_999_999))
                .map(|t| (t.workflow, t.generation)),
            Ok((wf(), 3))
        );
        assert_eq!(
            verify_patient_token(&token, &key(), at(2_000_000_000)),
            Err(TokenError::Expired)
        );
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
    }

    #[test]
    fn another_key_a_swapped_payload_or_junk_is_refused() {
        let token = sign_patient_token(&wf(), 0, at(2_000_000_000), &key());
        let other = SecretString::from("another-key-another-key-another-key-0000");
        assert_eq!(
            verify_patient_token(&token, &other, at(0)),
            Err(TokenError::BadSignature)
        );
        // A payload naming another workflow under the first token's signature.
        let (_, sig) = token.split_once('.').unwrap();
        let forged = format!(
            "{}.{sig}",
            B64.encode("2000000000.0.wf_ffffffffffffffffffffffff")
        );
        assert_eq!(
            verify_patient_token(&forged, &key(), at(0)),
            Err(TokenError::BadSignature)
        );
        for junk in ["", "no-dot", "a.b", "a.b!", &"x".repeat(300)] {
            assert_eq!(
                verify_patient_token(junk, &key(), at(0)),
                Err(TokenError::Malformed),
                "{junk}"
            );
        }
        for unsigned in [".", "e30.", "e30.AAAA"] {
            assert_eq!(
                verify_patient_token(unsigned, &key(), at(0)),
                Err(TokenError::BadSignature),
                "{unsigned}"
            );
        }
    }

    #[test]
    fn a_raised_generation_cannot_be_forged_under_the_old_signature() {
        // Arrange: a genuine generation-0 token, its payload rewritten to generation 1.
        let token = sign_patient_token(&wf(), 0, at(2_000_000_000), &key());
        let (_, sig) = token.split_once('.').unwrap();
        let forged = format!("{}.{sig}", B64.encode(format!("2000000000.1.{}", wf())));
        // Act and assert
        assert_eq!(
            verify_patient_token(&forged, &key(), at(0)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn a_token_of_the_first_format_no_longer_verifies() {
        // Arrange: a v1 token, signed as v1 did (no generation, the v1 domain label).
        let payload = B64.encode(format!("2000000000.{}", wf()));
        let mut m = Hmac::<Sha256>::new_from_slice(key().expose_secret().as_bytes()).unwrap();
        m.update(b"chairside/patient-page/v1\0");
        m.update(payload.as_bytes());
        let v1 = format!("{payload}.{}", B64.encode(m.finalize().into_bytes()));
        // Act and assert
        assert_eq!(
            verify_patient_token(&v1, &key(), at(0)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn an_expired_token_can_still_be_read_for_a_resend() {
        let token = sign_patient_token(&wf(), 2, at(1_000), &key());
        assert_eq!(
            verify_patient_token(&token, &key(), at(2_000)),
            Err(TokenError::Expired)
        );
        let read = read_patient_token(&token, &key()).unwrap();
        assert_eq!((read.workflow, read.generation), (wf(), 2));
    }

    proptest! {
        #[test]
        fn flipping_any_character_breaks_the_token(pos in 0usize..200, c in proptest::char::range('0', 'z')) {
            let token = sign_patient_token(&wf(), 0, at(2_000_000_000), &key());
            let pos = pos % token.len();
            let mut bytes = token.clone().into_bytes();
            prop_assume!(bytes[pos] != c as u8);
            bytes[pos] = c as u8;
            let tampered = String::from_utf8(bytes).unwrap();
            prop_assert!(verify_patient_token(&tampered, &key(), at(0)).is_err());
        }
    }
}
