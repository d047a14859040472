//! Lenient readers for the values practice systems send: money, timestamps, dates, phones.
//! Each failure names the resource and field, never the value.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use financing_core::{Currency, Language, Money};

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

/// A point in time. Reads RFC 3339, and also timestamps without a zone (taken as UTC), with a
/// space instead of `T`, and bare dates (midnight UTC).
pub(crate) fn timestamp(raw: &str, resource: &'static str, field: &str) -> Result<DateTime<Utc>> {
    parse_timestamp(raw).ok_or_else(|| Error::decode(resource, field, DecodeProblem::MalformedDate))
}

fn parse_timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    // `2024-05-01 12:00:00+00:00` and `2024-05-01T12:00:00.000+0000`.
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(raw, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(raw, fmt) {
            return Some(t.and_utc());
        }
    }
    parse_date(raw)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// A calendar date. Reads `2024-05-01`, `05/01/2024`, and the date part of a timestamp.
pub(crate) fn date(raw: &str, resource: &'static str, field: &str) -> Result<NaiveDate> {
    parse_date(raw)
        .or_else(|| parse_timestamp_date(raw))
        .ok_or_else(|| Error::decode(resource, field, DecodeProblem::MalformedDate))
}

fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    ["%Y-%m-%d", "%m/%d/%Y"]
        .iter()
        .find_map(|fmt| NaiveDate::parse_from_str(raw, fmt).ok())
}

fn parse_timestamp_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    // A timestamp's own calendar date, not shifted to UTC: a birth date or an appointment day is
    // the day the practice wrote down.
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.date_naive());
    }
    parse_timestamp(raw).map(|t| t.date_naive())
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

/// A US phone number in E.164 (`+15555550123`), or `None` when it cannot be one.
pub(crate) fn e164(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if trimmed.starts_with('+') && (8..=15).contains(&digits.len()) {
        return Some(format!("+{digits}"));
    }
    match digits.len() {
        10 => Some(format!("+1{digits}")),
        11 if digits.starts_with('1') => Some(format!("+{digits}")),
        _ => None,
    }
}

/// A preferred language from a code or a name; English unless it is clearly Spanish.
pub(crate) fn language(raw: Option<&str>) -> Language {
    match raw.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("es" | "spa" | "spanish" | "español" | "espanol") => Language::Es,
        Some(s) if s.starts_with("es-") || s.starts_with("es_") => Language::Es,
        _ => Language::En,
    }
}

/// Blank strings become `None`.
pub(crate) fn non_blank(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_odd_formats_are_read_as_utc() {
        let want = DateTime::parse_from_rfc3339("2024-05-01T12:30:00Z").unwrap();
        for raw in [
            "2024-05-01T12:30:00Z",
            "2024-05-01T14:30:00+02:00",
            "2024-05-01T12:30:00.000Z",
            "2024-05-01T12:30:00",
            "2024-05-01 12:30:00",
            "2024-05-01T12:30:00.000+0000",
        ] {
            assert_eq!(parse_timestamp(raw), Some(want.to_utc()), "{raw}");
        }
        assert_eq!(
            parse_timestamp("2024-05-01").map(|t| t.to_rfc3339()),
            Some("2024-05-01T00:00:00+00:00".into())
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn dates_accept_us_order_and_timestamps() {
        let want = NaiveDate::from_ymd_opt(1980, 2, 3);
        assert_eq!(parse_date("1980-02-03"), want);
        assert_eq!(parse_date("02/03/1980"), want);
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

    #[test]
    fn phones_become_e164_or_nothing() {
        assert_eq!(e164("(555) 555-0123"), Some("+15555550123".into()));
        assert_eq!(e164("1-555-555-0123"), Some("+15555550123".into()));
        assert_eq!(e164("+44 20 7946 0000"), Some("+442079460000".into()));
        assert_eq!(e164("555-0123"), None);
    }

    #[test]
    fn languages_default_to_english() {
        assert_eq!(language(Some("SPANISH")), Language::Es);
        assert_eq!(language(Some("es-MX")), Language::Es);
        assert_eq!(language(Some("French")), Language::En);
        assert_eq!(language(None), Language::En);
    }
}
