//! Signed webhooks: Stripe, Sunbit, NexHealth and Twilio.
//!
//! Every handler takes the raw body bytes and verifies the signature before anything parses
//! them, rejects stale timestamps (Stripe, Sunbit), deduplicates deliveries by event id through
//! [`InboundStore::record_webhook`](chairside_engine::store::InboundStore::record_webhook), and
//! stores what the workflow must hear as inbox events in the same transaction, before it answers
//! 2xx: a crash after the answer loses nothing, and a crash before it gets a redelivery. Event
//! types we do not act on are recorded and answered 200. A body that verifies but does not parse
//! (Stripe, Sunbit, NexHealth) is held sealed in the quarantine for staff, then answered 200.
//!
//! Sunbit and NexHealth secrets belong to one practice: a delivery comes to that practice's URL
//! (`/webhooks/sunbit/{practice}`), is verified with its secrets only, and may touch only its
//! workflows (a Sunbit event, only an application that is with Sunbit now). Redeliveries are
//! recognised by NexHealth's delivery id and, since Sunbit sends no event id, by the digest of
//! Sunbit's body, never by the signature timestamp. A Stripe event touches the workflow its
//! metadata names only when that workflow's stored customer, session or schedule is the object's.
//!
//! Stripe objects name their workflow in metadata [`WORKFLOW_KEY`] (`chairside_workflow`): on
//! Checkout Sessions and their PaymentIntents, on schedules, and on invoices through
//! `parent.subscription_details.metadata`. A Checkout payment is reported by both
//! `checkout.session.completed` and `payment_intent.succeeded`; both map to the PaymentIntent's
//! id, so the workflow notes the payment once.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use financing_core::{Currency, LenderId, Money, PracticeId};
use messaging::{InboundIntent, VerifiedForm, WebhookVerifier};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use stripe_schedule::{
    CheckoutMode, CheckoutPaymentStatus, CheckoutSession, EventData, Invoice, PaymentIntent,
    WORKFLOW_KEY,
};

use super::HttpState;
use chairside_workflow::{Event, PaymentFact, Stage, StripeRecord, WorkflowId};

const STRIPE: &str = "stripe";
const SUNBIT: &str = "sunbit";
const NEXHEALTH: &str = "nexhealth";
const TWILIO: &str = "twilio";

/// A refused delivery: counted by provider and reason, answered without detail.
fn reject(state: &HttpState, provider: &'static str, reason: &'static str) -> Response {
    tracing::warn!(provider, reason, "webhook rejected");
    state.metrics.webhook_rejected(provider, reason);
    let status = match reason {
        // Our configuration, not the sender's fault: a 5xx makes the sender retry later.
        "unconfigured" => StatusCode::SERVICE_UNAVAILABLE,
        // No such webhook URL: an unknown practice, or the un-scoped URL with several practices.
        "practice" => StatusCode::NOT_FOUND,
        // Verified, but it names a workflow of another practice: the secret may not touch it.
        "foreign" => StatusCode::FORBIDDEN,
        // Twilio's convention for a bad signature.
        "signature" | "malformed" if provider == TWILIO => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, "rejected\n").into_response()
}

/// The store failed: 500, so the sender delivers again.
fn store_failed(provider: &'static str, e: &chairside_engine::store::StoreError) -> Response {
    tracing::error!(provider, error = %e, "webhook could not be stored");
    (StatusCode::INTERNAL_SERVER_ERROR, "retry later\n").into_response()
}

/// A delivery whose signature verified but whose body does not parse: kept sealed for staff
/// (the dashboard shows it) and answered 200 so the provider stops retrying, but only once it is
/// stored; a store failure is a 500 and the provider delivers again. The body and the parse
/// error's text (which can quote it) are never logged.
async fn hold(
    state: &HttpState,
    provider: &'static str,
    body: &[u8],
    problem: &'static str,
) -> Response {
    match state
        .store
        .quarantine_delivery(provider, body, problem, state.now())
        .await
    {
        Ok(fresh) => {
            tracing::warn!(provider, fresh, problem, "verified webhook held for staff");
            state.metrics.webhook_held(provider);
            ok()
        }
        Err(e) => store_failed(provider, &e),
    }
}

fn ok() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A workflow id as we make them (`wf_` and 24 hex digits); anything else names no workflow.
pub(crate) fn parse_workflow_id(s: &str) -> Option<WorkflowId> {
    let hex = s.strip_prefix("wf_")?;
    (hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| WorkflowId::new(s))
}

fn money(minor: i64, currency: &str) -> Option<Money> {
    Some(Money::new(minor, currency.parse::<Currency>().ok()?))
}

fn invoice_workflow(inv: &Invoice) -> Option<WorkflowId> {
    inv.subscription_metadata()
        .and_then(|m| m.get(WORKFLOW_KEY))
        .or_else(|| inv.metadata.get(WORKFLOW_KEY))
        .and_then(parse_workflow_id)
}

fn session_workflow(cs: &CheckoutSession) -> Option<WorkflowId> {
    cs.metadata.get(WORKFLOW_KEY).and_then(parse_workflow_id)
}

fn intent_workflow(pi: &PaymentIntent) -> Option<WorkflowId> {
    pi.metadata.get(WORKFLOW_KEY).and_then(parse_workflow_id)
}

/// A paid Checkout Session: keyed by its PaymentIntent, like `payment_intent.succeeded`.
fn session_paid(cs: &CheckoutSession) -> Option<(WorkflowId, Event)> {
    let stripe_id = cs
        .payment_intent
        .as_ref()
        .map_or_else(|| cs.id.as_str().to_owned(), |pi| pi.as_str().to_owned());
    Some((
        session_workflow(cs)?,
        Event::Payment(PaymentFact::Paid {
            stripe_id,
            amount: cs.total()?,
        }),
    ))
}

fn dispute_event(d: &stripe_schedule::Dispute) -> Option<Event> {
    Some(Event::Payment(PaymentFact::Disputed {
        stripe_id: d.id.as_str().to_owned(),
        amount: d.money()?,
        reason: d.reason.clone(),
    }))
}

/// The events of a dispute without the workflow's metadata: the workflow that recorded the
/// disputed PaymentIntent (a deposit paid by link, an off-session charge), found in the store.
async fn dispute_events(
    state: &HttpState,
    data: &EventData,
) -> Result<Vec<(WorkflowId, Event)>, chairside_engine::store::StoreError> {
    let (pi, event) = match data {
        EventData::ChargeDisputeCreated(d) => (d.payment_intent.as_ref(), dispute_event(d)),
        // A refund of an installment's charge: Stripe copies no workflow metadata onto charges
        // that invoices create.
        EventData::ChargeRefunded(ch) => (ch.payment_intent.as_ref(), refund_event(ch)),
        _ => return Ok(Vec::new()),
    };
    let (Some(pi), Some(event)) = (pi, event) else {
        return Ok(Vec::new());
    };
    let found = state.store.workflow_by_payment(pi.as_str()).await?;
    Ok(found.map(|wf| (wf, event)).into_iter().collect())
}

fn refund_event(ch: &stripe_schedule::Charge) -> Option<Event> {
    Some(Event::Payment(PaymentFact::Refunded {
        stripe_id: ch.id.as_str().to_owned(),
        amount: ch.refunded_money()?,
        refunds: None,
    }))
}

/// What a verified Stripe event means to a workflow, if anything.
pub(crate) fn stripe_events(data: &EventData) -> Vec<(WorkflowId, Event)> {
    let one = match data {
        EventData::InvoicePaid(inv) => {
            let Some(wf) = invoice_workflow(inv) else {
                return Vec::new();
            };
            let Some(amount) = money(inv.amount_paid, &inv.currency) else {
                return Vec::new();
            };
            let mut events = vec![(
                wf.clone(),
                Event::Payment(PaymentFact::Paid {
                    stripe_id: inv.id.as_str().to_owned(),
                    amount,
                }),
            )];
            // Which PaymentIntent paid it: a later dispute or refund of that charge names only
            // the PaymentIntent, and finds the workflow by it.
            events.extend(inv.payment_intents().into_iter().map(|pi| {
                (
                    wf.clone(),
                    Event::Payment(PaymentFact::InvoicePaymentIntent {
                        invoice_id: inv.id.as_str().to_owned(),
                        payment_intent: pi.as_str().to_owned(),
                    }),
                )
            }));
            return events;
        }
        // Stripe gave up on an installment: the last retry failed (no next attempt), or the
        // invoice was marked uncollectible.
        EventData::InvoiceMarkedUncollectible(inv) => invoice_workflow(inv).map(|wf| {
            (
                wf,
                Event::Payment(PaymentFact::FinalFailure {
                    stripe_id: inv.id.as_str().to_owned(),
                }),
            )
        }),
        EventData::InvoicePaymentFailed(inv) => {
            let Some(wf) = invoice_workflow(inv) else {
                return Vec::new();
            };
            let stripe_id = inv.id.as_str().to_owned();
            let mut events = Vec::new();
            // An installment the saved card did not pay: its hosted page is the patient's pay
            // link (paying it settles this invoice; Stripe's retries stop), reported first so
            // the page has it when the payment-failed message goes out.
            if inv.collection_method == Some(stripe_schedule::CollectionMethod::ChargeAutomatically)
                && let (Some(url), Some(amount)) = (
                    inv.hosted_invoice_url.as_ref(),
                    money(inv.amount_due, &inv.currency),
                )
            {
                events.push((
                    wf.clone(),
                    Event::Payment(PaymentFact::InstallmentUnpaid {
                        invoice_id: stripe_id.clone(),
                        url: url.clone(),
                        amount,
                    }),
                ));
            }
            // Stripe sets no next attempt when its retries are over: the failure is final.
            let fact = if inv.next_payment_attempt.is_none() {
                PaymentFact::FinalFailure { stripe_id }
            } else {
                PaymentFact::Failed { stripe_id }
            };
            events.push((wf, Event::Payment(fact)));
            return events;
        }
        EventData::ChargeRefunded(ch) => ch
            .metadata
            .get(WORKFLOW_KEY)
            .and_then(parse_workflow_id)
            .and_then(|wf| Some((wf, refund_event(ch)?))),
        // A dispute names its charge, whose metadata Stripe does not copy onto the dispute: a
        // dispute carrying the workflow id maps here; otherwise the handler finds the workflow
        // by the disputed PaymentIntent it recorded (`dispute_events`).
        EventData::ChargeDisputeCreated(d) => d
            .metadata
            .get(WORKFLOW_KEY)
            .and_then(parse_workflow_id)
            .and_then(|wf| dispute_event(d).map(|e| (wf, e))),
        EventData::SubscriptionScheduleCanceled(s) | EventData::SubscriptionScheduleAborted(s) => s
            .metadata
            .get(WORKFLOW_KEY)
            .or_else(|| s.phases.iter().find_map(|p| p.metadata.get(WORKFLOW_KEY)))
            .and_then(parse_workflow_id)
            .map(|wf| {
                (
                    wf,
                    Event::Payment(PaymentFact::ScheduleEnded {
                        schedule_id: s.id.as_str().to_owned(),
                        aborted: matches!(data, EventData::SubscriptionScheduleAborted(_)),
                    }),
                )
            }),
        // A card saved in setup mode: which card is read from its SetupIntent by the runner.
        EventData::CheckoutSessionCompleted(cs) if cs.mode == Some(CheckoutMode::Setup) => {
            cs.setup_intent.as_ref().and_then(|seti| {
                Some((
                    session_workflow(cs)?,
                    Event::Payment(PaymentFact::CardSetupCompleted {
                        session_id: cs.id.as_str().to_owned(),
                        setup_intent: seti.as_str().to_owned(),
                    }),
                ))
            })
        }
        EventData::CheckoutSessionCompleted(cs)
            if cs.payment_status == CheckoutPaymentStatus::Paid =>
        {
            // The money (keyed by the PaymentIntent), and which session it paid: the deposit's
            // state on the patient page.
            let mut both: Vec<(WorkflowId, Event)> = session_paid(cs).into_iter().collect();
            if let Some(wf) = session_workflow(cs) {
                both.push((
                    wf,
                    Event::Payment(PaymentFact::CheckoutCompleted {
                        session_id: cs.id.as_str().to_owned(),
                    }),
                ));
            }
            return both;
        }
        EventData::CheckoutSessionExpired(cs) => session_workflow(cs).map(|wf| {
            (
                wf,
                Event::Payment(PaymentFact::CheckoutExpired {
                    session_id: cs.id.as_str().to_owned(),
                }),
            )
        }),
        EventData::CheckoutSessionAsyncPaymentSucceeded(cs) => session_paid(cs),
        EventData::CheckoutSessionAsyncPaymentFailed(cs) => session_workflow(cs).map(|wf| {
            let stripe_id = cs
                .payment_intent
                .as_ref()
                .map_or_else(|| cs.id.as_str().to_owned(), |pi| pi.as_str().to_owned());
            (wf, Event::Payment(PaymentFact::Failed { stripe_id }))
        }),
        EventData::PaymentIntentSucceeded(pi) => intent_workflow(pi).and_then(|wf| {
            Some((
                wf,
                Event::Payment(PaymentFact::Paid {
                    stripe_id: pi.id.as_str().to_owned(),
                    amount: pi.money()?,
                }),
            ))
        }),
        EventData::PaymentIntentPaymentFailed(pi) => intent_workflow(pi).map(|wf| {
            (
                wf,
                Event::Payment(PaymentFact::Failed {
                    stripe_id: pi.id.as_str().to_owned(),
                }),
            )
        }),
        EventData::SubscriptionScheduleCompleted(s) => s
            .metadata
            .get(WORKFLOW_KEY)
            .or_else(|| s.phases.iter().find_map(|p| p.metadata.get(WORKFLOW_KEY)))
            .and_then(parse_workflow_id)
            .map(|wf| (wf, Event::Payment(PaymentFact::ScheduleCompleted))),
        _ => None,
    };
    one.into_iter().collect()
}

/// Whether the object a Stripe event is about is one Chairside created for this workflow: the
/// metadata naming a workflow is not enough, since anyone with API access to the account can
/// write it. Invoices and PaymentIntents by customer, Checkout Sessions and schedules by id.
pub(crate) fn stripe_object_matches(data: &EventData, stored: &StripeRecord) -> bool {
    fn same(stored: Option<&String>, seen: Option<&str>) -> bool {
        matches!((stored, seen), (Some(a), Some(b)) if a == b)
    }
    match data {
        EventData::InvoicePaid(inv)
        | EventData::InvoicePaymentFailed(inv)
        | EventData::InvoiceMarkedUncollectible(inv) => same(
            stored.customer_id.as_ref(),
            inv.customer.as_ref().map(|c| c.as_str()),
        ),
        EventData::CheckoutSessionCompleted(cs)
        | EventData::CheckoutSessionExpired(cs)
        | EventData::CheckoutSessionAsyncPaymentSucceeded(cs)
        | EventData::CheckoutSessionAsyncPaymentFailed(cs) => {
            same(stored.checkout_session_id.as_ref(), Some(cs.id.as_str()))
                || same(stored.card_setup_session_id.as_ref(), Some(cs.id.as_str()))
        }
        EventData::PaymentIntentSucceeded(pi) | EventData::PaymentIntentPaymentFailed(pi) => same(
            stored.customer_id.as_ref(),
            pi.customer.as_ref().map(|c| c.as_str()),
        ),
        EventData::SubscriptionScheduleCompleted(sched)
        | EventData::SubscriptionScheduleCanceled(sched)
        | EventData::SubscriptionScheduleAborted(sched) => {
            same(stored.schedule_id.as_ref(), Some(sched.id.as_str()))
        }
        EventData::ChargeRefunded(ch) => same(
            stored.customer_id.as_ref(),
            ch.customer.as_ref().map(|c| c.as_str()),
        ),
        EventData::ChargeDisputeCreated(d) => d.payment_intent.as_ref().is_some_and(|pi| {
            stored.payments_noted.iter().any(|p| p == pi.as_str())
                || stored
                    .invoice_payment_intents
                    .iter()
                    .any(|p| p == pi.as_str())
        }),
        _ => false,
    }
}

/// `POST /webhooks/stripe`.
pub(crate) async fn stripe(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use stripe_schedule::webhook::{self, WebhookError};
    let secrets = &state.config.webhook_secrets.stripe;
    let verified = webhook::verify_with_tolerance(
        &body,
        header_str(&headers, "stripe-signature"),
        secrets,
        Utc::now(),
        state.config.webhook_tolerance,
    );
    if let Err(e) = verified {
        let reason = match e {
            WebhookError::Stale { .. } => "stale",
            WebhookError::Mismatch => "signature",
            WebhookError::NoSecrets | WebhookError::ZeroTolerance => "unconfigured",
            _ => "malformed",
        };
        return reject(&state, STRIPE, reason);
    }
    let Ok(event) = stripe_schedule::Event::parse(&body) else {
        return hold(
            &state,
            STRIPE,
            &body,
            "the verified Stripe event did not parse",
        )
        .await;
    };
    if let Some(expected) = state.config.stripe_livemode
        && event.livemode != expected
    {
        // A live event at a test install (or the reverse): another mode's endpoint points here.
        // Logged by id and type only, never the object.
        tracing::warn!(
            provider = STRIPE,
            event = event.id.as_str(),
            event_type = event.event_type(),
            livemode = event.livemode,
            "Stripe event of the other mode (live vs test) than the configured key: refused"
        );
        return reject(&state, STRIPE, "livemode");
    }
    let mut events = Vec::new();
    let mut mapped = stripe_events(&event.data);
    if mapped.is_empty() {
        match dispute_events(&state, &event.data).await {
            Ok(found) => mapped = found,
            Err(e) => return store_failed(STRIPE, &e),
        }
    }
    for (wf, ev) in mapped {
        match state.store.workflow(&wf).await {
            Ok(Some(row)) if stripe_object_matches(&event.data, &row.state.stripe) => {
                events.push((wf, ev));
            }
            Ok(Some(_)) => {
                tracing::warn!(
                    provider = STRIPE,
                    event = event.id.as_str(),
                    "event names a workflow whose Stripe objects it is not about: ignored"
                );
                state.metrics.webhook_rejected(STRIPE, "foreign");
            }
            Ok(None) => {}
            Err(e) => return store_failed(STRIPE, &e),
        }
    }
    tracing::info!(
        provider = STRIPE,
        event_type = event.event_type(),
        matched = events.len(),
        "webhook verified"
    );
    match record(&state, STRIPE, event.id.as_str(), events).await {
        Ok(_) => ok(),
        Err(res) => res,
    }
}

/// Records a verified delivery and its events in one transaction; `Ok(false)` for a duplicate.
async fn record(
    state: &HttpState,
    provider: &'static str,
    event_id: &str,
    events: Vec<(WorkflowId, Event)>,
) -> Result<bool, Response> {
    match state
        .store
        .record_webhook(provider, event_id, events, state.now())
        .await
    {
        Ok(fresh) => {
            state.metrics.webhook_received(provider, fresh);
            Ok(fresh)
        }
        Err(e) => Err(store_failed(provider, &e)),
    }
}

/// Our application reference parsed back to its workflow and lender: `{workflow}-{seq}-{lender}`
/// (one per attempt), or the older `{workflow}-{lender}`; see
/// [`chairside_workflow::parse_application_reference`].
pub(crate) fn split_reference(reference: &str) -> Option<(WorkflowId, LenderId)> {
    let parsed = chairside_workflow::parse_application_reference(reference)?;
    Some((parsed.workflow, parsed.lender))
}

/// The reference of the application the patient is on now, if one is open.
fn current_reference(
    phase: &chairside_workflow::LenderPhase,
) -> Option<&financing_core::ApplicationRef> {
    match phase {
        chairside_workflow::LenderPhase::AwaitingPatient { handle, .. } => Some(&handle.reference),
        _ => None,
    }
}

/// The practice a per-practice webhook URL names, if it is configured.
fn scoped_practice(state: &HttpState, practice: &str) -> Option<PracticeId> {
    state
        .config
        .practice(&PracticeId::new(practice))
        .map(|p| p.id.clone())
}

/// The practice an un-scoped webhook URL stands for: the only one configured.
fn sole_practice(state: &HttpState) -> Option<PracticeId> {
    state.config.sole_practice().map(|p| p.id.clone())
}

/// The hex SHA-256 of a delivery's body.
fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// `POST /webhooks/sunbit/{practice}`: verified with that practice's Sunbit secrets only.
pub(crate) async fn sunbit_scoped(
    State(state): State<HttpState>,
    Path(practice): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match scoped_practice(&state, &practice) {
        Some(p) => sunbit_for(&state, &p, &headers, &body).await,
        None => reject(&state, SUNBIT, "practice"),
    }
}

/// `POST /webhooks/sunbit`: served only while one practice is configured, as that practice.
pub(crate) async fn sunbit(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match sole_practice(&state) {
        Some(p) => sunbit_for(&state, &p, &headers, &body).await,
        None => reject(&state, SUNBIT, "practice"),
    }
}

/// A Sunbit delivery for `practice`. It may decide only an application of that practice's
/// workflows that is currently with Sunbit; redeliveries (the same body under a fresh signature
/// and timestamp) are recognised by the body's digest, since Sunbit sends no event id.
async fn sunbit_for(
    state: &HttpState,
    practice: &PracticeId,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    use sunbit_client::{WebhookError, WebhookVerifier};
    let secrets = state
        .config
        .webhook_secrets
        .sunbit
        .get(practice)
        .map_or(&[][..], Vec::as_slice);
    if secrets.is_empty() {
        return reject(state, SUNBIT, "unconfigured");
    }
    let signature = header_str(headers, sunbit_client::SIGNATURE_HEADER);
    let now = Utc::now();
    let mut reason = "malformed";
    let mut verified = None;
    for secret in secrets {
        let Ok(verifier) =
            WebhookVerifier::new(secret.clone()).with_tolerance(state.config.webhook_tolerance)
        else {
            return reject(state, SUNBIT, "unconfigured");
        };
        match verifier.verify(signature, body, now) {
            Ok(v) => {
                verified = Some(v);
                break;
            }
            // Stale means a secret matched: the strongest finding.
            Err(WebhookError::Stale { .. }) => reason = "stale",
            Err(WebhookError::SignatureMismatch) if reason != "stale" => reason = "signature",
            Err(_) => {}
        }
    }
    let Some(verified) = verified else {
        return reject(state, SUNBIT, reason);
    };
    let Ok(event) = verified.event() else {
        return hold(
            state,
            SUNBIT,
            body,
            "the verified Sunbit event did not parse",
        )
        .await;
    };
    let sunbit = LenderId::new(sunbit_client::LENDER_ID);
    let mut events = Vec::new();
    if let Some((wf, lender)) = event
        .referral
        .as_ref()
        .and_then(|r| split_reference(r.as_str()))
    {
        match state.store.workflow(&wf).await {
            Ok(Some(row)) if &row.state.key.practice_id != practice => {
                return reject(state, SUNBIT, "foreign");
            }
            Ok(Some(row)) => match &row.state.stage {
                // Sunbit decides Sunbit's applications only, and only the current session: an
                // event for a session that lapsed and was started again carries the old
                // attempt's reference and decides nothing.
                Stage::Financing(c)
                    if c.lender == sunbit
                        && lender == sunbit
                        && current_reference(&c.phase)
                            .is_some_and(|r| Some(r) == event.referral.as_ref()) =>
                {
                    if let Some(decision) = event.decision(c.amount) {
                        events.push((wf, Event::LenderDecided { lender, decision }));
                    }
                }
                _ => tracing::info!(
                    provider = SUNBIT,
                    "event for an application that is not with Sunbit now: recorded only"
                ),
            },
            Ok(None) => {}
            Err(e) => return store_failed(SUNBIT, &e),
        }
    }
    tracing::info!(
        provider = SUNBIT,
        event_type = event.event_type.as_str(),
        matched = events.len(),
        "webhook verified"
    );
    // Never the signature timestamp: a redelivery is signed afresh.
    let key = format!(
        "{practice}:{}:{}:sha256:{}",
        event.event_type.as_str(),
        event.purchase_id.as_ref().map_or("", |p| p.as_str()),
        body_digest(body)
    );
    match record(state, SUNBIT, &key, events).await {
        Ok(_) => ok(),
        Err(res) => res,
    }
}

/// `POST /webhooks/nexhealth/{practice}`: verified with that practice's NexHealth secrets only.
pub(crate) async fn nexhealth_scoped(
    State(state): State<HttpState>,
    Path(practice): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match scoped_practice(&state, &practice) {
        Some(p) => nexhealth_for(&state, &p, &headers, &body).await,
        None => reject(&state, NEXHEALTH, "practice"),
    }
}

/// `POST /webhooks/nexhealth`: served only while one practice is configured, as that practice.
pub(crate) async fn nexhealth(
    State(state): State<HttpState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match sole_practice(&state) {
        Some(p) => nexhealth_for(&state, &p, &headers, &body).await,
        None => reject(&state, NEXHEALTH, "practice"),
    }
}

/// A NexHealth delivery for `practice`: a verified `treatment_plan_updated` wakes the poller,
/// which reads the change through the API (the delivery itself is not trusted for plan data).
/// Redeliveries are recognised by NexHealth's delivery id, within the practice.
async fn nexhealth_for(
    state: &HttpState,
    practice: &PracticeId,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    use nexhealth_client::{Error, SignatureProblem, WebhookEventKind};
    let secrets = state
        .config
        .webhook_secrets
        .nexhealth
        .get(practice)
        .map_or(&[][..], Vec::as_slice);
    if secrets.is_empty() {
        return reject(state, NEXHEALTH, "unconfigured");
    }
    let signature = header_str(headers, nexhealth_client::SIGNATURE_HEADER);
    let mut reason = "malformed";
    let mut verified = false;
    for secret in secrets {
        match nexhealth_client::verify_webhook(secret, signature, body) {
            Ok(()) => {
                verified = true;
                break;
            }
            Err(Error::WebhookSignature(SignatureProblem::Mismatch)) => reason = "signature",
            Err(_) => {}
        }
    }
    if !verified {
        return reject(state, NEXHEALTH, reason);
    }
    let Ok(event) = nexhealth_client::parse_webhook_event(body) else {
        return hold(
            state,
            NEXHEALTH,
            body,
            "the verified NexHealth event did not parse",
        )
        .await;
    };
    // Each institution numbers its own deliveries; without a delivery id, the body's hash.
    let id = event.delivery_id.as_ref().map_or_else(
        || format!("{practice}:sha256:{}", body_digest(body)),
        |d| format!("{practice}:{}", d.as_str()),
    );
    match record(state, NEXHEALTH, &id, Vec::new()).await {
        Ok(fresh) => {
            if fresh && event.kind == WebhookEventKind::TreatmentPlanUpdated {
                state.poll.notify_one();
            }
            ok()
        }
        Err(res) => res,
    }
}

/// The URL Twilio called: the public base URL with the request's path and query.
fn twilio_url(state: &HttpState, uri: &axum::http::Uri) -> String {
    let base = state.config.public_base_url.as_str().trim_end_matches('/');
    let base_path = state.config.public_base_url.path().trim_end_matches('/');
    let origin = base.strip_suffix(base_path).unwrap_or(base);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // A proxy that strips the base path hands us `/webhooks/twilio`; one that keeps it hands us
    // the full path. Either way Twilio signed the public URL.
    if path.starts_with(base_path) && !base_path.is_empty() {
        format!("{origin}{path}")
    } else {
        format!("{origin}{base_path}{path}")
    }
}

fn twiml(message: Option<&str>) -> Response {
    let body = match message {
        Some(m) => format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>{}</Message></Response>"#,
            xml_escape(m)
        ),
        None => r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#.to_owned(),
    };
    let mut res = (StatusCode::OK, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    res
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The practice's HELP reply, from the messaging crate's approved template.
fn help_text(site: &super::PracticeSite) -> String {
    static TEMPLATES: std::sync::OnceLock<Option<messaging::Templates>> =
        std::sync::OnceLock::new();
    let ctx = messaging::HelpReply {
        practice_name: site.name.clone(),
        practice_phone: site.phone.clone(),
        practice_email: site.email.clone(),
    };
    TEMPLATES
        .get_or_init(|| messaging::Templates::load().ok())
        .as_ref()
        .and_then(|t| {
            t.render_sms(
                financing_core::Language::En,
                &ctx,
                messaging::DEFAULT_MAX_SEGMENTS,
            )
            .ok()
        })
        .map_or_else(
            || {
                format!(
                    "{}: for help call {}. Reply STOP to opt out.",
                    site.name, site.phone
                )
            },
            |sms| sms.text,
        )
}

/// `POST /webhooks/twilio`: delivery status callbacks (an audit line when the callback URL names
/// its workflow with `?wf=`) and inbound texts (STOP, START, HELP, refusals).
pub(crate) async fn twilio(
    State(state): State<HttpState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tokens = &state.config.webhook_secrets.twilio;
    if tokens.is_empty() {
        return reject(&state, TWILIO, "unconfigured");
    }
    let url = twilio_url(&state, &uri);
    let signature = header_str(&headers, messaging::SIGNATURE_HEADER);
    let Some(form) = tokens.iter().find_map(|t: &SecretString| {
        WebhookVerifier::new(t.clone())
            .verify(&url, &body, signature)
            .ok()
    }) else {
        return reject(&state, TWILIO, "signature");
    };
    let status = form
        .get("MessageStatus")
        .or_else(|| form.get("SmsStatus"))
        .map(str::trim);
    let inbound = status == Some("received")
        || (form.get("MessageStatus").is_none() && form.get("Body").is_some());
    if inbound {
        twilio_inbound(&state, &form).await
    } else {
        twilio_status(&state, &form, uri.query()).await
    }
}

async fn twilio_status(state: &HttpState, form: &VerifiedForm, query: Option<&str>) -> Response {
    let Ok(cb) = form.status_callback() else {
        return reject(state, TWILIO, "decode");
    };
    let key = format!("status:{}:{}", cb.message_sid.as_str(), cb.status.as_str());
    let now = state.now();
    let fresh = match record(state, TWILIO, &key, Vec::new()).await {
        Ok(fresh) => fresh,
        Err(res) => return res,
    };
    let workflow = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "wf")
            .and_then(|(_, v)| parse_workflow_id(&v))
    });
    if let (true, Some(wf)) = (fresh, workflow) {
        let detail = match &cb.error_code {
            Some(code) => format!(
                "sms {} {} (error {})",
                cb.message_sid.as_str(),
                cb.status.as_str(),
                code.0
            ),
            None => format!("sms {} {}", cb.message_sid.as_str(), cb.status.as_str()),
        };
        let known = match state.store.workflow(&wf).await {
            Ok(row) => row.is_some(),
            Err(e) => return store_failed(TWILIO, &e),
        };
        if known
            && let Err(e) = state
                .store
                .append_audit(&wf, "webhook:twilio", "sms_status", &detail, now)
                .await
        {
            return store_failed(TWILIO, &e);
        }
    }
    twiml(None)
}

async fn twilio_inbound(state: &HttpState, form: &VerifiedForm) -> Response {
    let now = state.now();
    let Ok(msg) = form.inbound_message(now) else {
        return reject(state, TWILIO, "decode");
    };
    let Some(site) = state.config.practice_by_sms_number(msg.to.as_e164()) else {
        tracing::warn!(
            message = msg.message_sid.as_str(),
            "inbound text to a number no practice owns"
        );
        state.metrics.webhook_received(TWILIO, true);
        return twiml(None);
    };
    let intent = msg.intent();
    // A revocation is applied before the delivery is recorded: should we crash in between, the
    // redelivery applies it again (idempotent). An opt-in is applied only on a fresh delivery, so
    // a late duplicate never undoes a later STOP.
    if intent.revokes_consent() {
        // The record says what was received, never the free text itself (it may carry PHI).
        let entry = if intent == InboundIntent::Refusal {
            messaging::ConsentEntry::withdrawal(
                messaging::sources::SMS_REFUSAL,
                "a reply refusing texts",
                "webhook:twilio",
                now,
            )
        } else {
            messaging::ConsentEntry::withdrawal(
                messaging::sources::SMS_STOP,
                "an opt-out keyword (STOP or a synonym)",
                "webhook:twilio",
                now,
            )
        };
        if let Err(e) = state
            .store
            .record_sms_consent(&site.id, msg.from.as_e164(), &entry, now)
            .await
        {
            return store_failed(TWILIO, &e);
        }
        if intent.needs_staff_task() {
            // Staff confirm free-text refusals; the consent record already says no texts.
            tracing::warn!(practice = %site.id, message = msg.message_sid.as_str(), "free-text refusal: texts stopped");
        }
    }
    let key = format!("inbound:{}", msg.message_sid.as_str());
    let fresh = match record(state, TWILIO, &key, Vec::new()).await {
        Ok(fresh) => fresh,
        Err(res) => return res,
    };
    if !fresh {
        return twiml(None);
    }
    match intent {
        InboundIntent::OptIn => {
            if let Err(e) = state
                .store
                .record_sms_consent(
                    &site.id,
                    msg.from.as_e164(),
                    &messaging::ConsentEntry::grant(
                        messaging::ConsentKind::Informational,
                        messaging::sources::SMS_START,
                        "an opt-in keyword (START, UNSTOP or YES) after an opt-out",
                        "webhook:twilio",
                        now,
                    ),
                    now,
                )
                .await
            {
                return store_failed(TWILIO, &e);
            }
            twiml(None)
        }
        InboundIntent::Help => twiml(Some(&help_text(site))),
        _ => twiml(None),
    }
}

#[cfg(test)]
mod tests;
