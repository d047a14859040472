//! [`FinancingProvider`] for [`Client`].

use async_trait::async_trait;
use chrono::Utc;
use financing_core::{
    AmountLimits, ApplicationHandle, Decision, FinancingProvider, FinancingRequest, LenderId,
    LenderReference, PollSchedule, ProviderError,
};

use crate::client::{Client, PurchaseLookup, link_expiry};
use crate::status::{LENDER_ID, NO_PURCHASE_YET, purchase_decision};
use crate::wire::PurchaseStatus;

#[async_trait]
impl FinancingProvider for Client {
    fn id(&self) -> LenderId {
        LenderId::new(LENDER_ID)
    }

    fn display_name(&self) -> &str {
        "Sunbit"
    }

    fn limits(&self) -> AmountLimits {
        self.amount_limits()
    }

    fn poll_schedule(&self) -> PollSchedule {
        self.configured_poll_schedule()
    }

    // No cardholder lookup is known for Sunbit: the trait's default (`Ok(None)`) applies.

    /// Requests the prequalification link. The lender reference is our own reference until a
    /// webhook brings Sunbit's purchase id (see [`PurchaseLookup::for_handle`]); the link lasts
    /// 7 days.
    ///
    /// Sunbit documents no idempotency for the link, so a timeout or 5xx here is indeterminate and
    /// never blind-retried; a second link for the same referral is harmless (the patient uses
    /// one, and both report under our reference).
    async fn start_application(
        &self,
        request: &FinancingRequest,
    ) -> Result<Decision, ProviderError> {
        let link = self.create_online_link(request).await?;
        Ok(Decision::ApplicationStarted {
            link: link.url,
            lender_reference: LenderReference::new(request.reference.as_str()),
            expires_at: Some(link_expiry()),
        })
    }

    /// Reads the purchase (by reference until Sunbit's purchase id is known) and maps it with
    /// [`purchase_decision`](crate::purchase_decision). No purchase yet is `Pending`.
    async fn application_status(
        &self,
        application: &ApplicationHandle,
    ) -> Result<Decision, ProviderError> {
        match self
            .get_purchase(&PurchaseLookup::for_handle(application))
            .await?
        {
            Some(purchase) => Ok(purchase_decision(
                &purchase,
                application.amount,
                Utc::now(),
                self.poll_interval(),
            )),
            None => Ok(Decision::Pending {
                poll_after: self.poll_interval(),
                raw_status: NO_PURCHASE_YET.to_owned(),
            }),
        }
    }

    /// Reads the purchase first and voids it only when it is completed, as Sunbit advises: an
    /// incomplete purchase has nothing to reverse (the link lapses), a voided one is done, and no
    /// purchase at all means the patient never applied.
    async fn cancel_application(
        &self,
        application: &ApplicationHandle,
    ) -> Result<(), ProviderError> {
        let lookup = PurchaseLookup::for_handle(application);
        let Some(purchase) = self.get_purchase(&lookup).await? else {
            return Ok(());
        };
        if purchase.status != PurchaseStatus::Completed {
            return Ok(());
        }
        let id = match (purchase.purchase_id, lookup) {
            (Some(id), _) | (None, PurchaseLookup::Id(id)) => id,
            // A completed purchase read back without its id: Sunbit's shape is not what we
            // expect, and it cannot be voided through the API.
            (None, _) => {
                return Err(crate::Error::Decode {
                    operation: crate::Operation::GetPurchase,
                    source: connector_transport::DecodeError {
                        path: "purchaseId".into(),
                        problem: connector_transport::DecodeProblem::Missing,
                        line: 0,
                        column: 0,
                    },
                }
                .into());
            }
        };
        self.cancel_purchase(
            &application.location.location_id,
            &application.reference,
            &id,
        )
        .await?;
        Ok(())
    }
}
