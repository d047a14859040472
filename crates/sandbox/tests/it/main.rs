//! The sandbox's own behaviour: each stand-in against raw HTTP (and, where they exist, our
//! clients), fault injection, personas.

mod crm;
mod faults;
mod lenders;
mod patients;
mod pms;
mod smtp;
mod stripe;
mod support;
mod twilio;
