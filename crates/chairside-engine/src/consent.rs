//! SMS consent as the engine records it: a practice system's consent field becomes the practice's
//! attestation in the number's consent history (pure; the store folds it with
//! [`messaging::supersedes`], where a withdrawal always wins).

use chrono::{DateTime, Utc};
use financing_core::SmsConsent;
use messaging::{ConsentEntry, ConsentKind, practice_system_wording, sources};

use crate::store::SmsConsentRecord;

/// Who the runner records an attestation as.
pub const RECORDED_BY_RUNNER: &str = "runner";

/// The consent history entry a practice system's consent field asks for, given the standing
/// `held` for the number; `None` when there is nothing new to record.
///
/// - The practice system says the patient agreed: an informational (or written) grant from
///   `practice_system:{system}`, unless the same attestation is already the standing. The store
///   keeps it out of the standing after a withdrawal.
/// - The practice system says no: a withdrawal, but only of a grant that rests on the practice
///   system's own word (the patient's opt-in on the page or by START stands until the patient
///   withdraws it).
/// - Nothing recorded there: nothing.
pub fn attestation_entry(
    system: &str,
    said: &SmsConsent,
    held: Option<&SmsConsentRecord>,
    now: DateTime<Utc>,
) -> Option<ConsentEntry> {
    let source = format!("{}{system}", sources::PRACTICE_SYSTEM_PREFIX);
    let (kind, field) = match said {
        SmsConsent::Informational { source: field, .. } => (ConsentKind::Informational, field),
        SmsConsent::Written { source: field, .. } => (ConsentKind::Written, field),
        SmsConsent::Revoked { .. } => {
            let rests_on_us = held.is_some_and(|h| {
                !h.opted_out
                    && h.consent.is_some()
                    && h.source.starts_with(sources::PRACTICE_SYSTEM_PREFIX)
            });
            return rests_on_us.then(|| {
                ConsentEntry::withdrawal(
                    source,
                    format!("the practice's record in {system} no longer says the patient agreed to texts"),
                    RECORDED_BY_RUNNER,
                    now,
                )
            });
        }
        _ => return None,
    };
    if held.is_some_and(|h| !h.opted_out && h.source == source && h.consent == Some(kind)) {
        return None;
    }
    Some(ConsentEntry::grant(
        kind,
        source,
        practice_system_wording(system, field),
        RECORDED_BY_RUNNER,
        now,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn held(opted_out: bool, source: &str, consent: Option<ConsentKind>) -> SmsConsentRecord {
        SmsConsentRecord {
            opted_out,
            at: now() - chrono::Duration::days(1),
            source: source.into(),
            consent,
            wording: String::new(),
            recorded_by: String::new(),
        }
    }

    fn yes() -> SmsConsent {
        SmsConsent::Informational {
            at: now(),
            source: "TxtMsgOk".into(),
        }
    }

    #[test]
    fn a_practice_yes_is_recorded_once_as_the_practices_attestation() {
        let entry = attestation_entry("opendental", &yes(), None, now()).unwrap();
        assert_eq!(entry.grant, Some(ConsentKind::Informational));
        assert_eq!(entry.source, "practice_system:opendental");
        assert!(entry.wording.contains("TxtMsgOk"), "{}", entry.wording);
        assert_eq!(entry.recorded_by, "runner");
        let same = held(
            false,
            "practice_system:opendental",
            Some(ConsentKind::Informational),
        );
        assert_eq!(
            attestation_entry("opendental", &yes(), Some(&same), now()),
            None
        );
    }

    #[test]
    fn a_practice_yes_after_stop_is_still_recorded_for_the_history() {
        // The store keeps it out of the standing; the history shows the practice said yes.
        let stopped = held(true, sources::SMS_STOP, None);
        assert!(attestation_entry("opendental", &yes(), Some(&stopped), now()).is_some());
    }

    #[test]
    fn a_practice_no_withdraws_only_what_rests_on_the_practices_word() {
        let no = SmsConsent::Revoked { at: now() };
        let from_pms = held(
            false,
            "practice_system:opendental",
            Some(ConsentKind::Informational),
        );
        let entry = attestation_entry("opendental", &no, Some(&from_pms), now()).unwrap();
        assert_eq!(entry.grant, None);
        let from_page = held(false, sources::PATIENT_PAGE, Some(ConsentKind::Written));
        assert_eq!(
            attestation_entry("opendental", &no, Some(&from_page), now()),
            None
        );
        assert_eq!(attestation_entry("opendental", &no, None, now()), None);
        assert_eq!(
            attestation_entry("opendental", &SmsConsent::None, None, now()),
            None
        );
    }
}
