//! chairside-engine integration tests: the SQLite store on a temporary file, and the runner end to
//! end over in-memory fakes of the practice system, lenders, Stripe and messaging with a manual
//! clock; and the staff decisions against the store.

mod alerts;
mod at_rest;
mod backend;
mod consent;
mod corrections;
mod detect;
mod engine;
mod fakes;
mod harness;
mod intake_links;
mod link_lenders;
mod links;
mod logins;
mod messages;
mod outbound;
mod patient_reports;
mod pay_link;
mod phi;
mod pms_adapters;
mod poller;
mod pool;
mod quarantine;
mod rotation;
mod runner;
mod settlement;
mod staff;
mod store;
mod undelivered;
