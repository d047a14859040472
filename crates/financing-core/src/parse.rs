//! Lenient readers for the values practice systems send: timestamps, dates, phone numbers,
//! language codes. Pure and shared by every connector, each of which maps a `None` to its own
//! decode error naming the resource and field (never the value).

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::patient::Language;

/// A point in time. Reads RFC 3339, and also timestamps without a zone (taken as UTC), with a
/// space instead of `T`, and bare dates (midnight UTC).
pub fn timestamp(raw: &str) -> Option<DateTime<Utc>> {
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
    calendar_date(raw)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn calendar_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    ["%Y-%m-%d", "%m/%d/%Y"]
        .iter()
        .find_map(|fmt| NaiveDate::parse_from_str(raw, fmt).ok())
}

/// A calendar date. Reads `2024-05-01`, `05/01/2024`, and the date part of a timestamp, as the
/// timestamp's own calendar date (not shifted to UTC: a birth date or an appointment day is the
/// day the practice wrote down).
pub fn date(raw: &str) -> Option<NaiveDate> {
    calendar_date(raw).or_else(|| {
        let raw = raw.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
            return Some(t.date_naive());
        }
        timestamp(raw).map(|t| t.date_naive())
    })
}

/// A US phone number in E.164 (`+15555550123`), or `None` when it cannot be one.
pub fn e164(raw: &str) -> Option<String> {
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
pub fn language(raw: Option<&str>) -> Language {
    match raw.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("es" | "spa" | "spanish" | "español" | "espanol") => Language::Es,
        Some(s) if s.starts_with("es-") || s.starts_with("es_") => Language::Es,
        _ => Language::En,
    }
}

/// A percentage as lenders write an APR (`"26.99"`, `"0"`, `"9.9%"`) in basis points (2699),
/// read as text: no float is involved. `None` for anything else (more than two decimals, a sign,
/// above 100 %): a rate is never guessed.
pub fn percent_bps(raw: &str) -> Option<u32> {
    let t = raw.trim().trim_end_matches('%').trim_end();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || whole.len() > 3 || frac.len() > 2 || !digits(whole) || !digits(frac) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let frac: u32 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u32>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let bps = whole * 100 + frac;
    (bps <= 10_000).then_some(bps)
}

/// Blank strings become `None`.
pub fn non_blank(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_read_as_basis_points_without_floats_and_never_guess() {
        assert_eq!(percent_bps("26.99"), Some(2699));
        assert_eq!(percent_bps("0"), Some(0));
        assert_eq!(percent_bps(" 9.9% "), Some(990));
        assert_eq!(percent_bps("100"), Some(10_000));
        for bad in ["", "-1", "26.999", "abc", "1e2", "100.01", ".5", "1000"] {
            assert_eq!(percent_bps(bad), None, "{bad}");
        }
    }

    #[test]
    fn timestamps_in_odd_formats_are_read_as_utc() {
        let want = DateTime::parse_from_rfc3339("2024-05-01T12:30:00Z")
            .map(|t| t.to_utc())
            .ok();
        for raw in [
            "2024-05-01T12:30:00Z",
            "2024-05-01T14:30:00+02:00",
            "2024-05-01T12:30:00.000Z",
            "2024-05-01T12:30:00",
            "2024-05-01 12:30:00",
            "2024-05-01T12:30:00.000+0000",
        ] {
            assert_eq!(timestamp(raw), want, "{raw}");
        }
        assert_eq!(
            timestamp("2024-05-01").map(|t| t.to_rfc3339()),
            Some("2024-05-01T00:00:00+00:00".into())
        );
        assert_eq!(timestamp("yesterday"), None);
    }

    #[test]
    fn dates_accept_us_order_and_keep_a_timestamps_own_day() {
        let want = NaiveDate::from_ymd_opt(1980, 2, 3);
        assert_eq!(date("1980-02-03"), want);
        assert_eq!(date("02/03/1980"), want);
        // 23:00 in Los Angeles is the next day in UTC; the practice wrote the 3rd.
        assert_eq!(date("1980-02-03T23:00:00-08:00"), want);
        assert_eq!(date("3rd Feb"), None);
    }

    #[test]
    fn phones_become_e164_or_nothing() {
        assert_eq!(e164("(555) 555-0123"), Some("+15555550123".into()));
        assert_eq!(e164("1-555-555-0123"), Some("+15555550123".into()));
        assert_eq!(e164("+44 20 7946 0000"), Some("+442079460000".into()));
        assert_eq!(e164("555-0123"), None);
    }

    #[test]
    fn languages_default_to_english_and_blanks_are_none() {
        assert_eq!(language(Some("SPANISH")), Language::Es);
        assert_eq!(language(Some("es-MX")), Language::Es);
        assert_eq!(language(Some("French")), Language::En);
        assert_eq!(language(None), Language::En);
        assert_eq!(non_blank(Some("  ")), None);
        assert_eq!(non_blank(Some(" x ")), Some("x".into()));
    }
}
