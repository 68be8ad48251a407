//! Terminal events: a solve that stops where a condition `g(t, z; θ)` first crosses zero,
//! with the event time located on the dense output and differentiable on the tape (Chen,
//! Amos & Nickel 2021, "Learning neural event functions"; torchdiffeq's `odeint_event`,
//! diffrax's `Event`).
//!
//! The event time `t*` is defined implicitly by `g(t*, z(t*; z0, θ), θ) = 0`. By the implicit
//! function theorem its derivative with respect to any input `p` of the solve is
//!
//! `dt*/dp = −(∂g/∂z · ∂z/∂p + ∂g/∂p) / (∂g/∂t + ∂g/∂z · f(t*, z(t*)))`.
//!
//! The numerator is the derivative of `G(p) = g(t_c, z(t_c; p), θ)` at the located time `t_c`
//! held fixed, so it is recorded with the ordinary differentiable [`odeint`] up to `t_c`
//! followed by `g` on the tape, and every adjoint strategy applies unchanged; the denominator
//! (the rate of `g` along the solution) is a number. Then `t* = t_c − (G − G_c)/D` with `G_c`
//! the constant value of `G`: its value is `t_c` and its first derivatives are the theorem's.
//! The state at the event is `z(t_c) + f(t_c, z(t_c))·(t* − t_c)`, again of value `z(t_c)` and
//! with the chain rule `dz(t*)/dp = ∂z/∂p + f·dt*/dp` as its first derivative. (Derivatives of
//! second order through an event are not exact.)

use std::fmt;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};

use super::odeint;
use super::stats::OdeStats;
use crate::solve::root::{illinois, RootFailure};
use crate::solve::{check_times, solve_until, DenseSolution};
use crate::{Dynamics, OdeError, Options, Stats};

/// A condition `g(t, z; θ)` whose zero is an event, written with tape operations like
/// [`Dynamics`]: `t` is `1 × 1`, `z` the state's channels, `params` the solve's parameters,
/// and the result must be `1 × 1`.
///
/// Closures with the right signature implement it; [`event_fn`] gives a closure stored in a
/// variable the higher-ranked signature it needs.
pub trait EventFn<E: Element> {
    /// Evaluates `g(t, z; θ)` on `tape`. An error ends [`odeint_event`] with that error.
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        z: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>>;
}

impl<E: Element, F> EventFn<E> for F
where
    F: for<'t> Fn(
        &'t Tape<E>,
        Var<'t, E>,
        &[Var<'t, E>],
        &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>>,
{
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        z: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>> {
        self(tape, t, z, params)
    }
}

/// Gives a closure the higher-ranked signature of [`EventFn`]:
///
/// ```
/// use ode::event_fn;
/// // The first state column reaching zero (a ball hitting the ground).
/// let ground = event_fn::<f64, _>(|_tape, _t, z, _p| Ok(z[0].slice_cols(0, 1)));
/// # let _ = ground;
/// ```
pub fn event_fn<E: Element, F>(g: F) -> F
where
    F: for<'t> Fn(
        &'t Tape<E>,
        Var<'t, E>,
        &[Var<'t, E>],
        &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>>,
{
    g
}

/// A terminal event: the condition and how its root is found.
///
/// The event happens at the first time after `t0` where `g` changes sign (or is exactly
/// zero) between the ends of an accepted step; a zero of `g` at `t0` itself does not count,
/// and a pair of zeros inside one step (a graze) is not seen. The root inside the step is
/// found on the step's interpolant by the Illinois variant of regula falsi (Dowell & Jarratt
/// 1971), which keeps a bracket and converges superlinearly (bisecting when the bracket stops
/// halving), to the time tolerance
/// [`xtol`](Event::xtol) or the iteration cap [`max_iter`](Event::max_iter), whichever comes
/// first.
#[derive(Clone)]
pub struct Event<E: Element> {
    cond: Rc<dyn EventFn<E>>,
    xtol: Option<f64>,
    max_iter: usize,
}

impl<E: Element> Event<E> {
    /// An event with the condition `g`, the default tolerance (64 machine epsilons of `E`
    /// relative to the event time) and at most 100 iterations.
    pub fn new(cond: impl EventFn<E> + 'static) -> Self {
        Event {
            cond: Rc::new(cond),
            xtol: None,
            max_iter: 100,
        }
    }

    /// Absolute tolerance on the event time: the root finder stops when its bracket is this
    /// narrow.
    pub fn xtol(mut self, tol: f64) -> Self {
        self.xtol = Some(tol);
        self
    }

    /// The most iterations of the root finder before it reports
    /// [`EventError::RootNotConverged`].
    pub fn max_iter(mut self, n: usize) -> Self {
        self.max_iter = n;
        self
    }

    /// Evaluates the condition on plain values (a scratch tape).
    fn value(&self, t: f64, z: &[Tensor<E>], params: &[Tensor<E>]) -> autodiff::Result<f64> {
        let tape = Tape::new();
        let tv = tape.var(Tensor::scalar(E::from_f64(t)));
        let zv: Vec<Var<'_, E>> = z.iter().map(|c| tape.var_from(c)).collect();
        let pv: Vec<Var<'_, E>> = params.iter().map(|p| tape.var_from(p)).collect();
        let g = self.cond.eval(&tape, tv, &zv, &pv)?;
        check_scalar(g);
        Ok(g.item().to_f64())
    }
}

fn check_scalar<E: Element>(g: Var<'_, E>) {
    assert_eq!(
        g.shape(),
        (1, 1),
        "odeint_event: the event condition must return a 1x1 value, got {:?}",
        g.shape()
    );
}

/// Why [`odeint_event`] found no usable event. Carried inside [`autodiff::Error`] (find it
/// with `err.downcast_ref::<EventError>()`); solver failures come as [`OdeError`].
#[derive(Clone, Debug, PartialEq)]
pub enum EventError {
    /// The condition did not change sign on `(t0, t1]`.
    NoEvent {
        /// Start of the search.
        t0: f64,
        /// End of the search.
        t1: f64,
        /// The condition at `t0` and at `t1`.
        g: (f64, f64),
    },
    /// The root finder reached its iteration cap before its bracket met the tolerance.
    RootNotConverged {
        /// The bracket left, which holds the root.
        bracket: (f64, f64),
        /// Iterations taken.
        iterations: usize,
    },
    /// The condition's rate along the solution, `∂g/∂t + ∂g/∂z·f`, is zero or not finite at
    /// the event, so the event time has no derivative (a tangential crossing).
    Tangential {
        /// The event time.
        t: f64,
        /// The rate found.
        rate: f64,
    },
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::NoEvent { t0, t1, g } => write!(
                f,
                "no event: the condition does not change sign on ({t0:e}, {t1:e}] \
                 (g = {:e} at the start, {:e} at the end)",
                g.0, g.1
            ),
            EventError::RootNotConverged {
                bracket,
                iterations,
            } => write!(
                f,
                "event root finding did not converge in {iterations} iterations \
                 (the root is in [{:e}, {:e}])",
                bracket.0, bracket.1
            ),
            EventError::Tangential { t, rate } => write!(
                f,
                "the event at t = {t:e} is tangential (dg/dt along the solution is {rate:e}), \
                 so its time has no derivative"
            ),
        }
    }
}

impl std::error::Error for EventError {}

/// The result of [`odeint_event`].
#[derive(Debug)]
pub struct EventSolution<'t, E: Element> {
    /// The event time `t*`, a `1 × 1` variable whose derivatives follow the implicit function
    /// theorem.
    pub t: Var<'t, E>,
    /// The state at the event, differentiable including through `t*`.
    pub state: Vec<Var<'t, E>>,
    /// Statistics of the differentiable solve from `t0` to the event (backward ones fill in
    /// when the tape is differentiated).
    pub stats: OdeStats,
    /// Statistics of the plain solve that located the event (with dense output).
    pub locate: Stats,
    /// Iterations of the root finder.
    pub iterations: usize,
}

/// Solves `dz/dt = f(t, z; θ)` from `z0` at `t0` until the event `g(t, z; θ) = 0`, searching
/// `(t0, t1]`, and returns the event time and the state there as differentiable variables.
///
/// A plain solve with dense output locates the event (stopping at the step that contains
/// it); [`odeint`] then solves to the event time with `opts`, so gradients reach `z0` and the
/// parameters through its adjoint strategy (Backsolve, Checkpointed and Direct alike), and the
/// event time's own gradient follows from the implicit function theorem (see the module
/// documentation). Needs adaptive stepping.
///
/// Errors (inside [`autodiff::Error`]): [`EventError::NoEvent`] when `g` keeps its sign up to
/// `t1`, [`EventError::RootNotConverged`] when the iteration cap is reached,
/// [`EventError::Tangential`] when the crossing has no derivative, and the solvers'
/// [`OdeError`]s (invalid times or options, step failures, non-finite values including a
/// non-finite condition).
///
/// # Panics
///
/// If the condition does not return a `1 × 1` value.
///
/// ```
/// use std::rc::Rc;
/// use autodiff::{Tape, Tensor};
/// use ode::{dynamics, event_fn, odeint_event, Dynamics, Event, Options};
///
/// // A ball dropped from height 2 under gravity 9.81: z = [x, v], x' = v, v' = −9.81.
/// let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|tape, _t, z, _p| {
///     let v = z[0].slice_cols(1, 2);
///     Ok(vec![tape.concat_cols(&[v, tape.scalar(-9.81)])])
/// }));
/// let tape = Tape::new();
/// let z0 = tape.var(Tensor::from_f64s(1, 2, &[2.0, 0.0]));
/// let ground = Event::new(event_fn(|_tape, _t, z, _p| Ok(z[0].slice_cols(0, 1))));
/// let hit = odeint_event(&tape, &f, &[z0], &[], 0.0, 10.0, &ground, &Options::dopri5(1e-8, 1e-8))
///     .unwrap();
/// let t_hit = (2.0 * 2.0 / 9.81f64).sqrt();
/// assert!((hit.t.item() - t_hit).abs() < 1e-10);
/// // dt*/dh = 1/sqrt(2 g h) = 1/(g t*).
/// let g = tape.grad(hit.t, &[z0]).unwrap();
/// assert!((g[0].get(0, 0) - 1.0 / (9.81 * t_hit)).abs() < 1e-8);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn odeint_event<'t, E: Element>(
    tape: &'t Tape<E>,
    f: &Rc<dyn Dynamics<E>>,
    z0: &[Var<'t, E>],
    params: &[Var<'t, E>],
    t0: E,
    t1: E,
    event: &Event<E>,
    opts: &Options<E>,
) -> autodiff::Result<EventSolution<'t, E>> {
    let wrap = |e: OdeError| autodiff::Error::new("odeint_event", e);
    let fail = |e: EventError| autodiff::Error::new("odeint_event", e);
    check_times(&[t0, t1]).map_err(wrap)?;
    opts.validate(z0.len()).map_err(wrap)?;
    opts.adjoint.validate().map_err(wrap)?;
    if let Some(x) = event.xtol {
        if !(x > 0.0 && x.is_finite()) {
            return Err(wrap(OdeError::InvalidOptions(format!(
                "the event's xtol must be positive and finite, got {x}"
            ))));
        }
    }
    let zv: Vec<Tensor<E>> = z0.iter().map(|v| v.value()).collect();
    let pv: Vec<Tensor<E>> = params.iter().map(|v| v.value()).collect();

    // Locate: a dense solve that stops after the step in which g changes sign.
    let g0 = event.value(t0.to_f64(), &zv, &pv)?;
    if !g0.is_finite() {
        return Err(wrap(OdeError::NonFinite {
            t: t0.to_f64(),
            step: 0,
        }));
    }
    let mut prev = (t0.to_f64(), g0);
    let mut found: Option<Crossing> = None;
    let mut bad_g: Option<f64> = None;
    // The first error the condition returned; it ends the search and is returned as is.
    let mut cond_err: Option<autodiff::Error> = None;
    let mut stop = |dense: &DenseSolution<E>, y: &[Tensor<E>]| -> bool {
        let tb = dense.t1().to_f64();
        let gb = match event.value(tb, y, &pv) {
            Ok(g) => g,
            Err(e) => {
                cond_err = Some(e);
                return true;
            }
        };
        if !gb.is_finite() {
            bad_g = Some(tb);
            return true;
        }
        let crossed = gb == 0.0 || prev.1 * gb < 0.0;
        if crossed {
            found = Some(Crossing {
                step: dense.steps() - 1,
                a: prev,
                b: (tb, gb),
            });
        }
        prev = (tb, gb);
        crossed
    };
    let (sol, _) = solve_until(&**f, &zv, &pv, t0, t1, opts, &mut stop).map_err(wrap)?;
    if let Some(e) = cond_err.take() {
        return Err(e);
    }
    if let Some(t) = bad_g {
        return Err(wrap(OdeError::NonFinite {
            t,
            step: sol.stats.accepted,
        }));
    }
    let Some(crossing) = found else {
        return Err(fail(EventError::NoEvent {
            t0: t0.to_f64(),
            t1: t1.to_f64(),
            g: (g0, prev.1),
        }));
    };
    let dense = sol
        .dense
        .as_ref()
        .expect("solve_until records the dense solution");
    let xtol = event.xtol.unwrap_or_else(|| {
        let scale = crossing.a.0.abs().max(crossing.b.0.abs());
        64.0 * E::EPSILON.to_f64() * scale.max(f64::MIN_POSITIVE)
    });
    let located = illinois(
        |t| {
            let theta = step_theta(dense, crossing.step, t);
            match event.value(t, &dense.evaluate_step(crossing.step, theta), &pv) {
                Ok(g) => g,
                Err(e) => {
                    // NaN ends the root finder; the kept error is returned below.
                    cond_err.get_or_insert(e);
                    f64::NAN
                }
            }
        },
        crossing.a,
        crossing.b,
        xtol,
        event.max_iter,
    );
    if let Some(e) = cond_err.take() {
        return Err(e);
    }
    let (t_root, iterations) = located.map_err(|e| match e {
        RootFailure::NotConverged {
            bracket,
            iterations,
        } => fail(EventError::RootNotConverged {
            bracket,
            iterations,
        }),
        RootFailure::NonFinite(t) => wrap(OdeError::NonFinite {
            t,
            step: sol.stats.accepted,
        }),
    })?;
    let tc = E::from_f64(t_root);

    // The differentiable solve to the located time, and the event time by the implicit
    // function theorem on top of it.
    let solved = odeint(tape, f, z0, params, [t0, tc], opts)?;
    let zc: Vec<Var<'t, E>> = solved.last().to_vec();
    let zc_vals: Vec<Tensor<E>> = zc.iter().map(|v| v.value()).collect();
    let (rate, fc) = rate_along_solution(event, &**f, tc, &zc_vals, &pv)?;
    if !(rate.is_finite() && rate != 0.0) {
        return Err(fail(EventError::Tangential { t: t_root, rate }));
    }
    let g = event.cond.eval(tape, tape.scalar(tc), &zc, params)?;
    check_scalar(g);
    let offset = (g - tape.constant(g.value())) * E::from_f64(-1.0 / rate);
    let t = offset + tape.scalar(tc);
    let state = zc
        .iter()
        .zip(&fc)
        .map(|(z, fz)| *z + tape.constant_from(fz) * offset)
        .collect();
    Ok(EventSolution {
        t,
        state,
        stats: solved.stats,
        locate: sol.stats,
        iterations,
    })
}

/// The accepted step in which `g` changed sign, with `(t, g)` at both of its ends.
struct Crossing {
    step: usize,
    a: (f64, f64),
    b: (f64, f64),
}

/// `θ` of `t` in step `i` of the dense solution: the root is read on the step that brackets
/// it, also when it lies on an end the step shares with its neighbour.
fn step_theta<E: Element>(dense: &DenseSolution<E>, i: usize, t: f64) -> f64 {
    let ts = dense.step_times();
    let (a, b) = (ts[i].to_f64(), ts[i + 1].to_f64());
    ((t - a) / (b - a)).clamp(0.0, 1.0)
}

/// `∂g/∂t + Σ_c ⟨∂g/∂z_c, f_c⟩` at `(t, z)` and the value of `f` there, on a scratch tape.
fn rate_along_solution<E: Element>(
    event: &Event<E>,
    f: &dyn Dynamics<E>,
    t: E,
    z: &[Tensor<E>],
    params: &[Tensor<E>],
) -> autodiff::Result<(f64, Vec<Tensor<E>>)> {
    let tape = Tape::new();
    let tv = tape.var(Tensor::scalar(t));
    let zv: Vec<Var<'_, E>> = z.iter().map(|c| tape.var_from(c)).collect();
    let pv: Vec<Var<'_, E>> = params.iter().map(|p| tape.var_from(p)).collect();
    let fo: Vec<Tensor<E>> = f
        .eval(&tape, tv, &zv, &pv)?
        .iter()
        .map(|v| v.value())
        .collect();
    let g = event.cond.eval(&tape, tv, &zv, &pv)?;
    check_scalar(g);
    let mut wrt = vec![tv];
    wrt.extend(&zv);
    let grads = match tape.grad(g, &wrt) {
        Ok(gs) => gs,
        Err(_) => return Ok((f64::NAN, fo)),
    };
    let mut rate = grads[0].item().to_f64();
    for (gz, fz) in grads[1..].iter().zip(&fo) {
        rate += gz
            .as_slice()
            .iter()
            .zip(fz.as_slice())
            .map(|(a, b)| a.to_f64() * b.to_f64())
            .sum::<f64>();
    }
    Ok((rate, fo))
}
