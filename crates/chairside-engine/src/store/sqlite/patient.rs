//! The patient role on SQLite: contacts sealed with the data key, consent by keyed phone hash.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PracticeId};
use sqlx::{Row, SqliteConnection};

use super::sealed::CONSENT_PHONE;
use super::{SqliteStore, from_ms, ms};
use crate::store::crypto::Keyring;
use crate::store::{PatientStore, Result, SmsConsentLogRow, SmsConsentRecord};
use messaging::{ConsentEntry, ConsentKind, Standing, supersedes};

#[async_trait]
impl PatientStore for SqliteStore {
    async fn put_patient(
        &self,
        practice: &PracticeId,
        contact: &PatientContact,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (key, practice, contact) = (self.key.clone(), practice.clone(), contact.clone());
        self.thread
            .write(move |conn| super::onehop::put_patient(conn, &key, &practice, &contact, ms(now)))
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(())
    }

    async fn patient(
        &self,
        practice: &PracticeId,
        patient: &PatientId,
    ) -> Result<Option<PatientContact>> {
        let (practice_id, patient_id) = (practice.as_str().to_owned(), patient.as_str().to_owned());
        let sealed = self
            .reader
            .read(move |conn| super::onehop::patient_contact(conn, &practice_id, &patient_id))
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
        let entry = if opted_out {
            ConsentEntry::withdrawal(source, "opt-out", "system", now)
        } else {
            ConsentEntry::grant(ConsentKind::Informational, source, "opt-in", "system", now)
        };
        self.record_sms_consent(practice, phone, &entry, now)
            .await
            .map(|_| ())
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
        // key, and let the record that supersedes the others win, as on write.
        let hashes = self.key.lookup_keys(phone);
        let practice = practice.as_str().to_owned();
        let rows = self
            .reader
            .read(move |conn| super::onehop::sms_consent(conn, &practice, &hashes))
            .await?;
        let mut winner: Option<ConsentState> = None;
        for held in rows {
            if winner.as_ref().is_none_or(|w| held.beats(w)) {
                winner = Some(held);
            }
        }
        Ok(winner.map(ConsentState::into_record))
    }

    async fn record_sms_consent(
        &self,
        practice: &PracticeId,
        phone: &str,
        entry: &ConsentEntry,
        now: DateTime<Utc>,
    ) -> Result<SmsConsentRecord> {
        let (key, practice, phone, entry) = (
            self.key.clone(),
            practice.as_str().to_owned(),
            phone.to_owned(),
            entry.clone(),
        );
        let record = self
            .thread
            .write(move |conn| {
                super::onehop::record_consent(conn, &key, &practice, &phone, &entry, ms(now))
            })
            .await?;
        self.writes.add(std::panic::Location::caller());
        Ok(record)
    }

    async fn sms_consent_history(
        &self,
        practice: &PracticeId,
        phone: &str,
    ) -> Result<Vec<SmsConsentLogRow>> {
        let hashes = self.key.lookup_keys(phone);
        let sql = format!(
            "SELECT consent, source, wording, recorded_by, at, recorded_at, effective
             FROM sms_consent_log WHERE practice_id = ? AND phone_key IN ({}) ORDER BY id",
            vec!["?"; hashes.len()].join(", ")
        );
        let mut query = sqlx::query(&sql).bind(practice.as_str());
        for hash in &hashes {
            query = query.bind(hash);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let consent: Option<String> = r.try_get("consent")?;
                Ok(SmsConsentLogRow {
                    entry: ConsentEntry {
                        grant: consent.as_deref().and_then(ConsentKind::from_label),
                        source: r.try_get("source")?,
                        wording: r.try_get("wording")?,
                        recorded_by: r.try_get("recorded_by")?,
                        at: from_ms(r.try_get("at")?),
                    },
                    recorded_at: from_ms(r.try_get("recorded_at")?),
                    effective: r.try_get("effective")?,
                })
            })
            .collect()
    }
}

/// One consent state as stored: what it says, where it came from, when (ms), what it grants,
/// with which wording, recorded by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::store) struct ConsentState {
    pub(in crate::store) opted_out: bool,
    pub(in crate::store) source: String,
    pub(in crate::store) at: i64,
    pub(in crate::store) consent: Option<String>,
    pub(in crate::store) wording: Option<String>,
    pub(in crate::store) recorded_by: Option<String>,
}

impl ConsentState {
    /// The state a recorded entry stands for.
    pub(in crate::store) fn from_entry(entry: &ConsentEntry) -> Self {
        Self {
            opted_out: entry.grant.is_none(),
            source: entry.source.clone(),
            at: ms(entry.at),
            consent: entry.grant.map(|k| k.label().to_owned()),
            wording: Some(entry.wording.clone()),
            recorded_by: Some(entry.recorded_by.clone()),
        }
    }

    fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Self> {
        Ok(Self {
            opted_out: row.try_get("opted_out")?,
            source: row.try_get("source")?,
            at: row.try_get("at")?,
            consent: row.try_get("consent")?,
            wording: row.try_get("wording")?,
            recorded_by: row.try_get("recorded_by")?,
        })
    }

    fn standing(&self) -> Standing {
        if self.opted_out {
            Standing::Withdrawal
        } else if self.consent.is_none() {
            // Rows from before consent records: not opted out, nothing granted.
            Standing::Cleared
        } else {
            Standing::of(&self.source, true)
        }
    }

    /// Whether `self` replaces `held` ([`messaging::supersedes`]): a withdrawal always wins, an
    /// attestation never overrides a withdrawal, and webhooks processed out of order (or rows
    /// merged by a rotation) never re-subscribe anyone. On a full tie the state held stays.
    pub(in crate::store) fn beats(&self, held: &Self) -> bool {
        supersedes(
            self.standing(),
            from_ms(self.at),
            Some((held.standing(), from_ms(held.at))),
        )
    }

    pub(in crate::store) fn into_record(self) -> SmsConsentRecord {
        SmsConsentRecord {
            opted_out: self.opted_out,
            at: from_ms(self.at),
            source: self.source,
            consent: if self.opted_out {
                None
            } else {
                self.consent.as_deref().and_then(ConsentKind::from_label)
            },
            wording: self.wording.unwrap_or_default(),
            recorded_by: self.recorded_by.unwrap_or_default(),
        }
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
) -> Result<Option<ConsentState>> {
    let hashes = ring.lookup_keys(phone);
    let current = &hashes[0];
    let sql = format!(
        "SELECT rowid, opted_out, source, at, consent, wording, recorded_by FROM sms_consent
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
        let held = ConsentState::from_row(row)?;
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
        return Ok(None);
    };
    let sealed = CONSENT_PHONE.seal(ring, &[practice, current], phone.as_bytes())?;
    sqlx::query(
        "INSERT INTO sms_consent (practice_id, phone_key, opted_out, source, at, phone_sealed, key_id,
             consent, wording, recorded_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(practice)
    .bind(current)
    .bind(winner.opted_out)
    .bind(&winner.source)
    .bind(winner.at)
    .bind(sealed)
    .bind(i64::from(ring.current_id()))
    .bind(&winner.consent)
    .bind(&winner.wording)
    .bind(&winner.recorded_by)
    .execute(&mut *conn)
    .await?;
    Ok(Some(winner))
}
