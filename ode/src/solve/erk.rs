//! The generic explicit Runge–Kutta stepper.

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::hermite::hermite;
use super::norm::ErrorNorm;
use super::state::{alloc_like, combine, combine_diff, finite};
use super::stepper::{sample_polynomial, Outcome, Stepper};
use super::Stats;
use crate::tableau::Tableau;

/// The generic explicit Runge–Kutta stepper over a [`Tableau`], exploiting FSAL. All stage
/// buffers are allocated once per solve.
pub(super) struct Erk<E: Element> {
    tab: &'static Tableau,
    /// Stage derivatives; `k[0]` is `f(t, y)` at the current point.
    k: Vec<Vec<Tensor<E>>>,
    ytmp: Vec<Tensor<E>>,
    ynew: Vec<Tensor<E>>,
    err: Vec<Tensor<E>>,
    /// `f(t + h, y₁)` for non-FSAL methods, when it was needed for interpolation.
    fnew: Vec<Tensor<E>>,
    f0_valid: bool,
    fnew_valid: bool,
    /// Reusable weights of the continuous extension.
    wdense: Vec<f64>,
    /// Whether the dense stages (`k[s..]`) belong to the last attempted step.
    dense_ready: bool,
    /// The dense stage that evaluates `f(t + h, y₁)` (DOP853's first), reused as the next
    /// step's first stage.
    dense_fnew: Option<usize>,
}

impl<E: Element> Erk<E> {
    pub(super) fn new(tab: &'static Tableau, z0: &[Tensor<E>]) -> Self {
        let s = tab.stages();
        let n = s.max(tab.dense_stage_count());
        let dense_fnew = tab
            .dense_stages
            .iter()
            .position(|d| d.c == 1.0 && d.a == tab.b)
            .map(|j| s + j);
        Erk {
            tab,
            k: (0..n).map(|_| alloc_like(z0)).collect(),
            ytmp: alloc_like(z0),
            ynew: alloc_like(z0),
            err: alloc_like(z0),
            fnew: alloc_like(z0),
            f0_valid: false,
            fnew_valid: false,
            wdense: vec![0.0; n],
            dense_ready: false,
            dense_fnew,
        }
    }

    /// Evaluates the continuous extension's own stages for the last attempted step, once.
    fn dense_stages(&mut self, ev: &mut Evaluator<'_, '_, E>, t: E, h: E, y: &[Tensor<E>]) {
        if self.dense_ready {
            return;
        }
        let s = self.tab.stages();
        for (j, stage) in self.tab.dense_stages.iter().enumerate() {
            let (prev, rest) = self.k.split_at_mut(s + j);
            if Some(s + j) == self.dense_fnew {
                // The stage at y₁ itself: use the candidate, not a re-rounded copy of it.
                ev.eval(t + h, &self.ynew, &mut rest[0]);
            } else {
                combine(&mut self.ytmp, y, h, stage.a, prev);
                ev.eval(t + h * E::from_f64(stage.c), &self.ytmp, &mut rest[0]);
            }
        }
        self.dense_ready = true;
    }
}

impl<E: Element> Stepper<E> for Erk<E> {
    fn order(&self) -> usize {
        self.tab.order
    }

    fn dense_ok(&self) -> bool {
        self.tab.dense.is_some() || self.tab.order <= 3
    }

    fn error_exponent(&self) -> f64 {
        self.tab.error_order.map_or(self.tab.order, |q| q + 1) as f64
    }

    fn f0(&mut self, ev: &mut Evaluator<'_, '_, E>, t: E, y: &[Tensor<E>]) -> &[Tensor<E>] {
        if !self.f0_valid {
            ev.eval(t, y, &mut self.k[0]);
            self.f0_valid = true;
        }
        &self.k[0]
    }

    fn attempt(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        norm: &ErrorNorm,
        _stats: &mut Stats,
    ) -> Outcome {
        self.f0(ev, t, y);
        if !finite(&self.k[0]) {
            return Outcome::NonFinite;
        }
        let tab = self.tab;
        let s = tab.stages();
        for i in 1..s {
            combine(&mut self.ytmp, y, h, tab.a[i], &self.k);
            let ti = t + h * E::from_f64(tab.c[i]);
            let rest = &mut self.k[i..];
            ev.eval(ti, &self.ytmp, &mut rest[0]);
            if !finite(&rest[0]) {
                return Outcome::NonFinite;
            }
        }
        if tab.fsal {
            // The last stage was evaluated at y₁ itself.
            std::mem::swap(&mut self.ynew, &mut self.ytmp);
        } else {
            combine(&mut self.ynew, y, h, tab.b, &self.k);
        }
        self.fnew_valid = false;
        self.dense_ready = false;
        if !finite(&self.ynew) {
            return Outcome::NonFinite;
        }
        let mut err = 0.0;
        if want_err {
            if let Some(e) = tab.b_err {
                combine_diff(&mut self.err, h, e, &self.k);
                err = norm.scaled(&self.err, y, &self.ynew, false);
                if !err.is_finite() {
                    return Outcome::NonFinite;
                }
            }
        }
        Outcome::Done(err)
    }

    fn candidate(&self) -> &[Tensor<E>] {
        &self.ynew
    }

    fn interpolate(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        theta: f64,
        out: &mut [Tensor<E>],
    ) {
        let s = self.tab.stages();
        if self.tab.dense.is_some() {
            self.dense_stages(ev, t, h, y);
            let n = self.tab.dense_stage_count();
            self.tab.dense_weights_into(theta, &mut self.wdense[..n]);
            combine(out, y, h, &self.wdense[..n], &self.k);
            return;
        }
        if self.tab.fsal {
            hermite(y, &self.ynew, &self.k[0], &self.k[s - 1], h, theta, out);
        } else {
            if !self.fnew_valid {
                ev.eval(t + h, &self.ynew, &mut self.fnew);
                self.fnew_valid = true;
            }
            hermite(y, &self.ynew, &self.k[0], &self.fnew, h, theta, out);
        }
    }

    fn accept(&mut self, y: &mut Vec<Tensor<E>>) {
        std::mem::swap(y, &mut self.ynew);
        let s = self.tab.stages();
        if self.tab.fsal {
            self.k.swap(0, s - 1);
            self.f0_valid = true;
        } else if let (true, Some(j)) = (self.dense_ready, self.dense_fnew) {
            self.k.swap(0, j);
            self.f0_valid = true;
        } else if self.fnew_valid {
            std::mem::swap(&mut self.k[0], &mut self.fnew);
            self.f0_valid = true;
        } else {
            self.f0_valid = false;
        }
        self.fnew_valid = false;
        self.dense_ready = false;
    }

    fn dense_degree(&self) -> usize {
        if self.tab.dense.is_some() {
            self.tab.dense_degree()
        } else {
            3
        }
    }

    fn dense_polynomial(
        &mut self,
        ev: &mut Evaluator<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        out: &mut [Vec<Tensor<E>>],
    ) {
        if self.tab.dense.is_none() {
            sample_polynomial(self, ev, t, h, y, out);
            return;
        }
        self.dense_stages(ev, t, h, y);
        let tab = self.tab;
        let rows = tab
            .dense
            .into_iter()
            .flatten()
            .copied()
            .chain(tab.dense_stages.iter().map(|d| d.b));
        // c_0 = y, c_m = h Σ_i d_i(m−1) k_i: the weights' coefficients of θ^m.
        for (ch, o) in out[0].iter_mut().enumerate() {
            o.copy_from(&y[ch]);
        }
        for cm in out[1..].iter_mut() {
            for o in cm.iter_mut() {
                o.fill(E::ZERO);
            }
        }
        for (i, row) in rows.enumerate() {
            for (m, &d) in row.iter().enumerate() {
                if d != 0.0 {
                    for (ch, o) in out[m + 1].iter_mut().enumerate() {
                        o.axpy(h * E::from_f64(d), &self.k[i][ch]);
                    }
                }
            }
        }
    }
}
