//! The orchestrator: the workflow state machine, the durable store, the runner and the poller
//! behind the `chairside` binary.

pub mod workflow;
