//! The opendental-client integration tests: one binary, one module per resource, against wiremock
//! on loopback only.

mod changes;
mod commlogs;
mod errors;
mod helpers;
mod odd_input;
mod paging;
mod patients;
mod payments;
mod procedure_logs;
mod treat_plans;
