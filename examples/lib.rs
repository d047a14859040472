//! Runnable examples of embedding Chairside's crates; see the `[[example]]` targets.
