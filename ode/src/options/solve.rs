//! The settings of a plain solve: method, stepping, tolerances, error channels, recording.

use autodiff::Element;

use super::controller::Controller;
use super::method::{Method, Stepping};
use crate::OdeError;

/// How the scaled errors of a step's entries are combined into the one number the step-size
/// controller compares with 1 (each entry's error divided by `atol + rtol · |state|`).
///
/// The two differ only for a state of several channels under error control: on a single
/// channel they are the same number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Norm {
    /// The largest of the channels' RMS errors, each channel's RMS taken over its own entries
    /// (torchdiffeq's norm for a tuple state). A channel with a small error cannot hide a
    /// large error elsewhere, and leaving channels out of error control (the seminorm of the
    /// adjoint, quadrature channels) can only lower the norm (Kidger, Chen & Lyons 2021).
    #[default]
    ChannelMax,
    /// One RMS over all entries of the controlled channels (Hairer, Nørsett & Wanner 1993,
    /// eq. II.4.11). A large channel of small errors dilutes the others, and leaving it out
    /// can raise the norm.
    Rms,
}

/// The settings of [`solve`](crate::solve): method, stepping, tolerances, step bounds, error
/// channels and recording. [`Options`](crate::Options) combines them with the adjoint's
/// settings for [`odeint`](crate::odeint()); a plain solve reads only these.
///
/// ```
/// use ode::{Method, SolveOptions};
/// let opts = SolveOptions::<f64>::dopri5(1e-6, 1e-8).max_steps(10_000);
/// let fixed = SolveOptions::<f64>::fixed(Method::Rk4, 20);
/// # let _ = (opts, fixed);
/// ```
#[derive(Clone, Debug)]
pub struct SolveOptions<E> {
    /// The method.
    pub method: Method,
    /// Adaptive or fixed steps.
    pub stepping: Stepping<E>,
    /// Relative tolerance (also used by the Newton iteration of implicit methods).
    pub rtol: E,
    /// Absolute tolerance (also used by the Newton iteration of implicit methods).
    pub atol: E,
    /// First step size (magnitude); `None` selects it with Hairer's algorithm.
    pub first_step: Option<E>,
    /// Smallest allowed step magnitude (adaptive); a smaller request is a
    /// [`StepSizeUnderflow`](OdeError::StepSizeUnderflow).
    pub min_step: E,
    /// Largest allowed step magnitude (adaptive); `None` for no limit.
    pub max_step: Option<E>,
    /// Largest number of attempted steps (accepted plus rejected) in one solve.
    pub max_steps: usize,
    /// Per state channel, whether it takes part in error control; `None` means all do.
    /// Leave "quadrature" channels (log-density, regularisers) out: nothing feeds back from
    /// them, so their error does not compound.
    pub error_channels: Option<Vec<bool>>,
    /// Record the end time of every accepted step in [`Solution::steps`](crate::Solution::steps).
    pub record_steps: bool,
    /// Also record the state at the end of every accepted step in
    /// [`Solution::step_states`](crate::Solution::step_states) (implies `record_steps`).
    pub record_step_states: bool,
    /// How adaptive steps are chosen from the error estimates ([`Controller::pi`] unless set).
    pub controller: Controller,
    /// How the errors of the controlled channels are combined ([`Norm::ChannelMax`] unless
    /// set).
    pub norm: Norm,
}

impl<E: Element> SolveOptions<E> {
    /// Adaptive stepping with `method` and the defaults rtol = 1e-7, atol = 1e-9,
    /// max_steps = 100 000.
    pub fn new(method: Method) -> Self {
        SolveOptions {
            method,
            stepping: Stepping::Adaptive,
            rtol: E::from_f64(1e-7),
            atol: E::from_f64(1e-9),
            first_step: None,
            min_step: E::ZERO,
            max_step: None,
            max_steps: 100_000,
            error_channels: None,
            record_steps: false,
            record_step_states: false,
            controller: Controller::default(),
            norm: Norm::default(),
        }
    }

    /// Adaptive Dormand–Prince 5(4).
    pub fn dopri5(rtol: E, atol: E) -> Self {
        Self::new(Method::Dopri5).rtol(rtol).atol(atol)
    }

    /// Adaptive Tsitouras 5(4).
    pub fn tsit5(rtol: E, atol: E) -> Self {
        Self::new(Method::Tsit5).rtol(rtol).atol(atol)
    }

    /// Adaptive Bogacki–Shampine 3(2).
    pub fn bosh3(rtol: E, atol: E) -> Self {
        Self::new(Method::Bosh3).rtol(rtol).atol(atol)
    }

    /// Adaptive Dormand–Prince 8(5).
    pub fn dopri8(rtol: E, atol: E) -> Self {
        Self::new(Method::Dopri8).rtol(rtol).atol(atol)
    }

    /// `steps` equal steps between consecutive save times.
    pub fn fixed(method: Method, steps: usize) -> Self {
        Self {
            stepping: Stepping::Steps(steps),
            ..Self::new(method)
        }
    }

    /// Steps of size at most `h` (see [`Stepping::StepSize`]).
    pub fn fixed_step(method: Method, h: E) -> Self {
        Self {
            stepping: Stepping::StepSize(h),
            ..Self::new(method)
        }
    }

    /// Sets the method (keeping the other settings).
    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the stepping mode.
    pub fn stepping(mut self, stepping: Stepping<E>) -> Self {
        self.stepping = stepping;
        self
    }

    /// Sets the relative tolerance.
    pub fn rtol(mut self, rtol: E) -> Self {
        self.rtol = rtol;
        self
    }

    /// Sets the absolute tolerance.
    pub fn atol(mut self, atol: E) -> Self {
        self.atol = atol;
        self
    }

    /// Sets the first step size (its magnitude; the sign follows the direction of time).
    pub fn first_step(mut self, h: E) -> Self {
        self.first_step = Some(h);
        self
    }

    /// Sets the smallest allowed step magnitude.
    pub fn min_step(mut self, h: E) -> Self {
        self.min_step = h;
        self
    }

    /// Sets the largest allowed step magnitude.
    pub fn max_step(mut self, h: E) -> Self {
        self.max_step = Some(h);
        self
    }

    /// Sets the largest number of attempted steps.
    pub fn max_steps(mut self, n: usize) -> Self {
        self.max_steps = n;
        self
    }

    /// Sets which state channels take part in error control (one flag per channel).
    pub fn error_channels(mut self, flags: Vec<bool>) -> Self {
        self.error_channels = Some(flags);
        self
    }

    /// Records the end time of every accepted step.
    pub fn record_steps(mut self, on: bool) -> Self {
        self.record_steps = on;
        self
    }

    /// Record the state at the end of every accepted step (and its time).
    pub fn record_step_states(mut self, on: bool) -> Self {
        self.record_step_states = on;
        self
    }

    /// Sets the step-size controller of adaptive solves.
    pub fn controller(mut self, controller: Controller) -> Self {
        self.controller = controller;
        self
    }

    /// Sets how the errors of the controlled channels are combined.
    pub fn norm(mut self, norm: Norm) -> Self {
        self.norm = norm;
        self
    }

    /// Checks the settings against a state of `channels` channels.
    pub fn validate(&self, channels: usize) -> Result<(), OdeError> {
        let bad = |s: String| Err(OdeError::InvalidOptions(s));
        let (rtol, atol) = (self.rtol.to_f64(), self.atol.to_f64());
        if !(rtol.is_finite() && atol.is_finite() && rtol >= 0.0 && atol >= 0.0)
            || rtol + atol <= 0.0
        {
            return bad(format!("tolerances must be finite, non-negative and not both zero (rtol = {rtol}, atol = {atol})"));
        }
        // Below ~10 machine epsilons the error estimate is rounding noise: the controller
        // would shrink the steps to nothing, at hundreds of times the cost, and still miss the
        // tolerance (Hairer's codes refuse such tolerances for the same reason).
        let floor = 10.0 * E::EPSILON.to_f64();
        if matches!(self.stepping, Stepping::Adaptive) && rtol > 0.0 && rtol < floor {
            return bad(format!(
                "rtol = {rtol:e} is below the precision of {} (10 × machine epsilon = {floor:e}): \
                 use a larger rtol or {}",
                E::NAME,
                if E::NAME == "f32" {
                    "f64"
                } else {
                    "an rtol of at least that"
                }
            ));
        }
        if self.max_steps == 0 {
            return bad("max_steps must be positive".into());
        }
        if let Some(flags) = &self.error_channels {
            if flags.len() != channels {
                return bad(format!(
                    "{} error-channel flags for a state of {channels} channels",
                    flags.len()
                ));
            }
        }
        match self.stepping {
            Stepping::Adaptive => {
                self.controller.validate()?;
                if self.method.error_order().is_none() {
                    return bad(format!(
                        "{} has no error estimate: use Options::fixed or Options::fixed_step",
                        self.method
                    ));
                }
                let min = self.min_step.to_f64();
                if !(min.is_finite() && min >= 0.0) {
                    return bad(format!(
                        "min_step must be finite and non-negative, got {min}"
                    ));
                }
                if let Some(h) = self.first_step {
                    let h = h.to_f64();
                    if !(h.is_finite() && h > 0.0) {
                        return bad(format!("first_step must be finite and positive, got {h}"));
                    }
                }
                if let Some(h) = self.max_step {
                    let h = h.to_f64();
                    if !(h > 0.0 && h >= min) {
                        return bad(format!(
                            "max_step must be positive and at least min_step, got {h}"
                        ));
                    }
                }
            }
            Stepping::Steps(n) => {
                if n == 0 {
                    return bad("a fixed-step solve needs at least one step per interval".into());
                }
            }
            Stepping::StepSize(h) => {
                let h = h.to_f64();
                if !(h.is_finite() && h > 0.0) {
                    return bad(format!(
                        "the fixed step size must be finite and positive, got {h}"
                    ));
                }
            }
        }
        Ok(())
    }
}
