//! Cross-crate end-to-end tests: one binary, one module per scenario family.

mod alerts;
mod browser;
mod chain;
mod detect;
mod intake;
mod lender_waterfall;
