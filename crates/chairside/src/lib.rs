//! `chairside`, the application: the configuration, the command line, the one composition root
//! ([`app`]) that `run`, the demo, the end-to-end tests and the bench all build their stack
//! through, the demo world over the sandbox, and the benchmark.
//!
//! The engine it runs is `chairside-engine` (store, runner, adapters) with `chairside-http` (the
//! HTTP surface); the pure workflow is `chairside-workflow`. This is the only crate besides the
//! tests that links the `sandbox` stand-ins.

pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
