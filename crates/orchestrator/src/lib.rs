//! The orchestrator: the workflow state machine, the durable store, the runner and the poller
//! behind the `chairside` binary.

pub mod adapters;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod http;
pub mod note;
pub mod ports;
pub mod runner;
pub mod store;
pub mod workflow;
