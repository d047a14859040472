//! sunbit-client integration tests: wiremock on loopback, one module per call, plus webhooks.

mod cancel;
mod config;
mod helpers;
mod link;
mod purchase;
mod settle;
mod webhook;
