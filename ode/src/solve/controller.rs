//! The step-size controller at work: a [`Controller`]'s rule applied to one solve's errors.

use crate::options::Controller;

/// Floor of the current error, so that an exact step (error 0) gives a finite factor (which
/// the upper bound then clamps).
const ERR_FLOOR: f64 = 1e-10;
/// Floor of the errors kept in the history (Hairer's `facold`): one very accurate step must
/// not let the next one grow by the proportional and derivative terms alone.
const HISTORY_FLOOR: f64 = 1e-4;

/// The state of the controller over one adaptive solve: the errors of the last two accepted
/// steps and whether the last attempt was rejected.
pub(super) struct StepControl<'c> {
    c: &'c Controller,
    /// Exponent denominator `k = q + 1` of the error estimate.
    k: f64,
    /// Exponents of `err_n`, `err_{n−1}` and `err_{n−2}` after an accepted step.
    exponents: [f64; 3],
    err_prev: f64,
    err_prev2: f64,
    rejected_last: bool,
}

impl<'c> StepControl<'c> {
    /// The controller `c` for an error estimate that behaves like `h^k`.
    pub(super) fn new(c: &'c Controller, k: f64) -> Self {
        let (p, i, d) = (c.pcoeff, c.icoeff, c.dcoeff);
        StepControl {
            c,
            k,
            exponents: [-(p + i + d) / k, (p + 2.0 * d) / k, -d / k],
            err_prev: 1.0,
            err_prev2: 1.0,
            rejected_last: false,
        }
    }

    /// The factor of the next step after an accepted one with scaled error `err ≤ 1`.
    pub(super) fn accepted(&mut self, err: f64) -> f64 {
        let c = self.c;
        let [e0, e1, e2] = self.exponents;
        let mut fac = c.safety
            * err.max(ERR_FLOOR).powf(e0)
            * self.err_prev.powf(e1)
            * self.err_prev2.powf(e2);
        let lowest = if c.shrink_accepted { c.factormin } else { 1.0 };
        fac = fac.clamp(lowest, c.factormax);
        if c.hold_after_reject && self.rejected_last {
            fac = fac.min(1.0);
        }
        self.err_prev2 = self.err_prev;
        self.err_prev = err.max(HISTORY_FLOOR);
        self.rejected_last = false;
        fac
    }

    /// The factor of the retry after a step rejected with scaled error `err > 1`.
    pub(super) fn rejected(&mut self, err: f64) -> f64 {
        self.rejected_last = true;
        (self.c.safety * err.powf(-1.0 / self.k)).clamp(self.c.factormin, 1.0)
    }

    /// Notes a step that failed for another reason (a Newton iteration that did not
    /// converge); the driver chooses the retry.
    pub(super) fn failed(&mut self) {
        self.rejected_last = true;
    }

    /// The largest factor by which a step may grow.
    pub(super) fn factormax(&self) -> f64 {
        self.c.factormax
    }
}
