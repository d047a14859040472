//! Runnable examples of embedding Chairside's crates; see the `[[example]]` targets.

// A third lender as a `FinancingProvider` plug-in, in memory; run by `tests/third_lender.rs`
// (`cargo test -p chairside-examples`).
pub mod third_lender;
