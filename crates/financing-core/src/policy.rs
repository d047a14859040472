//! The compliance rules of COMPLIANCE.md that need no I/O. Each rule cites its source.
//!
//! The policy evaluates both the practice's state and the patient's state of residence, and the
//! stricter rule wins. This is not legal advice: counsel approves state lists and time windows.

use chrono::{DateTime, Days, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::ids::ApplicationRef;
use crate::lender::{Applicant, FinancingRequest, LenderLocation};
use crate::money::Money;
use crate::patient::{PatientContact, SmsConsent, UsState};

/// States where staff or agents may not fill in any part of a medical-credit application:
/// California Bus. & Prof. Code §654.3 (SB 639) and New York Gen. Bus. Law §349-g.
const NO_PREFILL_STATES: [UsState; 2] = [UsState::CA, UsState::NY];

/// Earliest local hour for a text: 47 CFR 64.1200(c)(1) allows 08:00–21:00; we keep an hour of
/// margin on each side because some states are stricter (design).
const QUIET_HOURS_END: u32 = 9;
/// Latest local hour (exclusive) for a text.
const QUIET_HOURS_START: u32 = 20;

/// Days before treatment that a lender charge may happen at the earliest (B&P §654.3; Alphaeon's
/// merchant contract has the same limit).
pub const MAX_DAYS_CHARGED_BEFORE_TREATMENT: u64 = 30;

/// What a text is for; promotional texts need written consent (TCPA, 47 U.S.C. 227).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsPurpose {
    /// Summaries, reminders, payment notices: prior express consent.
    Informational,
    /// Anything that promotes financing: prior express written consent.
    Promotional,
}

/// Whether a text may go out now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum SmsVerdict {
    /// Send now.
    Send,
    /// Allowed, but not now: quiet hours. Send at this time.
    WaitUntil {
        /// When the window opens.
        at: DateTime<Utc>,
    },
    /// Not allowed: fall back to email.
    Blocked {
        /// Why, for the audit trail and staff.
        reason: SmsBlock,
    },
}

/// Why a text is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsBlock {
    /// No mobile number on file.
    NoMobileNumber,
    /// No consent on record.
    NoConsent,
    /// The consent on record does not cover promotional texts.
    NeedsWrittenConsent,
    /// The patient opted out.
    OptedOut,
}

/// When a lender charge (purchase or completion) may happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "timing", rename_all = "snake_case")]
pub enum ChargeTiming {
    /// Not before this date.
    NotBefore {
        /// The earliest date.
        date: NaiveDate,
    },
    /// No appointment date is known: staff must set one first.
    WaitForStaff,
}

/// Practice-level settings that loosen or tighten the defaults, approved by counsel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySettings {
    /// Counsel approved staff-side prefill for this practice. Ignored in CA and NY.
    pub prefill_approved_by_counsel: bool,
}

/// The compliance policy for one patient at one practice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    practice_state: UsState,
    patient_state: Option<UsState>,
    time_zone: Tz,
    settings: PolicySettings,
}

impl Policy {
    /// The policy for a practice in `practice_state` (whose clock runs in `practice_tz`) and a patient
    /// living in `patient_state`, when known.
    pub fn new(
        practice_state: UsState,
        patient_state: Option<UsState>,
        practice_tz: Tz,
        settings: PolicySettings,
    ) -> Self {
        Self {
            practice_state,
            patient_state,
            time_zone: practice_tz,
            settings,
        }
    }

    fn states(&self) -> impl Iterator<Item = UsState> + '_ {
        std::iter::once(self.practice_state).chain(self.patient_state)
    }

    fn any_state_in(&self, list: &[UsState]) -> bool {
        self.states().any(|s| list.contains(&s))
    }

    /// Whether Chairside may prefill a lender's application with the patient's data.
    ///
    /// Never in CA (B&P §654.3) or NY (GBL §349-g), whichever of practice or patient is there; off by
    /// default elsewhere unless counsel approved it, because staff completing applications was one
    /// finding behind the CFPB's 2013 CareCredit consent order.
    pub fn prefill_allowed(&self) -> bool {
        !self.any_state_in(&NO_PREFILL_STATES) && self.settings.prefill_approved_by_counsel
    }

    /// Whether a cardholder lookup may send the patient's identity to a lender. It is not an
    /// application, but it discloses PHI to the lender: allowed exactly where prefill is
    /// (minimum necessary, 45 CFR 164.502(b)).
    pub fn cardholder_lookup_allowed(&self) -> bool {
        self.prefill_allowed()
    }

    /// Builds what every lender may see: identity and contact only where allowed, never clinical
    /// data (45 CFR 164.502(b), 164.514(d); the type has no field for it).
    pub fn financing_request(
        &self,
        reference: ApplicationRef,
        location: LenderLocation,
        amount: Money,
        patient: &PatientContact,
    ) -> FinancingRequest {
        let identity = || Applicant::from_contact(patient);
        FinancingRequest {
            reference,
            location,
            amount,
            prefill: self.prefill_allowed().then(identity),
            lookup: self.cardholder_lookup_allowed().then(identity),
            return_url: None,
        }
    }

    /// The earliest date a lender purchase or completion may be charged: not more than 30 days
    /// before treatment (B&P §654.3; applied in every state, the stricter rule). Without an
    /// appointment date it waits for staff.
    pub fn earliest_lender_charge(&self, treatment_date: Option<NaiveDate>) -> ChargeTiming {
        match treatment_date
            .and_then(|d| d.checked_sub_days(Days::new(MAX_DAYS_CHARGED_BEFORE_TREATMENT)))
        {
            Some(date) => ChargeTiming::NotBefore { date },
            None => ChargeTiming::WaitForStaff,
        }
    }

    /// When financing messages about a plan accepted at `accepted_at` may go out at the earliest.
    ///
    /// No credit may be arranged while the patient is under general anesthesia, conscious sedation
    /// or nitrous oxide (B&P §654.3). When the plan or a staff flag shows sedation on the
    /// acceptance day, messages wait until the next calendar day in the practice's time zone, in
    /// every state (design).
    pub fn financing_not_before(
        &self,
        accepted_at: DateTime<Utc>,
        sedation: bool,
    ) -> DateTime<Utc> {
        if !sedation {
            return accepted_at;
        }
        let local = accepted_at.with_timezone(&self.time_zone).date_naive();
        let next = local.succ_opt().unwrap_or(local);
        self.local_time(next, NaiveTime::MIN).unwrap_or(accepted_at)
    }

    /// Whether a text may go out now: consent for its purpose (TCPA) and quiet hours 09:00–20:00 in
    /// the patient's time zone, the practice's when unknown (47 CFR 64.1200(c)(1), with margin).
    pub fn sms_verdict(
        &self,
        patient: &PatientContact,
        purpose: SmsPurpose,
        now: DateTime<Utc>,
    ) -> SmsVerdict {
        if patient
            .mobile_phone
            .as_deref()
            .is_none_or(|p| p.trim().is_empty())
        {
            return SmsVerdict::Blocked {
                reason: SmsBlock::NoMobileNumber,
            };
        }
        let block = match (&patient.sms_consent, purpose) {
            (SmsConsent::Revoked { .. }, _) => Some(SmsBlock::OptedOut),
            (SmsConsent::None, _) => Some(SmsBlock::NoConsent),
            (SmsConsent::Informational { .. }, SmsPurpose::Promotional) => {
                Some(SmsBlock::NeedsWrittenConsent)
            }
            _ => None,
        };
        if let Some(reason) = block {
            return SmsVerdict::Blocked { reason };
        }
        let tz = patient
            .time_zone
            .as_deref()
            .and_then(|z| z.parse::<Tz>().ok())
            .unwrap_or(self.time_zone);
        match next_window_open(now, tz) {
            Some(at) => SmsVerdict::WaitUntil { at },
            None => SmsVerdict::Send,
        }
    }

    /// Whether a card on file may be made a condition of care: never (N.Y. GBL §519-a applies in NY,
    /// and Chairside never makes saving a card a precondition anywhere).
    pub fn card_on_file_may_be_required(&self) -> bool {
        false
    }

    /// Whether patient messages must carry the counsel-supplied warning about paying medical bills
    /// by credit card (N.Y. GBL §519-a).
    pub fn needs_credit_card_warning(&self) -> bool {
        self.any_state_in(&[UsState::NY])
    }

    /// Whether the patient page must show the counsel-supplied California notice before any lender
    /// link, and record that it was shown (B&P §654.3).
    pub fn needs_state_notice(&self) -> bool {
        self.any_state_in(&[UsState::CA])
    }

    fn local_time(&self, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        to_utc(self.time_zone, date, time)
    }
}

fn to_utc(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    // On a DST gap the earliest valid instant after it is used.
    tz.from_local_datetime(&date.and_time(time))
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&date.and_time(time + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// `None` when `now` is inside the texting window in `tz`; otherwise when the window next opens.
fn next_window_open(now: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    use chrono::Timelike;
    let local = now.with_timezone(&tz);
    let hour = local.hour();
    if (QUIET_HOURS_END..QUIET_HOURS_START).contains(&hour) {
        return None;
    }
    let date = if hour >= QUIET_HOURS_START {
        local.date_naive().succ_opt()?
    } else {
        local.date_naive()
    };
    to_utc(tz, date, NaiveTime::from_hms_opt(QUIET_HOURS_END, 0, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{LocationId, PatientId, PracticeId};
    use crate::patient::{Language, PostalAddress};

    fn policy(practice: UsState, patient: Option<UsState>, counsel: bool) -> Policy {
        Policy::new(
            practice,
            patient,
            chrono_tz::America::Los_Angeles,
            PolicySettings {
                prefill_approved_by_counsel: counsel,
            },
        )
    }

    fn patient(consent: SmsConsent) -> PatientContact {
        PatientContact {
            id: PatientId::new("p-1"),
            first_name: "Ana".into(),
            last_name: "Sample".into(),
            date_of_birth: None,
            mobile_phone: Some("+15555550100".into()),
            email: Some("ana@example.test".into()),
            address: Some(PostalAddress {
                lines: vec![],
                city: "X".into(),
                state: Some(UsState::TX),
                postal_code: "75001".into(),
            }),
            preferred_language: Language::En,
            time_zone: None,
            sms_consent: consent,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    fn informational() -> SmsConsent {
        SmsConsent::Informational {
            at: utc("2026-01-01T00:00:00Z"),
            source: "pms".into(),
        }
    }

    #[test]
    fn prefill_is_never_allowed_in_california_or_new_york_even_with_counsel() {
        assert!(!policy(UsState::CA, None, true).prefill_allowed());
        assert!(!policy(UsState::NY, None, true).prefill_allowed());
        // The patient's state counts too: the stricter rule wins.
        assert!(!policy(UsState::TX, Some(UsState::CA), true).prefill_allowed());
        assert!(!policy(UsState::TX, Some(UsState::NY), true).prefill_allowed());
    }

    #[test]
    fn prefill_elsewhere_needs_counsel_approval() {
        assert!(!policy(UsState::TX, Some(UsState::TX), false).prefill_allowed());
        assert!(policy(UsState::TX, Some(UsState::TX), true).prefill_allowed());
    }

    #[test]
    fn the_lender_request_carries_identity_only_where_allowed() {
        let location = LenderLocation {
            practice_id: PracticeId::new("pr"),
            location_id: LocationId::new("1"),
            state: UsState::CA,
        };
        let p = patient(SmsConsent::None);
        let ca = policy(UsState::CA, None, true).financing_request(
            ApplicationRef::new("r1"),
            location.clone(),
            Money::usd(100),
            &p,
        );
        assert!(ca.prefill.is_none() && ca.lookup.is_none());
        let tx = policy(UsState::TX, None, true).financing_request(
            ApplicationRef::new("r1"),
            location,
            Money::usd(100),
            &p,
        );
        let prefill = tx.prefill.expect("prefill allowed in TX with counsel");
        assert_eq!(prefill.first_name, "Ana");
        assert_eq!(
            prefill.date_of_birth, None,
            "date of birth is never prefilled"
        );
    }

    #[test]
    fn lender_charges_wait_until_thirty_days_before_treatment() {
        let p = policy(UsState::CA, None, false);
        let treatment = NaiveDate::from_ymd_opt(2026, 3, 31);
        assert_eq!(
            p.earliest_lender_charge(treatment),
            ChargeTiming::NotBefore {
                date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap_or_default()
            }
        );
        assert_eq!(p.earliest_lender_charge(None), ChargeTiming::WaitForStaff);
    }

    #[test]
    fn sedation_on_the_acceptance_day_defers_financing_to_the_next_local_day() {
        let p = policy(UsState::TX, None, false);
        // 23:30 UTC on 10 Mar is 16:30 in Los Angeles on 10 Mar; next local midnight is 11 Mar 07:00 UTC (PDT).
        let accepted = utc("2026-03-10T23:30:00Z");
        assert_eq!(p.financing_not_before(accepted, false), accepted);
        assert_eq!(
            p.financing_not_before(accepted, true),
            utc("2026-03-11T07:00:00Z")
        );
    }

    #[test]
    fn texts_need_a_number_and_consent_for_their_purpose() {
        let p = policy(UsState::TX, None, false);
        let noon_la = utc("2026-06-01T19:00:00Z");
        let mut no_phone = patient(informational());
        no_phone.mobile_phone = None;
        assert_eq!(
            p.sms_verdict(&no_phone, SmsPurpose::Informational, noon_la),
            SmsVerdict::Blocked {
                reason: SmsBlock::NoMobileNumber
            }
        );
        assert_eq!(
            p.sms_verdict(
                &patient(SmsConsent::None),
                SmsPurpose::Informational,
                noon_la
            ),
            SmsVerdict::Blocked {
                reason: SmsBlock::NoConsent
            }
        );
        assert_eq!(
            p.sms_verdict(
                &patient(informational()),
                SmsPurpose::Informational,
                noon_la
            ),
            SmsVerdict::Send
        );
        assert_eq!(
            p.sms_verdict(&patient(informational()), SmsPurpose::Promotional, noon_la),
            SmsVerdict::Blocked {
                reason: SmsBlock::NeedsWrittenConsent
            }
        );
        let revoked = SmsConsent::Revoked {
            at: utc("2026-02-01T00:00:00Z"),
        };
        assert_eq!(
            p.sms_verdict(&patient(revoked), SmsPurpose::Informational, noon_la),
            SmsVerdict::Blocked {
                reason: SmsBlock::OptedOut
            }
        );
    }

    #[test]
    fn texts_wait_for_nine_in_the_morning_in_the_patients_zone() {
        let p = policy(UsState::TX, None, false);
        let mut ny_patient = patient(informational());
        ny_patient.time_zone = Some("America/New_York".into());
        // 06:00 in New York (EDT, UTC-4) -> wait until 09:00 New York = 13:00 UTC.
        assert_eq!(
            p.sms_verdict(
                &ny_patient,
                SmsPurpose::Informational,
                utc("2026-06-01T10:00:00Z")
            ),
            SmsVerdict::WaitUntil {
                at: utc("2026-06-01T13:00:00Z")
            }
        );
        // 21:30 in New York -> next morning 09:00.
        assert_eq!(
            p.sms_verdict(
                &ny_patient,
                SmsPurpose::Informational,
                utc("2026-06-02T01:30:00Z")
            ),
            SmsVerdict::WaitUntil {
                at: utc("2026-06-02T13:00:00Z")
            }
        );
        // Unknown patient zone: the practice's (Los Angeles). 08:59 PDT is 15:59 UTC.
        assert_eq!(
            p.sms_verdict(
                &patient(informational()),
                SmsPurpose::Informational,
                utc("2026-06-01T15:59:00Z")
            ),
            SmsVerdict::WaitUntil {
                at: utc("2026-06-01T16:00:00Z")
            }
        );
        assert_eq!(
            p.sms_verdict(
                &patient(informational()),
                SmsPurpose::Informational,
                utc("2026-06-01T16:00:00Z")
            ),
            SmsVerdict::Send
        );
        // 20:00 sharp is outside the window.
        assert_eq!(
            p.sms_verdict(
                &patient(informational()),
                SmsPurpose::Informational,
                utc("2026-06-02T03:00:00Z")
            ),
            SmsVerdict::WaitUntil {
                at: utc("2026-06-02T16:00:00Z")
            }
        );
    }

    #[test]
    fn state_specific_notices() {
        assert!(policy(UsState::NY, None, false).needs_credit_card_warning());
        assert!(policy(UsState::TX, Some(UsState::NY), false).needs_credit_card_warning());
        assert!(!policy(UsState::TX, None, false).needs_credit_card_warning());
        assert!(policy(UsState::CA, None, false).needs_state_notice());
        assert!(!policy(UsState::CA, None, false).card_on_file_may_be_required());
    }
}
