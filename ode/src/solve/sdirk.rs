//! The Newton stepper of the singly diagonally implicit methods.

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::hermite::hermite;
use super::norm::ErrorNorm;
use super::state::{alloc_like, combine, combine_diff, finite, flatten, unflatten};
use super::stepper::{Outcome, Stepper};
use super::Stats;
use crate::linalg::{Gmres, Lu};
use crate::tableau::SdirkTableau;

/// Total state size up to which implicit methods build the dense Jacobian from `N` JVPs and
/// solve with LU; above it they use matrix-free GMRES with one JVP per Krylov vector.
pub const DENSE_JACOBIAN_MAX: usize = 64;

/// Newton stepper for the SDIRK methods.
///
/// Each step linearises once at `(t₀, y₀)` (simplified Newton, Hairer & Wanner 1996,
/// Section IV.8): for a total state size `N ≤` [`DENSE_JACOBIAN_MAX`] the Jacobian is built
/// column by column from `N` JVPs on the tape and `I − hγJ` is LU-factored; for larger `N`,
/// `(I − hγJ) x = r` is solved by restarted GMRES whose matrix-vector products are JVPs, so
/// the Jacobian is never formed. Every stage solves `Y = base + hγ f(t + c h, Y)` from
/// `Y = base`, stopping when `η ‖ΔY‖ ≤ κ` with `η = θ/(1 − θ)` from the contraction rate `θ`
/// and `κ = max(10ε/rtol, min(0.03, √rtol))` (the RADAU5 choice); `θ ≥ 1` or 10 iterations
/// without convergence is a Newton failure.
pub(super) struct Sdirk<E: Element> {
    tab: &'static SdirkTableau,
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
    pub(super) fn new(tab: &'static SdirkTableau, z0: &[Tensor<E>]) -> Self {
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

    /// Linearises at `(t, y)` and prepares solves with `I − hγJ`. `false` if singular.
    fn prepare(
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

    /// Solves `(I − hγJ) dx = r` in place of `self.dx`.
    fn lin_solve(&mut self, ev: &mut Evaluator<'_, '_, E>, stats: &mut Stats) {
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

    /// Runs the Newton iteration of stage `i`; leaves `Y` in `self.ys`.
    fn newton(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        ti: E,
        norm: &ErrorNorm,
        stats: &mut Stats,
    ) -> Outcome {
        let kappa = (10.0 * f64::EPSILON / norm.rtol.max(1e-300)).max(norm.rtol.sqrt().min(0.03));
        let hg = E::from_f64(self.hg);
        for (y, b) in self.ys.iter_mut().zip(&self.base) {
            y.copy_from(b);
        }
        let mut eta = self.eta.max(f64::EPSILON).powf(0.8);
        let mut prev = 0.0;
        for it in 0..10 {
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
                    *v += E::from_f64(d);
                    let sc = norm.atol + norm.rtol * v.to_f64().abs();
                    sum += (d / sc) * (d / sc);
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

impl<E: Element> Stepper<E> for Sdirk<E> {
    fn order(&self) -> usize {
        self.tab.order
    }

    fn dense_ok(&self) -> bool {
        true
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
            combine(&mut self.base, y, h, &tab.a[i][..i], &self.k);
            let ti = t + h * E::from_f64(tab.c[i]);
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
