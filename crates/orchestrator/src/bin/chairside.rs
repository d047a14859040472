//! The `chairside` binary (being written).

fn main() {}
