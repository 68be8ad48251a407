//! Command-line checks shared by the examples: `clap` value parsers that reject a bad flag
//! before any work starts, and the output-directory check.
//!
//! Each parser returns a message saying what was expected and what was given; clap prefixes
//! it with the flag (`invalid value '0' for '--log-every <LOG_EVERY>': expected a positive
//! integer, got '0'`). The root test `tests/example_cli.rs` includes this file.

use std::fmt;
use std::path::Path;

/// A positive integer (counts, sizes, periods: 0 would divide by zero, draw nothing or loop
/// on an empty batch).
pub fn positive_usize(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive integer, got '{s}'")),
    }
}

/// An integer in `lo..=hi`.
pub fn usize_in(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("expected an integer from {lo} to {hi}, got '{s}'")),
    }
}

/// A finite number `> 0` (learning rates, tolerances, end times; NaN and ±∞ are rejected).
pub fn positive_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!(
            "expected a finite number greater than 0, got '{s}'"
        )),
    }
}

/// A finite number `≥ 0` (regularization weights, half-widths).
pub fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("expected a finite number of at least 0, got '{s}'")),
    }
}

/// A number in `[0, 1]`.
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("expected a number from 0 to 1, got '{s}'")),
    }
}

/// Hidden layer widths of an MLP, written `64-64-64`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Widths(pub Vec<usize>);

impl fmt::Display for Widths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(usize::to_string).collect();
        f.write_str(&parts.join("-"))
    }
}

/// Parses hidden widths `64-64-64`: one or more positive integers joined by `-`.
pub fn hidden_widths(s: &str) -> Result<Widths, String> {
    s.split('-')
        .map(|p| p.trim().parse::<usize>().ok().filter(|&w| w > 0))
        .collect::<Option<Vec<_>>>()
        .map(Widths)
        .ok_or_else(|| {
            format!(
                "expected hidden widths like 64-64-64 (positive integers joined by '-'), got '{s}'"
            )
        })
}

/// Three finite, non-negative numbers separated by commas, e.g. OT-Flow's `1,100,5`.
pub fn three_weights(s: &str) -> Result<[f64; 3], String> {
    let bad = || format!("expected three numbers of at least 0 like 1,100,5, got '{s}'");
    let v: Vec<f64> = s
        .split(',')
        .map(|p| non_negative_f64(p).map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    v.try_into().map_err(|_| bad())
}

/// One of the toy datasets of [`flows::data::toy`].
pub fn toy_name(s: &str) -> Result<String, String> {
    if flows::data::TOY_NAMES.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "unknown dataset '{s}' (known: {})",
            flows::data::TOY_NAMES.join(", ")
        ))
    }
}

/// A flag whose value cannot be used, found after parsing (a directory that cannot be
/// written, a combination of flags that contradict each other).
#[derive(Debug)]
pub struct FlagError {
    /// The flag, e.g. `--out`.
    pub flag: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flag, self.message)
    }
}

impl std::error::Error for FlagError {}

/// Creates the output directory `dir` given by `flag` and checks that files can be created
/// in it, by creating and removing a probe file — before training, so a bad `--out` fails
/// in a second instead of after the work whose results it was meant to hold.
pub fn prepare_output_dir(flag: &'static str, dir: &Path) -> Result<(), FlagError> {
    let fail = |what: &str, e: std::io::Error| FlagError {
        flag,
        message: format!("{what} {}: {e}", dir.display()),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory", e))?;
    let probe = dir.join(format!(".write-probe.{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| fail("cannot write files in", e))?;
    std::fs::remove_file(&probe).map_err(|e| fail("cannot remove a probe file from", e))
}
