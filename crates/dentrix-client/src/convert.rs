//! Lenient readers for the values practice systems send: money, timestamps, dates, phones.
//! Each failure names the resource and field, never the value.

use chrono::{DateTime, NaiveDate, Utc};
use financing_core::{Currency, Money, parse};

use crate::error::{DecodeProblem, Error, Result};
use crate::wire::RawAmount;

/// A non-negative dollar amount from a JSON number or decimal string.
pub(crate) fn money(raw: &RawAmount, resource: &'static str, field: &str) -> Result<Money> {
    let text = match raw {
        RawAmount::Number(n) => n.to_string(),
        RawAmount::Text(s) => s.clone(),
    };
    Money::parse(&text, Currency::Usd)
        .map_err(|_| Error::decode(resource, field, DecodeProblem::MalformedMoney))
}

/// An optional amount: absent stays `None`, present must be well formed.
pub(crate) fn opt_money(
    raw: Option<&RawAmount>,
    resource: &'static str,
    field: &str,
) -> Result<Option<Money>> {
    raw.map(|r| money(r, resource, field)).transpose()
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
        assert_eq!(money(&n, "r", "f").unwrap(), Money::usd(130_050));
        let s = RawAmount::Text("65.00".into());
        assert_eq!(money(&s, "r", "f").unwrap(), Money::usd(6_500));
        for bad in ["12,00", "-5.00", "1.234", "abc"] {
            let err = money(
                &RawAmount::Text(bad.into()),
                "patientprocedures",
                "data[0].amount",
            )
            .unwrap_err();
            let shown = err.to_string();
            assert_eq!(
                shown,
                "patientprocedures: cannot decode `data[0].amount`: not a money amount"
            );
            assert!(!shown.contains(bad));
        }
    }
}
