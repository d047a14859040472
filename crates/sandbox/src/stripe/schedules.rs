//! Subscription schedules, the subscriptions behind them, and the invoices that bill each
//! installment.

use chrono::{DateTime, Days, Months, Utc};
use serde_json::{Value, json};

use super::resources::Ctx;
use super::store::{ApiError, Billing, Installment, Params, StripeData, list, metadata, now};
use crate::persona::TestCard;

/// Adds `count` × `interval` to a Unix time.
pub(crate) fn add_interval(ts: i64, interval: &str, count: i64) -> Option<i64> {
    let t = DateTime::<Utc>::from_timestamp(ts, 0)?;
    let n = u32::try_from(count).ok()?;
    let next = match interval {
        "day" => t.checked_add_days(Days::new(u64::from(n)))?,
        "week" => t.checked_add_days(Days::new(7 * u64::from(n)))?,
        "month" => t.checked_add_months(Months::new(n))?,
        "year" => t.checked_add_months(Months::new(12 * n))?,
        _ => return None,
    };
    Some(next.timestamp())
}

/// The result of billing one installment.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BilledInstallment {
    /// The schedule (`sub_sched_…`).
    pub schedule: String,
    /// The invoice (`in_…`).
    pub invoice: String,
    /// Installment number within the schedule, from 0.
    pub index: u32,
    /// Amount billed, in cents.
    pub amount: i64,
    /// Whether it was paid (`invoice.paid`) or failed (`invoice.payment_failed`); `false` also
    /// for `send_invoice` schedules, whose invoices wait for the patient.
    pub paid: bool,
}

struct PhaseIn {
    items: Vec<Value>,
    add_items: Vec<Value>,
    lines: Vec<(String, i64, i64)>,
    extra_lines: Vec<(String, i64, i64)>,
    currency: String,
    interval: (String, i64),
    duration: Option<(String, i64)>,
    end_date: Option<i64>,
    metadata: serde_json::Map<String, Value>,
    p: Value,
}

impl StripeData {
    fn phase_items(&mut self, phase: &Params<'_>, i: usize) -> Result<PhaseIn, ApiError> {
        if phase.has("iterations") {
            return Err(ApiError::unknown_param(&format!("phases[{i}][iterations]")));
        }
        let items = phase.list("items");
        if items.is_empty() {
            return Err(ApiError::missing_param(&format!("phases[{i}][items]")));
        }
        let mut out_items = Vec::new();
        let mut lines = Vec::new();
        let mut currency: Option<String> = None;
        let mut interval: Option<(String, i64)> = None;
        for (j, item) in items.into_iter().enumerate() {
            let ip = Params(item);
            let param = format!("phases[{i}][items][{j}]");
            let price = match (ip.str("price"), ip.has("price_data")) {
                (Some(id), false) => self
                    .prices
                    .get(id)
                    .cloned()
                    .ok_or_else(|| ApiError::no_such(&format!("{param}[price]"), "price", id))?,
                (None, true) => {
                    let pd = ip.child("price_data");
                    if pd.has("product_data") {
                        return Err(ApiError::unknown_param(&format!(
                            "{param}[price_data][product_data]"
                        )));
                    }
                    if !pd.has("recurring") {
                        return Err(ApiError::missing_param(&format!(
                            "{param}[price_data][recurring]"
                        )));
                    }
                    self.price_from(&pd, &format!("{param}[price_data]"), false)?
                }
                (Some(_), true) => {
                    return Err(ApiError::invalid(
                        &format!("{param}[price]"),
                        "You may only specify one of these parameters: price, price_data.",
                    ));
                }
                (None, false) => return Err(ApiError::missing_param(&format!("{param}[price]"))),
            };
            if price["type"] != "recurring" {
                return Err(ApiError::invalid(
                    &format!("{param}[price]"),
                    "The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.",
                ));
            }
            let cur = price["currency"].as_str().unwrap_or("usd").to_owned();
            let iv = (
                price["recurring"]["interval"]
                    .as_str()
                    .unwrap_or("month")
                    .to_owned(),
                price["recurring"]["interval_count"].as_i64().unwrap_or(1),
            );
            if currency.as_ref().is_some_and(|c| *c != cur) {
                return Err(ApiError::invalid(
                    &format!("{param}[price]"),
                    "All prices on a phase must have the same currency.",
                ));
            }
            if interval.as_ref().is_some_and(|x| *x != iv) {
                return Err(ApiError::invalid(
                    &format!("{param}[price]"),
                    "All prices on a phase must have the same recurring interval.",
                ));
            }
            currency = Some(cur);
            interval = Some(iv);
            let quantity = ip
                .int("quantity", &format!("{param}[quantity]"))?
                .unwrap_or(1);
            let unit = price["unit_amount"].as_i64().unwrap_or(0);
            let md = metadata(&format!("{param}[metadata]"), ip.get("metadata"))?;
            let price_id = price["id"].as_str().unwrap_or_default().to_owned();
            lines.push((price_id.clone(), quantity, unit * quantity));
            out_items.push(json!({
                "discounts": [],
                "metadata": md,
                "price": price_id,
                "quantity": quantity,
                "tax_rates": [],
            }));
        }
        let currency = currency.unwrap_or_else(|| "usd".into());
        let mut add_items = Vec::new();
        let mut extra_lines = Vec::new();
        for (j, item) in phase.list("add_invoice_items").into_iter().enumerate() {
            let ip = Params(item);
            let param = format!("phases[{i}][add_invoice_items][{j}]");
            let price =
                match ip.str("price") {
                    Some(id) => self.prices.get(id).cloned().ok_or_else(|| {
                        ApiError::no_such(&format!("{param}[price]"), "price", id)
                    })?,
                    None if ip.has("price_data") => self.price_from(
                        &ip.child("price_data"),
                        &format!("{param}[price_data]"),
                        false,
                    )?,
                    None => return Err(ApiError::missing_param(&format!("{param}[price]"))),
                };
            let quantity = ip
                .int("quantity", &format!("{param}[quantity]"))?
                .unwrap_or(1);
            let unit = price["unit_amount"].as_i64().unwrap_or(0);
            let price_id = price["id"].as_str().unwrap_or_default().to_owned();
            extra_lines.push((price_id.clone(), quantity, unit * quantity));
            add_items.push(json!({"discounts": [], "metadata": {}, "price": price_id, "quantity": quantity, "tax_rates": []}));
        }
        let duration = if phase.has("duration") {
            let d = phase.child("duration");
            let iv = d.str("interval").ok_or_else(|| {
                ApiError::missing_param(&format!("phases[{i}][duration][interval]"))
            })?;
            if !matches!(iv, "day" | "week" | "month" | "year") {
                return Err(ApiError::invalid(
                    &format!("phases[{i}][duration][interval]"),
                    "Invalid duration interval: must be one of day, week, month, or year",
                ));
            }
            let count = d
                .int(
                    "interval_count",
                    &format!("phases[{i}][duration][interval_count]"),
                )?
                .unwrap_or(1);
            if count < 1 {
                return Err(ApiError::invalid(
                    &format!("phases[{i}][duration][interval_count]"),
                    "This value must be greater than or equal to 1.",
                ));
            }
            Some((iv.to_owned(), count))
        } else {
            None
        };
        let end_date = phase.int("end_date", &format!("phases[{i}][end_date]"))?;
        if duration.is_some() && end_date.is_some() {
            return Err(ApiError::invalid(
                &format!("phases[{i}][duration]"),
                "You cannot set both `duration` and `end_date` on a phase.",
            ));
        }
        let md = metadata(&format!("phases[{i}][metadata]"), phase.get("metadata"))?;
        Ok(PhaseIn {
            items: out_items,
            add_items,
            lines,
            extra_lines,
            currency,
            interval: interval.unwrap_or_else(|| ("month".into(), 1)),
            duration,
            end_date,
            metadata: md,
            p: phase.0.clone(),
        })
    }

    pub(crate) fn create_schedule(
        &mut self,
        ctx: &Ctx<'_>,
        p: &Params<'_>,
    ) -> Result<(Value, bool), ApiError> {
        if p.has("from_subscription") {
            return Err(ApiError::invalid(
                "from_subscription",
                "The sandbox does not support from_subscription.",
            ));
        }
        let customer = p.required("customer", "customer")?.to_owned();
        if !self.customers.contains(&customer) {
            return Err(ApiError::no_such("customer", "customer", &customer));
        }
        let now_ts = now();
        let start = match p.str("start_date") {
            None | Some("now") => now_ts,
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| ApiError::invalid("start_date", format!("Invalid integer: {s}")))?,
        };
        let end_behavior = p.str("end_behavior").unwrap_or("release");
        if !matches!(end_behavior, "release" | "cancel" | "none" | "renew") {
            return Err(ApiError::invalid(
                "end_behavior",
                "Invalid end_behavior: must be one of cancel, none, release, or renew",
            ));
        }
        let md = metadata("metadata", p.get("metadata"))?;
        let ds = p.child("default_settings");
        let collection = ds
            .str("collection_method")
            .unwrap_or("charge_automatically");
        if !matches!(collection, "charge_automatically" | "send_invoice") {
            return Err(ApiError::invalid(
                "default_settings[collection_method]",
                "Invalid collection_method",
            ));
        }
        let days_until_due = ds.child("invoice_settings").int(
            "days_until_due",
            "default_settings[invoice_settings][days_until_due]",
        )?;
        if collection == "send_invoice" && days_until_due.is_none() {
            return Err(ApiError::missing_param(
                "default_settings[invoice_settings][days_until_due]",
            ));
        }
        if let Some(pm) = ds.str("default_payment_method") {
            self.ensure_payment_method(pm, "default_settings[default_payment_method]")?;
        }
        let phases_in = p.list("phases");
        if phases_in.is_empty() {
            return Err(ApiError::missing_param("phases"));
        }
        let mut parsed = Vec::new();
        for (i, phase) in phases_in.into_iter().enumerate() {
            parsed.push(self.phase_items(&Params(phase), i)?);
        }
        let mut phases = Vec::new();
        let mut installments = Vec::new();
        let mut phase_start = start;
        for (i, ph) in parsed.iter().enumerate() {
            let end = match (&ph.duration, ph.end_date) {
                (Some((iv, n)), _) => add_interval(phase_start, iv, *n),
                (None, Some(e)) => Some(e),
                (None, None) => add_interval(phase_start, &ph.interval.0, ph.interval.1),
            }
            .ok_or_else(|| ApiError::invalid(&format!("phases[{i}]"), "Invalid phase length"))?;
            if end <= phase_start {
                return Err(ApiError::invalid(
                    &format!("phases[{i}][end_date]"),
                    "The phase end_date must be after its start date.",
                ));
            }
            let mut t = phase_start;
            let mut first = true;
            while t < end {
                let next = add_interval(t, &ph.interval.0, ph.interval.1).unwrap_or(end);
                let mut lines = ph.lines.clone();
                if first {
                    lines.extend(ph.extra_lines.iter().cloned());
                }
                installments.push(Installment {
                    phase: i,
                    amount: lines.iter().map(|l| l.2).sum(),
                    currency: ph.currency.clone(),
                    period_start: t,
                    period_end: next.min(end),
                    lines,
                });
                first = false;
                t = next;
            }
            let pp = Params(&ph.p);
            phases.push(json!({
                "add_invoice_items": ph.add_items,
                "application_fee_percent": null,
                "automatic_tax": {"enabled": false, "liability": null, "disabled_reason": null},
                "billing_cycle_anchor": null,
                "collection_method": pp.str("collection_method"),
                "currency": ph.currency,
                "default_payment_method": pp.str("default_payment_method"),
                "default_tax_rates": [],
                "description": pp.str("description"),
                "discounts": [],
                "end_date": end,
                "invoice_settings": null,
                "items": ph.items,
                "metadata": ph.metadata,
                "on_behalf_of": null,
                "proration_behavior": pp.str("proration_behavior").unwrap_or("create_prorations"),
                "start_date": phase_start,
                "transfer_data": null,
                "trial_end": null,
            }));
            phase_start = end;
        }
        let id = self.id("sub_sched_");
        let started = start <= now_ts;
        let first_phase = &phases[0];
        let mut schedule = json!({
            "id": id,
            "object": "subscription_schedule",
            "application": null,
            "billing_mode": {"type": "classic"},
            "canceled_at": null,
            "completed_at": null,
            "created": now_ts,
            "current_phase": null,
            "customer": customer,
            "customer_account": null,
            "default_settings": {
                "application_fee_percent": null,
                "automatic_tax": {"enabled": false, "liability": null, "disabled_reason": null},
                "billing_cycle_anchor": "automatic",
                "billing_thresholds": null,
                "collection_method": collection,
                "default_payment_method": ds.str("default_payment_method"),
                "description": ds.str("description"),
                "invoice_settings": {"account_tax_ids": null, "days_until_due": days_until_due, "issuer": {"type": "self"}},
                "on_behalf_of": null,
                "transfer_data": null,
            },
            "end_behavior": end_behavior,
            "livemode": false,
            "metadata": md,
            "phases": phases,
            "released_at": null,
            "released_subscription": null,
            "status": "not_started",
            "subscription": null,
            "test_clock": null,
        });
        if started {
            schedule["current_phase"] = json!({"start_date": first_phase["start_date"], "end_date": first_phase["end_date"]});
        }
        self.schedules.insert(schedule);
        self.billing.insert(
            id.clone(),
            Billing {
                installments,
                next: 0,
            },
        );
        if started {
            self.start_schedule(ctx, &id);
        }
        self.event(
            "subscription_schedule.created",
            self.schedules.get(&id).cloned().unwrap_or_default(),
            ctx.idempotency_key,
        );
        Ok((
            self.schedules.get(&id).cloned().unwrap_or_default(),
            started,
        ))
    }

    /// Activates a schedule: creates the subscription it drives.
    fn start_schedule(&mut self, ctx: &Ctx<'_>, id: &str) {
        let Some(s) = self.schedules.get(id).cloned() else {
            return;
        };
        if s["status"] != "not_started" {
            return;
        }
        let sub_id = self.id("sub_");
        let phase0 = &s["phases"][0];
        let items: Vec<Value> = phase0["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|it| {
                json!({
                    "object": "subscription_item",
                    "price": self.prices.get(it["price"].as_str().unwrap_or_default()).cloned(),
                    "quantity": it["quantity"],
                    "current_period_start": phase0["start_date"],
                    "current_period_end": phase0["end_date"],
                    "metadata": it["metadata"],
                })
            })
            .collect();
        let sub = json!({
            "id": sub_id,
            "object": "subscription",
            "cancel_at": null,
            "cancel_at_period_end": false,
            "canceled_at": null,
            "collection_method": s["default_settings"]["collection_method"],
            "created": now(),
            "currency": phase0["currency"],
            "customer": s["customer"],
            "default_payment_method": phase0["default_payment_method"].as_str().or(s["default_settings"]["default_payment_method"].as_str()),
            "ended_at": null,
            "items": {"object": "list", "data": items, "has_more": false, "url": format!("/v1/subscription_items?subscription={sub_id}")},
            "latest_invoice": null,
            "livemode": false,
            "metadata": phase0["metadata"],
            "schedule": id,
            "start_date": phase0["start_date"],
            "status": "active",
        });
        self.subscriptions.insert(sub.clone());
        if let Some(obj) = self.schedules.get_mut(id) {
            obj["status"] = json!("active");
            obj["subscription"] = json!(sub_id);
            obj["current_phase"] =
                json!({"start_date": phase0["start_date"], "end_date": phase0["end_date"]});
        }
        self.event("customer.subscription.created", sub, ctx.idempotency_key);
    }

    pub(crate) fn get_schedule(&self, id: &str) -> Result<Value, ApiError> {
        self.schedules
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("subscription_schedule", id))
    }

    pub(crate) fn list_schedules(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let customer = p.str("customer");
        let rows = self
            .schedules
            .newest_first()
            .filter(|s| customer.is_none_or(|c| s["customer"] == c))
            .cloned()
            .collect();
        list("/v1/subscription_schedules", rows, p)
    }

    pub(crate) fn cancel_schedule(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        let _invoice_now = p.bool("invoice_now", "invoice_now")?;
        let _prorate = p.bool("prorate", "prorate")?;
        let Some(s) = self.schedules.get_mut(id) else {
            return Err(ApiError::not_found("subscription_schedule", id));
        };
        let status = s["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(status.as_str(), "not_started" | "active") {
            return Err(ApiError::unexpected_state(
                "subscription_schedule_not_cancelable",
                format!("You cannot cancel a subscription schedule that is {status}."),
            ));
        }
        s["status"] = json!("canceled");
        s["canceled_at"] = json!(now());
        s["current_phase"] = Value::Null;
        let sub = s["subscription"].as_str().map(str::to_owned);
        let snapshot = s.clone();
        if let Some(sub) = sub.and_then(|sid| self.subscriptions.get_mut(&sid)) {
            sub["status"] = json!("canceled");
            sub["canceled_at"] = json!(now());
            sub["ended_at"] = json!(now());
            let sub = sub.clone();
            self.event("customer.subscription.deleted", sub, ctx.idempotency_key);
        }
        self.event(
            "subscription_schedule.canceled",
            snapshot.clone(),
            ctx.idempotency_key,
        );
        Ok(snapshot)
    }

    pub(crate) fn release_schedule(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        let _ = p.bool("preserve_cancel_date", "preserve_cancel_date")?;
        let Some(s) = self.schedules.get_mut(id) else {
            return Err(ApiError::not_found("subscription_schedule", id));
        };
        let status = s["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(status.as_str(), "not_started" | "active") {
            return Err(ApiError::unexpected_state(
                "subscription_schedule_not_releasable",
                format!("You cannot release a subscription schedule that is {status}."),
            ));
        }
        s["status"] = json!("released");
        s["released_at"] = json!(now());
        s["released_subscription"] = s["subscription"].clone();
        s["subscription"] = Value::Null;
        let snapshot = s.clone();
        self.event(
            "subscription_schedule.released",
            snapshot.clone(),
            ctx.idempotency_key,
        );
        Ok(snapshot)
    }

    /// `POST /v1/subscription_schedules/{id}`: the subset Chairside uses, the default settings'
    /// collection method and card (and metadata). Later installments follow the new settings;
    /// invoices already issued keep theirs, as in Stripe.
    pub(crate) fn update_schedule(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        if p.has("phases") {
            return Err(ApiError::invalid(
                "phases",
                "The sandbox does not support updating phases.",
            ));
        }
        let Some(s) = self.schedules.get(id).cloned() else {
            return Err(ApiError::not_found("subscription_schedule", id));
        };
        let status = s["status"].as_str().unwrap_or_default().to_owned();
        if !matches!(status.as_str(), "not_started" | "active") {
            return Err(ApiError::unexpected_state(
                "subscription_schedule_not_updatable",
                format!(
                    "You cannot update a subscription schedule that is currently in the `{status}` status."
                ),
            ));
        }
        let ds = p.child("default_settings");
        let collection = ds.str("collection_method");
        if let Some(c) = collection
            && !matches!(c, "charge_automatically" | "send_invoice")
        {
            return Err(ApiError::invalid(
                "default_settings[collection_method]",
                "Invalid collection_method",
            ));
        }
        let pm = ds.str("default_payment_method");
        if let Some(pm) = pm {
            self.ensure_payment_method(pm, "default_settings[default_payment_method]")?;
            let owner = self
                .payment_methods
                .get(pm)
                .and_then(|m| m["customer"].as_str().map(str::to_owned));
            if owner.as_deref().is_some_and(|o| s["customer"] != o) {
                return Err(ApiError::invalid(
                    "default_settings[default_payment_method]",
                    format!(
                        "The PaymentMethod {pm} does not belong to the Customer of this schedule."
                    ),
                ));
            }
        }
        let md = p
            .has("metadata")
            .then(|| metadata("metadata", p.get("metadata")))
            .transpose()?;
        let sub_id = s["subscription"].as_str().map(str::to_owned);
        let Some(obj) = self.schedules.get_mut(id) else {
            return Err(ApiError::not_found("subscription_schedule", id));
        };
        if let Some(c) = collection {
            obj["default_settings"]["collection_method"] = json!(c);
            if c == "charge_automatically" {
                // Stripe documents `days_until_due` as null for a `charge_automatically`
                // schedule (the SDK's `SubscriptionSchedule.DefaultSettings.InvoiceSettings`);
                // the update takes no empty value to unset it: switching clears it.
                if obj["default_settings"]["invoice_settings"].is_object() {
                    obj["default_settings"]["invoice_settings"]["days_until_due"] = Value::Null;
                }
            }
        }
        if let Some(pm) = pm {
            obj["default_settings"]["default_payment_method"] = json!(pm);
        }
        if let Some(md) = md {
            obj["metadata"] = Value::Object(md);
        }
        let snapshot = obj.clone();
        if let Some(sub) = sub_id.and_then(|sid| self.subscriptions.get_mut(&sid)) {
            if let Some(c) = collection {
                sub["collection_method"] = json!(c);
                if c == "charge_automatically" {
                    // "Valid only for subscriptions where `collection_method` is `send_invoice`".
                    sub["days_until_due"] = Value::Null;
                }
            }
            if let Some(pm) = pm {
                sub["default_payment_method"] = json!(pm);
            }
        }
        self.event(
            "subscription_schedule.updated",
            snapshot.clone(),
            ctx.idempotency_key,
        );
        Ok(snapshot)
    }

    pub(crate) fn get_subscription(&self, id: &str) -> Result<Value, ApiError> {
        self.subscriptions
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("subscription", id))
    }

    /// Bills the next installment of schedule `id`, if it is active (or due to start).
    pub(crate) fn bill_next(&mut self, ctx: &Ctx<'_>, id: &str) -> Option<BilledInstallment> {
        let status = self.schedules.get(id)?["status"].as_str()?.to_owned();
        if status == "not_started" {
            self.start_schedule(ctx, id);
        } else if status != "active" {
            return None;
        }
        let billing = self.billing.get_mut(id)?;
        let index = billing.next;
        let inst = billing.installments.get(index)?.clone();
        billing.next += 1;
        let remaining = billing.installments.len() - billing.next;
        let schedule = self.schedules.get(id)?.clone();
        let phase = &schedule["phases"][inst.phase];
        let sub_id = schedule["subscription"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let customer = schedule["customer"].as_str().unwrap_or_default().to_owned();
        let collection = phase["collection_method"]
            .as_str()
            .or(schedule["default_settings"]["collection_method"].as_str())
            .unwrap_or("charge_automatically")
            .to_owned();
        let pm = phase["default_payment_method"]
            .as_str()
            .or(schedule["default_settings"]["default_payment_method"].as_str())
            .map(str::to_owned)
            .or_else(|| {
                self.customers.get(&customer).and_then(|c| {
                    c["invoice_settings"]["default_payment_method"]
                        .as_str()
                        .map(str::to_owned)
                })
            });
        let invoice_id = self.id("in_");
        let number_prefix = self
            .customers
            .get(&customer)
            .and_then(|c| c["invoice_prefix"].as_str())
            .unwrap_or("SBX")
            .to_owned();
        let lines: Vec<Value> = inst
            .lines
            .iter()
            .map(|(price, qty, amount)| {
                json!({
                    "id": format!("il_{}", &invoice_id[3..]),
                    "object": "line_item",
                    "amount": amount,
                    "currency": inst.currency,
                    "description": null,
                    "discount_amounts": [],
                    "discountable": true,
                    "discounts": [],
                    "invoice": invoice_id,
                    "livemode": false,
                    "metadata": phase["metadata"],
                    "parent": {
                        "type": "subscription_item_details",
                        "invoice_item_details": null,
                        "subscription_item_details": {"subscription": sub_id, "subscription_item": null, "proration": false, "proration_details": null, "invoice_item": null},
                    },
                    "period": {"start": inst.period_start, "end": inst.period_end},
                    "pricing": {"type": "price_details", "price_details": {"price": price, "product": self.prices.get(price).map(|x| x["product"].clone())}, "unit_amount_decimal": null},
                    "quantity": qty,
                })
            })
            .collect();
        let days = schedule["default_settings"]["invoice_settings"]["days_until_due"].as_i64();
        let mut invoice = json!({
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Sandbox Dental",
            "amount_due": inst.amount,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": inst.amount,
            "amount_shipping": 0,
            "attempt_count": 0,
            "attempted": false,
            "auto_advance": true,
            "automatic_tax": {"enabled": false, "liability": null, "status": null},
            "billing_reason": if index == 0 { "subscription_create" } else { "subscription_cycle" },
            "collection_method": collection,
            "created": now(),
            "currency": inst.currency,
            "customer": customer,
            "customer_email": self.customers.get(&customer).map(|c| c["email"].clone()),
            "default_payment_method": null,
            "description": null,
            "due_date": if collection == "send_invoice" { json!(now() + 86_400 * days.unwrap_or(0)) } else { Value::Null },
            "effective_at": now(),
            "hosted_invoice_url": format!("{}invoice/{invoice_id}", ctx.base_url),
            "last_finalization_error": null,
            "lines": {"object": "list", "data": lines, "has_more": false, "url": format!("/v1/invoices/{invoice_id}/lines")},
            "livemode": false,
            "metadata": {},
            "next_payment_attempt": null,
            "number": format!("{number_prefix}-{:04}", index + 1),
            "parent": {
                "type": "subscription_details",
                "quote_details": null,
                "subscription_details": {"metadata": phase["metadata"], "subscription": sub_id},
            },
            "payments": {"object": "list", "data": [], "has_more": false, "url": "/v1/invoice_payments"},
            "period_end": inst.period_end,
            "period_start": inst.period_start,
            "status": "open",
            "status_transitions": {"finalized_at": now(), "marked_uncollectible_at": null, "paid_at": null, "voided_at": null},
            "subtotal": inst.amount,
            "total": inst.amount,
            "account_tax_ids": null,
            "application": null,
            "automatically_finalizes_at": null,
            "custom_fields": null,
            "customer_account": null,
            "customer_address": null,
            "customer_name": self.customers.get(&customer).map(|c| c["name"].clone()),
            "customer_phone": self.customers.get(&customer).map(|c| c["phone"].clone()),
            "customer_shipping": null,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_source": null,
            "default_tax_rates": [],
            "discounts": [],
            "ending_balance": 0,
            "footer": null,
            "from_invoice": null,
            "invoice_pdf": null,
            "issuer": {"type": "self"},
            "latest_revision": null,
            "on_behalf_of": null,
            "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": null,
            "rendering": null,
            "shipping_cost": null,
            "shipping_details": null,
            "starting_balance": 0,
            "statement_descriptor": null,
            "subtotal_excluding_tax": inst.amount,
            "test_clock": null,
            "total_discount_amounts": [],
            "total_excluding_tax": inst.amount,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": now(),
        });
        let mut paid = false;
        let mut failure_events: Vec<&str> = Vec::new();
        if collection == "charge_automatically" {
            invoice["attempt_count"] = json!(1);
            invoice["attempted"] = json!(true);
            let card = pm.as_deref().map(|p| self.card_of(p));
            let pi_id = self.id("pi_");
            let mut pi = json!({
                "id": pi_id, "object": "payment_intent", "amount": inst.amount,
                "amount_received": 0, "currency": inst.currency, "customer": customer,
                "created": now(), "description": "Subscription update", "livemode": false,
                "metadata": {}, "payment_method": pm, "status": "requires_payment_method",
                "latest_charge": null, "last_payment_error": null, "payment_method_types": ["card"],
            });
            match card {
                Some(TestCard::Visa) => {
                    let ch = self.id("ch_");
                    pi["status"] = json!("succeeded");
                    pi["amount_received"] = json!(inst.amount);
                    pi["latest_charge"] = json!(ch);
                    self.charges.insert(json!({
                        "id": ch, "object": "charge", "amount": inst.amount, "amount_captured": inst.amount,
                        "amount_refunded": 0, "captured": true, "created": now(), "currency": inst.currency,
                        "customer": customer, "livemode": false, "metadata": {}, "paid": true,
                        "payment_intent": pi_id, "payment_method": pm, "refunded": false, "status": "succeeded",
                    }));
                    invoice["status"] = json!("paid");
                    invoice["amount_paid"] = json!(inst.amount);
                    invoice["amount_remaining"] = json!(0);
                    invoice["status_transitions"]["paid_at"] = json!(now());
                    invoice["payments"]["data"] = json!([{
                        "object": "invoice_payment", "amount_paid": inst.amount, "amount_requested": inst.amount,
                        "invoice": invoice_id, "is_default": true, "livemode": false,
                        "payment": {"type": "payment_intent", "payment_intent": pi_id},
                        "status": "paid",
                    }]);
                    paid = true;
                }
                other => {
                    let (code, decline) = match other {
                        Some(TestCard::AuthenticationRequired) => {
                            ("authentication_required", "authentication_required")
                        }
                        Some(TestCard::InsufficientFunds) => {
                            ("card_declined", "insufficient_funds")
                        }
                        Some(_) => ("card_declined", "generic_decline"),
                        None => ("invoice_no_payment_method", "no_payment_method"),
                    };
                    pi["last_payment_error"] =
                        json!({"type": "card_error", "code": code, "decline_code": decline});
                    invoice["next_payment_attempt"] = json!(now() + 3 * 86_400);
                    invoice["payments"]["data"] = json!([{
                        "object": "invoice_payment", "amount_paid": null, "amount_requested": inst.amount,
                        "invoice": invoice_id, "is_default": true, "livemode": false,
                        "payment": {"type": "payment_intent", "payment_intent": pi_id},
                        "status": "open",
                    }]);
                    if other == Some(TestCard::AuthenticationRequired) {
                        failure_events.push("invoice.payment_action_required");
                    }
                    failure_events.push("invoice.payment_failed");
                }
            }
            self.payment_intents.insert(pi);
        }
        self.invoices.insert(invoice.clone());
        self.invoice_installments.insert(
            invoice_id.clone(),
            (id.to_owned(), u32::try_from(index).unwrap_or(u32::MAX)),
        );
        if let Some(sub) = self.subscriptions.get_mut(&sub_id) {
            sub["latest_invoice"] = json!(invoice_id);
        }
        self.event("invoice.finalized", invoice.clone(), ctx.idempotency_key);
        if paid {
            let idx = u32::try_from(index).unwrap_or(u32::MAX);
            *self
                .installment_charges
                .entry((id.to_owned(), idx))
                .or_insert(0) += 1;
            self.event("invoice.paid", invoice.clone(), ctx.idempotency_key);
            self.event("invoice.payment_succeeded", invoice, ctx.idempotency_key);
        } else {
            for kind in failure_events {
                self.event(kind, invoice.clone(), ctx.idempotency_key);
            }
        }
        // Move the current phase along, and finish the schedule after its last installment.
        if let Some(next) = self
            .billing
            .get(id)
            .and_then(|b| b.installments.get(b.next))
        {
            let ph = &schedule["phases"][next.phase];
            if let Some(s) = self.schedules.get_mut(id) {
                s["current_phase"] =
                    json!({"start_date": ph["start_date"], "end_date": ph["end_date"]});
            }
        }
        if remaining == 0 {
            self.finish_schedule(ctx, id);
        }
        Some(BilledInstallment {
            schedule: id.to_owned(),
            invoice: invoice_id,
            index: u32::try_from(index).unwrap_or(u32::MAX),
            amount: inst.amount,
            paid,
        })
    }

    fn finish_schedule(&mut self, ctx: &Ctx<'_>, id: &str) {
        let Some(s) = self.schedules.get_mut(id) else {
            return;
        };
        let behavior = s["end_behavior"].as_str().unwrap_or("release").to_owned();
        let sub = s["subscription"].as_str().map(str::to_owned);
        s["current_phase"] = Value::Null;
        let kind = if behavior == "release" {
            s["status"] = json!("released");
            s["released_at"] = json!(now());
            s["released_subscription"] = s["subscription"].clone();
            s["subscription"] = Value::Null;
            "subscription_schedule.released"
        } else {
            s["status"] = json!("completed");
            s["completed_at"] = json!(now());
            "subscription_schedule.completed"
        };
        let snapshot = s.clone();
        if behavior == "cancel"
            && let Some(sub) = sub.and_then(|sid| self.subscriptions.get_mut(&sid))
        {
            sub["status"] = json!("canceled");
            sub["canceled_at"] = json!(now());
            sub["ended_at"] = json!(now());
            let sub = sub.clone();
            self.event("customer.subscription.deleted", sub, ctx.idempotency_key);
        }
        self.event(kind, snapshot, ctx.idempotency_key);
    }

    /// Marks an open invoice paid (a `send_invoice` invoice the patient paid, or a retried one).
    pub(crate) fn pay_invoice(&mut self, ctx: &Ctx<'_>, id: &str) -> Result<Value, ApiError> {
        let Some(inv) = self.invoices.get_mut(id) else {
            return Err(ApiError::not_found("invoice", id));
        };
        if inv["status"] != "open" {
            return Err(ApiError::unexpected_state(
                "invoice_not_open",
                "Invoice is not open.",
            ));
        }
        let amount = inv["amount_due"].clone();
        inv["status"] = json!("paid");
        inv["amount_paid"] = amount;
        inv["amount_remaining"] = json!(0);
        inv["status_transitions"]["paid_at"] = json!(now());
        inv["next_payment_attempt"] = Value::Null;
        let snapshot = inv.clone();
        if let Some(key) = self.invoice_installments.get(id).cloned() {
            *self.installment_charges.entry(key).or_insert(0) += 1;
        }
        self.event("invoice.paid", snapshot.clone(), ctx.idempotency_key);
        Ok(snapshot)
    }

    pub(crate) fn get_invoice(&self, id: &str) -> Result<Value, ApiError> {
        self.invoices
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("invoice", id))
    }

    pub(crate) fn list_invoices(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let customer = p.str("customer");
        let subscription = p.str("subscription");
        let status = p.str("status");
        let rows = self
            .invoices
            .newest_first()
            .filter(|i| {
                customer.is_none_or(|c| i["customer"] == c)
                    && subscription
                        .is_none_or(|s| i["parent"]["subscription_details"]["subscription"] == s)
                    && status.is_none_or(|s| i["status"] == s)
            })
            .cloned()
            .collect();
        list("/v1/invoices", rows, p)
    }
}
