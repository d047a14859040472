//! Which channels a patient message takes: a pure rule over facts the runner gathers (the contact
//! on file, the opt-out ledger, the compliance policy's verdict on a text now).
//!
//! - Email goes out whenever a usable address is on file.
//! - A text goes out only to a phone on file that has not opted out, and only when the policy
//!   says Send (consent for the purpose, inside the texting window).
//! - In quiet hours, a patient with an email gets the email now (the text is not sent later: the
//!   email already told them); a patient reachable only by text waits for the window.
//! - Neither channel: the message is undeliverable, with a reason staff can act on.

use std::fmt;

use chrono::{DateTime, Utc};
use financing_core::{SmsBlock, SmsVerdict};
use serde::{Deserialize, Serialize};

/// A channel a message can go out on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Email.
    Email,
    /// SMS.
    Sms,
}

/// What the runner knows about reaching the patient when a message is due. No contact data: only
/// what the rule needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryFacts {
    /// An email address that can receive mail is on file ([`is_usable_email`]).
    pub has_usable_email: bool,
    /// A mobile phone number is on file.
    pub has_phone: bool,
    /// The phone opted out of texts (STOP, a carrier opt-out, staff), or the ledger could not
    /// say: an unknown answer counts as opted out.
    pub sms_opted_out: bool,
    /// The compliance policy's verdict on a text now (consent and quiet hours).
    pub sms_verdict: SmsVerdict,
}

/// How a message goes out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Send now on these channels (never empty; email first when both).
    Send {
        /// The channels.
        channels: Vec<Channel>,
    },
    /// Only a text is possible and it is quiet hours: try again when the window opens.
    WaitUntil(DateTime<Utc>),
    /// No channel can carry the message.
    Undeliverable(Undeliverable),
}

/// Why a message cannot go out. Names no patient data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Undeliverable {
    /// No usable email and no mobile phone on file.
    NoContact,
    /// No usable email, and the phone opted out of texts.
    OptedOut,
    /// No usable email, and the policy does not allow a text.
    SmsNotAllowed(SmsBlock),
}

impl fmt::Display for Undeliverable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoContact => "no email address and no mobile phone on file",
            Self::OptedOut => "no email address on file and the mobile phone opted out of texts",
            Self::SmsNotAllowed(SmsBlock::NoMobileNumber) => {
                "no email address and no mobile phone on file"
            }
            Self::SmsNotAllowed(SmsBlock::OptedOut) => {
                "no email address on file and the patient revoked SMS consent"
            }
            Self::SmsNotAllowed(SmsBlock::NeedsWrittenConsent) => {
                "no email address on file and no written SMS consent for this message"
            }
            Self::SmsNotAllowed(SmsBlock::NoConsent) => {
                "no email address and no SMS consent on file"
            }
        })
    }
}

/// An address mail can be sent to: something before and after a single `@`, no whitespace.
/// Deliberately loose (the mail server has the last word); it only keeps obvious junk that
/// practice systems hold in the email field ("none", "n/a", "refused") from counting as a channel.
pub fn is_usable_email(address: Option<&str>) -> bool {
    address.is_some_and(|a| {
        let a = a.trim();
        match a.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !a.contains(char::is_whitespace)
            }
            None => false,
        }
    })
}

/// The channels a message takes, from the facts. Pure: the runner gathers the facts and performs
/// the answer.
pub fn plan_delivery(facts: &DeliveryFacts) -> Delivery {
    let mut channels = Vec::new();
    if facts.has_usable_email {
        channels.push(Channel::Email);
    }
    let text_possible = facts.has_phone && !facts.sms_opted_out;
    let mut wait = None;
    if text_possible {
        match facts.sms_verdict {
            SmsVerdict::Send => channels.push(Channel::Sms),
            SmsVerdict::WaitUntil { at } => wait = Some(at),
            SmsVerdict::Blocked { .. } => {}
        }
    }
    if !channels.is_empty() {
        return Delivery::Send { channels };
    }
    if let Some(at) = wait {
        return Delivery::WaitUntil(at);
    }
    Delivery::Undeliverable(if !facts.has_phone {
        Undeliverable::NoContact
    } else if facts.sms_opted_out {
        Undeliverable::OptedOut
    } else {
        match facts.sms_verdict {
            SmsVerdict::Blocked { reason } => Undeliverable::SmsNotAllowed(reason),
            // Unreachable: Send and WaitUntil with a phone that has not opted out returned above.
            SmsVerdict::Send | SmsVerdict::WaitUntil { .. } => Undeliverable::NoContact,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-06-03T13:00:00Z".parse().unwrap()
    }

    fn verdicts() -> Vec<SmsVerdict> {
        let mut v = vec![SmsVerdict::Send, SmsVerdict::WaitUntil { at: at() }];
        for reason in [
            SmsBlock::NoMobileNumber,
            SmsBlock::NoConsent,
            SmsBlock::NeedsWrittenConsent,
            SmsBlock::OptedOut,
        ] {
            v.push(SmsVerdict::Blocked { reason });
        }
        v
    }

    /// Every combination of the facts.
    fn all_facts() -> Vec<DeliveryFacts> {
        let mut out = Vec::new();
        for has_usable_email in [false, true] {
            for has_phone in [false, true] {
                for sms_opted_out in [false, true] {
                    for sms_verdict in verdicts() {
                        out.push(DeliveryFacts {
                            has_usable_email,
                            has_phone,
                            sms_opted_out,
                            sms_verdict,
                        });
                    }
                }
            }
        }
        out
    }

    fn facts(email: bool, phone: bool, opted_out: bool, verdict: SmsVerdict) -> DeliveryFacts {
        DeliveryFacts {
            has_usable_email: email,
            has_phone: phone,
            sms_opted_out: opted_out,
            sms_verdict: verdict,
        }
    }

    fn send(channels: &[Channel]) -> Delivery {
        Delivery::Send {
            channels: channels.to_vec(),
        }
    }

    #[test]
    fn the_table_of_representative_cases_holds() {
        use Channel::{Email, Sms};
        let wait = SmsVerdict::WaitUntil { at: at() };
        let no_consent = SmsVerdict::Blocked {
            reason: SmsBlock::NoConsent,
        };
        let cases = [
            (
                facts(true, true, false, SmsVerdict::Send),
                send(&[Email, Sms]),
            ),
            (facts(true, true, true, SmsVerdict::Send), send(&[Email])),
            (facts(true, false, false, SmsVerdict::Send), send(&[Email])),
            (facts(false, true, false, SmsVerdict::Send), send(&[Sms])),
            (facts(true, true, false, wait.clone()), send(&[Email])),
            (
                facts(false, true, false, wait.clone()),
                Delivery::WaitUntil(at()),
            ),
            (facts(true, true, false, no_consent.clone()), send(&[Email])),
            (
                facts(false, true, false, no_consent),
                Delivery::Undeliverable(Undeliverable::SmsNotAllowed(SmsBlock::NoConsent)),
            ),
            (
                facts(false, true, true, wait),
                Delivery::Undeliverable(Undeliverable::OptedOut),
            ),
            (
                facts(false, false, false, SmsVerdict::Send),
                Delivery::Undeliverable(Undeliverable::NoContact),
            ),
        ];
        for (f, expected) in cases {
            assert_eq!(plan_delivery(&f), expected, "{f:?}");
        }
    }

    #[test]
    fn an_opted_out_phone_is_never_texted_nor_waited_for() {
        for f in all_facts().into_iter().filter(|f| f.sms_opted_out) {
            match plan_delivery(&f) {
                Delivery::Send { channels } => assert!(!channels.contains(&Channel::Sms), "{f:?}"),
                Delivery::WaitUntil(_) => panic!("waited for an opted-out phone: {f:?}"),
                Delivery::Undeliverable(_) => {}
            }
        }
    }

    #[test]
    fn a_text_goes_out_exactly_when_a_phone_has_not_opted_out_and_the_policy_says_send() {
        for f in all_facts() {
            let texted = matches!(plan_delivery(&f), Delivery::Send { ref channels } if channels.contains(&Channel::Sms));
            let allowed = f.has_phone && !f.sms_opted_out && f.sms_verdict == SmsVerdict::Send;
            assert_eq!(texted, allowed, "{f:?}");
        }
    }

    #[test]
    fn email_goes_out_now_exactly_when_a_usable_address_is_on_file() {
        for f in all_facts() {
            let emailed = matches!(plan_delivery(&f), Delivery::Send { ref channels } if channels.first() == Some(&Channel::Email));
            assert_eq!(emailed, f.has_usable_email, "{f:?}");
        }
    }

    #[test]
    fn without_email_or_a_text_the_patient_can_take_the_message_is_undeliverable() {
        for f in all_facts().into_iter().filter(|f| !f.has_usable_email) {
            let text_ok = f.has_phone && !f.sms_opted_out;
            let d = plan_delivery(&f);
            match (&f.sms_verdict, text_ok) {
                (SmsVerdict::Send, true) => assert_eq!(d, send(&[Channel::Sms]), "{f:?}"),
                (SmsVerdict::WaitUntil { at: t }, true) => {
                    assert_eq!(d, Delivery::WaitUntil(*t), "{f:?}");
                }
                _ => assert!(matches!(d, Delivery::Undeliverable(_)), "{f:?}"),
            }
        }
    }

    #[test]
    fn quiet_hours_with_an_email_send_the_email_now_and_never_wait() {
        for f in all_facts()
            .into_iter()
            .filter(|f| f.has_usable_email && matches!(f.sms_verdict, SmsVerdict::WaitUntil { .. }))
        {
            assert_eq!(plan_delivery(&f), send(&[Channel::Email]), "{f:?}");
        }
    }

    #[test]
    fn the_undeliverable_reason_names_what_is_missing_without_patient_data() {
        assert_eq!(
            Undeliverable::SmsNotAllowed(SmsBlock::NoConsent).to_string(),
            "no email address and no SMS consent on file"
        );
        assert!(Undeliverable::OptedOut.to_string().contains("opted out"));
        assert!(
            Undeliverable::NoContact
                .to_string()
                .contains("no mobile phone")
        );
    }

    #[test]
    fn only_addresses_with_one_at_and_text_on_both_sides_are_usable() {
        for (address, usable) in [
            (None, false),
            (Some(""), false),
            (Some("none"), false),
            (Some("n/a"), false),
            (Some("@example.test"), false),
            (Some("testa@"), false),
            (Some("a@b@example.test"), false),
            (Some("testa patient@example.test"), false),
            (Some("testa@example.test"), true),
            (Some("  testa@example.test  "), true),
        ] {
            assert_eq!(is_usable_email(address), usable, "{address:?}");
        }
    }

    #[test]
    fn a_send_never_has_an_empty_or_repeated_channel_list() {
        for f in all_facts() {
            if let Delivery::Send { channels } = plan_delivery(&f) {
                assert!(!channels.is_empty(), "{f:?}");
                let mut dedup = channels.clone();
                dedup.dedup();
                assert_eq!(dedup, channels, "{f:?}");
            }
        }
    }
}
