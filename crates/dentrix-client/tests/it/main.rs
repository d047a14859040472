//! The one integration-test binary: every endpoint against wiremock on loopback.

mod auth;
mod errors;
mod helpers;
mod notes;
mod patients;
mod txcases;
