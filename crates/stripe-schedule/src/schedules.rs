//! Installment plans as subscription schedules: create, retrieve, cancel.
//!
//! A plan of `count` payments every `interval` becomes a schedule with `end_behavior=cancel`
//! whose phases last `duration[interval]` × `duration[interval_count]` (never `iterations`, which
//! API 2025-09-30.clover removed). Each phase has one item priced inline (`price_data` on the
//! practice's product) that recurs every billing interval, so a phase of `k` intervals bills `k`
//! times. An uneven total is split exactly ([`split_installments`]): the first phase lasts one
//! interval and carries the remainder, the second carries the rest.

use chrono::{DateTime, Utc};
use financing_core::Money;
use serde::Deserialize;

use crate::client::{Call, Client};
use crate::enums::{CollectionMethod, Interval, string_enum};
use crate::error::{Error, InvalidInput, Result};
use crate::form::{FormMap, FormValue};
use crate::ids::{
    CustomerId, PaymentMethodId, PriceId, ProductId, SubscriptionId, SubscriptionScheduleId,
    expandable,
};
use crate::params::{
    IdempotencyKey, MAX_CHARGE, Metadata, check_currency, check_id, minimum_charge,
};

/// Most installments in one plan.
pub const MAX_INSTALLMENTS: u32 = 120;

/// Longest plan, first charge to last billing period's end, in days (five years, counting a
/// month as 30 days and a year as 365).
pub const MAX_PLAN_DAYS: u32 = 1_825;

/// How often a plan bills: every `count` `interval`s (1 to 365 days, 52 weeks, 12 months or
/// 1 year).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillingInterval {
    /// Day, week, month or year.
    pub interval: Interval,
    /// How many of them between payments (≥ 1).
    pub count: u32,
}

impl BillingInterval {
    /// Every month.
    pub fn monthly() -> Self {
        Self {
            interval: Interval::Month,
            count: 1,
        }
    }

    /// Every `count` `interval`s.
    pub fn every(count: u32, interval: Interval) -> Self {
        Self { interval, count }
    }

    /// Approximate days in one period, for the plan-length check.
    fn days(&self) -> Option<u32> {
        let (per, max) = match self.interval {
            Interval::Day => (1, 365),
            Interval::Week => (7, 52),
            Interval::Month => (30, 12),
            Interval::Year => (365, 1),
            _ => return None,
        };
        (1..=max).contains(&self.count).then(|| per * self.count)
    }
}

/// When the first installment is charged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartDate {
    /// As soon as the schedule is created (`start_date=now`).
    Now,
    /// At a given time (the phase boundaries follow from it). A time in the past backdates
    /// the schedule and Stripe bills the past periods at once: use [`StartDate::Now`] for
    /// "today".
    At(DateTime<Utc>),
}

/// How installments are collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collection {
    /// Charge the saved card automatically: `payment_method`, or the customer's default
    /// (`invoice_settings.default_payment_method`) when `None`.
    ChargeAutomatically {
        /// The card to charge.
        payment_method: Option<PaymentMethodId>,
    },
    /// Email an invoice for each installment, due `days_until_due` days (1 to 365) after it is
    /// issued.
    SendInvoice {
        /// Days the patient has to pay each invoice.
        days_until_due: u32,
    },
}

/// An installment plan to create as a subscription schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallmentPlan {
    /// Whose plan it is.
    pub customer: CustomerId,
    /// The practice's product ([`Client::ensure_practice_product`]).
    pub product: ProductId,
    /// The amount the installments add up to, exactly.
    pub total: Money,
    /// Number of installments (1 to [`MAX_INSTALLMENTS`]).
    pub count: u32,
    /// Time between installments.
    pub every: BillingInterval,
    /// When the first one is charged.
    pub start: StartDate,
    /// Card on file or invoices.
    pub collection: Collection,
    /// Set on the schedule and on every phase, so Stripe copies it to the subscription and
    /// then to each invoice (`parent.subscription_details.metadata`). Carry the workflow id
    /// ([`WORKFLOW_KEY`](crate::WORKFLOW_KEY)); never PHI.
    pub metadata: Metadata,
}

/// The amounts of a plan: `count` installments, the first carrying the remainder of an uneven
/// division.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstallmentSplit {
    /// The first installment.
    pub first: Money,
    /// Every later installment.
    pub rest: Money,
    /// Installments in all, the first included.
    pub count: u32,
}

impl InstallmentSplit {
    /// Every installment in order.
    pub fn amounts(&self) -> Vec<Money> {
        let mut v = Vec::with_capacity(self.count as usize);
        v.push(self.first);
        v.extend(std::iter::repeat_n(self.rest, self.count as usize - 1));
        v
    }

    /// True when the first installment differs from the rest (two phases).
    pub fn is_uneven(&self) -> bool {
        self.first != self.rest
    }
}

/// Splits `total` into `count` installments whose sum is exactly `total`: `total / count` each,
/// the first plus `total % count`.
///
/// # Errors
/// [`InvalidInput`] for a zero or negative total, a currency without minor units, a count outside
/// 1..=[`MAX_INSTALLMENTS`], or installments below Stripe's minimum charge or above its maximum.
pub fn split_installments(total: Money, count: u32) -> Result<InstallmentSplit, InvalidInput> {
    check_currency(total.currency())?;
    if total.minor() <= 0 {
        return Err(InvalidInput::NonPositiveAmount);
    }
    if count == 0 || count > MAX_INSTALLMENTS {
        return Err(InvalidInput::InstallmentCount {
            count,
            max: MAX_INSTALLMENTS,
        });
    }
    let n = i64::from(count);
    let base = total.minor() / n;
    let first = base + total.minor() % n;
    let minimum = minimum_charge(total.currency());
    if base < minimum {
        return Err(InvalidInput::InstallmentBelowMinimum { minimum });
    }
    if first > MAX_CHARGE {
        return Err(InvalidInput::AboveMaximumCharge);
    }
    Ok(InstallmentSplit {
        first: Money::new(first, total.currency()),
        rest: Money::new(base, total.currency()),
        count,
    })
}

impl InstallmentPlan {
    /// Checks the plan and returns its split.
    ///
    /// # Errors
    /// [`InvalidInput`] naming the first broken rule.
    pub fn validate(&self) -> Result<InstallmentSplit, InvalidInput> {
        check_id("customer id", self.customer.as_str())?;
        check_id("product id", self.product.as_str())?;
        let split = split_installments(self.total, self.count)?;
        let period_days = self.every.days().ok_or(InvalidInput::IntervalCount)?;
        if period_days.saturating_mul(self.count) > MAX_PLAN_DAYS {
            return Err(InvalidInput::PlanTooLong {
                max_days: MAX_PLAN_DAYS,
            });
        }
        match &self.collection {
            Collection::ChargeAutomatically {
                payment_method: Some(pm),
            } => check_id("payment method id", pm.as_str())?,
            Collection::ChargeAutomatically {
                payment_method: None,
            } => {}
            Collection::SendInvoice { days_until_due } => {
                if !(1..=365).contains(days_until_due) {
                    return Err(InvalidInput::DaysUntilDue);
                }
            }
        }
        self.metadata.validate()?;
        Ok(split)
    }

    fn phase(&self, amount: Money, periods: u32) -> FormValue {
        let recurring = FormMap::new()
            .with("interval", self.every.interval.as_str())
            .with("interval_count", self.every.count);
        let price_data = FormMap::new()
            .with("currency", amount.currency().code())
            .with("product", self.product.as_str())
            .with("unit_amount", amount.minor())
            .with("recurring", recurring);
        let item = FormMap::new()
            .with("price_data", price_data)
            .with("quantity", 1_u32);
        let duration = FormMap::new()
            .with("interval", self.every.interval.as_str())
            .with("interval_count", self.every.count * periods);
        let mut phase = FormMap::new()
            .with("items", vec![FormValue::from(item)])
            .with("duration", duration)
            // Phases meet exactly at period boundaries: nothing to prorate, and a proration
            // would make the sum differ from the total.
            .with("proration_behavior", "none");
        if !self.metadata.is_empty() {
            phase.insert("metadata", self.metadata.to_form());
        }
        phase.into()
    }

    fn to_form(&self, split: &InstallmentSplit) -> FormMap {
        let mut form = FormMap::new()
            .with("customer", self.customer.as_str())
            .with(
                "start_date",
                match self.start {
                    StartDate::Now => FormValue::from("now"),
                    StartDate::At(t) => FormValue::from(t.timestamp()),
                },
            )
            .with("end_behavior", "cancel");
        let mut defaults = FormMap::new();
        match &self.collection {
            Collection::ChargeAutomatically { payment_method } => {
                defaults.insert("collection_method", "charge_automatically");
                defaults.insert_opt(
                    "default_payment_method",
                    payment_method.as_ref().map(PaymentMethodId::as_str),
                );
            }
            Collection::SendInvoice { days_until_due } => {
                defaults.insert("collection_method", "send_invoice");
                defaults.insert(
                    "invoice_settings",
                    FormMap::new().with("days_until_due", *days_until_due),
                );
            }
        }
        form.insert("default_settings", defaults);
        let phases = if split.is_uneven() {
            vec![
                self.phase(split.first, 1),
                self.phase(split.rest, split.count - 1),
            ]
        } else {
            vec![self.phase(split.rest, split.count)]
        };
        form.insert("phases", phases);
        if !self.metadata.is_empty() {
            form.insert("metadata", self.metadata.to_form());
        }
        form
    }
}

string_enum!(
    /// A schedule's `status`.
    ScheduleStatus {
        /// Not started yet.
        NotStarted => "not_started",
        /// Running.
        Active => "active",
        /// Every phase ran.
        Completed => "completed",
        /// Released: the subscription lives on without the schedule.
        Released => "released",
        /// Canceled.
        Canceled => "canceled",
    }
);

string_enum!(
    /// What happens when the last phase ends.
    EndBehavior {
        /// Cancel the subscription (Chairside's choice).
        Cancel => "cancel",
        /// Leave the subscription running, unscheduled.
        Release => "release",
        /// Nothing.
        None => "none",
        /// Renew the last phase.
        Renew => "renew",
    }
);

/// A subscription schedule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SubscriptionSchedule {
    /// `sub_sched_…`.
    pub id: SubscriptionScheduleId,
    /// The customer.
    #[serde(deserialize_with = "expandable::required")]
    pub customer: CustomerId,
    /// Status.
    pub status: ScheduleStatus,
    /// What happens after the last phase.
    #[serde(default)]
    pub end_behavior: Option<EndBehavior>,
    /// The subscription, once the schedule has started.
    #[serde(default, deserialize_with = "expandable::option")]
    pub subscription: Option<SubscriptionId>,
    /// The phases.
    #[serde(default)]
    pub phases: Vec<SchedulePhase>,
    /// The phase now running.
    #[serde(default)]
    pub current_phase: Option<CurrentPhase>,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// When it was canceled.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub canceled_at: Option<DateTime<Utc>>,
    /// When it completed.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was released.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub released_at: Option<DateTime<Utc>>,
    /// Creation time.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub created: Option<DateTime<Utc>>,
    /// Live or test mode.
    #[serde(default)]
    pub livemode: bool,
}

/// One phase of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct SchedulePhase {
    /// Start.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub start_date: Option<DateTime<Utc>>,
    /// End.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub end_date: Option<DateTime<Utc>>,
    /// Items billed in the phase.
    #[serde(default)]
    pub items: Vec<PhaseItem>,
    /// Metadata copied to the subscription during the phase.
    #[serde(default)]
    pub metadata: Metadata,
    /// Collection method override for the phase.
    #[serde(default)]
    pub collection_method: Option<CollectionMethod>,
    /// Currency (lower case).
    #[serde(default)]
    pub currency: Option<String>,
}

/// An item of a phase.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct PhaseItem {
    /// The price (Stripe creates one for inline `price_data`).
    #[serde(default, deserialize_with = "expandable::option")]
    pub price: Option<PriceId>,
    /// Quantity.
    #[serde(default)]
    pub quantity: Option<u64>,
}

/// The running phase's bounds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct CurrentPhase {
    /// Start.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub start_date: Option<DateTime<Utc>>,
    /// End.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub end_date: Option<DateTime<Utc>>,
}

string_enum!(
    /// A subscription's `status`.
    SubscriptionStatus {
        /// Waiting for the first payment.
        Incomplete => "incomplete",
        /// The first payment never succeeded.
        IncompleteExpired => "incomplete_expired",
        /// In a trial.
        Trialing => "trialing",
        /// Running.
        Active => "active",
        /// A payment failed; retries are underway.
        PastDue => "past_due",
        /// Canceled.
        Canceled => "canceled",
        /// Retries exhausted, left open.
        Unpaid => "unpaid",
        /// Paused.
        Paused => "paused",
    }
);

/// A subscription (what a running schedule drives), as `customer.subscription.*` events carry it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Subscription {
    /// `sub_…`.
    pub id: SubscriptionId,
    /// The customer.
    #[serde(deserialize_with = "expandable::required")]
    pub customer: CustomerId,
    /// Status.
    pub status: SubscriptionStatus,
    /// The schedule driving it, if any.
    #[serde(default, deserialize_with = "expandable::option")]
    pub schedule: Option<SubscriptionScheduleId>,
    /// Metadata (copied from the phase).
    #[serde(default)]
    pub metadata: Metadata,
    /// Collection method.
    #[serde(default)]
    pub collection_method: Option<CollectionMethod>,
    /// When it was canceled.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub canceled_at: Option<DateTime<Utc>>,
    /// When it ended.
    #[serde(default, with = "chrono::serde::ts_seconds_option")]
    pub ended_at: Option<DateTime<Utc>>,
}

impl Client {
    /// Creates an installment plan: `POST /v1/subscription_schedules` with
    /// `end_behavior=cancel`, phases sized by `duration`, inline prices on the practice's product,
    /// and the plan's metadata on the schedule and every phase.
    ///
    /// A plan of `count` payments every `every` becomes phases that last
    /// `duration[interval]` × `duration[interval_count]` (never `iterations`, which API
    /// 2025-09-30.clover removed). Each phase has one item priced inline (`price_data` on the
    /// practice's product) recurring every billing interval, so a phase of `k` intervals bills
    /// `k` times. An uneven total is split exactly ([`split_installments`]): the first phase
    /// lasts one interval and carries the remainder, the second carries the rest. Phases meet
    /// at period boundaries with `proration_behavior=none`, so the charges add up to the total.
    ///
    /// # Errors
    /// [`Error::Invalid`] before sending (see [`InstallmentPlan::validate`]); otherwise
    /// `Transient` (retry with the same key), `Permanent`, or `Indeterminate` (a persistent 500:
    /// look for the schedule before creating another).
    pub async fn create_installment_schedule(
        &self,
        plan: &InstallmentPlan,
        key: &IdempotencyKey,
    ) -> Result<SubscriptionSchedule> {
        const OP: &str = "create_installment_schedule";
        let split = plan.validate().map_err(|r| Error::invalid(OP, r))?;
        let form = plan.to_form(&split);
        self.send(Call::post(OP, &["subscription_schedules"], form, key))
            .await
    }

    /// Retrieves a schedule: `GET /v1/subscription_schedules/{id}`.
    ///
    /// # Errors
    /// `Permanent` for a 404 or a malformed id; `Transient` for timeouts and 5xx.
    pub async fn get_schedule(&self, id: &SubscriptionScheduleId) -> Result<SubscriptionSchedule> {
        const OP: &str = "get_schedule";
        check_id("schedule id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        self.send(Call::get(OP, &["subscription_schedules", id.as_str()]))
            .await
    }

    /// Cancels a schedule and its subscription now: `POST /v1/subscription_schedules/{id}/cancel`
    /// with `invoice_now=false` and `prorate=false`, so cancelling bills nothing more and credits
    /// nothing back (refunds, if any, are a separate decision).
    ///
    /// # Errors
    /// `Permanent` for a schedule that is already canceled or completed (Stripe answers 400;
    /// retrieve it to confirm), a 404 or a malformed id; `Transient` for timeouts and 5xx.
    pub async fn cancel_schedule(
        &self,
        id: &SubscriptionScheduleId,
        key: &IdempotencyKey,
    ) -> Result<SubscriptionSchedule> {
        const OP: &str = "cancel_schedule";
        check_id("schedule id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        let form = FormMap::new()
            .with("invoice_now", false)
            .with("prorate", false);
        self.send(Call::post(
            OP,
            &["subscription_schedules", id.as_str(), "cancel"],
            form,
            key,
        ))
        .await
    }

    /// Switches a schedule to charging a saved card automatically
    /// (`POST /v1/subscription_schedules/{id}` with `default_settings[collection_method]=
    /// charge_automatically` and `default_settings[default_payment_method]`): the card saved after
    /// the schedule was created pays the installments from now on, without re-creating the
    /// schedule. Invoices already issued keep their own collection method. The card must be
    /// attached to the schedule's customer (a card saved through Checkout in setup mode is).
    ///
    /// # Errors
    /// `Permanent` for a malformed id, a schedule that is canceled or completed, a card not
    /// attached to the customer (Stripe answers 400) or a 404; `Transient` for timeouts and 5xx.
    pub async fn set_schedule_card(
        &self,
        id: &SubscriptionScheduleId,
        payment_method: &PaymentMethodId,
        key: &IdempotencyKey,
    ) -> Result<SubscriptionSchedule> {
        const OP: &str = "set_schedule_card";
        check_id("schedule id", id.as_str()).map_err(|r| Error::invalid(OP, r))?;
        check_id("payment method id", payment_method.as_str())
            .map_err(|r| Error::invalid(OP, r))?;
        let defaults = FormMap::new()
            .with("collection_method", "charge_automatically")
            .with("default_payment_method", payment_method.as_str());
        let form = FormMap::new().with("default_settings", defaults);
        self.send(Call::post(
            OP,
            &["subscription_schedules", id.as_str()],
            form,
            key,
        ))
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::encode;
    use financing_core::Currency;
    use proptest::prelude::*;

    fn plan(total: i64, count: u32) -> InstallmentPlan {
        InstallmentPlan {
            customer: CustomerId::new("cus_1"),
            product: ProductId::new("prod_1"),
            total: Money::usd(total),
            count,
            every: BillingInterval::monthly(),
            start: StartDate::Now,
            collection: Collection::ChargeAutomatically {
                payment_method: None,
            },
            metadata: Metadata::new(),
        }
    }

    #[test]
    fn an_uneven_total_puts_the_remainder_on_the_first_installment() {
        let s = split_installments(Money::usd(100_000), 3).unwrap();
        assert_eq!(s.first, Money::usd(33_334));
        assert_eq!(s.rest, Money::usd(33_333));
        assert_eq!(
            Money::sum(Currency::Usd, s.amounts()).unwrap(),
            Money::usd(100_000)
        );
    }

    #[test]
    fn split_refuses_bad_totals_and_counts() {
        assert_eq!(
            split_installments(Money::usd(0), 3),
            Err(InvalidInput::NonPositiveAmount)
        );
        assert_eq!(
            split_installments(Money::usd(-100), 3),
            Err(InvalidInput::NonPositiveAmount)
        );
        assert_eq!(
            split_installments(Money::usd(10_000), 0),
            Err(InvalidInput::InstallmentCount { count: 0, max: 120 })
        );
        assert_eq!(
            split_installments(Money::usd(10_000_000), 121),
            Err(InvalidInput::InstallmentCount {
                count: 121,
                max: 120
            })
        );
        assert_eq!(
            split_installments(Money::usd(149), 3),
            Err(InvalidInput::InstallmentBelowMinimum { minimum: 50 })
        );
        assert_eq!(
            split_installments(Money::new(90_000, Currency::Jpy), 3),
            Err(InvalidInput::CurrencyWithoutMinorUnits("jpy"))
        );
    }

    #[test]
    fn plans_longer_than_five_years_or_with_odd_intervals_are_refused() {
        let mut p = plan(1_000_000, 61);
        assert_eq!(
            p.validate(),
            Err(InvalidInput::PlanTooLong { max_days: 1_825 })
        );
        p.count = 60;
        assert!(p.validate().is_ok());
        p.every = BillingInterval::every(0, Interval::Month);
        assert_eq!(p.validate(), Err(InvalidInput::IntervalCount));
        p.every = BillingInterval::every(13, Interval::Month);
        assert_eq!(p.validate(), Err(InvalidInput::IntervalCount));
        p.every = BillingInterval::every(1, Interval::Unknown("fortnight".into()));
        assert_eq!(p.validate(), Err(InvalidInput::IntervalCount));
        p.every = BillingInterval::every(2, Interval::Week);
        p.collection = Collection::SendInvoice { days_until_due: 0 };
        assert_eq!(p.validate(), Err(InvalidInput::DaysUntilDue));
    }

    #[test]
    fn an_even_plan_is_one_phase_sized_by_duration() {
        let p = plan(30_000, 3);
        let body = encode(&p.to_form(&p.validate().unwrap()));
        assert!(
            body.contains("phases[0][duration][interval]=month"),
            "{body}"
        );
        assert!(
            body.contains("phases[0][duration][interval_count]=3"),
            "{body}"
        );
        assert!(!body.contains("phases[1]"), "{body}");
        assert!(!body.contains("iterations"), "{body}");
        assert!(body.contains("end_behavior=cancel"), "{body}");
    }

    proptest! {
        #[test]
        fn the_installments_always_add_up_to_the_total(total in 1_i64..50_000_000, count in 1_u32..=120) {
            match split_installments(Money::usd(total), count) {
                Ok(s) => {
                    let amounts = s.amounts();
                    prop_assert_eq!(amounts.len(), count as usize);
                    prop_assert_eq!(Money::sum(Currency::Usd, amounts.iter().copied()).unwrap(), Money::usd(total));
                    prop_assert!(s.rest.minor() >= 50);
                    prop_assert!(s.first.minor() >= s.rest.minor());
                    prop_assert!(s.first.minor() - s.rest.minor() < i64::from(count));
                }
                Err(e) => prop_assert_eq!(e, InvalidInput::InstallmentBelowMinimum { minimum: 50 }),
            }
        }

        #[test]
        fn the_phases_bill_exactly_the_total(total in 150_i64..10_000_000, count in 1_u32..=60, every in 1_u32..=3) {
            // Sum over phases of unit_amount × (duration count / recurring count) is the total.
            let mut p = plan(total, count);
            p.every = BillingInterval::every(every, Interval::Week);
            let Ok(split) = p.validate() else { return Ok(()); };
            let form = p.to_form(&split);
            let Some(FormValue::List(phases)) = form.get("phases") else { panic!("no phases") };
            let mut billed = 0_i64;
            for phase in phases {
                let FormValue::Map(phase) = phase else { panic!() };
                let pairs = phase.to_pairs();
                let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.parse::<i64>().unwrap()).unwrap();
                let periods = get("duration[interval_count]") / get("items[0][price_data][recurring][interval_count]");
                billed += get("items[0][price_data][unit_amount]") * periods;
            }
            prop_assert_eq!(billed, total);
        }
    }
}
