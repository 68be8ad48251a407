//! The interface between the drivers and the one-step methods.

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::norm::ErrorNorm;
use super::state::alloc_like;
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
    /// Highest power of `θ` of the polynomial [`interpolate`](Stepper::interpolate) evaluates
    /// (3 for the cubic Hermite interpolant, the default).
    fn dense_degree(&self) -> usize {
        3
    }
    /// Writes the coefficients `c_0 … c_d` (`d` = [`dense_degree`](Stepper::dense_degree)) of
    /// the interpolant of the last attempted (accepted) step in powers of `θ`,
    /// `y(t + θh) = Σ_m c_m θ^m`, into `out[m]`.
    ///
    /// The default samples [`interpolate`](Stepper::interpolate) at `d + 1` equally spaced
    /// points and solves for the coefficients, which is exact for a polynomial interpolant of
    /// degree `d`; steppers that know their coefficients write them directly.
    fn dense_polynomial(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        out: &mut [Vec<Tensor<E>>],
    ) {
        sample_polynomial(self, ev, t, h, y, out);
    }
}

/// The coefficients in powers of `θ` of the degree-`d` polynomial through `d + 1` equally
/// spaced samples of a stepper's interpolant (`d = out.len() − 1`), by the inverse of the
/// Vandermonde matrix of the nodes (well conditioned for the small degrees of interpolants).
pub(super) fn sample_polynomial<E: Element, S: Stepper<E> + ?Sized>(
    st: &mut S,
    ev: &mut Evaluator<'_, '_, E>,
    t: E,
    h: E,
    y: &[Tensor<E>],
    out: &mut [Vec<Tensor<E>>],
) {
    let d = out.len() - 1;
    let nodes: Vec<f64> = (0..=d).map(|j| j as f64 / d.max(1) as f64).collect();
    let inv = vandermonde_inverse(&nodes);
    let samples: Vec<Vec<Tensor<E>>> = nodes
        .iter()
        .map(|&theta| {
            let mut s = alloc_like(y);
            st.interpolate(ev, t, h, y, theta, &mut s);
            s
        })
        .collect();
    for (m, cm) in out.iter_mut().enumerate() {
        for (ch, o) in cm.iter_mut().enumerate() {
            o.fill(E::ZERO);
            for (j, s) in samples.iter().enumerate() {
                o.axpy(E::from_f64(inv[m][j]), &s[ch]);
            }
        }
    }
}

/// `V⁻¹` for `V_jm = x_j^m`, by Gauss–Jordan elimination with partial pivoting: the monomial
/// coefficients of the polynomial through `(x_j, p_j)` are `c_m = Σ_j V⁻¹_mj p_j`.
fn vandermonde_inverse(x: &[f64]) -> Vec<Vec<f64>> {
    let n = x.len();
    let mut a: Vec<Vec<f64>> = x
        .iter()
        .map(|&xj| (0..n).map(|m| xj.powi(m as i32)).collect())
        .collect();
    let mut inv: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| if i == j { 1.0 } else { 0.0 }).collect())
        .collect();
    for col in 0..n {
        let p = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .expect("non-empty");
        a.swap(col, p);
        inv.swap(col, p);
        let d = a[col][col];
        assert!(d != 0.0, "vandermonde_inverse: repeated nodes {x:?}");
        for j in 0..n {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for i in 0..n {
            if i != col {
                let f = a[i][col];
                for j in 0..n {
                    a[i][j] -= f * a[col][j];
                    inv[i][j] -= f * inv[col][j];
                }
            }
        }
    }
    // [V | I] reduced to [I | V⁻¹].
    inv
}
