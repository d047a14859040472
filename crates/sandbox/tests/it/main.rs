//! The sandbox's own behaviour: each stand-in against raw HTTP (and, where they exist, our
//! clients), fault injection, personas.

mod faults;
mod stripe;
mod support;
