//! A third lender as a plug-in: everything implementing
//! [`FinancingProvider`] takes, with an in-memory made-up lender, "Acme Dental Credit".
//!
//! A real plug-in (see `carecredit-client` and `sunbit-client`) replaces the `HashMap` with HTTP
//! calls; the rules stay the same:
//!
//! - [`FinancingProvider::start_application`] is idempotent on [`FinancingRequest::reference`]:
//!   called twice, it returns the same application.
//! - A decline is `Ok(Decision::Declined { .. })`, never an error. Errors are for calls that
//!   failed, and carry an [`ErrorKind`] via [`ProviderError`].
//! - An approval below the amount asked is a counteroffer: build it with
//!   [`Decision::from_approval`].
//! - Send only what the request carries: `prefill` and `lookup` are already filtered by the
//!   compliance policy, and there is no clinical data to send.
//!
//! The plug-in is then held as `Arc<dyn FinancingProvider>` ([`financing_core::SharedProvider`])
//! next to the others in the waterfall.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use financing_core::{
    AmountLimits, ApplicationHandle, ApplicationRef, Classify, Decision, ErrorKind,
    FinancingProvider, FinancingRequest, LenderId, LenderReference, Money, Offer, ProviderError,
    async_trait,
};
use url::Url;

/// The plug-in's own error. `Display` names the operation, never patient data.
#[derive(Debug)]
pub enum AcmeError {
    /// The application handle names an application this lender never opened.
    UnknownApplication,
    /// The in-memory store was poisoned by a panic elsewhere.
    StoreUnavailable,
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownApplication => f.write_str("application status: unknown application"),
            Self::StoreUnavailable => f.write_str("acme store unavailable"),
        }
    }
}

impl std::error::Error for AcmeError {}

impl Classify for AcmeError {
    fn kind(&self) -> ErrorKind {
        match self {
            // Retrying cannot make an unknown application known: a person must look.
            Self::UnknownApplication => ErrorKind::Permanent,
            Self::StoreUnavailable => ErrorKind::TRANSIENT,
        }
    }
}

struct Application {
    number: u32,
    amount: Money,
    cancelled: bool,
}

/// Acme Dental Credit: approves every applicant up to one credit limit, after the patient has
/// opened the hosted link. Made up, in memory.
pub struct AcmeLender {
    credit_limit: Money,
    applications: Mutex<HashMap<ApplicationRef, Application>>,
}

impl fmt::Debug for AcmeLender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeLender")
            .field("credit_limit", &self.credit_limit)
            .finish_non_exhaustive()
    }
}

impl AcmeLender {
    /// A lender that approves up to `credit_limit`.
    pub fn new(credit_limit: Money) -> Self {
        Self {
            credit_limit,
            applications: Mutex::new(HashMap::new()),
        }
    }

    /// How many applications were opened (for the example's test).
    pub fn applications_opened(&self) -> usize {
        self.applications.lock().map_or(0, |apps| apps.len())
    }

    fn link(number: u32) -> Url {
        // A constant, valid URL: parsing cannot fail.
        Url::parse(&format!("https://apply.acme-credit.example/a/{number}"))
            .unwrap_or_else(|_| unreachable!("a fixed https URL parses"))
    }
}

#[async_trait]
impl FinancingProvider for AcmeLender {
    fn id(&self) -> LenderId {
        LenderId::new("acme-credit")
    }

    fn display_name(&self) -> &str {
        "Acme Dental Credit"
    }

    fn limits(&self) -> AmountLimits {
        AmountLimits {
            min: Some(Money::usd(50_000)),
            max: Some(Money::usd(1_000_000)),
        }
    }

    // `lookup_cardholder` and `cancel_application` have defaults; Acme has no cardholder lookup,
    // so only `cancel_application` is overridden below.

    async fn start_application(
        &self,
        request: &FinancingRequest,
    ) -> Result<Decision, ProviderError> {
        let mut apps = self
            .applications
            .lock()
            .map_err(|_| ProviderError::from_classified(AcmeError::StoreUnavailable))?;
        let next = u32::try_from(apps.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        // Idempotent on our reference: a retried start returns the same application.
        let app = apps
            .entry(request.reference.clone())
            .or_insert_with(|| Application {
                number: next,
                amount: request.amount,
                cancelled: false,
            });
        Ok(Decision::ApplicationStarted {
            link: Self::link(app.number),
            lender_reference: LenderReference::new(format!("acme-{}", app.number)),
            expires_at: None,
        })
    }

    async fn application_status(
        &self,
        application: &ApplicationHandle,
    ) -> Result<Decision, ProviderError> {
        let apps = self
            .applications
            .lock()
            .map_err(|_| ProviderError::from_classified(AcmeError::StoreUnavailable))?;
        let app = apps
            .get(&application.reference)
            .ok_or_else(|| ProviderError::from_classified(AcmeError::UnknownApplication))?;
        if app.cancelled {
            return Ok(Decision::Expired {
                raw_status: "withdrawn".into(),
            });
        }
        let offer = Offer {
            lender: self.id(),
            amount: app.amount.min(self.credit_limit),
            promotion: None,
            term_months: Some(12),
            apr_bps: Some(0),
            expires_at: None,
            lender_reference: Some(application.lender_reference.clone()),
        };
        // Full approval, counteroffer or decline, from one helper.
        Ok(Decision::from_approval(offer, app.amount, "decided"))
    }

    async fn cancel_application(
        &self,
        application: &ApplicationHandle,
    ) -> Result<(), ProviderError> {
        let mut apps = self
            .applications
            .lock()
            .map_err(|_| ProviderError::from_classified(AcmeError::StoreUnavailable))?;
        if let Some(app) = apps.get_mut(&application.reference) {
            app.cancelled = true;
        }
        Ok(())
    }
}
