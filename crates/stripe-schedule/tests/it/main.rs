//! stripe-schedule's one integration-test binary (one binary links faster than many).
//!
//! Every test that talks to the mock Stripe ends with `StripeMock::finish`, which appends the
//! requests it received to `target/stripe-requests/stripe-schedule-<pid>.jsonl`; the workspace's
//! test script runs Stripe's conformance check (`../shared/stripe/conformance.py`) over them.

mod card_setup;
mod checkout;
mod customers;
mod fixtures;
mod helpers;
mod payment_intents;
mod products;
mod refunds;
mod retries;
mod schedules;
mod webhook;
