//! One implicit stage solved to convergence, with the inverse of its Newton matrix: what the
//! `Direct` strategy needs to record an implicit step on the tape by the implicit function
//! theorem.

use autodiff::{Element, Tape, Tensor, Var};

use super::DENSE_JACOBIAN_MAX;
use crate::linalg::Lu;
use crate::solve::evaluator::Evaluator;
use crate::solve::state::{alloc_like, finite, flatten};
use crate::{Dynamics, OdeError};

/// Most full Newton iterations of [`solve_stage`].
const MAX_ITERS: usize = 50;

/// A converged stage `Y = base + hγ f(t, Y)` and `(I − hγ J(Y))⁻¹` (dense, row-major, over the
/// flattened channels), the derivative of `Y` with respect to the right-hand side's inputs.
pub(crate) struct StageSolution<E: Element> {
    /// The stage value.
    pub(crate) y: Vec<Tensor<E>>,
    /// `(I − hγ J(Y))⁻¹`, `n × n`.
    pub(crate) inverse: Vec<f64>,
}

/// Solves `Y = base + hg f(t, Y; θ)` by full Newton iterations (a fresh Jacobian at every
/// iterate) until the update reaches rounding level, starting from `Y = base`.
///
/// Errors: [`OdeError::InvalidOptions`] when the state has more than [`DENSE_JACOBIAN_MAX`]
/// entries (the inverse is formed densely), [`OdeError::NonFinite`] if `f` is not finite
/// along the way, [`OdeError::NewtonDiverged`] if the matrix is singular or the iteration
/// does not converge.
pub(crate) fn solve_stage<E: Element>(
    f: &dyn Dynamics<E>,
    params: &[Tensor<E>],
    t: E,
    base: &[Tensor<E>],
    hg: f64,
) -> Result<StageSolution<E>, OdeError> {
    let n: usize = base.iter().map(|z| z.len()).sum();
    if n > DENSE_JACOBIAN_MAX {
        return Err(OdeError::InvalidOptions(format!(
            "the Direct strategy records implicit steps with a dense inverse Newton matrix, \
             for states of at most {DENSE_JACOBIAN_MAX} entries (this one has {n})"
        )));
    }
    let diverged = || OdeError::NewtonDiverged {
        t: t.to_f64(),
        h: hg,
    };
    let tape = Tape::new();
    let pvars: Vec<Var<'_, E>> = params.iter().map(|p| tape.var(p.clone())).collect();
    let mut ev = Evaluator::new(f, &tape, pvars, base);
    let mut y = base.to_vec();
    let mut fy = alloc_like(base);
    let mut lu = Lu::new(n);
    let (mut r, mut col, mut out) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut flat_base = vec![0.0; n];
    flatten(base, &mut flat_base);
    let eps = E::EPSILON.to_f64();
    let mut prev = f64::INFINITY;
    let mut converged = false;
    for _ in 0..MAX_ITERS {
        factor_at(&mut ev, &mut lu, t, &y, &mut fy, hg, &mut col, &mut out).ok_or_else(diverged)?;
        if !finite(&fy) {
            return Err(OdeError::NonFinite {
                t: t.to_f64(),
                step: 0,
            });
        }
        let mut flat_y = vec![0.0; n];
        flatten(&y, &mut flat_y);
        let mut flat_f = vec![0.0; n];
        flatten(&fy, &mut flat_f);
        for i in 0..n {
            r[i] = flat_base[i] + hg * flat_f[i] - flat_y[i];
        }
        lu.solve(&mut r);
        // Relative size of the update; quadratic convergence takes it to rounding level, where
        // it stops shrinking.
        let size = r
            .iter()
            .zip(&flat_y)
            .map(|(d, y)| d.abs() / (1.0 + y.abs()))
            .fold(0.0, f64::max);
        if !size.is_finite() {
            return Err(diverged());
        }
        let mut off = 0;
        for c in y.iter_mut() {
            for v in c.as_mut_slice() {
                *v += E::from_f64(r[off]);
                off += 1;
            }
        }
        if size <= 4.0 * eps || (size >= prev && size <= 1e3 * eps) {
            converged = true;
            break;
        }
        prev = size;
    }
    if !converged {
        return Err(diverged());
    }
    factor_at(&mut ev, &mut lu, t, &y, &mut fy, hg, &mut col, &mut out).ok_or_else(diverged)?;
    let mut inverse = vec![0.0; n * n];
    for j in 0..n {
        col.fill(0.0);
        col[j] = 1.0;
        lu.solve(&mut col);
        for i in 0..n {
            inverse[i * n + j] = col[i];
        }
    }
    ev.release();
    Ok(StageSolution { y, inverse })
}

/// Linearises at `(t, y)` (writing `f(t, y)`) and LU-factors `I − hg J`; `None` if singular.
#[allow(clippy::too_many_arguments)]
fn factor_at<E: Element>(
    ev: &mut Evaluator<'_, '_, E>,
    lu: &mut Lu,
    t: E,
    y: &[Tensor<E>],
    fy: &mut [Tensor<E>],
    hg: f64,
    col: &mut [f64],
    out: &mut [f64],
) -> Option<()> {
    ev.linearize(t, y, fy);
    let n = col.len();
    for j in 0..n {
        col.fill(0.0);
        col[j] = 1.0;
        ev.jvp(col, out);
        let m = lu.matrix_mut();
        for i in 0..n {
            m[i * n + j] = if i == j { 1.0 } else { 0.0 } - hg * out[i];
        }
    }
    lu.factor().then_some(())
}
