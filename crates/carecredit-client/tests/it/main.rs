//! carecredit-client integration tests: wiremock on loopback, one module per call.

mod config;
mod helpers;
mod lookup;
mod pullback;
mod start;
mod token;
