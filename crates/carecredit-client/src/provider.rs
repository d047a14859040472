//! [`FinancingProvider`] for [`Client`].

use async_trait::async_trait;
use financing_core::{
    AmountLimits, ApplicationHandle, Currency, Decision, FinancingProvider, FinancingRequest,
    LenderId, LenderReference, Money, PollSchedule, ProviderError,
};

use crate::client::{Client, started_expiry};
use crate::status::{LENDER_ID, pullback_decision};
use crate::wire::PullbackStatus;

#[async_trait]
impl FinancingProvider for Client {
    fn id(&self) -> LenderId {
        LenderId::new(LENDER_ID)
    }

    fn display_name(&self) -> &str {
        "CareCredit"
    }

    fn limits(&self) -> AmountLimits {
        self.amount_limits()
    }

    fn poll_schedule(&self) -> PollSchedule {
        self.configured_poll_schedule()
    }

    /// `Some(Decision::Cardholder { .. })` when CareCredit finds an account for the name plus
    /// phone or ZIP in [`FinancingRequest::lookup`]; the waterfall decides whether its available
    /// credit covers the amount. `None` when no account was found, or when the request carries no
    /// lookup identity (nothing is sent then).
    async fn lookup_cardholder(
        &self,
        request: &FinancingRequest,
    ) -> Result<Option<Decision>, ProviderError> {
        let Some(found) = self.lookup_account(request).await? else {
            return Ok(None);
        };
        if found.status != PullbackStatus::AccountFound {
            return Ok(None);
        }
        Ok(Some(Decision::Cardholder {
            // Found but no credit figure: treat as nothing available rather than guess.
            available_credit: found
                .available_credit
                .map_or(Money::zero(Currency::Usd), |a| a.0),
            lender_reference: found
                .lookup_details
                .and_then(|l| l.account_token)
                .map(LenderReference::new),
        }))
    }

    /// Finds the session already opened for [`FinancingRequest::reference`] (the partner
    /// transaction id) and returns it; only when there is none does it open one. So a retried
    /// start, including one after an indeterminate timeout, never opens a second session.
    async fn start_application(
        &self,
        request: &FinancingRequest,
    ) -> Result<Decision, ProviderError> {
        let location = &request.location.location_id;
        let (session, created_now) = match self.find_session(location, &request.reference).await? {
            Some(existing) => (existing, false),
            None => (self.create_session(request, None).await?, true),
        };
        Ok(Decision::ApplicationStarted {
            expires_at: started_expiry(&session, created_now),
            lender_reference: LenderReference::new(session.session_id.as_str()),
            link: session.page_url,
        })
    }

    /// The pullback, mapped by [`pullback_decision`](crate::pullback_decision).
    async fn application_status(
        &self,
        application: &ApplicationHandle,
    ) -> Result<Decision, ProviderError> {
        let pullback = self.get_pullback(application).await?;
        Ok(pullback_decision(
            &pullback,
            application.amount,
            self.poll_interval(),
        ))
    }

    // No cancel call is known for CareCredit: an unused prefill session expires on its own
    // (30 minutes), so the trait's default (do nothing) is right.
}
