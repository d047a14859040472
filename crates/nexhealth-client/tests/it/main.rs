//! The one integration-test binary: every endpoint against wiremock on loopback.

mod auth;
mod errors;
mod helpers;
mod patients;
mod payments;
mod treatment_plans;
mod webhooks;
mod writeback;
