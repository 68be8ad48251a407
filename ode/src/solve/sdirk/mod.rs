//! The Newton stepper of the diagonally implicit methods: SDIRK (implicit Euler, SDIRK2) and
//! ESDIRK with an explicit first stage (Kværnø's 3(2) and 5(4)).
//!
//! Files: this one attempts steps behind the [`Stepper`] interface, `newton` holds the stage
//! iteration and the linear solves, `stage` the fully converged stage solve that the `Direct`
//! strategy's replay needs.

mod newton;
mod stage;

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::hermite::hermite;
use super::norm::ErrorNorm;
use super::state::{alloc_like, combine, combine_diff, finite, flatten, unflatten};
use super::stepper::{Outcome, Stepper};
use super::Stats;
use crate::linalg::{Gmres, Lu};
use crate::tableau::Dirk;
pub(crate) use stage::solve_stage;

/// Total state size up to which implicit methods build the dense Jacobian from `N` JVPs and
/// solve with LU; above it they use matrix-free GMRES with one JVP per Krylov vector.
pub const DENSE_JACOBIAN_MAX: usize = 64;

/// Newton stepper for the diagonally implicit methods.
///
/// Each step linearises once at `(t₀, y₀)` (simplified Newton, Hairer & Wanner 1996,
/// Section IV.8): for a total state size `N ≤` [`DENSE_JACOBIAN_MAX`] the Jacobian is built
/// column by column from `N` JVPs on the tape and `I − hγJ` is LU-factored; for larger `N`,
/// `(I − hγJ) x = r` is solved by restarted GMRES whose matrix-vector products are JVPs, so
/// the Jacobian is never formed. Every stage solves `Y = base + hγ f(t + c h, Y)` from the
/// predictor `Y = base + hγ k_{i−1}` (`f₀` before the first stage), stopping when
/// `η ‖ΔY‖ ≤ κ` with `η = θ/(1 − θ)` from the contraction rate `θ` and
/// `κ = max(10ε/rtol, min(0.03, √rtol))` (the RADAU5 choice); `θ ≥ 1` or 10 iterations
/// without convergence is a Newton failure. The explicit first stage of an ESDIRK method is
/// `f(t₀, y₀)`, which the linearisation evaluates anyway.
///
/// The error estimate is filtered through `(I − hγJ)⁻¹` (one more back-substitution), which
/// leaves it unchanged to leading order on non-stiff components and makes it vanish on stiff
/// ones, where the embedded formulas are not L-stable.
pub(super) struct Sdirk<E: Element> {
    tab: Dirk,
    n: usize,
    f0: Vec<Tensor<E>>,
    f0_valid: bool,
    k: Vec<Vec<Tensor<E>>>,
    base: Vec<Tensor<E>>,
    ys: Vec<Tensor<E>>,
    fs: Vec<Tensor<E>>,
    ynew: Vec<Tensor<E>>,
    err: Vec<Tensor<E>>,
    lu: Option<Lu>,
    gmres: Option<Gmres>,
    jac: Vec<f64>,
    col: Vec<f64>,
    r: Vec<f64>,
    dx: Vec<f64>,
    eta: f64,
    hg: f64,
}

impl<E: Element> Sdirk<E> {
    pub(super) fn new(tab: Dirk, z0: &[Tensor<E>]) -> Self {
        let n: usize = z0.iter().map(|z| z.len()).sum();
        let dense = n <= DENSE_JACOBIAN_MAX;
        Sdirk {
            tab,
            n,
            f0: alloc_like(z0),
            f0_valid: false,
            k: (0..tab.stages()).map(|_| alloc_like(z0)).collect(),
            base: alloc_like(z0),
            ys: alloc_like(z0),
            fs: alloc_like(z0),
            ynew: alloc_like(z0),
            err: alloc_like(z0),
            lu: dense.then(|| Lu::new(n)),
            gmres: (!dense).then(|| Gmres::new(n, 50)),
            jac: if dense { vec![0.0; n * n] } else { Vec::new() },
            col: vec![0.0; n],
            r: vec![0.0; n],
            dx: vec![0.0; n],
            eta: 1.0,
            hg: 0.0,
        }
    }
}

impl<E: Element> Stepper<E> for Sdirk<E> {
    fn order(&self) -> usize {
        self.tab.order
    }

    fn dense_ok(&self) -> bool {
        // Cubic Hermite is third-order accurate: as accurate as methods up to order 3; for
        // higher orders the driver lands on every save time instead.
        self.tab.order <= 3
    }

    fn error_exponent(&self) -> f64 {
        (self.tab.error_order + 1) as f64
    }

    fn f0(&mut self, ev: &mut Evaluator<'_, '_, E>, t: E, y: &[Tensor<E>]) -> &[Tensor<E>] {
        if !self.f0_valid {
            ev.eval(t, y, &mut self.f0);
            self.f0_valid = true;
        }
        &self.f0
    }

    fn attempt(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        norm: &ErrorNorm,
        stats: &mut Stats,
    ) -> Outcome {
        let out = self.attempt_inner(ev, t, h, y, want_err, norm, stats);
        ev.release();
        if !matches!(out, Outcome::Done(_)) {
            self.eta = 1.0;
        }
        out
    }

    fn candidate(&self) -> &[Tensor<E>] {
        &self.ynew
    }

    fn interpolate(
        &mut self,
        _ev: &mut Evaluator<'_, '_, E>,
        _t: E,
        h: E,
        y: &[Tensor<E>],
        theta: f64,
        out: &mut [Tensor<E>],
    ) {
        // Stiffly accurate: the last stage derivative is f(t + h, y₁).
        let s = self.tab.stages();
        hermite(y, &self.ynew, &self.f0, &self.k[s - 1], h, theta, out);
    }

    fn accept(&mut self, y: &mut Vec<Tensor<E>>) {
        std::mem::swap(y, &mut self.ynew);
        let s = self.tab.stages();
        std::mem::swap(&mut self.f0, &mut self.k[s - 1]);
        self.f0_valid = true;
    }
}

impl<E: Element> Sdirk<E> {
    #[allow(clippy::too_many_arguments)]
    fn attempt_inner(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        norm: &ErrorNorm,
        stats: &mut Stats,
    ) -> Outcome {
        if !self.prepare(ev, t, y, h.to_f64(), stats) {
            return Outcome::NewtonFailed;
        }
        if !finite(&self.f0) {
            return Outcome::NonFinite;
        }
        let tab = self.tab;
        let inv_hg = E::ONE / (h * E::from_f64(tab.gamma));
        for i in 0..tab.stages() {
            if !tab.implicit_stage(i) {
                for (k, f) in self.k[i].iter_mut().zip(&self.f0) {
                    k.copy_from(f);
                }
                continue;
            }
            combine(&mut self.base, y, h, &tab.a[i][..i], &self.k);
            let ti = t + h * E::from_f64(tab.c[i]);
            // Predictor Y⁰ = base + hγ k_{i−1}: the previous stage derivative (f₀ before the
            // first stage) stands in for k_i.
            let hg = h * E::from_f64(tab.gamma);
            let prev = if i == 0 { &self.f0 } else { &self.k[i - 1] };
            for ((yv, b), p) in self.ys.iter_mut().zip(&self.base).zip(prev) {
                yv.copy_from(b);
                yv.axpy(hg, p);
            }
            match self.newton(ev, ti, norm, stats) {
                Outcome::Done(_) => {}
                other => return other,
            }
            for ch in 0..self.ys.len() {
                let k = self.k[i][ch].as_mut_slice();
                let (yv, b) = (self.ys[ch].as_slice(), self.base[ch].as_slice());
                for j in 0..k.len() {
                    k[j] = (yv[j] - b[j]) * inv_hg;
                }
            }
        }
        // Stiffly accurate: y₁ is the last stage value.
        for (o, v) in self.ynew.iter_mut().zip(&self.ys) {
            o.copy_from(v);
        }
        if !finite(&self.ynew) {
            return Outcome::NonFinite;
        }
        let mut err = 0.0;
        if want_err {
            combine_diff(&mut self.err, h, tab.b_err, &self.k);
            if tab.err_f0 != 0.0 {
                for (e, f) in self.err.iter_mut().zip(&self.f0) {
                    e.axpy(h * E::from_f64(tab.err_f0), f);
                }
            }
            // Filter through (I − hγJ)⁻¹ so stiff components do not inflate the estimate.
            flatten(&self.err, &mut self.r);
            self.lin_solve(ev, stats);
            unflatten(&self.dx, &mut self.err);
            err = norm.scaled(&self.err, y, &self.ynew, false);
            if !err.is_finite() {
                return Outcome::NonFinite;
            }
        }
        Outcome::Done(err)
    }
}
