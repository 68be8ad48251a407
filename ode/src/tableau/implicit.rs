//! The singly diagonally implicit methods: implicit Euler and Alexander's SDIRK2.
#![allow(clippy::excessive_precision)] // published digits are kept verbatim for checking

use super::SdirkTableau;

/// Implicit (backward) Euler, L-stable, order 1. Its error estimate `h (f₁ − f₀) / 2` is
/// the difference to the trapezoidal rule.
pub const IMPLICIT_EULER: SdirkTableau = SdirkTableau {
    name: "implicit_euler",
    order: 1,
    error_order: 1,
    gamma: 1.0,
    c: &[1.0],
    a: &[&[1.0]],
    b: &[1.0],
    err_f0: -0.5,
    b_err: &[0.5],
    citation: "Euler 1768; error estimate as in Hairer & Wanner 1996, Section IV.8",
};

/// `γ = 1 − 1/√2`.
const G2: f64 = 0.29289321881345247559915563789515;

/// Alexander's two-stage SDIRK method, L-stable and stiffly accurate, order 2, with
/// `γ = 1 − 1/√2` (Alexander 1977, SIAM J. Numer. Anal. 14(6); Hairer & Wanner 1996,
/// Section IV.6). Its error estimate `h (−(1−γ) f₀ + k₁ − γ k₂)` is the difference to a
/// second-order companion formula using `f₀` (it satisfies `Σ e = 0` and `Σ e c = 0`), so
/// it behaves like `h³` and the step size grows like that of a second-order method.
pub const SDIRK2: SdirkTableau = SdirkTableau {
    name: "sdirk2",
    order: 2,
    error_order: 2,
    gamma: G2,
    c: &[G2, 1.0],
    a: &[&[G2], &[1.0 - G2, G2]],
    b: &[1.0 - G2, G2],
    err_f0: -(1.0 - G2),
    b_err: &[1.0, -G2],
    citation: "Alexander 1977; Hairer & Wanner 1996",
};
