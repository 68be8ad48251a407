//! The generic explicit Runge–Kutta stepper.

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::hermite::hermite;
use super::norm::ErrorNorm;
use super::state::{alloc_like, combine, combine_diff, finite};
use super::stepper::{Outcome, Stepper};
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
}

impl<E: Element> Erk<E> {
    pub(super) fn new(tab: &'static Tableau, z0: &[Tensor<E>]) -> Self {
        let s = tab.stages();
        Erk {
            tab,
            k: (0..s).map(|_| alloc_like(z0)).collect(),
            ytmp: alloc_like(z0),
            ynew: alloc_like(z0),
            err: alloc_like(z0),
            fnew: alloc_like(z0),
            f0_valid: false,
            fnew_valid: false,
            wdense: vec![0.0; s],
        }
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
        if let Some(d) = self.tab.dense {
            for (w, row) in self.wdense.iter_mut().zip(d) {
                let mut p = 0.0;
                for &coef in row.iter().rev() {
                    p = (p + coef) * theta;
                }
                *w = p;
            }
            combine(out, y, h, &self.wdense, &self.k);
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
        } else if self.fnew_valid {
            std::mem::swap(&mut self.k[0], &mut self.fnew);
            self.f0_valid = true;
        } else {
            self.f0_valid = false;
        }
        self.fnew_valid = false;
    }
}
