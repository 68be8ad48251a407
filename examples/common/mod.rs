//! Helpers shared by the examples. This directory is not an example itself: cargo only
//! builds `examples/*.rs` and `examples/*/main.rs` as examples, and each example includes
//! this module with `mod common;`.

// Each example uses only some of the parsers.
#![allow(dead_code)]

use std::error::Error;

pub mod args;
pub mod cli;
pub mod metrics;
pub mod pictures;

/// Runs an example's `run` and, on error, prints it with `Display` (not the `Debug` form a
/// `main` returning `Result` would print) and exits with status 1.
pub fn exit_on_error(result: Result<(), Box<dyn Error>>) {
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
