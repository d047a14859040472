//! chairside (the application) integration tests: the real binary killed at random over the
//! sandbox (crash runs), and the benchmark's own checks.

mod bench;
mod crash;
mod detect;
mod drain;
mod installments;
mod ledger;
mod offsession;
