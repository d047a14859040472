//! The patient role on SQLite: contacts sealed with the data key, consent by keyed phone hash.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use financing_core::{PatientContact, PatientId, PracticeId};
use sqlx::Row;

use super::{SqliteStore, from_ms, ms};
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
        sqlx::query(
            "INSERT INTO sms_consent (practice_id, phone_key, opted_out, source, at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (practice_id, phone_key) DO UPDATE SET opted_out = excluded.opted_out, source = excluded.source, at = excluded.at
             -- The latest change wins; at an equal instant an opt-out wins, so webhooks processed
             -- out of order never re-subscribe anyone.
             WHERE excluded.at > sms_consent.at OR (excluded.at = sms_consent.at AND excluded.opted_out = 1)",
        )
        .bind(practice.as_str())
        .bind(self.key.lookup_key(phone))
        .bind(opted_out)
        .bind(source)
        .bind(ms(now))
        .execute(&mut *tx)
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
