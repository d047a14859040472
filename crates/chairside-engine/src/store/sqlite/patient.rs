//! The patient role on SQLite: contacts sealed with the data key, consent by keyed phone hash.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PracticeId};
use sqlx::{Row, SqliteConnection};

use super::sealed::CONSENT_PHONE;
use super::{SqliteStore, from_ms, ms};
use crate::store::crypto::Keyring;
use crate::store::{PatientStore, Result, SmsConsentRecord};

#[async_trait]
impl PatientStore for SqliteStore {
    async fn put_patient(
        &self,
        practice: &PracticeId,
        contact: &PatientContact,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let plain = serde_json::to_vec(contact)?;
        let sealed = self
            .key
            .seal(&plain, &Self::associated(practice, &contact.id))?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO patients (practice_id, patient_id, contact, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (practice_id, patient_id) DO UPDATE SET contact = excluded.contact, updated_at = excluded.updated_at",
        )
        .bind(practice.as_str())
        .bind(contact.id.as_str())
        .bind(sealed)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
        self.finish(tx).await
    }

    async fn patient(
        &self,
        practice: &PracticeId,
        patient: &PatientId,
    ) -> Result<Option<PatientContact>> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT contact FROM patients WHERE practice_id = ? AND patient_id = ?",
        )
        .bind(practice.as_str())
        .bind(patient.as_str())
        .fetch_optional(&self.pool)
        .await?;
        match sealed {
            None => Ok(None),
            Some(sealed) => {
                let plain = self
                    .key
                    .open(&sealed, &Self::associated(practice, patient))?;
                Ok(Some(serde_json::from_slice(&plain)?))
            }
        }
    }

    async fn set_sms_opt_out(
        &self,
        practice: &PracticeId,
        phone: &str,
        opted_out: bool,
        source: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        let change = ConsentState {
            opted_out,
            source: source.to_owned(),
            at: ms(now),
        };
        fold_consent(
            &mut tx,
            &self.key,
            practice.as_str(),
            phone,
            Some(change),
            None,
        )
        .await?;
        self.finish(tx).await
    }

    async fn sms_opted_out(&self, practice: &PracticeId, phone: &str) -> Result<bool> {
        Ok(self
            .sms_consent(practice, phone)
            .await?
            .is_some_and(|r| r.opted_out))
    }

    async fn sms_consent(
        &self,
        practice: &PracticeId,
        phone: &str,
    ) -> Result<Option<SmsConsentRecord>> {
        // A number recorded before a key rotation is hashed under an older key: look under every
        // key, and let the latest change win (an opt-out at an equal instant), as on write.
        let hashes = self.key.lookup_keys(phone);
        let sql = format!(
            "SELECT opted_out, at, source FROM sms_consent WHERE practice_id = ? AND phone_key IN ({})
             ORDER BY at DESC, opted_out DESC LIMIT 1",
            vec!["?"; hashes.len()].join(", ")
        );
        let mut query = sqlx::query(&sql).bind(practice.as_str());
        for hash in &hashes {
            query = query.bind(hash);
        }
        let row = query.fetch_optional(&self.pool).await?;
        row.map(|r| {
            Ok(SmsConsentRecord {
                opted_out: r.try_get("opted_out")?,
                at: from_ms(r.try_get("at")?),
                source: r.try_get("source")?,
            })
        })
        .transpose()
    }
}

/// One consent state as stored: what it says, where it came from, when (ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ConsentState {
    pub(super) opted_out: bool,
    pub(super) source: String,
    pub(super) at: i64,
}

impl ConsentState {
    /// Whether `self` replaces `held`: the latest change wins, and at an equal instant an opt-out
    /// wins, so webhooks processed out of order (or rows merged by a rotation) never re-subscribe
    /// anyone. On a full tie the state held stays.
    fn beats(&self, held: &Self) -> bool {
        (self.at, self.opted_out) > (held.at, held.opted_out)
    }
}

/// Folds every row on record for `phone` at `practice` (hashed under any key in the ring, plus the
/// row `also` when given) and the `change`, if any, into one row hashed under the current key, with
/// the number sealed under the current key and the id of that key. The winner is chosen by
/// [`ConsentState::beats`]; the other rows are deleted. Runs inside the caller's write transaction.
pub(super) async fn fold_consent(
    conn: &mut SqliteConnection,
    ring: &Keyring,
    practice: &str,
    phone: &str,
    change: Option<ConsentState>,
    also: Option<i64>,
) -> Result<()> {
    let hashes = ring.lookup_keys(phone);
    let current = &hashes[0];
    let sql = format!(
        "SELECT rowid, opted_out, source, at FROM sms_consent
         WHERE practice_id = ? AND (phone_key IN ({}) OR rowid = ?) ORDER BY rowid",
        vec!["?"; hashes.len()].join(", ")
    );
    let mut query = sqlx::query(&sql).bind(practice);
    for hash in &hashes {
        query = query.bind(hash);
    }
    let rows = query.bind(also).fetch_all(&mut *conn).await?;
    let mut winner: Option<ConsentState> = None;
    for row in &rows {
        let held = ConsentState {
            opted_out: row.try_get("opted_out")?,
            source: row.try_get("source")?,
            at: row.try_get("at")?,
        };
        if winner.as_ref().is_none_or(|w| held.beats(w)) {
            winner = Some(held);
        }
        sqlx::query("DELETE FROM sms_consent WHERE rowid = ?")
            .bind(row.try_get::<i64, _>("rowid")?)
            .execute(&mut *conn)
            .await?;
    }
    if let Some(change) = change
        && winner.as_ref().is_none_or(|w| change.beats(w))
    {
        winner = Some(change);
    }
    let Some(winner) = winner else {
        return Ok(());
    };
    let sealed = CONSENT_PHONE.seal(ring, &[practice, current], phone.as_bytes())?;
    sqlx::query(
        "INSERT INTO sms_consent (practice_id, phone_key, opted_out, source, at, phone_sealed, key_id)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(practice)
    .bind(current)
    .bind(winner.opted_out)
    .bind(&winner.source)
    .bind(winner.at)
    .bind(sealed)
    .bind(i64::from(ring.current_id()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
