//! The one [`FinancingProvider`] for every lender without a public merchant API (Cherry, Alphaeon
//! Credit, LendingClub Patient Solutions), configured per lender with
//! [`LinkOnlyTerms`]. The rules and the sources are in [`financing_core::link_only`].
//!
//! Nothing is sent to the lender: opening an application hands the practice's own application
//! link to the workflow (the patient reaches it from the patient page, after the notices), and the
//! decision comes back from staff ([`StaffActions::record_lender_decision`](crate::staff::StaffActions::record_lender_decision)),
//! who read it in the lender's portal. The schedule says so
//! ([`PollSchedule::staff_decides_within`]): the machine never reads this lender's status, and
//! when staff record nothing within the configured wait, the waterfall moves on with a staff task.

use async_trait::async_trait;
use financing_core::link_only::LinkOnlyTerms;
use financing_core::{
    AmountLimits, ApplicationHandle, Decision, FinancingProvider, FinancingRequest, LenderId,
    LenderReference, PollSchedule, ProviderError,
};

/// A link-only lender: see the module docs.
#[derive(Clone, Debug)]
pub struct LinkOnlyProvider {
    terms: LinkOnlyTerms,
}

impl LinkOnlyProvider {
    /// The lender as the practice configured it.
    pub fn new(terms: LinkOnlyTerms) -> Self {
        Self { terms }
    }

    /// The configured terms.
    pub fn terms(&self) -> &LinkOnlyTerms {
        &self.terms
    }
}

#[async_trait]
impl FinancingProvider for LinkOnlyProvider {
    fn id(&self) -> LenderId {
        self.terms.lender.clone()
    }

    fn display_name(&self) -> &str {
        &self.terms.display_name
    }

    fn limits(&self) -> AmountLimits {
        self.terms.limits
    }

    /// Never polled: staff decide within the configured wait.
    fn poll_schedule(&self) -> PollSchedule {
        PollSchedule {
            staff_decides_within: Some(self.terms.decide_within),
            ..PollSchedule::default()
        }
    }

    /// The practice's own link, the same for every patient; the reference is ours (the lender
    /// gives none), so a repeat opens nothing new.
    async fn start_application(
        &self,
        request: &FinancingRequest,
    ) -> Result<Decision, ProviderError> {
        Ok(Decision::ApplicationStarted {
            link: self.terms.application_link.clone(),
            lender_reference: LenderReference::new(request.reference.as_str()),
            expires_at: None,
        })
    }

    /// There is nothing to read: still pending until staff record the decision.
    async fn application_status(
        &self,
        _application: &ApplicationHandle,
    ) -> Result<Decision, ProviderError> {
        Ok(Decision::Pending {
            poll_after: None,
            raw_status: "awaiting_staff".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use financing_core::{ApplicationRef, LenderLocation, LocationId, Money, PracticeId, UsState};

    use super::*;

    fn cherry() -> LinkOnlyProvider {
        LinkOnlyProvider::new(LinkOnlyTerms {
            lender: LenderId::new("cherry"),
            display_name: "Cherry".into(),
            application_link: url::Url::parse("https://pay.withcherry.test/smile-dental").unwrap(),
            decide_within: Duration::from_secs(3600),
            limits: AmountLimits::NONE,
        })
    }

    #[tokio::test]
    async fn the_practice_link_goes_out_unchanged_and_nothing_of_the_patient_does() {
        let request = FinancingRequest {
            reference: ApplicationRef::new("wf_1-cherry"),
            location: LenderLocation {
                practice_id: PracticeId::new("p"),
                location_id: LocationId::new("1"),
                state: UsState::TX,
            },
            amount: Money::usd(100_000),
            prefill: None,
            lookup: None,
            return_url: None,
        };
        let p = cherry();
        let d = p.start_application(&request).await.unwrap();
        let again = p.start_application(&request).await.unwrap();
        assert_eq!(d, again, "a repeat opens nothing new");
        match d {
            Decision::ApplicationStarted {
                link,
                lender_reference,
                expires_at,
            } => {
                assert_eq!(link.as_str(), "https://pay.withcherry.test/smile-dental");
                assert_eq!(lender_reference.as_str(), "wf_1-cherry");
                assert_eq!(expires_at, None);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            p.poll_schedule().staff_decides_within,
            Some(Duration::from_secs(3600))
        );
    }
}
