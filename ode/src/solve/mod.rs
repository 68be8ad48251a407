//! `solve`: integration on plain values, with adaptive or fixed steps and dense output.
//!
//! The layers, bottom up: [`evaluator`] runs the dynamics on a scratch tape, [`state`] does the
//! arithmetic on lists of channels, [`norm`] measures errors, [`hermite`] interpolates, the
//! steppers ([`erk`] for explicit tableaux, [`sdirk`] for the Newton-solved implicit ones)
//! attempt single steps behind the [`stepper`] interface, and the drivers ([`fixed`] and
//! [`adaptive`], which starts from [`initial_step`] and sizes its steps with the
//! [`controller`]) walk the save times. [`dense`] holds the continuous solution a dense solve
//! keeps, and [`root`] the bracketing root finder that locates events on it.

mod adaptive;
mod controller;
pub(crate) mod dense;
mod erk;
mod evaluator;
mod fixed;
pub(crate) mod hermite;
mod initial_step;
mod norm;
pub(crate) mod root;
mod sdirk;
pub(crate) mod state;
mod stepper;

use std::ops::AddAssign;

use autodiff::{Element, Tape, Tensor, Var};

use crate::options::{Scheme, SolveOptions, Stepping};
use crate::{Dynamics, OdeError};
use adaptive::adaptive;
use dense::Recorder;
pub use dense::{DenseError, DenseSolution};
use erk::Erk;
use evaluator::Evaluator;
use fixed::fixed;
use norm::ErrorNorm;
pub(crate) use sdirk::solve_stage;
use sdirk::Sdirk;
pub use sdirk::DENSE_JACOBIAN_MAX;
use stepper::Stepper;

/// Counters of a solve. Add the stats of several solves with `+=` (the adjoint adds its
/// forward and backward passes).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Evaluations of the dynamics (including those recorded for Jacobian products).
    pub nfe: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps (error too large, or Newton failure).
    pub rejected: usize,
    /// Jacobians (or linearisations for matrix-free solves) formed by implicit methods.
    pub njac: usize,
    /// Jacobian-vector products (forward sweeps on the tape).
    pub njvp: usize,
    /// Linear solves (LU back-substitutions or GMRES runs).
    pub linear_solves: usize,
    /// Newton iterations.
    pub newton_iters: usize,
    /// Signed size of the last accepted step (0 if none).
    pub last_step: f64,
    /// Sum of the scaled error norms of the accepted adaptive steps (0 for fixed steps); see
    /// [`Stats::mean_error`].
    pub error_sum: f64,
}

impl Stats {
    /// The mean scaled error norm of the accepted adaptive steps: where the step-size
    /// controller settles (1 is the tolerance). 0 without accepted adaptive steps.
    pub fn mean_error(&self) -> f64 {
        if self.accepted == 0 {
            0.0
        } else {
            self.error_sum / self.accepted as f64
        }
    }
}

impl AddAssign for Stats {
    /// Sums the counters; `last_step` becomes the right-hand side's if it took a step.
    fn add_assign(&mut self, rhs: Stats) {
        self.nfe += rhs.nfe;
        self.accepted += rhs.accepted;
        self.rejected += rhs.rejected;
        self.njac += rhs.njac;
        self.njvp += rhs.njvp;
        self.linear_solves += rhs.linear_solves;
        self.newton_iters += rhs.newton_iters;
        self.error_sum += rhs.error_sum;
        if rhs.last_step != 0.0 {
            self.last_step = rhs.last_step;
        }
    }
}

/// The result of [`solve`].
#[derive(Clone, Debug)]
pub struct Solution<E: Element> {
    /// The state at each save time (outer index) as a list of channels (inner index);
    /// `states[0]` is `z0`.
    pub states: Vec<Vec<Tensor<E>>>,
    /// The save times (a copy of the `times` argument).
    pub times: Vec<E>,
    /// Counters.
    pub stats: Stats,
    /// End times of the accepted steps, in order; filled only with
    /// [`SolveOptions::record_steps`].
    pub steps: Vec<E>,
    /// The state at the end of each accepted step (matching `steps`); filled only with
    /// [`SolveOptions::record_step_states`].
    pub step_states: Vec<Vec<Tensor<E>>>,
    /// The continuous solution over the solved interval; filled only by [`solve_dense`].
    pub dense: Option<DenseSolution<E>>,
}

impl<E: Element> Solution<E> {
    /// The state at the last save time.
    pub fn last(&self) -> &[Tensor<E>] {
        self.states
            .last()
            .expect("a solution has at least the initial state")
    }

    /// The state at any `t` of the solved interval, from the dense solution (diffrax's
    /// `sol.evaluate(t)`).
    ///
    /// Errors: [`DenseError::NotRecorded`] unless the solve was [`solve_dense`];
    /// [`DenseError::OutOfRange`] for `t` outside the solved interval.
    pub fn evaluate(&self, t: E) -> Result<Vec<Tensor<E>>, DenseError> {
        self.dense
            .as_ref()
            .ok_or(DenseError::NotRecorded)?
            .evaluate(t)
    }
}

/// Integrates `dz/dt = f(t, z; θ)` from `z(times[0]) = z0` and returns the state at every
/// entry of `times` (increasing or decreasing; integrating backwards in time uses negative
/// steps).
///
/// Nothing is recorded on any user tape: the dynamics are evaluated on one scratch tape per
/// solve. The parameters are recorded once at its start with [`Tape::var`]; for every
/// evaluation `t` and `z` are recorded with [`Tape::var`] too (so `f` may differentiate
/// internally), and the tape is truncated back after it, reusing its buffers.
///
/// Adaptive solves step from `times[0]` towards the last time and fill in the save times in
/// between by dense output, so save times never force steps: the methods' own continuous
/// extensions for Dopri5 (Shampine 1986) and Tsit5 (Tsitouras 2011), both of order 4, and
/// DOP853's of order 7 (Hairer, Nørsett & Wanner 1993), cubic Hermite interpolation for Bosh3
/// and the implicit methods up to Kvaerno3 (as accurate as the methods). Kvaerno5, of order 5
/// without a continuous extension, instead shortens its steps to land on every save time,
/// since a cubic interpolant would spoil its accuracy. Fixed-step solves take their steps between
/// consecutive save times (see [`Stepping`]).
///
/// Errors: [`OdeError::InvalidTimes`], [`OdeError::InvalidOptions`] before any work;
/// [`OdeError::NonFinite`] as soon as a NaN or infinity shows up in a stage, the new state or
/// the error estimate; [`OdeError::StepSizeUnderflow`], [`OdeError::MaxSteps`] and
/// [`OdeError::NewtonDiverged`] when the step-size control gives up.
///
/// # Panics
///
/// If `f` returns a different number of channels or a channel of a different shape than `z0`.
pub fn solve<E: Element>(
    f: &dyn Dynamics<E>,
    z0: &[Tensor<E>],
    params: &[Tensor<E>],
    times: &[E],
    opts: &SolveOptions<E>,
) -> Result<Solution<E>, OdeError> {
    solve_impl(f, z0, params, times, opts, None)
}

/// [`solve`], also keeping the interpolant of every accepted step in
/// [`Solution::dense`], so the solution can be evaluated at any time of
/// `[times[0], times[last]]` afterwards with [`Solution::evaluate`] (diffrax's
/// `SaveAt(dense=True)`). The save times are filled in exactly as by [`solve`].
///
/// Errors: those of [`solve`], and [`OdeError::InvalidOptions`] for fixed-step solves (their
/// steps are not chosen by an error estimate, and dense output is recorded by the adaptive
/// driver only).
///
/// ```
/// use autodiff::Tensor;
/// use ode::{dynamics, solve_dense, DenseError, Options};
///
/// let f = dynamics::<f64, _>(|_tape, _t, z, _p| Ok(vec![-z[0]]));
/// let z0 = [Tensor::scalar(1.0)];
/// let sol = solve_dense(&f, &z0, &[], &[0.0, 2.0], &Options::tsit5(1e-9, 1e-9)).unwrap();
/// let z = sol.evaluate(0.7).unwrap();
/// assert!((z[0].item() - (-0.7f64).exp()).abs() < 1e-8);
/// assert!(matches!(sol.evaluate(2.5), Err(DenseError::OutOfRange { .. })));
/// ```
pub fn solve_dense<E: Element>(
    f: &dyn Dynamics<E>,
    z0: &[Tensor<E>],
    params: &[Tensor<E>],
    times: &[E],
    opts: &SolveOptions<E>,
) -> Result<Solution<E>, OdeError> {
    check_times(times)?;
    let mut rec = Recorder {
        sol: DenseSolution::new(times[0]),
        stop: None,
        stopped: false,
    };
    let mut sol = solve_impl(f, z0, params, times, opts, Some(&mut rec))?;
    sol.dense = Some(rec.sol);
    Ok(sol)
}

/// An adaptive dense solve from `t0` towards `t1` that `stop` may end after any accepted
/// step (given the dense solution so far and the step's end state). Returns the solution
/// (its `dense` filled) and whether `stop` ended it.
pub(crate) fn solve_until<E: Element>(
    f: &dyn Dynamics<E>,
    z0: &[Tensor<E>],
    params: &[Tensor<E>],
    t0: E,
    t1: E,
    opts: &SolveOptions<E>,
    stop: dense::StopFn<'_, E>,
) -> Result<(Solution<E>, bool), OdeError> {
    let times = [t0, t1];
    check_times(&times)?;
    let mut rec = Recorder {
        sol: DenseSolution::new(t0),
        stop: Some(stop),
        stopped: false,
    };
    let mut sol = solve_impl(f, z0, params, &times, opts, Some(&mut rec))?;
    sol.dense = Some(rec.sol);
    Ok((sol, rec.stopped))
}

fn solve_impl<E: Element>(
    f: &dyn Dynamics<E>,
    z0: &[Tensor<E>],
    params: &[Tensor<E>],
    times: &[E],
    opts: &SolveOptions<E>,
    dense: Option<&mut Recorder<'_, E>>,
) -> Result<Solution<E>, OdeError> {
    opts.validate(z0.len())?;
    if dense.is_some() && !matches!(opts.stepping, Stepping::Adaptive) {
        return Err(OdeError::InvalidOptions(
            "dense output needs adaptive stepping (fixed steps are not chosen by an error estimate)"
                .into(),
        ));
    }
    check_times(times)?;
    let t0 = times[0];
    if !z0.iter().all(|z| z.all_finite()) {
        return Err(OdeError::NonFinite {
            t: t0.to_f64(),
            step: 0,
        });
    }
    let tape = Tape::new();
    let pvars: Vec<Var<'_, E>> = params.iter().map(|p| tape.var(p.clone())).collect();
    let mut ev = Evaluator::new(f, &tape, pvars, z0);
    let mut out = Output {
        states: vec![z0.to_vec()],
        steps: Vec::new(),
        record: opts.record_steps || opts.record_step_states,
        step_states: Vec::new(),
        record_states: opts.record_step_states,
        stats: Stats::default(),
    };
    if times.len() > 1 {
        let mut stepper: Box<dyn Stepper<E> + '_> = match opts.method.scheme() {
            Scheme::Explicit(tab) => Box::new(Erk::new(tab, z0)),
            Scheme::Implicit(tab) => Box::new(Sdirk::new(tab.into(), z0)),
            Scheme::Esdirk(tab) => Box::new(Sdirk::new(tab.into(), z0)),
        };
        let norm = ErrorNorm::new(opts, z0.len());
        let res = match opts.stepping {
            Stepping::Adaptive => adaptive(
                &mut ev,
                stepper.as_mut(),
                z0,
                times,
                opts,
                &norm,
                &mut out,
                dense,
            ),
            Stepping::Steps(n) => fixed(
                &mut ev,
                stepper.as_mut(),
                z0,
                times,
                |_| n,
                opts,
                &norm,
                &mut out,
            ),
            Stepping::StepSize(h) => {
                let h = h.to_f64();
                let count =
                    move |dt: f64| ((dt.abs() / h) * (1.0 - 1e-12)).ceil().max(1.0) as usize;
                fixed(
                    &mut ev,
                    stepper.as_mut(),
                    z0,
                    times,
                    count,
                    opts,
                    &norm,
                    &mut out,
                )
            }
        };
        // A failed evaluation of the dynamics outranks what the stepper made of its NaN.
        if let Some(e) = ev.take_error() {
            return Err(e);
        }
        res?;
    }
    let mut stats = out.stats;
    stats.nfe = ev.nfe;
    stats.njvp = ev.njvp;
    Ok(Solution {
        states: out.states,
        times: times.to_vec(),
        stats,
        steps: out.steps,
        step_states: out.step_states,
        dense: None,
    })
}

pub(crate) fn check_times<E: Element>(times: &[E]) -> Result<(), OdeError> {
    if times.is_empty() {
        return Err(OdeError::InvalidTimes(
            "no save times (times[0] is the initial time)".into(),
        ));
    }
    if let Some(i) = times.iter().position(|t| !t.is_finite()) {
        return Err(OdeError::InvalidTimes(format!(
            "times[{i}] = {} is not finite",
            times[i]
        )));
    }
    if times.len() > 1 {
        let increasing = times[1] > times[0];
        for i in 1..times.len() {
            let ok = if increasing {
                times[i] > times[i - 1]
            } else {
                times[i] < times[i - 1]
            };
            if !ok {
                return Err(OdeError::InvalidTimes(format!(
                    "times must be strictly {}: times[{}] = {} then times[{i}] = {}",
                    if increasing {
                        "increasing"
                    } else {
                        "decreasing"
                    },
                    i - 1,
                    times[i - 1],
                    times[i]
                )));
            }
        }
    }
    Ok(())
}

/// What a driver records while it walks the save times.
pub(super) struct Output<E: Element> {
    pub(super) states: Vec<Vec<Tensor<E>>>,
    pub(super) steps: Vec<E>,
    pub(super) record: bool,
    pub(super) step_states: Vec<Vec<Tensor<E>>>,
    pub(super) record_states: bool,
    pub(super) stats: Stats,
}
