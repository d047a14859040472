//! hubspot-client against wiremock: each call's request shape, success, failures by kind, timeout.

mod crm;
