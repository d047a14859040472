//! Stripe as the [`Payments`] port, through `stripe-schedule`.
//!
//! Every creating call is sent with parameters that are a pure function of the workflow (no
//! `now`), so a repeat after a crash sends the same parameters under the same idempotency key and
//! Stripe replays the stored result instead of refusing a mismatch.

use async_trait::async_trait;
use financing_core::{InHouseOffer, IntervalUnit, Money, PatientContact, PracticeId};
use stripe_schedule::{
    BillingInterval, CardSetupRequest, ChargeOutcome, CheckoutPaymentStatus, CheckoutSessionId,
    CheckoutStatus, Client, Collection, CustomerDetails, CustomerId, INSTALLMENT_KEY,
    IdempotencyKey, InstallmentPlan, Interval, Metadata, OffSessionCharge, PRACTICE_KEY,
    PayLinkRequest, PaymentIntentStatus, PaymentMethodId, SetupIntentId, StartDate,
    SubscriptionScheduleId, WORKFLOW_KEY,
};
use url::Url;

use super::{external, invalid};
use crate::ports::{CardChargeRequest, CardOutcome, DepositLinkState, ExternalError, Payments};
use chairside_workflow::WorkflowId;

/// Days a patient has to pay an in-house installment invoice.
const DAYS_UNTIL_DUE: u32 = 7;

/// Stripe through `stripe-schedule`.
#[derive(Debug, Clone)]
pub struct StripePayments {
    client: Client,
    /// Product name per practice (`Smile Dental treatment plan`).
    product_name: String,
    /// Where the patient lands after paying.
    return_url: Option<Url>,
}

impl StripePayments {
    /// Wraps a built client.
    pub fn new(client: Client, product_name: impl Into<String>, return_url: Option<Url>) -> Self {
        Self {
            client,
            product_name: product_name.into(),
            return_url,
        }
    }
}

impl StripePayments {
    /// The installment schedule of `offer`, collected by `collection`.
    async fn schedule(
        &self,
        practice: &PracticeId,
        customer: &str,
        offer: &InHouseOffer,
        workflow: &WorkflowId,
        collection: Collection,
        idem: &str,
    ) -> Result<String, ExternalError> {
        let product = self
            .client
            .ensure_practice_product(practice, &self.product_name)
            .await
            .map_err(external)?;
        let interval = match offer.interval.unit {
            IntervalUnit::Day => Interval::Day,
            IntervalUnit::Week => Interval::Week,
            IntervalUnit::Month => Interval::Month,
        };
        let total = Money::sum(offer.total.currency(), offer.installments.iter().copied())
            .map_err(|_| invalid("installments do not add up"))?;
        let plan = InstallmentPlan {
            customer: CustomerId::new(customer),
            product,
            total,
            count: offer.installments.len() as u32,
            every: BillingInterval::every(offer.interval.count, interval),
            // `now` is sent as the literal string, so a repeated call has identical parameters.
            start: StartDate::Now,
            collection,
            metadata: workflow_metadata(practice, workflow),
        };
        let schedule = self
            .client
            .create_installment_schedule(&plan, &key(idem)?)
            .await
            .map_err(external)?;
        Ok(schedule.id.as_str().to_owned())
    }
}

fn key(key: &str) -> Result<IdempotencyKey, ExternalError> {
    IdempotencyKey::new(key).map_err(|_| invalid("idempotency key rejected"))
}

fn workflow_metadata(practice: &PracticeId, workflow: &WorkflowId) -> Metadata {
    Metadata::new()
        .with(WORKFLOW_KEY, workflow.as_str())
        .with(PRACTICE_KEY, practice.as_str())
}

#[async_trait]
impl Payments for StripePayments {
    async fn ensure_customer(
        &self,
        practice: &PracticeId,
        patient: &PatientContact,
        _key: &str,
    ) -> Result<String, ExternalError> {
        // One customer per patient, not per workflow: the key derives from (practice, patient), and
        // the lookup by email finds customers created more than a day ago.
        let key = IdempotencyKey::for_customer(practice, &patient.id);
        let customer = self
            .client
            .find_or_create_customer(practice, &patient.id, &CustomerDetails::from(patient), &key)
            .await
            .map_err(external)?;
        Ok(customer.id.as_str().to_owned())
    }

    async fn create_deposit_link(
        &self,
        practice: &PracticeId,
        customer: &str,
        amount: Money,
        workflow: &WorkflowId,
        idem: &str,
    ) -> Result<(String, String), ExternalError> {
        let metadata = workflow_metadata(practice, workflow);
        let request = PayLinkRequest {
            customer: CustomerId::new(customer),
            amount,
            client_reference_id: workflow.as_str().to_owned(),
            expires_at: None,
            save_card: false,
            // The landing page after paying (`/paid`): no token and no workflow id in a URL that
            // goes to Stripe.
            success_url: self.return_url.as_ref().and_then(|u| u.join("paid").ok()),
            cancel_url: None,
            metadata,
            // The workflow id stays off the session's PaymentIntent: a card declined during
            // Checkout is the patient retrying, not a failed installment (the session's own
            // events report the payment).
            payment_metadata: Metadata::new().with(PRACTICE_KEY, practice.as_str()),
        };
        let session = self
            .client
            .create_checkout_session(&request, &key(idem)?)
            .await
            .map_err(external)?;
        let url = session
            .url
            .clone()
            .ok_or_else(|| invalid("Stripe returned a Checkout Session without a url"))?;
        Ok((session.id.as_str().to_owned(), url.to_string()))
    }

    async fn create_schedule(
        &self,
        practice: &PracticeId,
        customer: &str,
        offer: &InHouseOffer,
        workflow: &WorkflowId,
        idem: &str,
    ) -> Result<String, ExternalError> {
        // No card is saved by default (never a precondition of care): Stripe emails invoices.
        let collection = Collection::SendInvoice {
            days_until_due: DAYS_UNTIL_DUE,
        };
        self.schedule(practice, customer, offer, workflow, collection, idem)
            .await
    }

    async fn create_schedule_on_card(
        &self,
        practice: &PracticeId,
        customer: &str,
        offer: &InHouseOffer,
        workflow: &WorkflowId,
        payment_method: &str,
        idem: &str,
    ) -> Result<String, ExternalError> {
        let collection = Collection::ChargeAutomatically {
            payment_method: Some(PaymentMethodId::new(payment_method)),
        };
        self.schedule(practice, customer, offer, workflow, collection, idem)
            .await
    }

    async fn set_schedule_card(
        &self,
        schedule: &str,
        payment_method: &str,
        idem: &str,
    ) -> Result<(), ExternalError> {
        self.client
            .set_schedule_card(
                &SubscriptionScheduleId::new(schedule),
                &PaymentMethodId::new(payment_method),
                &key(idem)?,
            )
            .await
            .map_err(external)?;
        Ok(())
    }

    async fn list_refunds(
        &self,
        charge: &str,
    ) -> Result<Option<Vec<chairside_workflow::refunds::ListedRefund>>, ExternalError> {
        let refunds = self
            .client
            .list_refunds(&stripe_schedule::ChargeId::new(charge))
            .await
            .map_err(external)?;
        let mut out = Vec::with_capacity(refunds.len());
        for r in refunds {
            // A refund in a currency we do not know cannot be reversed by id: the cumulative
            // rule decides for this event.
            let Some(amount) = r.money() else {
                return Ok(None);
            };
            out.push(chairside_workflow::refunds::ListedRefund {
                id: r.id.as_str().to_owned(),
                amount,
                returns_money: r.status.returns_money(),
            });
        }
        Ok(Some(out))
    }

    async fn cancel_schedule(&self, schedule: &str, idem: &str) -> Result<(), ExternalError> {
        let id = SubscriptionScheduleId::new(schedule);
        match self.client.cancel_schedule(&id, &key(idem)?).await {
            Ok(_) => Ok(()),
            // Already canceled or completed: confirm by reading it back.
            Err(e) if e.status() == Some(400) => {
                let current = self.client.get_schedule(&id).await.map_err(external)?;
                let status = format!("{:?}", current.status).to_lowercase();
                if status.contains("cancel")
                    || status.contains("complete")
                    || status.contains("release")
                {
                    Ok(())
                } else {
                    Err(external(e))
                }
            }
            Err(e) => Err(external(e)),
        }
    }

    async fn create_card_setup_link(
        &self,
        practice: &PracticeId,
        customer: &str,
        currency: financing_core::Currency,
        workflow: &WorkflowId,
        idem: &str,
    ) -> Result<(String, String), ExternalError> {
        let request = CardSetupRequest {
            customer: CustomerId::new(customer),
            currency,
            client_reference_id: workflow.as_str().to_owned(),
            expires_at: None,
            // The landing page after saving (`/paid`): no token and no workflow id in a URL that
            // goes to Stripe.
            success_url: self.return_url.as_ref().and_then(|u| u.join("paid").ok()),
            cancel_url: None,
            metadata: workflow_metadata(practice, workflow),
        };
        let session = self
            .client
            .create_card_setup_session(&request, &key(idem)?)
            .await
            .map_err(external)?;
        let url = session
            .url
            .clone()
            .ok_or_else(|| invalid("Stripe returned a setup Checkout Session without a url"))?;
        Ok((session.id.as_str().to_owned(), url.to_string()))
    }

    async fn saved_card(&self, setup_intent: &str) -> Result<String, ExternalError> {
        let seti = self
            .client
            .get_setup_intent(&SetupIntentId::new(setup_intent))
            .await
            .map_err(external)?;
        seti.payment_method
            .map(|pm| pm.as_str().to_owned())
            .ok_or_else(|| invalid("the completed card setup saved no payment method"))
    }

    async fn charge_card(
        &self,
        charge: &CardChargeRequest<'_>,
    ) -> Result<CardOutcome, ExternalError> {
        // Reconcile before charging: a charge whose answer never reached the store (a crash
        // between the call and the commit, a staff retry after Stripe forgot the key) is found
        // by its metadata and reported as made, never made twice. A declined attempt is not a
        // charge: a retry charges anew.
        let customer = CustomerId::new(charge.customer);
        let earlier = self
            .client
            .list_payment_intents(&customer)
            .await
            .map_err(external)?;
        if let Some(pi) = earlier.iter().find(|pi| {
            pi.metadata.get(WORKFLOW_KEY) == Some(charge.workflow.as_str())
                && pi.metadata.get(INSTALLMENT_KEY) == Some(charge.purpose)
                && matches!(
                    pi.status,
                    PaymentIntentStatus::Succeeded | PaymentIntentStatus::Processing
                )
        }) {
            tracing::info!(
                payment_intent = pi.id.as_str(),
                "off-session charge already made: reconciled, not charged again"
            );
            return Ok(CardOutcome::Charged {
                payment_intent: pi.id.as_str().to_owned(),
            });
        }
        let request = OffSessionCharge {
            customer,
            payment_method: PaymentMethodId::new(charge.payment_method),
            amount: charge.amount,
            metadata: workflow_metadata(charge.practice, charge.workflow)
                .with(INSTALLMENT_KEY, charge.purpose),
        };
        let outcome = self
            .client
            .charge_off_session(&request, &key(charge.key)?)
            .await
            .map_err(external)?;
        let declined = |f: stripe_schedule::CardFailure, authentication: bool| {
            let code = f
                .code
                .as_ref()
                .map_or("card_error", stripe_schedule::ErrorCode::as_str)
                .to_owned();
            let reason = match &f.decline_code {
                Some(d) if d.as_str() != code => format!("{code}: {d}"),
                _ => code,
            };
            CardOutcome::Declined {
                payment_intent: f.payment_intent.map(|p| p.as_str().to_owned()),
                reason,
                authentication,
            }
        };
        Ok(match outcome {
            ChargeOutcome::Succeeded(pi) | ChargeOutcome::Processing(pi) => CardOutcome::Charged {
                payment_intent: pi.id.as_str().to_owned(),
            },
            ChargeOutcome::AuthenticationRequired(f) => declined(f, true),
            ChargeOutcome::Declined(f) => declined(f, false),
            ChargeOutcome::Other(pi) => {
                return Err(invalid(format!(
                    "the off-session charge {} ended in an unexpected status; look it up in Stripe",
                    pi.id.as_str()
                )));
            }
            _ => {
                return Err(invalid(
                    "an off-session charge outcome this version does not know",
                ));
            }
        })
    }

    async fn deposit_link_state(&self, session: &str) -> Result<DepositLinkState, ExternalError> {
        let id = CheckoutSessionId::new(session);
        let session = match self.client.get_checkout_session(&id).await {
            Ok(s) => s,
            // A session Stripe does not know cannot be paid: it is replaced.
            Err(e) if e.status() == Some(404) => return Ok(DepositLinkState::Dead),
            Err(e) => return Err(external(e)),
        };
        Ok(
            match (session.status, session.payment_status, session.url) {
                (_, CheckoutPaymentStatus::Paid, _) => DepositLinkState::Paid,
                (Some(CheckoutStatus::Open), CheckoutPaymentStatus::Unpaid, Some(url)) => {
                    DepositLinkState::Open {
                        url: url.to_string(),
                    }
                }
                _ => DepositLinkState::Dead,
            },
        )
    }

    async fn expire_deposit_link(&self, session: &str, idem: &str) -> Result<(), ExternalError> {
        let id = CheckoutSessionId::new(session);
        match self.client.expire_checkout_session(&id, &key(idem)?).await {
            Ok(_) => Ok(()),
            // A completed or already expired session cannot be expired: nothing left to undo.
            Err(e) if e.status() == Some(400) => Ok(()),
            Err(e) => Err(external(e)),
        }
    }
}
