//! The seeded world shared by every stand-in: patients, plans, ledger notes, and compliance
//! violations the stand-ins noticed.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::error::SandboxError;
use crate::fault::System;
use crate::persona::{
    PatientKey, Persona, PlanKey, Pms, SeedPatient, SeedPlan, SeededPatient, SeededPlan,
};

/// A plan's status, as the sandbox tracks it; each practice system renders it its own way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PlanStatus {
    /// Presented, not accepted.
    Proposed,
    /// Accepted (Dentrix case status Accepted, NexHealth `accepted`, Open Dental signed Saved).
    Accepted,
    /// Rejected by the patient.
    Rejected,
    /// Treatment done.
    Completed,
}

/// What kind of write-back a note is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum NoteKind {
    /// A Dentrix Ascend patient note.
    PatientNote,
    /// A NexHealth communication log.
    CommunicationLog,
    /// An Open Dental commlog.
    Commlog,
    /// An Open Dental payment (its `PayNote`).
    Payment,
}

/// A ledger note (or commlog) written to a practice system.
#[derive(Clone, Serialize)]
pub struct LedgerNote {
    /// The note's id in the practice system.
    pub id: String,
    /// The practice system.
    pub pms: Pms,
    /// What kind of write it was.
    pub kind: NoteKind,
    /// The patient's id in the practice system.
    pub patient_pms_id: String,
    /// The note's text.
    pub text: String,
    /// Amount in cents, for payments.
    pub amount: Option<i64>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for LedgerNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerNote")
            .field("id", &self.id)
            .field("pms", &self.pms)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Something a stand-in received that Chairside must never send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Where it arrived.
    pub system: System,
    /// Which rule (`prefill_in_california`, `clinical_data_to_lender`, ...).
    pub rule: String,
    /// A short description, without PHI.
    pub detail: String,
}

#[derive(Clone, Debug)]
pub(crate) struct PatientRecord {
    pub(crate) key: PatientKey,
    pub(crate) seed: SeedPatient,
    pub(crate) pms_id: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) modified: DateTime<Utc>,
    /// A new patient not yet in the practice system (an intake): lenders, Stripe and messages
    /// know the person, the practice system's API does not list them.
    pub(crate) prospect: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct PlanRecord {
    pub(crate) key: PlanKey,
    pub(crate) patient: PatientKey,
    pub(crate) patient_pms_id: String,
    pub(crate) seed: SeedPlan,
    pub(crate) pms: Pms,
    pub(crate) pms_id: String,
    pub(crate) procedure_ids: Vec<String>,
    /// An appointment id for the treatment date, when there is one.
    pub(crate) appointment_id: Option<String>,
    pub(crate) status: PlanStatus,
    pub(crate) created: DateTime<Utc>,
    pub(crate) modified: DateTime<Utc>,
    pub(crate) signed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
struct WorldData {
    next_key: u64,
    next_pms_id: [u64; 3],
    patients: Vec<PatientRecord>,
    plans: Vec<PlanRecord>,
    notes: Vec<LedgerNote>,
    violations: Vec<Violation>,
    last_tick: Option<DateTime<Utc>>,
}

/// Patients, plans and notes of every practice system.
#[derive(Debug, Default)]
pub(crate) struct World {
    data: Mutex<WorldData>,
}

fn pms_index(pms: Pms) -> usize {
    match pms {
        Pms::Dentrix => 0,
        Pms::NexHealth => 1,
        Pms::OpenDental => 2,
    }
}

/// The last ten digits of a phone number: `+1 (202) 555-0101` and `2025550101` agree.
pub(crate) fn phone_key(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let start = digits.len().saturating_sub(10);
    digits[start..].to_owned()
}

impl WorldData {
    /// A strictly increasing timestamp (millisecond steps), so cursors never skip a change.
    fn tick(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let next = match self.last_tick {
            Some(last) if now <= last => last + TimeDelta::milliseconds(1),
            _ => now,
        };
        self.last_tick = Some(next);
        next
    }

    fn pms_id(&mut self, pms: Pms) -> String {
        let slot = &mut self.next_pms_id[pms_index(pms)];
        *slot += 1;
        let base = match pms {
            Pms::Dentrix => 10_000,
            Pms::NexHealth => 20_000,
            Pms::OpenDental => 30_000,
        };
        (base + *slot).to_string()
    }
}

impl World {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorldData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.lock().tick()
    }

    pub(crate) fn seed_patient(&self, seed: SeedPatient) -> SeededPatient {
        self.add_patient(seed, false)
    }

    /// A person who is not (yet) a patient of the practice system: see [`PatientRecord::prospect`].
    pub(crate) fn seed_prospect(&self, seed: SeedPatient) -> SeededPatient {
        self.add_patient(seed, true)
    }

    fn add_patient(&self, seed: SeedPatient, prospect: bool) -> SeededPatient {
        let mut d = self.lock();
        d.next_key += 1;
        let key = PatientKey(d.next_key);
        let pms_id = d.pms_id(seed.pms);
        let now = d.tick();
        let out = SeededPatient {
            key,
            pms: seed.pms,
            pms_id: pms_id.clone(),
            persona: seed.persona,
        };
        d.patients.push(PatientRecord {
            key,
            seed,
            pms_id,
            created: now,
            modified: now,
            prospect,
        });
        out
    }

    pub(crate) fn seed_plan(&self, seed: SeedPlan) -> Result<SeededPlan, SandboxError> {
        let mut d = self.lock();
        let patient = d
            .patients
            .iter()
            .find(|p| p.key == seed.patient)
            .cloned()
            .ok_or(SandboxError::UnknownPatient)?;
        if seed.procedures.is_empty() {
            return Err(SandboxError::InvalidSeed(
                "a plan needs at least one procedure",
            ));
        }
        d.next_key += 1;
        let key = PlanKey(d.next_key);
        let pms = patient.seed.pms;
        let pms_id = d.pms_id(pms);
        let procedure_ids: Vec<String> = seed.procedures.iter().map(|_| d.pms_id(pms)).collect();
        let appointment_id = seed.treatment_date.map(|_| d.pms_id(pms));
        let now = d.tick();
        let out = SeededPlan {
            key,
            patient: patient.key,
            pms,
            pms_id: pms_id.clone(),
            patient_pms_id: patient.pms_id.clone(),
            procedure_ids: procedure_ids.clone(),
        };
        d.plans.push(PlanRecord {
            key,
            patient: patient.key,
            patient_pms_id: patient.pms_id.clone(),
            seed,
            pms,
            pms_id,
            procedure_ids,
            appointment_id,
            status: PlanStatus::Proposed,
            created: now,
            modified: now,
            signed_at: None,
        });
        Ok(out)
    }

    pub(crate) fn set_plan_status(
        &self,
        plan: PlanKey,
        status: PlanStatus,
    ) -> Result<(), SandboxError> {
        let mut d = self.lock();
        let now = d.tick();
        let rec = d
            .plans
            .iter_mut()
            .find(|p| p.key == plan)
            .ok_or(SandboxError::UnknownPlan)?;
        rec.status = status;
        rec.modified = now;
        if status == PlanStatus::Accepted {
            rec.signed_at = Some(now);
        }
        Ok(())
    }

    /// Changes one procedure's fee (an edit of what is financed) and bumps the modification time.
    pub(crate) fn edit_plan_fee(
        &self,
        plan: PlanKey,
        procedure: usize,
        fee: financing_core::Money,
    ) -> Result<(), SandboxError> {
        let mut d = self.lock();
        let now = d.tick();
        let rec = d
            .plans
            .iter_mut()
            .find(|p| p.key == plan)
            .ok_or(SandboxError::UnknownPlan)?;
        let p = rec
            .seed
            .procedures
            .get_mut(procedure)
            .ok_or(SandboxError::UnknownPlan)?;
        p.fee = fee;
        rec.modified = now;
        Ok(())
    }

    /// Bumps a plan's modification time without changing it (a "touch" in the practice system).
    pub(crate) fn touch_plan(&self, plan: PlanKey) -> Result<(), SandboxError> {
        let mut d = self.lock();
        let now = d.tick();
        let rec = d
            .plans
            .iter_mut()
            .find(|p| p.key == plan)
            .ok_or(SandboxError::UnknownPlan)?;
        rec.modified = now;
        Ok(())
    }

    pub(crate) fn patients(&self, pms: Option<Pms>) -> Vec<PatientRecord> {
        self.lock()
            .patients
            .iter()
            .filter(|p| pms.is_none_or(|s| p.seed.pms == s && !p.prospect))
            .cloned()
            .collect()
    }

    pub(crate) fn patient(&self, key: PatientKey) -> Option<PatientRecord> {
        self.lock().patients.iter().find(|p| p.key == key).cloned()
    }

    pub(crate) fn patient_by_pms_id(&self, pms: Pms, id: &str) -> Option<PatientRecord> {
        self.lock()
            .patients
            .iter()
            .find(|p| p.seed.pms == pms && p.pms_id == id && !p.prospect)
            .cloned()
    }

    pub(crate) fn plans(&self, pms: Option<Pms>) -> Vec<PlanRecord> {
        self.lock()
            .plans
            .iter()
            .filter(|p| pms.is_none_or(|s| p.pms == s))
            .cloned()
            .collect()
    }

    pub(crate) fn plan(&self, key: PlanKey) -> Option<PlanRecord> {
        self.lock().plans.iter().find(|p| p.key == key).cloned()
    }

    /// The patient whose mobile or home phone is `phone`.
    pub(crate) fn patient_by_phone(&self, phone: &str) -> Option<PatientRecord> {
        let want = phone_key(phone);
        if want.len() < 7 {
            return None;
        }
        self.lock()
            .patients
            .iter()
            .find(|p| {
                [&p.seed.mobile_phone, &p.seed.home_phone]
                    .into_iter()
                    .flatten()
                    .any(|ph| phone_key(ph) == want)
            })
            .cloned()
    }

    pub(crate) fn patient_by_email(&self, email: &str) -> Option<PatientRecord> {
        let want = email.trim().to_ascii_lowercase();
        self.lock()
            .patients
            .iter()
            .find(|p| {
                p.seed
                    .email
                    .as_deref()
                    .is_some_and(|e| e.to_ascii_lowercase() == want)
            })
            .cloned()
    }

    /// The patient with this name and either this phone or this ZIP (cardholder lookup, prefill).
    pub(crate) fn patient_by_identity(
        &self,
        first: &str,
        last: &str,
        phone: Option<&str>,
        zip: Option<&str>,
    ) -> Option<PatientRecord> {
        let phone = phone.map(phone_key).filter(|p| p.len() >= 7);
        let zip = zip.map(|z| z.trim().chars().take(5).collect::<String>());
        self.lock()
            .patients
            .iter()
            .find(|p| {
                let s = &p.seed;
                let name = s.first_name.eq_ignore_ascii_case(first.trim())
                    && s.last_name.eq_ignore_ascii_case(last.trim());
                let by_phone = phone.as_ref().is_some_and(|want| {
                    [&s.mobile_phone, &s.home_phone]
                        .into_iter()
                        .flatten()
                        .any(|ph| &phone_key(ph) == want)
                });
                let by_zip = zip
                    .as_ref()
                    .is_some_and(|z| s.address.postal_code.starts_with(z.as_str()));
                name && (by_phone || by_zip)
            })
            .cloned()
    }

    /// A patient created through a practice system's API (`POST /patients`): an instant-approval
    /// persona for the lenders, no SMS consent on file, the state as the only address part.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_patient(
        &self,
        pms: Pms,
        first_name: &str,
        last_name: &str,
        date_of_birth: Option<chrono::NaiveDate>,
        mobile_phone: Option<String>,
        email: Option<String>,
        state: &str,
    ) -> PatientRecord {
        let seed = SeedPatient {
            pms,
            persona: crate::persona::Persona::InstantApproval,
            first_name: first_name.to_owned(),
            last_name: last_name.to_owned(),
            date_of_birth,
            email,
            mobile_phone,
            home_phone: None,
            address: crate::persona::SeedAddress {
                line1: String::new(),
                city: String::new(),
                state: state.to_owned(),
                postal_code: String::new(),
            },
            sms_consent: false,
            card: crate::persona::TestCard::default(),
        };
        let seeded = self.seed_patient(seed);
        self.patient(seeded.key)
            .unwrap_or_else(|| unreachable!("the patient was just added"))
    }

    /// The persona of a seeded patient.
    pub(crate) fn persona_of(&self, key: PatientKey) -> Option<Persona> {
        self.patient(key).map(|p| p.seed.persona)
    }

    pub(crate) fn add_note(
        &self,
        pms: Pms,
        kind: NoteKind,
        patient_pms_id: &str,
        text: &str,
        amount: Option<i64>,
    ) -> LedgerNote {
        let mut d = self.lock();
        let id = d.pms_id(pms);
        let created_at = d.tick();
        let note = LedgerNote {
            id,
            pms,
            kind,
            patient_pms_id: patient_pms_id.to_owned(),
            text: text.to_owned(),
            amount,
            created_at,
        };
        d.notes.push(note.clone());
        note
    }

    pub(crate) fn notes(&self) -> Vec<LedgerNote> {
        self.lock().notes.clone()
    }

    pub(crate) fn add_violation(&self, system: System, rule: &str, detail: &str) {
        tracing::warn!(system = %system, rule, "sandbox: compliance violation recorded");
        self.lock().violations.push(Violation {
            system,
            rule: rule.to_owned(),
            detail: detail.to_owned(),
        });
    }

    pub(crate) fn violations(&self) -> Vec<Violation> {
        self.lock().violations.clone()
    }
}
