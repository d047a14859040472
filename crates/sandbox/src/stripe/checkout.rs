//! Checkout Sessions and the sandbox-hosted checkout page (`/checkout/{id}`): a plain HTML form
//! with a Pay button, no JavaScript.

use serde_json::{Value, json};

use super::resources::Ctx;
use super::store::{ApiError, Params, StripeData, display_amount, list, metadata, now};
use crate::persona::TestCard;

/// What happened when a patient submitted the checkout page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PayOutcome {
    /// Paid: the payment intent's id.
    Paid(String),
    /// The card was declined; the session stays open.
    Declined,
    /// The session is not open any more (`complete` or `expired`).
    NotOpen(String),
}

impl StripeData {
    pub(crate) fn create_session(
        &mut self,
        ctx: &Ctx<'_>,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        let mode = p.required("mode", "mode")?;
        if !matches!(mode, "payment" | "setup") {
            return Err(ApiError::invalid(
                "mode",
                "The sandbox supports mode=payment and mode=setup.",
            ));
        }
        let customer = p.str("customer");
        if let Some(c) = customer
            && !self.customers.contains(c)
        {
            return Err(ApiError::no_such("customer", "customer", c));
        }
        if customer.is_some() && p.str("customer_email").is_some() {
            return Err(ApiError::invalid(
                "customer_email",
                "You may only specify one of these parameters: customer, customer_email.",
            ));
        }
        if let Some(r) = p.str("client_reference_id")
            && r.chars().count() > 200
        {
            return Err(ApiError::invalid(
                "client_reference_id",
                "Invalid string: must be at most 200 characters",
            ));
        }
        let created = now();
        let expires_at = p
            .int("expires_at", "expires_at")?
            .unwrap_or(created + 86_400);
        if expires_at < created + 1_800 - 5 || expires_at > created + 86_400 + 5 {
            return Err(ApiError::invalid(
                "expires_at",
                "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
            ));
        }
        let md = metadata("metadata", p.get("metadata"))?;
        let pid = p.child("payment_intent_data");
        let pi_md = metadata("payment_intent_data[metadata]", pid.get("metadata"))?;
        if let Some(sfu) = pid.str("setup_future_usage")
            && !matches!(sfu, "on_session" | "off_session")
        {
            return Err(ApiError::invalid(
                "payment_intent_data[setup_future_usage]",
                "Invalid setup_future_usage: must be one of on_session or off_session",
            ));
        }
        let mut lines = Vec::new();
        let mut total = 0i64;
        let mut currency: Option<String> = None;
        if mode == "payment" {
            let items = p.list("line_items");
            if items.is_empty() {
                return Err(ApiError::missing_param("line_items"));
            }
            for (i, item) in items.into_iter().enumerate() {
                let ip = Params(item);
                let param = format!("line_items[{i}]");
                let price = match (ip.str("price"), ip.has("price_data")) {
                    (Some(id), false) => self.prices.get(id).cloned().ok_or_else(|| {
                        ApiError::no_such(&format!("{param}[price]"), "price", id)
                    })?,
                    (None, true) => self.price_from(
                        &ip.child("price_data"),
                        &format!("{param}[price_data]"),
                        true,
                    )?,
                    (Some(_), true) => {
                        return Err(ApiError::invalid(
                            &format!("{param}[price]"),
                            "You may only specify one of these parameters: price, price_data.",
                        ));
                    }
                    (None, false) => {
                        return Err(ApiError::missing_param(&format!("{param}[price]")));
                    }
                };
                if price["type"] == "recurring" {
                    return Err(ApiError::invalid(
                        &format!("{param}[price]"),
                        "You must be in `subscription` mode to use recurring prices.",
                    ));
                }
                let quantity = ip
                    .int("quantity", &format!("{param}[quantity]"))?
                    .ok_or_else(|| ApiError::missing_param(&format!("{param}[quantity]")))?;
                if quantity < 1 {
                    return Err(ApiError::invalid(
                        &format!("{param}[quantity]"),
                        "This value must be greater than or equal to 1.",
                    ));
                }
                let cur = price["currency"].as_str().unwrap_or("usd").to_owned();
                if currency.as_ref().is_some_and(|c| *c != cur) {
                    return Err(ApiError::invalid(
                        &format!("{param}[price]"),
                        "All line items must use the same currency.",
                    ));
                }
                currency = Some(cur.clone());
                let amount = price["unit_amount"].as_i64().unwrap_or(0) * quantity;
                total += amount;
                let product_name = self
                    .products
                    .get(price["product"].as_str().unwrap_or_default())
                    .and_then(|x| x["name"].as_str())
                    .unwrap_or("Item")
                    .to_owned();
                let li = self.id("li_");
                lines.push(json!({
                    "id": li,
                    "object": "item",
                    "amount_discount": 0,
                    "amount_subtotal": amount,
                    "amount_tax": 0,
                    "amount_total": amount,
                    "currency": cur,
                    "description": product_name,
                    "price": price,
                    "quantity": quantity,
                }));
            }
        }
        let id = self.id("cs_test_");
        let url = format!("{}checkout/{id}", ctx.base_url);
        let session = json!({
            "id": id,
            "object": "checkout.session",
            "adaptive_pricing": null,
            "after_expiration": null,
            "allow_promotion_codes": null,
            "amount_subtotal": if mode == "payment" { json!(total) } else { Value::Null },
            "amount_total": if mode == "payment" { json!(total) } else { Value::Null },
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null,
            "cancel_url": p.str("cancel_url"),
            "client_reference_id": p.str("client_reference_id"),
            "client_secret": null,
            "collected_information": null,
            "consent": null,
            "consent_collection": null,
            "created": created,
            "currency_conversion": null,
            "customer_account": null,
            "integration_identifier": null,
            "managed_payments": {"enabled": false},
            "origin_context": null,
            "permissions": null,
            "wallet_options": null,
            "currency": currency,
            "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": customer,
            "customer_creation": if customer.is_some() { Value::Null } else { json!("if_required") },
            "customer_details": null,
            "customer_email": p.str("customer_email"),
            "discounts": [],
            "expires_at": expires_at,
            "invoice": null,
            "invoice_creation": null,
            "livemode": false,
            "locale": p.str("locale"),
            "metadata": md,
            "mode": mode,
            "payment_intent": null,
            "payment_link": null,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": null,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": if mode == "payment" { "unpaid" } else { "no_payment_required" },
            "phone_number_collection": {"enabled": false},
            "recovered_from": null,
            "saved_payment_method_options": null,
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_options": [],
            "status": "open",
            "submit_type": null,
            "subscription": null,
            "success_url": p.str("success_url"),
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": url,
        });
        // Kept beside the session: what the PaymentIntent will carry once paid.
        let pi_data = json!({
            "metadata": pi_md,
            "description": pid.str("description"),
            "receipt_email": pid.str("receipt_email"),
            "setup_future_usage": pid.str("setup_future_usage"),
            "statement_descriptor_suffix": pid.str("statement_descriptor_suffix"),
        });
        self.sessions.insert(session.clone());
        self.session_lines.insert(id.clone(), lines);
        self.session_pi_data.insert(id, pi_data);
        Ok(session)
    }

    /// Expires a session whose `expires_at` passed; returns whether it did.
    fn expire_if_due(&mut self, id: &str) -> bool {
        let due = self.sessions.get(id).is_some_and(|s| {
            s["status"] == "open" && s["expires_at"].as_i64().is_some_and(|t| t <= now())
        });
        if due {
            if let Some(s) = self.sessions.get_mut(id) {
                s["status"] = json!("expired");
                s["url"] = Value::Null;
            }
            let snapshot = self.sessions.get(id).cloned().unwrap_or_default();
            self.event("checkout.session.expired", snapshot, None);
        }
        due
    }

    pub(crate) fn get_session(&mut self, id: &str) -> Result<Value, ApiError> {
        self.expire_if_due(id);
        self.sessions
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("checkout.session", id))
    }

    pub(crate) fn list_sessions(&mut self, p: &Params<'_>) -> Result<Value, ApiError> {
        for id in self.sessions.ids() {
            self.expire_if_due(&id);
        }
        let customer = p.str("customer");
        let pi = p.str("payment_intent");
        let status = p.str("status");
        let rows = self
            .sessions
            .newest_first()
            .filter(|s| {
                customer.is_none_or(|c| s["customer"] == c)
                    && pi.is_none_or(|x| s["payment_intent"] == x)
                    && status.is_none_or(|x| s["status"] == x)
            })
            .cloned()
            .collect();
        list("/v1/checkout/sessions", rows, p)
    }

    pub(crate) fn session_line_items(&self, id: &str, p: &Params<'_>) -> Result<Value, ApiError> {
        let rows = self
            .session_lines
            .get(id)
            .ok_or_else(|| ApiError::not_found("checkout.session", id))?
            .clone();
        list(&format!("/v1/checkout/sessions/{id}/line_items"), rows, p)
    }

    pub(crate) fn expire_session(&mut self, ctx: &Ctx<'_>, id: &str) -> Result<Value, ApiError> {
        self.expire_if_due(id);
        let Some(s) = self.sessions.get_mut(id) else {
            return Err(ApiError::not_found("checkout.session", id));
        };
        if s["status"] != "open" {
            return Err(ApiError::unexpected_state(
                "checkout_session_not_open",
                "Only Checkout Sessions with a status in [\"open\"] can be expired.",
            ));
        }
        s["status"] = json!("expired");
        s["url"] = Value::Null;
        let snapshot = s.clone();
        self.event(
            "checkout.session.expired",
            snapshot.clone(),
            ctx.idempotency_key,
        );
        Ok(snapshot)
    }

    /// The patient pays (or saves a card) on the hosted page with `card`.
    pub(crate) fn complete_session(
        &mut self,
        id: &str,
        card: TestCard,
    ) -> Result<PayOutcome, ApiError> {
        self.expire_if_due(id);
        let Some(session) = self.sessions.get(id).cloned() else {
            return Err(ApiError::not_found("checkout.session", id));
        };
        if session["status"] != "open" {
            return Ok(PayOutcome::NotOpen(
                session["status"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        let customer = session["customer"].as_str().map(str::to_owned);
        let cust = customer
            .as_deref()
            .and_then(|c| self.customers.get(c))
            .cloned();
        let email = cust
            .as_ref()
            .and_then(|c| c["email"].as_str().map(str::to_owned))
            .or_else(|| session["customer_email"].as_str().map(str::to_owned));
        let billing = json!({
            "email": email,
            "name": cust.as_ref().map(|c| c["name"].clone()),
            "phone": cust.as_ref().map(|c| c["phone"].clone()),
            "address": cust.as_ref().map(|c| c["address"].clone()),
        });
        let pi_data = self.session_pi_data.get(id).cloned().unwrap_or_default();
        let details = json!({
            "address": billing["address"], "email": email, "name": billing["name"],
            "phone": billing["phone"], "tax_exempt": "none", "tax_ids": [],
            "business_name": null, "individual_name": null,
        });
        if session["mode"] == "setup" {
            let pm = self.new_payment_method(card, customer.as_deref(), &billing);
            let seti = self.id("seti_");
            self.setup_intents.insert(json!({
                "id": seti, "object": "setup_intent", "customer": customer, "payment_method": pm,
                "status": "succeeded", "usage": "off_session", "created": now(), "livemode": false,
                "metadata": {},
            }));
            if let Some(s) = self.sessions.get_mut(id) {
                s["status"] = json!("complete");
                s["setup_intent"] = json!(seti);
                s["customer_details"] = details;
                s["url"] = Value::Null;
            }
            let snapshot = self.sessions.get(id).cloned().unwrap_or_default();
            self.event("checkout.session.completed", snapshot, None);
            return Ok(PayOutcome::Paid(seti));
        }
        if matches!(card, TestCard::ChargeDeclined | TestCard::InsufficientFunds) {
            // Checkout shows the decline inline; the session stays open for another card.
            return Ok(PayOutcome::Declined);
        }
        let save = pi_data["setup_future_usage"].as_str().is_some();
        let pm = self.new_payment_method(
            card,
            if save { customer.as_deref() } else { None },
            &billing,
        );
        let pi_id = self.id("pi_");
        let ch = self.id("ch_");
        let amount = session["amount_total"].as_i64().unwrap_or(0);
        let pi = json!({
            "id": pi_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": amount,
            "capture_method": "automatic",
            "client_secret": format!("{pi_id}_secret_sandbox"),
            "confirmation_method": "automatic",
            "created": now(),
            "currency": session["currency"],
            "customer": customer,
            "description": pi_data["description"],
            "last_payment_error": null,
            "latest_charge": ch,
            "livemode": false,
            "metadata": pi_data["metadata"],
            "next_action": null,
            "payment_method": pm,
            "payment_method_types": ["card"],
            "receipt_email": pi_data["receipt_email"],
            "setup_future_usage": pi_data["setup_future_usage"],
            "status": "succeeded",
        });
        self.charges.insert(json!({
            "id": ch, "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": 0, "captured": true, "created": now(), "currency": session["currency"],
            "customer": customer, "livemode": false, "metadata": pi_data["metadata"], "paid": true,
            "payment_intent": pi_id, "payment_method": pm, "refunded": false, "status": "succeeded",
        }));
        self.payment_intents.insert(pi.clone());
        if let Some(s) = self.sessions.get_mut(id) {
            s["status"] = json!("complete");
            s["payment_status"] = json!("paid");
            s["payment_intent"] = json!(pi_id);
            s["customer_details"] = details;
            s["url"] = Value::Null;
        }
        let snapshot = self.sessions.get(id).cloned().unwrap_or_default();
        self.event("payment_intent.succeeded", pi, None);
        self.event("checkout.session.completed", snapshot, None);
        Ok(PayOutcome::Paid(pi_id))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The hosted checkout page.
pub(crate) fn page(
    session: &Value,
    lines: &[Value],
    note: Option<&str>,
    default_card: TestCard,
) -> String {
    let id = escape(session["id"].as_str().unwrap_or_default());
    let status = session["status"].as_str().unwrap_or_default();
    let currency = session["currency"].as_str().unwrap_or("usd");
    let mut body = String::new();
    body.push_str("<h1>Sandbox Checkout</h1>\n");
    if let Some(note) = note {
        body.push_str(&format!("<p class=\"note\">{}</p>\n", escape(note)));
    }
    body.push_str("<ul>\n");
    for l in lines {
        body.push_str(&format!(
            "<li>{} &times; {}: {}</li>\n",
            escape(l["description"].as_str().unwrap_or("Item")),
            l["quantity"],
            escape(&display_amount(
                l["amount_total"].as_i64().unwrap_or(0),
                currency
            )),
        ));
    }
    body.push_str("</ul>\n");
    if let Some(total) = session["amount_total"].as_i64() {
        body.push_str(&format!(
            "<p>Total: <strong id=\"amount\">{}</strong></p>\n",
            escape(&display_amount(total, currency))
        ));
    }
    match status {
        "open" => {
            let label = if session["mode"] == "setup" {
                "Save card"
            } else {
                "Pay"
            };
            body.push_str(&format!(
                "<form method=\"post\" action=\"/checkout/{id}\">\n"
            ));
            body.push_str("<label>Card <select name=\"card\">\n");
            for card in [
                TestCard::Visa,
                TestCard::ChargeDeclined,
                TestCard::InsufficientFunds,
                TestCard::AuthenticationRequired,
            ] {
                let selected = if card == default_card {
                    " selected"
                } else {
                    ""
                };
                body.push_str(&format!(
                    "<option value=\"{}\"{selected}>**** {} ({})</option>\n",
                    card.name(),
                    card.last4(),
                    card.name()
                ));
            }
            body.push_str(&format!(
                "</select></label>\n<button type=\"submit\">{label}</button>\n</form>\n"
            ));
        }
        "complete" => body.push_str("<p id=\"status\">Payment complete. Thank you.</p>\n"),
        other => body.push_str(&format!(
            "<p id=\"status\">This checkout link is {}.</p>\n",
            escape(other)
        )),
    }
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Sandbox Checkout</title></head>\n<body data-session=\"{id}\">\n{body}</body></html>\n"
    )
}
