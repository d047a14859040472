//! Runnable examples of embedding Chairside's crates; see the `[[example]]` targets.

// A third lender as a `FinancingProvider` plug-in, in memory; run by `tests/third_lender.rs`
// (`cargo test -p chairside-examples`).
pub mod third_lender;

// The engine embedded with the third lender in its waterfall; run against the sandbox by
// `examples/embed_engine.rs` and `tests/embedding.rs`. docs/embedding.md explains it.
pub mod embedding;
