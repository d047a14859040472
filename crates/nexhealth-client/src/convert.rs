//! Lenient readers for the values practice systems send: money, timestamps, dates, phones.
//! Each failure names the resource and field, never the value.

use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{Currency, Money, parse};

use crate::error::{DecodeProblem, Error, Result};
use crate::wire::RawAmount;

/// A non-negative amount in whole units from a JSON number or decimal string, in `currency`
/// (an ISO code; USD when absent). An unknown currency is malformed money too.
pub(crate) fn money(
    raw: &RawAmount,
    currency: Option<&str>,
    resource: &'static str,
    field: &str,
) -> Result<Money> {
    let malformed = || Error::decode(resource, field, DecodeProblem::MalformedMoney);
    let currency = match currency.map(str::trim) {
        None | Some("") => Currency::Usd,
        Some(code) => code.parse().map_err(|_| malformed())?,
    };
    let text = match raw {
        RawAmount::Number(n) => n.to_string(),
        RawAmount::Text(s) => s.clone(),
    };
    Money::parse(&text, currency).map_err(|_| malformed())
}

/// A point in time (see [`financing_core::parse::timestamp`] for the formats read).
pub(crate) fn timestamp(raw: &str, resource: &'static str, field: &str) -> Result<DateTime<Utc>> {
    parse::timestamp(raw)
        .ok_or_else(|| Error::decode(resource, field, DecodeProblem::MalformedDate))
}

/// A calendar date (see [`financing_core::parse::date`]).
pub(crate) fn date(raw: &str, resource: &'static str, field: &str) -> Result<NaiveDate> {
    parse::date(raw).ok_or_else(|| Error::decode(resource, field, DecodeProblem::MalformedDate))
}

/// An optional date: absent or blank stays `None`, present must be readable.
pub(crate) fn opt_date(
    raw: Option<&str>,
    resource: &'static str,
    field: &str,
) -> Result<Option<NaiveDate>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => date(s, resource, field).map(Some),
    }
}

pub(crate) use financing_core::parse::{e164, language, non_blank};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_accept_us_order_and_timestamps() {
        let want = NaiveDate::from_ymd_opt(1980, 2, 3);
        assert_eq!(
            date("1980-02-03T00:00:00-08:00", "patients", "dob").ok(),
            want
        );
        let err = date("3rd Feb", "patients", "data.dateOfBirth").unwrap_err();
        assert_eq!(
            err.to_string(),
            "patients: cannot decode `data.dateOfBirth`: not a date we can read"
        );
    }

    #[test]
    fn money_reads_numbers_and_strings_and_names_the_field_when_malformed() {
        let n: RawAmount = serde_json::from_str("1300.5").unwrap();
        assert_eq!(money(&n, None, "r", "f").unwrap(), Money::usd(130_050));
        let s = RawAmount::Text("65.00".into());
        assert_eq!(money(&s, Some("USD"), "r", "f").unwrap(), Money::usd(6_500));
        let cad = money(&s, Some("cad"), "r", "f").unwrap();
        assert_eq!(cad, Money::new(6_500, Currency::Cad));
        for bad in ["12,00", "-5.00", "1.234", "abc"] {
            let err = money(
                &RawAmount::Text(bad.into()),
                None,
                "treatment_plans",
                "data[0].procedures[1].fee.amount",
            )
            .unwrap_err();
            let shown = err.to_string();
            assert_eq!(
                shown,
                "treatment_plans: cannot decode `data[0].procedures[1].fee.amount`: not a money amount"
            );
            assert!(!shown.contains(bad));
        }
        let err = money(&s, Some("XYZ"), "r", "f").unwrap_err();
        assert!(!err.to_string().contains("XYZ"));
    }
}
