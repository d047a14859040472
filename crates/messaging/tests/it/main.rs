//! The crate's single integration-test binary.

mod consent;
mod email;
mod errors;
mod helpers;
mod logs;
mod regz;
mod segments;
mod sms;
mod smtp_sink;
mod templates;
mod webhook;
