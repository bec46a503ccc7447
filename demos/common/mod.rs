//! Shared by the demos, one module per concern: [`cli`] (options, device and data setup,
//! progress bars, exit status), [`train`] (a training plan and an evaluation plan that
//! shares its weights, driven together), [`table`] (the summary table, CSV and JSON) and [`plot`]
//! (figures).
//!
//! Each demo includes this module with `mod common;` and uses part of it.
#![allow(dead_code)] // each demo binary uses a different part of this module

pub mod cli;
pub mod plot;
pub mod table;
pub mod train;

/// Errors of a demo: library errors, I/O, plotting; printed by `main`.
pub type DemoResult<T> = Result<T, Box<dyn std::error::Error>>;
