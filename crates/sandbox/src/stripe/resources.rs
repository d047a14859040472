//! The resources: customers, products, prices, payment methods, payment intents, refunds,
//! events. Schedules, invoices and checkout live in their own modules.

use serde_json::{Value, json};

use super::store::{ApiError, Params, StripeData, list, merge_metadata, metadata, now};
use crate::persona::TestCard;

/// Per-request context the operations need.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    /// Base URL of the Stripe stand-in (for checkout URLs), with a trailing slash.
    pub(crate) base_url: &'a str,
    /// The request's idempotency key, if any (copied into events).
    pub(crate) idempotency_key: Option<&'a str>,
}

fn address(p: &Params<'_>) -> Value {
    let a = p.child("address");
    if !p.has("address") {
        return Value::Null;
    }
    json!({
        "city": a.str("city"),
        "country": a.str("country"),
        "line1": a.str("line1"),
        "line2": a.str("line2"),
        "postal_code": a.str("postal_code"),
        "state": a.str("state"),
    })
}

fn check_len(p: &Params<'_>, key: &str, max: usize) -> Result<(), ApiError> {
    if let Some(s) = p.str(key)
        && s.chars().count() > max
    {
        return Err(ApiError::invalid(
            key,
            format!("Invalid string: must be at most {max} characters"),
        ));
    }
    Ok(())
}

impl StripeData {
    // ------------------------------------------------------------------------------- customers

    pub(crate) fn create_customer(&mut self, p: &Params<'_>) -> Result<Value, ApiError> {
        let md = metadata("metadata", p.get("metadata"))?;
        check_len(p, "email", 512)?;
        check_len(p, "name", 256)?;
        check_len(p, "phone", 20)?;
        let default_pm = p.child("invoice_settings").str("default_payment_method");
        let attach_pm = p.str("payment_method");
        for pm in [default_pm, attach_pm].into_iter().flatten() {
            self.ensure_payment_method(pm, "payment_method")?;
        }
        let id = self.id("cus_");
        let prefix: String = id[4..11].to_ascii_uppercase();
        let customer = json!({
            "id": id,
            "object": "customer",
            "address": address(p),
            "balance": 0,
            "created": now(),
            "currency": null,
            "default_source": null,
            "delinquent": false,
            "description": p.str("description"),
            "discount": null,
            "email": p.str("email"),
            "invoice_prefix": prefix,
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": default_pm,
                "footer": null,
                "rendering_options": null,
            },
            "livemode": false,
            "metadata": md,
            "name": p.str("name"),
            "next_invoice_sequence": 1,
            "phone": p.str("phone"),
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": p.str("test_clock"),
            "customer_account": null,
        });
        self.customers.insert(customer.clone());
        for pm in [default_pm, attach_pm].into_iter().flatten() {
            if let Some(obj) = self.payment_methods.get_mut(pm) {
                obj["customer"] = json!(id);
            }
        }
        Ok(customer)
    }

    pub(crate) fn update_customer(&mut self, id: &str, p: &Params<'_>) -> Result<Value, ApiError> {
        if !self.customers.contains(id) {
            return Err(ApiError::not_found("customer", id));
        }
        check_len(p, "email", 512)?;
        let default_pm = p.child("invoice_settings").str("default_payment_method");
        if let Some(pm) = default_pm {
            self.ensure_payment_method(pm, "invoice_settings[default_payment_method]")?;
        }
        let addr = address(p);
        let Some(c) = self.customers.get_mut(id) else {
            return Err(ApiError::not_found("customer", id));
        };
        for key in ["email", "name", "phone", "description"] {
            if let Some(v) = p.get(key).and_then(Value::as_str) {
                c[key] = if v.is_empty() { Value::Null } else { json!(v) };
            }
        }
        if p.has("address") {
            c["address"] = addr;
        }
        if let Some(update) = p.get("metadata") {
            merge_metadata(&mut c["metadata"], update)?;
        }
        if let Some(pm) = default_pm {
            c["invoice_settings"]["default_payment_method"] = json!(pm);
        }
        Ok(c.clone())
    }

    pub(crate) fn get_customer(&self, id: &str) -> Result<Value, ApiError> {
        self.customers
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("customer", id))
    }

    pub(crate) fn list_customers(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let email = p.str("email");
        let rows = self
            .customers
            .newest_first()
            .filter(|c| email.is_none_or(|e| c["email"].as_str() == Some(e)))
            .cloned()
            .collect();
        list("/v1/customers", rows, p)
    }

    /// `GET /v1/customers/search`: `field:'value'` clauses joined by `AND`; fields `email`,
    /// `name`, `phone` and `metadata['key']`.
    pub(crate) fn search_customers(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let query = p.required("query", "query")?;
        let mut clauses = Vec::new();
        for part in query.split(" AND ") {
            let (field, value) = part
                .split_once(':')
                .ok_or_else(|| ApiError::invalid("query", "Invalid search query"))?;
            let value = value
                .trim()
                .trim_matches(|c| c == '\'' || c == '"')
                .to_owned();
            let field = field.trim();
            let path: Vec<String> = if let Some(rest) = field.strip_prefix("metadata[") {
                let key = rest
                    .trim_end_matches(']')
                    .trim_matches(|c| c == '\'' || c == '"');
                vec!["metadata".into(), key.to_owned()]
            } else if matches!(field, "email" | "name" | "phone") {
                vec![field.to_owned()]
            } else {
                return Err(ApiError::invalid(
                    "query",
                    format!("Field '{field}' is an unsupported search field"),
                ));
            };
            clauses.push((path, value));
        }
        let rows: Vec<Value> = self
            .customers
            .newest_first()
            .filter(|c| {
                clauses.iter().all(|(path, want)| {
                    let mut v = *c;
                    for seg in path {
                        v = &v[seg.as_str()];
                    }
                    v.as_str() == Some(want.as_str())
                })
            })
            .cloned()
            .collect();
        let limit =
            usize::try_from(p.int("limit", "limit")?.unwrap_or(10).clamp(1, 100)).unwrap_or(10);
        let has_more = rows.len() > limit;
        let data: Vec<Value> = rows.into_iter().take(limit).collect();
        Ok(json!({
            "object": "search_result",
            "data": data,
            "has_more": has_more,
            "next_page": null,
            "url": "/v1/customers/search",
        }))
    }

    // -------------------------------------------------------------------- products and prices

    pub(crate) fn create_product(&mut self, p: &Params<'_>) -> Result<Value, ApiError> {
        let name = p.required("name", "name")?;
        let md = metadata("metadata", p.get("metadata"))?;
        let id = match p.str("id") {
            Some(id) => {
                if self.products.contains(id) {
                    return Err(ApiError::invalid_code(
                        "id",
                        "resource_already_exists",
                        format!("Product already exists: '{id}'"),
                    ));
                }
                id.to_owned()
            }
            None => self.id("prod_"),
        };
        let active = p.bool("active", "active")?.unwrap_or(true);
        let product = json!({
            "id": id,
            "object": "product",
            "active": active,
            "created": now(),
            "default_price": null,
            "description": p.str("description"),
            "images": [],
            "livemode": false,
            "marketing_features": [],
            "metadata": md,
            "name": name,
            "package_dimensions": null,
            "shippable": null,
            "statement_descriptor": p.str("statement_descriptor"),
            "tax_code": null,
            "unit_label": null,
            "updated": now(),
            "url": null,
            "type": "service",
        });
        self.products.insert(product.clone());
        Ok(product)
    }

    pub(crate) fn get_product(&self, id: &str) -> Result<Value, ApiError> {
        self.products
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("product", id))
    }

    pub(crate) fn list_products(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let rows = self.products.newest_first().cloned().collect();
        list("/v1/products", rows, p)
    }

    /// Creates a price from `price_data`-like params (`currency`, `unit_amount`, `product` or
    /// `product_data[name]`, `recurring[…]`). `param` prefixes error names.
    pub(crate) fn price_from(
        &mut self,
        p: &Params<'_>,
        param: &str,
        allow_product_data: bool,
    ) -> Result<Value, ApiError> {
        let currency = p
            .str("currency")
            .ok_or_else(|| ApiError::missing_param(&format!("{param}currency")))?
            .to_ascii_lowercase();
        let unit_amount = p
            .int("unit_amount", &format!("{param}unit_amount"))?
            .ok_or_else(|| ApiError::missing_param(&format!("{param}unit_amount")))?;
        if unit_amount < 0 {
            return Err(ApiError::invalid(
                &format!("{param}unit_amount"),
                "This value must be greater than or equal to 0.",
            ));
        }
        let product = match (p.str("product"), p.child("product_data").str("name")) {
            (Some(prod), _) => {
                if !self.products.contains(prod) {
                    return Err(ApiError::no_such(
                        &format!("{param}product"),
                        "product",
                        prod,
                    ));
                }
                prod.to_owned()
            }
            (None, Some(name)) if allow_product_data => {
                let pd = p.child("product_data");
                let md = metadata(
                    &format!("{param}product_data[metadata]"),
                    pd.get("metadata"),
                )?;
                let id = self.id("prod_");
                self.products.insert(json!({
                    "id": id, "object": "product", "active": true, "created": now(),
                    "default_price": null, "description": pd.str("description"), "images": [],
                    "livemode": false, "marketing_features": [], "metadata": md, "name": name,
                    "package_dimensions": null, "shippable": null, "statement_descriptor": null,
                    "tax_code": null, "unit_label": null, "updated": now(), "url": null,
                    "type": "service",
                }));
                id
            }
            (None, Some(_)) => {
                return Err(ApiError::unknown_param(&format!("{param}product_data")));
            }
            (None, None) => return Err(ApiError::missing_param(&format!("{param}product"))),
        };
        let recurring = if p.has("recurring") {
            let r = p.child("recurring");
            let interval = r
                .str("interval")
                .ok_or_else(|| ApiError::missing_param(&format!("{param}recurring[interval]")))?;
            if !matches!(interval, "day" | "week" | "month" | "year") {
                return Err(ApiError::invalid(
                    &format!("{param}recurring[interval]"),
                    "Invalid recurring[interval]: must be one of day, week, month, or year",
                ));
            }
            let count = r
                .int(
                    "interval_count",
                    &format!("{param}recurring[interval_count]"),
                )?
                .unwrap_or(1);
            if count < 1 {
                return Err(ApiError::invalid(
                    &format!("{param}recurring[interval_count]"),
                    "This value must be greater than or equal to 1.",
                ));
            }
            json!({
                "interval": interval,
                "interval_count": count,
                "meter": null,
                "trial_period_days": null,
                "usage_type": "licensed",
            })
        } else {
            Value::Null
        };
        let md = metadata(&format!("{param}metadata"), p.get("metadata"))?;
        let id = self.id("price_");
        let kind = if recurring.is_null() {
            "one_time"
        } else {
            "recurring"
        };
        let price = json!({
            "id": id,
            "object": "price",
            "active": true,
            "billing_scheme": "per_unit",
            "created": now(),
            "currency": currency,
            "custom_unit_amount": null,
            "livemode": false,
            "lookup_key": p.str("lookup_key"),
            "metadata": md,
            "nickname": p.str("nickname"),
            "product": product,
            "recurring": recurring,
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": kind,
            "unit_amount": unit_amount,
            "unit_amount_decimal": unit_amount.to_string(),
        });
        self.prices.insert(price.clone());
        Ok(price)
    }

    pub(crate) fn create_price(&mut self, p: &Params<'_>) -> Result<Value, ApiError> {
        self.price_from(p, "", true)
    }

    pub(crate) fn get_price(&self, id: &str) -> Result<Value, ApiError> {
        self.prices
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("price", id))
    }

    pub(crate) fn list_prices(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let product = p.str("product");
        let rows = self
            .prices
            .newest_first()
            .filter(|x| product.is_none_or(|id| x["product"] == id))
            .cloned()
            .collect();
        list("/v1/prices", rows, p)
    }

    // ----------------------------------------------------------------------- payment methods

    /// Makes sure `id` names a payment method: an existing one, or a Stripe test id
    /// (`pm_card_visa`, `pm_card_chargeDeclined`, ...) that is materialised on first use.
    pub(crate) fn ensure_payment_method(&mut self, id: &str, param: &str) -> Result<(), ApiError> {
        if self.payment_methods.contains(id) {
            return Ok(());
        }
        let Some(card) = TestCard::from_test_payment_method(id) else {
            return Err(ApiError::no_such(param, "PaymentMethod", id));
        };
        let pm = self.payment_method_object(id, card, None, &Value::Null);
        self.payment_methods.insert(pm);
        self.cards.insert(id.to_owned(), card);
        Ok(())
    }

    pub(crate) fn payment_method_object(
        &mut self,
        id: &str,
        card: TestCard,
        customer: Option<&str>,
        billing: &Value,
    ) -> Value {
        let fingerprint = self.id("")[..16].to_owned();
        json!({
            "id": id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": billing.get("address").cloned().unwrap_or(Value::Null),
                "email": billing.get("email").cloned().unwrap_or(Value::Null),
                "name": billing.get("name").cloned().unwrap_or(Value::Null),
                "phone": billing.get("phone").cloned().unwrap_or(Value::Null),
                "tax_id": null,
            },
            "card": {
                "brand": "visa",
                "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                "country": "US",
                "display_brand": "visa",
                "exp_month": 12,
                "exp_year": 2034,
                "fingerprint": fingerprint,
                "funding": "credit",
                "generated_from": null,
                "last4": card.last4(),
                "networks": {"available": ["visa"], "preferred": null},
                "regulated_status": "unregulated",
                "three_d_secure_usage": {"supported": true},
                "wallet": null,
            },
            "created": now(),
            "customer": customer,
            "customer_account": null,
            "livemode": false,
            "metadata": {},
            "type": "card",
        })
    }

    /// A new saved card for `customer` with `card`'s behaviour.
    pub(crate) fn new_payment_method(
        &mut self,
        card: TestCard,
        customer: Option<&str>,
        billing: &Value,
    ) -> String {
        let id = self.id("pm_");
        let pm = self.payment_method_object(&id, card, customer, billing);
        self.payment_methods.insert(pm);
        self.cards.insert(id.clone(), card);
        id
    }

    pub(crate) fn get_payment_method(&self, id: &str) -> Result<Value, ApiError> {
        self.payment_methods
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("payment_method", id))
    }

    pub(crate) fn attach_payment_method(
        &mut self,
        id: &str,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        let customer = p.required("customer", "customer")?;
        if !self.customers.contains(customer) {
            return Err(ApiError::no_such("customer", "customer", customer));
        }
        if !self.payment_methods.contains(id) {
            if TestCard::from_test_payment_method(id).is_some() {
                self.ensure_payment_method(id, "payment_method")?;
            } else {
                return Err(ApiError::not_found("payment_method", id));
            }
        }
        let Some(pm) = self.payment_methods.get_mut(id) else {
            return Err(ApiError::not_found("payment_method", id));
        };
        pm["customer"] = json!(customer);
        Ok(pm.clone())
    }

    pub(crate) fn list_payment_methods(
        &self,
        customer: &str,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        if !self.customers.contains(customer) {
            return Err(ApiError::not_found("customer", customer));
        }
        let rows = self
            .payment_methods
            .newest_first()
            .filter(|pm| pm["customer"] == customer)
            .cloned()
            .collect();
        list(
            &format!("/v1/customers/{customer}/payment_methods"),
            rows,
            p,
        )
    }

    /// The card behind a payment method (unknown ones behave like Visa).
    pub(crate) fn card_of(&self, pm: &str) -> TestCard {
        self.cards
            .get(pm)
            .copied()
            .or_else(|| TestCard::from_test_payment_method(pm))
            .unwrap_or_default()
    }

    // ----------------------------------------------------------------------- payment intents

    fn charge_for(&mut self, pi: &Value, paid: bool, failure: Option<(&str, &str)>) -> String {
        let id = self.id("ch_");
        let charge = json!({
            "id": id,
            "object": "charge",
            "amount": pi["amount"],
            "amount_captured": if paid { pi["amount"].clone() } else { json!(0) },
            "amount_refunded": 0,
            "balance_transaction": null,
            "billing_details": {"address": null, "email": null, "name": null, "phone": null},
            "captured": paid,
            "created": now(),
            "currency": pi["currency"],
            "customer": pi["customer"],
            "description": pi["description"],
            "failure_code": failure.map(|f| f.0),
            "failure_message": failure.map(|f| f.1),
            "livemode": false,
            "metadata": pi["metadata"],
            "paid": paid,
            "payment_intent": pi["id"],
            "payment_method": pi["payment_method"],
            "refunded": false,
            "status": if paid { "succeeded" } else { "failed" },
        });
        self.charges.insert(charge);
        id
    }

    /// The base object of a payment intent.
    fn payment_intent_object(
        &mut self,
        p: &Params<'_>,
        amount: i64,
        currency: &str,
    ) -> Result<Value, ApiError> {
        let md = metadata("metadata", p.get("metadata"))?;
        let id = self.id("pi_");
        let secret = format!("{id}_secret_{}", &self.id("")[..24]);
        Ok(json!({
            "id": id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": null,
            "canceled_at": null,
            "cancellation_reason": null,
            "capture_method": p.str("capture_method").unwrap_or("automatic"),
            "client_secret": secret,
            "confirmation_method": "automatic",
            "created": now(),
            "currency": currency,
            "customer": p.str("customer"),
            "customer_account": null,
            "description": p.str("description"),
            "excluded_payment_method_types": null,
            "managed_payments": {"enabled": false},
            "last_payment_error": null,
            "latest_charge": null,
            "livemode": false,
            "metadata": md,
            "next_action": null,
            "on_behalf_of": null,
            "payment_method": p.str("payment_method"),
            "payment_method_configuration_details": null,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"],
            "processing": null,
            "receipt_email": p.str("receipt_email"),
            "review": null,
            "setup_future_usage": p.str("setup_future_usage"),
            "shipping": null,
            "source": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": p.str("statement_descriptor_suffix"),
            "status": if p.str("payment_method").is_some() { "requires_confirmation" } else { "requires_payment_method" },
            "transfer_data": null,
            "transfer_group": null,
        }))
    }

    pub(crate) fn create_payment_intent(
        &mut self,
        ctx: &Ctx<'_>,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        let amount = p
            .int("amount", "amount")?
            .ok_or_else(|| ApiError::missing_param("amount"))?;
        let currency = p.required("currency", "currency")?.to_ascii_lowercase();
        if amount < 50 {
            return Err(ApiError::invalid_code(
                "amount",
                "amount_too_small",
                "Amount must be at least $0.50 usd",
            ));
        }
        let confirm = p.bool("confirm", "confirm")?.unwrap_or(false);
        let off_session = p.bool("off_session", "off_session")?;
        if off_session.is_some() && !confirm {
            return Err(ApiError::invalid(
                "off_session",
                "You may only specify `off_session` when confirming the PaymentIntent.",
            ));
        }
        if let Some(customer) = p.str("customer")
            && !self.customers.contains(customer)
        {
            return Err(ApiError::no_such("customer", "customer", customer));
        }
        if let Some(pm) = p.str("payment_method") {
            self.ensure_payment_method(pm, "payment_method")?;
            if let (Some(customer), Some(owner)) = (
                p.str("customer"),
                self.payment_methods
                    .get(pm)
                    .and_then(|o| o["customer"].as_str()),
            ) && owner != customer
            {
                return Err(ApiError::invalid(
                    "payment_method",
                    "The provided PaymentMethod belongs to a different Customer.",
                ));
            }
        }
        let pi = self.payment_intent_object(p, amount, &currency)?;
        let id = pi["id"].as_str().unwrap_or_default().to_owned();
        self.payment_intents.insert(pi.clone());
        if confirm {
            let error_on_action = p
                .bool("error_on_requires_action", "error_on_requires_action")?
                .unwrap_or(false);
            self.confirm_payment_intent_inner(
                ctx,
                &id,
                off_session.unwrap_or(false),
                error_on_action,
            )
        } else {
            self.events_for_pi(ctx, "payment_intent.created", &id);
            Ok(pi)
        }
    }

    fn events_for_pi(&mut self, ctx: &Ctx<'_>, kind: &str, id: &str) {
        if let Some(pi) = self.payment_intents.get(id).cloned() {
            self.event(kind, pi, ctx.idempotency_key);
        }
    }

    pub(crate) fn confirm_payment_intent(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        if !self.payment_intents.contains(id) {
            return Err(ApiError::not_found("payment_intent", id));
        }
        if let Some(pm) = p.str("payment_method") {
            self.ensure_payment_method(pm, "payment_method")?;
            if let Some(pi) = self.payment_intents.get_mut(id) {
                pi["payment_method"] = json!(pm);
            }
        }
        let off_session = p.bool("off_session", "off_session")?.unwrap_or(false);
        let error_on_action = p
            .bool("error_on_requires_action", "error_on_requires_action")?
            .unwrap_or(false);
        self.confirm_payment_intent_inner(ctx, id, off_session, error_on_action)
    }

    fn confirm_payment_intent_inner(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        off_session: bool,
        error_on_action: bool,
    ) -> Result<Value, ApiError> {
        let Some(pi) = self.payment_intents.get(id).cloned() else {
            return Err(ApiError::not_found("payment_intent", id));
        };
        let status = pi["status"].as_str().unwrap_or_default();
        if !matches!(status, "requires_payment_method" | "requires_confirmation") {
            return Err(ApiError::unexpected_state(
                "payment_intent_unexpected_state",
                format!("This PaymentIntent's status is {status}; it cannot be confirmed."),
            ));
        }
        let Some(pm) = pi["payment_method"].as_str().map(str::to_owned) else {
            return Err(ApiError::unexpected_state(
                "payment_intent_unexpected_state",
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
            ));
        };
        let card = self.card_of(&pm);
        match card {
            TestCard::Visa => {
                let charge = self.charge_for(&pi, true, None);
                let setup = pi["setup_future_usage"].as_str().is_some();
                let customer = pi["customer"].as_str().map(str::to_owned);
                if let Some(obj) = self.payment_intents.get_mut(id) {
                    obj["status"] = json!("succeeded");
                    obj["amount_received"] = obj["amount"].clone();
                    obj["latest_charge"] = json!(charge);
                }
                if setup
                    && let Some(c) = customer
                    && let Some(pmo) = self.payment_methods.get_mut(&pm)
                {
                    pmo["customer"] = json!(c);
                }
                self.events_for_pi(ctx, "payment_intent.succeeded", id);
                Ok(self.payment_intents.get(id).cloned().unwrap_or_default())
            }
            TestCard::AuthenticationRequired if !off_session && !error_on_action => {
                if let Some(obj) = self.payment_intents.get_mut(id) {
                    obj["status"] = json!("requires_action");
                    obj["next_action"] = json!({
                        "type": "use_stripe_sdk",
                        "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                    });
                }
                self.events_for_pi(ctx, "payment_intent.requires_action", id);
                Ok(self.payment_intents.get(id).cloned().unwrap_or_default())
            }
            TestCard::AuthenticationRequired => Err(self.card_failure(
                ctx,
                id,
                &pm,
                "authentication_required",
                "authentication_required",
                "Your card was declined. This transaction requires authentication.",
            )),
            TestCard::ChargeDeclined => Err(self.card_failure(
                ctx,
                id,
                &pm,
                "card_declined",
                "generic_decline",
                "Your card was declined.",
            )),
            TestCard::InsufficientFunds => Err(self.card_failure(
                ctx,
                id,
                &pm,
                "card_declined",
                "insufficient_funds",
                "Your card has insufficient funds.",
            )),
        }
    }

    /// Records a failed attempt on the payment intent and returns Stripe's 402 `card_error`.
    fn card_failure(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        pm: &str,
        code: &str,
        decline_code: &str,
        message: &str,
    ) -> ApiError {
        let pi = self.payment_intents.get(id).cloned().unwrap_or_default();
        let charge = self.charge_for(&pi, false, Some((code, message)));
        let pm_obj = self.payment_methods.get(pm).cloned().unwrap_or(Value::Null);
        let last_error = json!({
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "charge": charge,
            "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
            "payment_method": pm_obj,
        });
        if let Some(obj) = self.payment_intents.get_mut(id) {
            obj["status"] = json!("requires_payment_method");
            obj["last_payment_error"] = last_error;
            obj["latest_charge"] = json!(charge);
        }
        self.events_for_pi(ctx, "payment_intent.payment_failed", id);
        let pi = self.payment_intents.get(id).cloned().unwrap_or_default();
        ApiError {
            status: axum::http::StatusCode::PAYMENT_REQUIRED,
            body: json!({"error": {
                "type": "card_error",
                "code": code,
                "decline_code": decline_code,
                "message": message,
                "charge": charge,
                "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
                "payment_intent": pi,
                "payment_method": pm_obj,
                "request_log_url": null,
            }}),
            // Execution started: a replay returns the same decline.
            store: true,
        }
    }

    pub(crate) fn cancel_payment_intent(
        &mut self,
        ctx: &Ctx<'_>,
        id: &str,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        let Some(pi) = self.payment_intents.get_mut(id) else {
            return Err(ApiError::not_found("payment_intent", id));
        };
        let status = pi["status"].as_str().unwrap_or_default().to_owned();
        if matches!(status.as_str(), "succeeded" | "canceled") {
            return Err(ApiError::unexpected_state(
                "payment_intent_unexpected_state",
                format!(
                    "You cannot cancel this PaymentIntent because it has a status of {status}."
                ),
            ));
        }
        pi["status"] = json!("canceled");
        pi["canceled_at"] = json!(now());
        pi["cancellation_reason"] = json!(p.str("cancellation_reason"));
        self.events_for_pi(ctx, "payment_intent.canceled", id);
        Ok(self.payment_intents.get(id).cloned().unwrap_or_default())
    }

    pub(crate) fn get_payment_intent(&self, id: &str) -> Result<Value, ApiError> {
        self.payment_intents
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("payment_intent", id))
    }

    pub(crate) fn list_payment_intents(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let customer = p.str("customer");
        let rows = self
            .payment_intents
            .newest_first()
            .filter(|x| customer.is_none_or(|c| x["customer"] == c))
            .cloned()
            .collect();
        list("/v1/payment_intents", rows, p)
    }

    // --------------------------------------------------------------------------------- refunds

    pub(crate) fn create_refund(
        &mut self,
        ctx: &Ctx<'_>,
        p: &Params<'_>,
    ) -> Result<Value, ApiError> {
        let pi_id = match (p.str("payment_intent"), p.str("charge")) {
            (Some(pi), _) => pi.to_owned(),
            (None, Some(ch)) => self
                .charges
                .get(ch)
                .and_then(|c| c["payment_intent"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| ApiError::no_such("charge", "charge", ch))?,
            (None, None) => return Err(ApiError::missing_param("payment_intent")),
        };
        let Some(pi) = self.payment_intents.get(&pi_id).cloned() else {
            return Err(ApiError::no_such(
                "payment_intent",
                "payment_intent",
                &pi_id,
            ));
        };
        if pi["status"] != "succeeded" {
            return Err(ApiError::invalid_code(
                "payment_intent",
                "charge_not_refundable",
                "This PaymentIntent does not have a successful charge to refund.",
            ));
        }
        let charge_id = pi["latest_charge"].as_str().unwrap_or_default().to_owned();
        let refunded = self
            .charges
            .get(&charge_id)
            .and_then(|c| c["amount_refunded"].as_i64())
            .unwrap_or(0);
        let received = pi["amount_received"].as_i64().unwrap_or(0);
        let amount = p.int("amount", "amount")?.unwrap_or(received - refunded);
        if amount <= 0 || amount > received - refunded {
            return Err(ApiError::invalid_code(
                "amount",
                "amount_too_large",
                "Refund amount is greater than unrefunded amount on charge.",
            ));
        }
        let md = metadata("metadata", p.get("metadata"))?;
        if let Some(reason) = p.str("reason")
            && !matches!(reason, "duplicate" | "fraudulent" | "requested_by_customer")
        {
            return Err(ApiError::invalid("reason", "Invalid reason"));
        }
        let id = self.id("re_");
        let refund = json!({
            "id": id,
            "object": "refund",
            "amount": amount,
            "balance_transaction": null,
            "charge": charge_id,
            "created": now(),
            "currency": pi["currency"],
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "metadata": md,
            "payment_intent": pi_id,
            "reason": p.str("reason"),
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null,
        });
        self.refunds.insert(refund.clone());
        if let Some(ch) = self.charges.get_mut(&charge_id) {
            ch["amount_refunded"] = json!(refunded + amount);
            ch["refunded"] = json!(refunded + amount == received);
        }
        self.event("refund.created", refund.clone(), ctx.idempotency_key);
        if let Some(ch) = self.charges.get(&charge_id).cloned() {
            self.event("charge.refunded", ch, ctx.idempotency_key);
        }
        Ok(refund)
    }

    /// `GET /v1/refunds` (`charge=`, `payment_intent=` filters), newest first, paged.
    pub(crate) fn list_refunds(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let charge = p.str("charge");
        let pi = p.str("payment_intent");
        let rows = self
            .refunds
            .newest_first()
            .filter(|x| charge.is_none_or(|c| x["charge"] == c))
            .filter(|x| pi.is_none_or(|c| x["payment_intent"] == c))
            .cloned()
            .collect();
        list("/v1/refunds", rows, p)
    }

    pub(crate) fn get_refund(&self, id: &str) -> Result<Value, ApiError> {
        self.refunds
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("refund", id))
    }

    // ---------------------------------------------------------------------------------- events

    pub(crate) fn list_events(&self, p: &Params<'_>) -> Result<Value, ApiError> {
        let kind = p.str("type");
        let types: Vec<&str> = p
            .list("types")
            .into_iter()
            .filter_map(Value::as_str)
            .collect();
        let rows = self
            .events
            .newest_first()
            .filter(|e| {
                let t = e["type"].as_str().unwrap_or_default();
                kind.is_none_or(|k| matches_event_type(k, t))
                    && (types.is_empty() || types.iter().any(|k| matches_event_type(k, t)))
            })
            .cloned()
            .collect();
        list("/v1/events", rows, p)
    }

    pub(crate) fn get_event(&self, id: &str) -> Result<Value, ApiError> {
        self.events
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("event", id))
    }

    pub(crate) fn get_charge(&self, id: &str) -> Result<Value, ApiError> {
        self.charges
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("charge", id))
    }
}

/// `invoice.*` matches `invoice.paid`.
fn matches_event_type(pattern: &str, t: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => t.starts_with(prefix),
        None => pattern == t,
    }
}

/// Replaces ids named in `expand[]` (top-level fields only) with their objects.
pub(crate) fn expand(data: &StripeData, mut obj: Value, p: &Params<'_>) -> Value {
    let fields: Vec<String> = p
        .list("expand")
        .into_iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    for f in fields {
        let f = f.strip_prefix("data.").unwrap_or(&f).to_owned();
        if let Some(Value::Array(items)) = obj.get_mut("data") {
            for item in items {
                expand_field(data, item, &f);
            }
        } else {
            expand_field(data, &mut obj, &f);
        }
    }
    obj
}

fn expand_field(data: &StripeData, obj: &mut Value, field: &str) {
    if let Some(Value::String(id)) = obj.get(field)
        && let Some(found) = data.lookup(id)
    {
        let found = found.clone();
        if let Some(map) = obj.as_object_mut() {
            map.insert(field.to_owned(), found);
        }
    }
}
