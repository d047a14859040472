//! The Regulation Z advertising guard (12 CFR 1026.16, COMPLIANCE.md section 4).
//!
//! A message that states a rate, "no interest", a payment amount, a number of payments or a
//! repayment period is an advertisement that needs further disclosures. Such copy may only come
//! from a lender-approved template, inserted verbatim. Everything else (the default invitation
//! "financing options are available", reminders, the static text around approved copy) must pass
//! [`check_reg_z`].
//!
//! The check is deliberately conservative: any currency amount counts as a possible payment
//! amount and the word "interest" in any form counts, in English and Spanish. Links are ignored
//! (percent-encoding would otherwise look like a rate).

use std::fmt;

/// A kind of Reg Z trigger term.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TriggerTerm {
    /// A percentage: `%`, "percent", "por ciento".
    Percentage,
    /// A rate: "APR", "rate", "tasa".
    Rate,
    /// Interest or finance charges in any form: "no interest", "interest-free", "sin intereses".
    Interest,
    /// A currency amount, which may be read as a payment amount: `$99`, "50 dollars".
    PaymentAmount,
    /// A repayment period: "12 months", "six-month", "2 years", "24 meses".
    RepaymentPeriod,
    /// A number of payments: "4 payments", "doce cuotas".
    NumberOfPayments,
}

impl TriggerTerm {
    /// A short stable label (`percentage`, `rate`, …).
    pub fn label(self) -> &'static str {
        match self {
            Self::Percentage => "percentage",
            Self::Rate => "rate",
            Self::Interest => "interest",
            Self::PaymentAmount => "payment amount",
            Self::RepaymentPeriod => "repayment period",
            Self::NumberOfPayments => "number of payments",
        }
    }
}

impl fmt::Display for TriggerTerm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Text outside an approved template states Reg Z trigger terms. Names the kinds only, never the
/// text (it may contain a patient's name).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RegZViolation {
    /// The kinds found, sorted, without duplicates.
    pub terms: Vec<TriggerTerm>,
}

impl fmt::Display for RegZViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reg Z trigger terms outside a lender-approved template: ")?;
        for (i, t) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(t.label())?;
        }
        Ok(())
    }
}

const RATE_WORDS: &[&str] = &["apr", "apy", "rate", "rates", "tasa", "tasas", "tae"];
const PERCENT_WORDS: &[&str] = &["percent", "percentage", "porcentaje", "porciento"];
const INTEREST_WORDS: &[&str] = &["interest", "interés", "interes", "intereses"];
const CURRENCY_WORDS: &[&str] = &["dollar", "dollars", "dólar", "dólares", "dolares", "usd"];
const PERIOD_WORDS: &[&str] = &[
    "month", "months", "mo", "mos", "year", "years", "yr", "yrs", "mes", "meses", "año", "años",
];
const PAYMENT_WORDS: &[&str] = &[
    "payment",
    "payments",
    "installment",
    "installments",
    "pago",
    "pagos",
    "cuota",
    "cuotas",
    "plazo",
    "plazos",
    "mensualidad",
    "mensualidades",
];
const NUMBER_WORDS: &[&str] = &[
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "eighteen",
    "twenty",
    "thirty",
    "forty",
    "fifty",
    "sixty",
    "uno",
    "una",
    "dos",
    "tres",
    "cuatro",
    "cinco",
    "seis",
    "siete",
    "ocho",
    "nueve",
    "diez",
    "once",
    "doce",
    "dieciocho",
    "veinte",
    "veinticuatro",
    "treinta",
    "cuarenta",
    "cincuenta",
    "sesenta",
];

fn is_number(word: &str) -> bool {
    word.bytes().all(|b| b.is_ascii_digit()) || NUMBER_WORDS.contains(&word)
}

/// Removes `http://` and `https://` links, up to the next whitespace.
fn without_links(text: &str) -> String {
    text.split_inclusive(char::is_whitespace)
        .filter(|w| {
            let w = w.trim_start_matches(|c: char| "(<\"'".contains(c));
            !(w.starts_with("http://") || w.starts_with("https://"))
        })
        .collect()
}

/// The trigger-term kinds `text` states, sorted, without duplicates.
pub fn find_trigger_terms(text: &str) -> Vec<TriggerTerm> {
    let text = without_links(text).to_lowercase();
    let mut found = Vec::new();
    if text.contains('%') {
        found.push(TriggerTerm::Percentage);
    }
    // `$` then a digit, spaces allowed between.
    let mut rest = text.as_str();
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        if rest.trim_start().starts_with(|c: char| c.is_ascii_digit()) {
            found.push(TriggerTerm::PaymentAmount);
            break;
        }
    }
    let words: Vec<&str> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for (i, w) in words.iter().enumerate() {
        let next = words.get(i + 1).copied().unwrap_or("");
        if RATE_WORDS.contains(w) || (*w == "annual" && next == "percentage") {
            found.push(TriggerTerm::Rate);
        }
        if PERCENT_WORDS.contains(w) || (*w == "por" && next == "ciento") {
            found.push(TriggerTerm::Percentage);
        }
        if INTEREST_WORDS.contains(w)
            || (*w == "finance" && next.starts_with("charge"))
            || (w.starts_with("cargo") && next.starts_with("financiero"))
        {
            found.push(TriggerTerm::Interest);
        }
        if is_number(w) {
            if CURRENCY_WORDS.contains(&next) {
                found.push(TriggerTerm::PaymentAmount);
            }
            if PERIOD_WORDS.contains(&next) {
                found.push(TriggerTerm::RepaymentPeriod);
            }
            if PAYMENT_WORDS.contains(&next) {
                found.push(TriggerTerm::NumberOfPayments);
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Rejects text that states Reg Z trigger terms. Apply it to every message text that is not a
/// lender-approved template.
///
/// # Errors
/// [`RegZViolation`] naming the kinds of terms found.
pub fn check_reg_z(text: &str) -> Result<(), RegZViolation> {
    let terms = find_trigger_terms(text);
    if terms.is_empty() {
        Ok(())
    } else {
        Err(RegZViolation { terms })
    }
}
