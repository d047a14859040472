//! The engine as an embedder builds it, without Chairside's TOML: a store, one
//! [`PracticeRuntime`] per practice, lenders shared by every practice (plug-ins), a clock and the
//! runner's settings, checked together.
//!
//! ```no_run
//! # async fn example(
//! #     store: std::sync::Arc<dyn chairside_engine::store::Store>,
//! #     practice: chairside_engine::runner::PracticeRuntime,
//! #     my_lender: financing_core::SharedProvider,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! use chairside_engine::Engine;
//! use financing_core::LenderId;
//!
//! // The practice's waterfall may name "acme-lending": every practice is offered it.
//! let engine = Engine::builder(store)
//!     .lender(LenderId::new("acme-lending"), my_lender)
//!     .practice(practice)
//!     .build()?;
//! engine.runner().poll().await?;
//! engine.runner().tick().await?;
//! # Ok(())
//! # }
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use financing_core::{LenderId, PracticeId, SharedProvider};

use crate::clock::{Clock, SystemClock};
use crate::outbound::{DispatchConfig, Dispatcher, SharedSubscriber};
use crate::runner::{PracticeRuntime, Runner, RunnerConfig};
use crate::store::Store;

/// Why an engine could not be built: the practices and lenders do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Two practices have the same id.
    #[error("practice {0} is given twice")]
    PracticeTwice(PracticeId),
    /// A practice's waterfall names a lender that neither the practice nor the plug-ins provide.
    #[error("the waterfall of practice {practice} names lender {lender}, which nothing provides")]
    UnknownLender {
        /// The practice.
        practice: PracticeId,
        /// The lender its waterfall names.
        lender: LenderId,
    },
    /// A lender id is provided twice for one practice (by the practice and by a plug-in, or by
    /// two plug-ins): which one to ask would be a guess.
    #[error("lender {lender} is provided twice for practice {practice}")]
    LenderTwice {
        /// The practice.
        practice: PracticeId,
        /// The lender.
        lender: LenderId,
    },
}

/// Builds an [`Engine`]. See the [module documentation](self).
#[derive(Debug)]
pub struct EngineBuilder {
    store: Arc<dyn Store>,
    runner: RunnerConfig,
    clock: Arc<dyn Clock>,
    practices: Vec<PracticeRuntime>,
    plugins: Vec<(LenderId, SharedProvider)>,
    subscribers: Vec<SharedSubscriber>,
    dispatch: DispatchConfig,
    detection: crate::detect::DetectConfig,
}

impl EngineBuilder {
    /// An engine over `store` (opened and migrated by the caller), with the default runner
    /// settings and the system clock.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            runner: RunnerConfig::default(),
            clock: Arc::new(SystemClock),
            practices: Vec::new(),
            plugins: Vec::new(),
            subscribers: Vec::new(),
            dispatch: DispatchConfig::default(),
            detection: crate::detect::DetectConfig::default(),
        }
    }

    /// A subscriber to the outbound events (a webhook endpoint, the CRM, the lab); see
    /// [`crate::outbound`].
    pub fn subscriber(mut self, subscriber: SharedSubscriber) -> Self {
        self.subscribers.push(subscriber);
        self
    }

    /// The outbound dispatcher's settings (owner, lease, batch, retry bound).
    pub fn dispatch_config(mut self, config: DispatchConfig) -> Self {
        self.dispatch = config;
        self
    }

    /// Detection settings: where a new install starts, the plan limits checked before anyone is
    /// contacted, retries of a plan whose details fail (see [`crate::detect`]).
    pub fn detection(mut self, detection: crate::detect::DetectConfig) -> Self {
        self.detection = detection;
        self
    }

    /// The runner's settings: owner, lease, batch, concurrency, retry schedule.
    pub fn runner_config(mut self, config: RunnerConfig) -> Self {
        self.runner = config;
        self
    }

    /// The clock the runner reads (default the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// A lender offered to every practice under `id`: a practice's waterfall may name it.
    pub fn lender(mut self, id: LenderId, provider: SharedProvider) -> Self {
        self.plugins.push((id, provider));
        self
    }

    /// One practice, with its own lenders (the plug-ins are added to them).
    pub fn practice(mut self, practice: PracticeRuntime) -> Self {
        self.practices.push(practice);
        self
    }

    /// Checks that practices and lenders fit together and builds the engine.
    ///
    /// # Errors
    /// [`EngineError`]: a practice given twice, a lender given twice for a practice, or a
    /// waterfall naming a lender nothing provides.
    pub fn build(self) -> Result<Engine, EngineError> {
        let mut seen = HashSet::new();
        let mut practices = Vec::with_capacity(self.practices.len());
        for mut practice in self.practices {
            let id = practice.profile.id.clone();
            if !seen.insert(id.clone()) {
                return Err(EngineError::PracticeTwice(id));
            }
            for (lender, provider) in &self.plugins {
                if practice
                    .lenders
                    .insert(lender.clone(), provider.clone())
                    .is_some()
                {
                    return Err(EngineError::LenderTwice {
                        practice: id,
                        lender: lender.clone(),
                    });
                }
            }
            if let Some(slot) = practice
                .workflow
                .waterfall
                .slots()
                .iter()
                .find(|slot| !practice.lenders.contains_key(&slot.lender))
            {
                return Err(EngineError::UnknownLender {
                    practice: id,
                    lender: slot.lender.clone(),
                });
            }
            // Each lender's cadence and session life come from its client (a plug-in gets the
            // trait's default); a schedule given in the practice's configuration wins.
            let slots: Vec<LenderId> = practice
                .workflow
                .waterfall
                .slots()
                .iter()
                .map(|s| s.lender.clone())
                .collect();
            for lender in slots {
                let given = practice
                    .workflow
                    .lender_schedules
                    .iter()
                    .any(|(l, _)| l == &lender);
                let named = practice
                    .workflow
                    .lender_names
                    .iter()
                    .any(|(l, _)| l == &lender);
                if let (false, Some(provider)) = (named, practice.lenders.get(&lender)) {
                    // Staff and patients read lenders by the name the client gives
                    // (`CareCredit`, a plug-in's own), never by id.
                    let name = provider.display_name().trim();
                    if !name.is_empty() {
                        practice
                            .workflow
                            .lender_names
                            .push((lender.clone(), name.to_owned()));
                    }
                }
                if let (false, Some(provider)) = (given, practice.lenders.get(&lender)) {
                    let schedule = provider.poll_schedule();
                    practice.workflow.lender_schedules.push((lender, schedule));
                }
            }
            practices.push(practice);
        }
        let dispatcher = Dispatcher::new(
            self.store.clone(),
            self.subscribers,
            self.clock.clone(),
            self.dispatch,
        );
        let runner = Runner::new(self.store.clone(), practices, self.runner, self.clock)
            .with_detection(self.detection);
        Ok(Engine {
            store: self.store,
            runner,
            dispatcher,
        })
    }
}

/// A built engine: the store and the runner that drives every practice's workflows. Cloning is
/// cheap (shared handles).
#[derive(Debug, Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    runner: Runner,
    dispatcher: Dispatcher,
}

impl Engine {
    /// Starts building an engine over `store`.
    pub fn builder(store: Arc<dyn Store>) -> EngineBuilder {
        EngineBuilder::new(store)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The runner: `poll` for newly accepted plans, `tick` to perform due work.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// The outbound dispatcher: start its subscribers' cursors before the runner or the poll
    /// runs ([`Dispatcher::start_cursors`]), then run it beside the runner ([`Dispatcher::run`])
    /// to deliver the events to the subscribers.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The lenders each practice can ask, by id (its own and the plug-ins).
    pub fn lenders(&self) -> HashMap<PracticeId, Vec<LenderId>> {
        self.runner
            .practices()
            .map(|p| {
                let mut ids: Vec<LenderId> = p.lenders.keys().cloned().collect();
                ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                (p.profile.id.clone(), ids)
            })
            .collect()
    }
}
