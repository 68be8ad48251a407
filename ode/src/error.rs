//! The error type of the solvers.

use std::fmt;

/// Why a solve failed. Every failure that depends on data or configuration is one of these;
/// shape mismatches between the state and the dynamics' output are programming errors and
/// panic instead.
///
/// Times and step sizes are reported as `f64` whatever the element type, so the error is
/// `Send + Sync + 'static` and can travel inside [`autodiff::Error`].
#[derive(Clone, Debug, PartialEq)]
pub enum OdeError {
    /// The step-size controller asked for a step smaller than the minimum step (or too small
    /// to advance `t` in floating point).
    StepSizeUnderflow {
        /// Time at which the step was attempted.
        t: f64,
        /// The step size that was too small.
        h: f64,
    },
    /// The solve attempted more steps (accepted plus rejected) than allowed.
    MaxSteps {
        /// Time reached.
        t: f64,
        /// Steps attempted.
        steps: usize,
    },
    /// A stage value, derivative, error estimate or the initial state was NaN or infinite.
    NonFinite {
        /// Time of the step in which the non-finite value appeared.
        t: f64,
        /// Number of steps attempted before this one.
        step: usize,
    },
    /// The save times are not usable (empty, non-finite or not strictly monotone).
    InvalidTimes(String),
    /// The options are not usable (negative tolerances, a fixed-step-only method asked to
    /// adapt, error-channel flags that do not match the state, ...).
    InvalidOptions(String),
    /// The Newton iteration of an implicit method did not converge (in fixed-step mode, or in
    /// adaptive mode when halving the step no longer helps).
    NewtonDiverged {
        /// Time at which the step was attempted.
        t: f64,
        /// Step size of the failing step.
        h: f64,
    },
    /// A Butcher tableau failed validation.
    InvalidTableau(String),
    /// The `Direct` strategy's replay of the accepted steps on the tape drifted away from the
    /// solve that chose them (or became non-finite): the discretisation amplifies the rounding
    /// of the recorded steps, so its derivatives would be meaningless.
    ReplayDiverged {
        /// Save time at which the replayed state was compared with the solve.
        t: f64,
        /// Largest deviation, in units of the allowed one, `atol + rtol·|z|` plus a rounding
        /// allowance (infinite when the replay is not finite).
        deviation: f64,
    },
    /// The dynamics returned an error (e.g. a `vjp` or a nested solve inside
    /// [`Dynamics::eval`](crate::Dynamics::eval) failed).
    Dynamics {
        /// Time of the evaluation that failed.
        t: f64,
        /// The dynamics' error.
        source: DynamicsError,
    },
}

/// The error a [`Dynamics`](crate::Dynamics) evaluation returned, shared so that
/// [`OdeError`] stays `Clone` (two values are equal when they share the same error).
#[derive(Clone, Debug)]
pub struct DynamicsError(pub std::sync::Arc<autodiff::Error>);

impl PartialEq for DynamicsError {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for DynamicsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for DynamicsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl fmt::Display for OdeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OdeError::StepSizeUnderflow { t, h } => {
                write!(f, "step size underflow at t = {t:e} (h = {h:e})")
            }
            OdeError::MaxSteps { t, steps } => {
                write!(f, "maximum number of steps ({steps}) reached at t = {t:e}")
            }
            OdeError::NonFinite { t, step } => {
                write!(f, "non-finite value in step {step} at t = {t:e}")
            }
            OdeError::InvalidTimes(s) => write!(f, "invalid save times: {s}"),
            OdeError::InvalidOptions(s) => write!(f, "invalid solver options: {s}"),
            OdeError::NewtonDiverged { t, h } => {
                write!(f, "Newton iteration diverged at t = {t:e} (h = {h:e})")
            }
            OdeError::InvalidTableau(s) => write!(f, "invalid Butcher tableau: {s}"),
            OdeError::ReplayDiverged { t, deviation } => write!(
                f,
                "the Direct replay of the solver's steps deviates from the solve at t = {t:e} \
                 by {deviation:e} times the allowed deviation (the steps are unstable when replayed); \
                 use Adjoint::Backsolve or Adjoint::Checkpointed"
            ),
            OdeError::Dynamics { t, source } => {
                write!(f, "the dynamics failed at t = {t:e}: {source}")
            }
        }
    }
}

impl std::error::Error for OdeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            OdeError::Dynamics { source, .. } => Some(source),
            _ => None,
        }
    }
}
