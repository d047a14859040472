//! Durations as written in the file (`30s`, `15m`, `4h`, `3d`), read by `humantime`, and the cap
//! every configured duration stays under.

use std::time::Duration;

use super::values::quoted;

/// The longest duration any setting accepts: 365 days. Timers are set `now + duration` in the
/// workflow machine; a cap far below what date arithmetic can hold means no configured value
/// can overflow it, and no real reminder, poll or link lifetime needs more than a year.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// The cap as it is written in the file, for messages.
const MAX_WRITTEN: &str = "365d";

/// A duration with a unit (`30s`, `15m`, `4h`, `3d`, `1.5h`, or combined like `1h 30m`), at most
/// [`MAX_DURATION`].
///
/// # Errors
/// A message for the problem: no unit, not a number, or more than the cap.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "{}: expected a duration like 30s, 15m, 4h or 3d",
            quoted(text)
        )
    };
    // humantime reads a bare "0" as zero; a unit is required here, as the example says.
    if !t.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let d = humantime::parse_duration(t).map_err(|_| bad())?;
    if d > MAX_DURATION {
        return Err(format!(
            "{}: at most {MAX_WRITTEN} (a longer duration is refused so that no timer can \
             overflow the calendar)",
            quoted(text)
        ));
    }
    Ok(d)
}

/// A duration as [`parse_duration`] reads it, and more than zero.
///
/// # Errors
/// As [`parse_duration`], or the duration is zero.
pub(super) fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        Err(format!("{}: must be more than zero", quoted(text)))
    } else {
        Ok(d)
    }
}
