//! The step-size controller as a value: PID coefficients and bounds in diffrax's vocabulary.

use crate::OdeError;

/// How an adaptive solve chooses its next step from the scaled error norms `err_n` of its
/// steps (1 is the tolerance; a step is accepted when `err_n ≤ 1`).
///
/// After an accepted step of size `h` the next one is `h · factor`, with
///
/// `factor = safety · err_n^(−(pcoeff + icoeff + dcoeff)/k) · err_{n−1}^((pcoeff + 2 dcoeff)/k)
/// · err_{n−2}^(−dcoeff/k)`
///
/// clamped to `[1, factormax]`, or to `[factormin, factormax]` with
/// [`shrink_accepted`](Self::shrink_accepted); `k = q + 1` for an error estimate of order `q`
/// (Söderlind 2002 and 2003; diffrax's `PIDController`, whose coefficient names these are).
/// The history holds accepted steps only, floored at `1e-4` (Hairer's `facold`), and starts at 1.
///
/// After a rejected step the step is retried with pure integral control whatever the
/// coefficients, `safety · err_n^(−1/k)` clamped to `[factormin, 1]`: the error history says
/// nothing about a step that failed (Hairer & Wanner 1996, Section IV.2). For the integral
/// controller this is its own rule, as in diffrax and torchdiffeq.
///
/// Two settings matter in practice, and the first is the default:
///
/// - [`Controller::pi`]: Gustafsson's PI controller as in Hairer's codes (`pcoeff = 0.4`,
///   `icoeff = 0.3`: exponents `0.7/k` and `0.4/k`), which may shrink after an accepted step
///   and does not grow right after a rejection. It settles well below the tolerance (a mean
///   scaled error of 0.01–0.17 with Dopri5 and Tsit5 on decay, an oscillator and a
///   `tanh(zW)` field at tolerances 1e-3 to 1e-10), so it spends more steps for a more
///   accurate result.
/// - [`Controller::integral`]: the integral controller torchdiffeq and diffrax use by
///   default (`icoeff = 1`), which settles closer to the tolerance (0.2–0.7 on the same
///   problems): about 0.65–0.75 of the evaluations at the same tolerance for a 2–30 times
///   larger error, and within ±7% of PI's evaluations at the same error.
///
/// ```
/// use ode::{Controller, Options};
/// let like_diffrax = Options::<f64>::dopri5(1e-6, 1e-6).controller(Controller::integral());
/// let pid = Controller::pid(0.2, 0.4, 0.0).factormax(5.0);
/// # let _ = (like_diffrax, pid);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Controller {
    /// Proportional coefficient: reacts to the change of the error from the last step.
    pub pcoeff: f64,
    /// Integral coefficient: reacts to the error itself (1 for the integral controller).
    pub icoeff: f64,
    /// Derivative coefficient: reacts to the change of that change.
    pub dcoeff: f64,
    /// Safety factor (below 1) on every new step.
    pub safety: f64,
    /// Smallest factor by which a step shrinks (after a rejection, and after an accepted step
    /// when [`shrink_accepted`](Self::shrink_accepted) is on).
    pub factormin: f64,
    /// Largest factor by which a step grows.
    pub factormax: f64,
    /// Whether the step after an accepted step may be shorter than it (down to `factormin`).
    /// Hairer's PI codes allow it, so that a rising error is met before it causes a
    /// rejection; diffrax and torchdiffeq never shorten the step after an accepted one.
    pub shrink_accepted: bool,
    /// Whether the first accepted step after a rejection keeps the next step from growing
    /// (Hairer & Wanner 1996, Section IV.2: the rejected step showed the step is at its limit).
    pub hold_after_reject: bool,
}

impl Controller {
    /// A PID controller with diffrax's `PIDController` semantics: safety 0.9, factors in
    /// `[0.2, 10]`, accepted steps never followed by shorter ones, no hold after a rejection.
    pub fn pid(pcoeff: f64, icoeff: f64, dcoeff: f64) -> Self {
        Controller {
            pcoeff,
            icoeff,
            dcoeff,
            safety: 0.9,
            factormin: 0.2,
            factormax: 10.0,
            shrink_accepted: false,
            hold_after_reject: false,
        }
    }

    /// The integral controller `h · 0.9 · err^(−1/k)`, factors in `[0.2, 10]` and at least 1
    /// after an accepted step: the default of torchdiffeq and diffrax (`pid(0, 1, 0)`).
    pub fn integral() -> Self {
        Self::pid(0.0, 1.0, 0.0)
    }

    /// Gustafsson's PI controller as Hairer's codes run it (Gustafsson 1991; Hairer & Wanner
    /// 1996, Section IV.2): `h · 0.9 · err_n^(−0.7/k) · err_{n−1}^(0.4/k)` (`pcoeff = 0.4`,
    /// `icoeff = 0.3`), factors in `[0.2, 10]` after accepted steps too, and no growth right
    /// after a rejection. The default.
    pub fn pi() -> Self {
        Controller {
            shrink_accepted: true,
            hold_after_reject: true,
            ..Self::pid(0.4, 0.3, 0.0)
        }
    }

    /// Sets the safety factor.
    pub fn safety(mut self, safety: f64) -> Self {
        self.safety = safety;
        self
    }

    /// Sets the smallest step-size factor.
    pub fn factormin(mut self, factormin: f64) -> Self {
        self.factormin = factormin;
        self
    }

    /// Sets the largest step-size factor.
    pub fn factormax(mut self, factormax: f64) -> Self {
        self.factormax = factormax;
        self
    }

    /// Sets whether the step after an accepted step may be shorter than it.
    pub fn shrink_accepted(mut self, on: bool) -> Self {
        self.shrink_accepted = on;
        self
    }

    /// Sets whether the first accepted step after a rejection holds the step size.
    pub fn hold_after_reject(mut self, on: bool) -> Self {
        self.hold_after_reject = on;
        self
    }

    /// Checks the coefficients and bounds: finite coefficients whose sum (the exponent of the
    /// current error) is positive, `0 < safety ≤ 1`, `0 < factormin ≤ 1 ≤ factormax < ∞`.
    pub fn validate(&self) -> Result<(), OdeError> {
        let bad = |s: String| Err(OdeError::InvalidOptions(s));
        let (p, i, d) = (self.pcoeff, self.icoeff, self.dcoeff);
        if !(p.is_finite() && i.is_finite() && d.is_finite()) || p + i + d <= 0.0 {
            return bad(format!(
                "controller coefficients must be finite with a positive sum, so that the step \
                 responds to the error (pcoeff = {p}, icoeff = {i}, dcoeff = {d})"
            ));
        }
        if !(self.safety > 0.0 && self.safety <= 1.0) {
            return bad(format!(
                "controller safety must be in (0, 1], got {}",
                self.safety
            ));
        }
        if !(self.factormin > 0.0 && self.factormin <= 1.0) {
            return bad(format!(
                "controller factormin must be in (0, 1], got {}",
                self.factormin
            ));
        }
        if !(self.factormax >= 1.0 && self.factormax.is_finite()) {
            return bad(format!(
                "controller factormax must be finite and at least 1, got {}",
                self.factormax
            ));
        }
        Ok(())
    }
}

impl Default for Controller {
    /// [`Controller::pi`].
    fn default() -> Self {
        Self::pi()
    }
}
