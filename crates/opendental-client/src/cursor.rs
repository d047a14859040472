//! Change cursors, stored by the caller as strings: [`PlanCursor`] for treatment plans
//! (`SecDateTEdit`) and [`SyncStamp`] for procedures (`DateTStamp` / `serverDateTime`).
//!
//! Both hold Open Dental server times (office-local, no zone) and are only ever compared with other
//! server times, never with our clock.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::TreatPlanNum;
use crate::types::TreatPlan;
use crate::wire;

/// A cursor string that this crate did not write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor written by this version of opendental-client")]
pub struct CursorError;

/// Where treatment-plan change detection is up to. Opaque; store it with [`ToString`] and read it
/// back with [`FromStr`] (or serde, as a string). The cursor advances only through
/// [`Client::changed_treat_plans`](crate::Client::changed_treat_plans).
///
/// Open Dental's `treatplans` listing carries no server clock, so the cursor is the latest
/// `SecDateTEdit` seen (the watermark). Each poll asks for plans edited after the watermark minus
/// a look-back (see [`ClientBuilder::change_lookback`](crate::ClientBuilder::change_lookback)), so
/// that a plan saved in the same second as the watermark, or committed a little late, is not
/// missed; the plans already returned inside that window are remembered and not returned twice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PlanCursor {
    watermark: Option<NaiveDateTime>,
    seen: BTreeSet<(TreatPlanNum, NaiveDateTime)>,
}

const PLAN_CURSOR_VERSION: &str = "od-plans-v1";

impl PlanCursor {
    /// From the beginning: the first poll returns every plan.
    pub fn beginning() -> Self {
        Self::default()
    }

    /// Plans edited after `server_time` (Open Dental server time, office-local).
    pub fn since(server_time: NaiveDateTime) -> Self {
        Self {
            watermark: Some(server_time),
            seen: BTreeSet::new(),
        }
    }

    /// The latest `SecDateTEdit` seen, if any.
    pub fn watermark(&self) -> Option<NaiveDateTime> {
        self.watermark
    }

    /// The `SecDateTEdit` filter for the next poll.
    pub(crate) fn query_from(&self, lookback: Duration) -> Option<NaiveDateTime> {
        self.watermark.map(|w| w - delta(lookback))
    }

    /// Drops plans already returned, and moves the cursor past the rest.
    pub(crate) fn advance(
        &self,
        listed: Vec<TreatPlan>,
        lookback: Duration,
    ) -> (Vec<TreatPlan>, Self) {
        let mut seen = self.seen.clone();
        let mut watermark = self.watermark;
        let mut fresh = Vec::new();
        for plan in listed {
            let is_new = match plan.sec_date_t_edit {
                Some(t) => {
                    // `insert` is false for a plan returned before (or twice in this listing).
                    let is_new = seen.insert((plan.treat_plan_num, t));
                    if is_new {
                        watermark = Some(watermark.map_or(t, |w| w.max(t)));
                    }
                    is_new
                }
                // A plan never edited cannot match a SecDateTEdit filter: only a first, unfiltered
                // poll sees it.
                None => self.watermark.is_none(),
            };
            if is_new {
                fresh.push(plan);
            }
        }
        if let Some(w) = watermark {
            let cutoff = w - delta(lookback);
            seen.retain(|&(_, t)| t >= cutoff);
        }
        (fresh, Self { watermark, seen })
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl fmt::Display for PlanCursor {
    /// `od-plans-v1;{watermark};{plan}@{time},...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PLAN_CURSOR_VERSION};")?;
        if let Some(w) = self.watermark {
            f.write_str(&wire::format_date_time(w))?;
        }
        f.write_str(";")?;
        for (i, (num, t)) in self.seen.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{num}@{}", wire::format_date_time(*t))?;
        }
        Ok(())
    }
}

impl FromStr for PlanCursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ';');
        if parts.next() != Some(PLAN_CURSOR_VERSION) {
            return Err(CursorError);
        }
        let watermark = match parts.next().ok_or(CursorError)? {
            "" => None,
            w => Some(parse_time(w)?),
        };
        let mut seen = BTreeSet::new();
        for entry in parts.next().ok_or(CursorError)?.split(',') {
            if entry.is_empty() {
                continue;
            }
            let (num, t) = entry.split_once('@').ok_or(CursorError)?;
            let num: u64 = num.parse().map_err(|_| CursorError)?;
            seen.insert((TreatPlanNum::new(num), parse_time(t)?));
        }
        if watermark.is_none() && !seen.is_empty() {
            return Err(CursorError);
        }
        Ok(Self { watermark, seen })
    }
}

fn parse_time(s: &str) -> Result<NaiveDateTime, CursorError> {
    wire::parse_date_time(s).ok().flatten().ok_or(CursorError)
}

/// The `serverDateTime` Open Dental returned with a listing, to send as the next `DateTStamp`
/// (Open Dental's documented sync pattern). Stored as `yyyy-MM-dd HH:mm:ss`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncStamp(NaiveDateTime);

impl SyncStamp {
    /// A stamp from a server time (office-local).
    pub fn new(server_time: NaiveDateTime) -> Self {
        Self(server_time)
    }

    /// The server time.
    pub fn server_time(self) -> NaiveDateTime {
        self.0
    }
}

impl fmt::Display for SyncStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&wire::format_date_time(self.0))
    }
}

impl FromStr for SyncStamp {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_time(s).map(Self)
    }
}

macro_rules! serde_as_string {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_as_string!(PlanCursor, SyncStamp);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PatNum;
    use crate::types::{TpStatus, TpType};

    fn t(s: &str) -> NaiveDateTime {
        wire::parse_date_time(s).unwrap().unwrap()
    }

    fn plan(num: u64, edited: Option<&str>) -> TreatPlan {
        TreatPlan {
            treat_plan_num: TreatPlanNum::new(num),
            pat_num: PatNum::new(1),
            date_tp: None,
            heading: String::new(),
            note: String::new(),
            respons_party: None,
            status: TpStatus::Saved,
            tp_type: TpType::Insurance,
            sec_date_t_edit: edited.map(t),
            date_t_signed: None,
            date_t_practice_signed: None,
            is_signed: None,
            is_signed_practice: None,
        }
    }

    const LOOKBACK: Duration = Duration::from_secs(60);

    #[test]
    fn first_poll_returns_everything_and_sets_the_watermark_to_the_latest_edit() {
        let c = PlanCursor::beginning();
        assert_eq!(c.query_from(LOOKBACK), None);
        let (fresh, next) = c.advance(
            vec![
                plan(1, Some("2024-05-01 10:00:00")),
                plan(2, Some("2024-05-01 10:05:00")),
                plan(3, None),
            ],
            LOOKBACK,
        );
        assert_eq!(fresh.len(), 3);
        assert_eq!(next.watermark(), Some(t("2024-05-01 10:05:00")));
        assert_eq!(next.query_from(LOOKBACK), Some(t("2024-05-01 10:04:00")));
    }

    #[test]
    fn plans_inside_the_lookback_are_not_returned_twice_but_new_edits_are() {
        let (_, c) =
            PlanCursor::beginning().advance(vec![plan(1, Some("2024-05-01 10:05:00"))], LOOKBACK);
        let (fresh, c2) = c.advance(
            vec![
                plan(1, Some("2024-05-01 10:05:00")),
                plan(2, Some("2024-05-01 10:05:00")),
                plan(1, Some("2024-05-01 10:07:00")),
                plan(4, None),
            ],
            LOOKBACK,
        );
        let got: Vec<_> = fresh
            .iter()
            .map(|p| (p.treat_plan_num.get(), p.sec_date_t_edit))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, Some(t("2024-05-01 10:05:00"))),
                (1, Some(t("2024-05-01 10:07:00")))
            ]
        );
        assert_eq!(c2.watermark(), Some(t("2024-05-01 10:07:00")));
        // Entries older than the look-back window are forgotten.
        let (_, c3) = c2.advance(vec![plan(9, Some("2024-05-01 11:00:00"))], LOOKBACK);
        assert_eq!(c3.seen.len(), 1);
    }

    #[test]
    fn an_empty_poll_keeps_the_cursor() {
        let c = PlanCursor::since(t("2024-05-01 10:00:00"));
        let (fresh, next) = c.advance(Vec::new(), LOOKBACK);
        assert!(fresh.is_empty());
        assert_eq!(next, c);
    }

    #[test]
    fn plan_cursor_round_trips_through_its_string_and_serde() {
        let (_, c) = PlanCursor::beginning().advance(
            vec![
                plan(17, Some("2024-05-01 10:05:00")),
                plan(3, Some("2024-05-01 10:04:30")),
            ],
            LOOKBACK,
        );
        let s = c.to_string();
        assert_eq!(
            s,
            "od-plans-v1;2024-05-01 10:05:00;3@2024-05-01 10:04:30,17@2024-05-01 10:05:00"
        );
        assert_eq!(s.parse::<PlanCursor>(), Ok(c.clone()));
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<PlanCursor>(&json).unwrap(), c);
        assert_eq!(
            PlanCursor::beginning().to_string().parse(),
            Ok(PlanCursor::beginning())
        );
    }

    #[test]
    fn foreign_cursor_strings_are_refused() {
        for bad in [
            "",
            "v0;;",
            "od-plans-v1;yesterday;",
            "od-plans-v1;;5@2024-05-01 10:00:00",
            "od-plans-v1;2024-05-01 10:00:00;x@2024-05-01 10:00:00",
        ] {
            assert_eq!(bad.parse::<PlanCursor>(), Err(CursorError), "{bad}");
        }
    }

    #[test]
    fn sync_stamp_round_trips() {
        let s = SyncStamp::new(t("2025-06-17 09:00:34"));
        assert_eq!(s.to_string(), "2025-06-17 09:00:34");
        assert_eq!("2025-06-17 09:00:34".parse(), Ok(s));
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            "\"2025-06-17 09:00:34\""
        );
        assert_eq!("0001-01-01 00:00:00".parse::<SyncStamp>(), Err(CursorError));
    }
}
