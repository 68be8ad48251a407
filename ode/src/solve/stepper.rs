//! The interface between the drivers and the one-step methods.

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::norm::ErrorNorm;
use super::Stats;

/// What an attempted step produced.
pub(super) enum Outcome {
    /// The candidate is in the stepper; the scaled error norm (0 when not requested).
    Done(f64),
    /// A stage, the candidate or the error estimate was NaN or infinite.
    NonFinite,
    /// The Newton iteration of an implicit method did not converge.
    NewtonFailed,
}

/// A one-step method: attempts steps from the current state, keeps the candidate, and
/// interpolates inside the last attempted step.
#[allow(clippy::too_many_arguments)]
pub(super) trait Stepper<E: Element> {
    /// Order of the propagated solution (for the initial step size).
    fn order(&self) -> usize;
    /// Whether interpolation is as accurate as the method (else steps stop at save times).
    fn dense_ok(&self) -> bool;
    /// Exponent denominator `q + 1` of the error estimate.
    fn error_exponent(&self) -> f64;
    /// `f(t, y)` at the current point (evaluated if not known yet).
    fn f0(&mut self, ev: &mut Evaluator<'_, '_, E>, t: E, y: &[Tensor<E>]) -> &[Tensor<E>];
    /// Attempts a step of signed size `h`.
    fn attempt(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        norm: &ErrorNorm,
        stats: &mut Stats,
    ) -> Outcome;
    /// The candidate state `y₁` of the last attempt.
    fn candidate(&self) -> &[Tensor<E>];
    /// Writes `y(t + θh)` for the last attempted (accepted) step into `out`.
    fn interpolate(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        theta: f64,
        out: &mut [Tensor<E>],
    );
    /// Accepts the last attempt: swaps the candidate into `y`.
    fn accept(&mut self, y: &mut Vec<Tensor<E>>);
}
