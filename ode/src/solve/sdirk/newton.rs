//! The Newton iteration of one implicit stage: the linearisation, the linear solves with
//! `I − hγJ`, and the convergence test.

use autodiff::{Element, Tensor};

use super::Sdirk;
use crate::solve::evaluator::Evaluator;
use crate::solve::norm::ErrorNorm;
use crate::solve::state::finite;
use crate::solve::stepper::Outcome;
use crate::solve::Stats;

/// Most Newton iterations per stage before the step counts as a Newton failure.
const MAX_ITERS: usize = 10;

impl<E: Element> Sdirk<E> {
    /// Linearises at `(t, y)` (which also writes `f(t, y)` into `f0`) and prepares solves with
    /// `I − hγJ`. `false` if the matrix is singular.
    pub(super) fn prepare(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        y: &[Tensor<E>],
        h: f64,
        stats: &mut Stats,
    ) -> bool {
        ev.linearize(t, y, &mut self.f0);
        self.f0_valid = true;
        stats.njac += 1;
        self.hg = h * self.tab.gamma;
        let n = self.n;
        if let Some(lu) = &mut self.lu {
            for j in 0..n {
                self.col.fill(0.0);
                self.col[j] = 1.0;
                ev.jvp(&self.col, &mut self.r);
                for i in 0..n {
                    self.jac[i * n + j] = self.r[i];
                }
            }
            let m = lu.matrix_mut();
            for i in 0..n {
                for j in 0..n {
                    m[i * n + j] = if i == j { 1.0 } else { 0.0 } - self.hg * self.jac[i * n + j];
                }
            }
            return lu.factor();
        }
        true
    }

    /// Solves `(I − hγJ) dx = r` into `self.dx`.
    pub(super) fn lin_solve(&mut self, ev: &mut Evaluator<'_, '_, E>, stats: &mut Stats) {
        stats.linear_solves += 1;
        if let Some(lu) = &self.lu {
            self.dx.copy_from_slice(&self.r);
            lu.solve(&mut self.dx);
            return;
        }
        let hg = self.hg;
        let gm = self.gmres.as_mut().expect("dense or matrix-free");
        let mut op = |v: &[f64], out: &mut [f64]| {
            ev.jvp(v, out);
            for (o, x) in out.iter_mut().zip(v) {
                *o = x - hg * *o;
            }
        };
        gm.solve(&mut op, &self.r, &mut self.dx, 1e-10, 500);
    }

    /// Runs the simplified Newton iteration of a stage at time `ti` from the predictor in
    /// `self.ys`; leaves `Y` there.
    pub(super) fn newton(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        ti: E,
        norm: &ErrorNorm,
        stats: &mut Stats,
    ) -> Outcome {
        let kappa = (10.0 * f64::EPSILON / norm.rtol.max(1e-300)).max(norm.rtol.sqrt().min(0.03));
        let hg = E::from_f64(self.hg);
        let mut eta = self.eta.max(f64::EPSILON).powf(0.8);
        let mut prev = 0.0;
        for it in 0..MAX_ITERS {
            stats.newton_iters += 1;
            ev.eval(ti, &self.ys, &mut self.fs);
            if !finite(&self.fs) {
                return Outcome::NonFinite;
            }
            // r = base + hγ f(Y) − Y
            let mut off = 0;
            for ch in 0..self.ys.len() {
                let (y, b, f) = (
                    self.ys[ch].as_slice(),
                    self.base[ch].as_slice(),
                    self.fs[ch].as_slice(),
                );
                for i in 0..y.len() {
                    self.r[off + i] = (b[i] + hg * f[i] - y[i]).to_f64();
                }
                off += y.len();
            }
            self.lin_solve(ev, stats);
            let mut sum = 0.0;
            let mut off = 0;
            for y in &mut self.ys {
                for (i, v) in y.as_mut_slice().iter_mut().enumerate() {
                    let d = self.dx[off + i];
                    let old = v.to_f64();
                    *v += E::from_f64(d);
                    sum += scaled_square(d, old, v.to_f64(), norm);
                }
                off += y.len();
            }
            let nd = if self.n == 0 {
                0.0
            } else {
                (sum / self.n as f64).sqrt()
            };
            if !nd.is_finite() {
                return Outcome::NewtonFailed;
            }
            if it > 0 {
                let theta = nd / prev;
                if theta >= 1.0 {
                    return Outcome::NewtonFailed;
                }
                eta = theta / (1.0 - theta);
            }
            if eta * nd <= kappa || nd == 0.0 {
                self.eta = eta;
                return Outcome::Done(0.0);
            }
            prev = nd;
        }
        Outcome::NewtonFailed
    }
}

/// `(d / sc)²` for a Newton increment `d` that moved a component from `old` to `new`, with the
/// scale `sc = atol + rtol · max(|old|, |new|)` of the error norm.
///
/// With `atol = 0` a component that is exactly zero before and after the update has `sc = 0`;
/// then `d = new − old` is zero as well and the component contributes nothing (rather than
/// `0/0 = NaN`, which used to fail every Newton iteration of a pure relative-tolerance solve
/// of a state with an exact zero). Whenever `d ≠ 0`, one of `old`, `new` is nonzero, so a
/// positive `rtol` gives `sc > 0`.
pub(super) fn scaled_square(d: f64, old: f64, new: f64, norm: &ErrorNorm) -> f64 {
    let sc = norm.atol + norm.rtol * old.abs().max(new.abs());
    if sc == 0.0 {
        if d == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (d / sc) * (d / sc)
    }
}
