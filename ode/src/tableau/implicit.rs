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
/// Section IV.6).
///
/// Its error estimate `h e (k₂ − k₁)`, `e = 1/10`, is the difference to a first-order companion
/// (`Σ b_err = 0`, `Σ b_err c = e(1 − γ) ≠ 0`), so it behaves like `h²` and the controller uses
/// the exponent `1/2`, as for every other `p(p−1)` pair here; it has no `f₀` term, so once
/// filtered through `(I − hγJ)⁻¹` it vanishes on stiff components.
///
/// It used to be the difference to a second-order companion using `f₀`: an `h³` estimate of
/// the same order as the method's own local error (about 1.5 times it on linear problems), with
/// no margin between them, so every step's error sat at the tolerance and the global error grew
/// with the number of steps: 5–423 times the tolerance on the `ode_basics` problems at 1e-6.
/// The scale `e` of a first-order companion is free (the estimate is `e(1 − γ) h² y''` to
/// leading order); `e = 1/10` puts the global error over a period of the harmonic oscillator
/// at about 4.6 tolerances, where Dopri5 and Kværnø's pairs land at 1–3.5 (`e = γ` gives 1.6
/// but takes 1.7 times the steps on the stiff heat equation in `tests/behaviour.rs`).
pub const SDIRK2: SdirkTableau = SdirkTableau {
    name: "sdirk2",
    order: 2,
    error_order: 1,
    gamma: G2,
    c: &[G2, 1.0],
    a: &[&[G2], &[1.0 - G2, G2]],
    b: &[1.0 - G2, G2],
    err_f0: 0.0,
    b_err: &[-0.1, 0.1],
    citation: "Alexander 1977; Hairer & Wanner 1996",
};
