//! The state every stand-in shares: one `Arc<Hub>` is the axum state of every router.

use std::fmt;

use crate::SandboxUrls;
use crate::config::SandboxConfig;
use crate::fault::FaultController;
use crate::lenders::carecredit::CareCreditStateStore;
use crate::lenders::sunbit::SunbitStore;
use crate::pms::PmsState;
use crate::pms::opendental::OdState;
use crate::record::Recorder;
use crate::server::Shutdown;
use crate::smtp::SmtpState;
use crate::stripe::StripeState;
use crate::twilio::TwilioState;
use crate::webhook::Webhooks;
use crate::world::World;

/// Everything the stand-ins share.
pub(crate) struct Hub {
    pub(crate) config: SandboxConfig,
    pub(crate) urls: SandboxUrls,
    pub(crate) world: World,
    pub(crate) stripe: StripeState,
    pub(crate) twilio: TwilioState,
    pub(crate) smtp: SmtpState,
    pub(crate) pms: PmsState,
    pub(crate) opendental: OdState,
    pub(crate) carecredit: CareCreditStateStore,
    pub(crate) sunbit: SunbitStore,
    pub(crate) webhooks: Webhooks,
    pub(crate) recorder: Recorder,
    pub(crate) faults: FaultController,
    pub(crate) shutdown: Shutdown,
    /// For following links as a patient would.
    pub(crate) http: reqwest::Client,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}
