//! `solve`: integration on plain values, with adaptive or fixed steps and dense output.

use std::ops::AddAssign;

use autodiff::{Element, Tape, Tensor, Var};

use crate::dynamics::check_output;
use crate::linalg::{Gmres, Lu};
use crate::options::{Scheme, Stepping};
use crate::tableau::{SdirkTableau, Tableau};
use crate::{Dynamics, OdeError, Options};

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
    /// [`Options::record_steps`].
    pub steps: Vec<E>,
    /// The state at the end of each accepted step (matching `steps`); filled only with
    /// [`Options::record_step_states`].
    pub step_states: Vec<Vec<Tensor<E>>>,
}

impl<E: Element> Solution<E> {
    /// The state at the last save time.
    pub fn last(&self) -> &[Tensor<E>] {
        self.states
            .last()
            .expect("a solution has at least the initial state")
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
/// between by dense output: Dormand–Prince's continuous extension for Dopri5, cubic Hermite
/// interpolation for Bosh3 and the implicit methods (as accurate as the methods). Methods of
/// order ≥ 4 without a continuous extension (Tsit5, Dopri8) instead shorten the steps to
/// land on every save time, since a cubic interpolant would spoil their accuracy. Fixed-step
/// solves take their steps between consecutive save times (see [`Stepping`]).
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
    opts: &Options<E>,
) -> Result<Solution<E>, OdeError> {
    opts.validate(z0.len())?;
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
    let mut rhs = Rhs::new(f, &tape, pvars, z0);
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
            Scheme::Implicit(tab) => Box::new(Sdirk::new(tab, z0)),
        };
        let cfg = Control::new(opts, z0.len());
        match opts.stepping {
            Stepping::Adaptive => {
                adaptive(&mut rhs, stepper.as_mut(), z0, times, opts, &cfg, &mut out)?
            }
            Stepping::Steps(n) => fixed(
                &mut rhs,
                stepper.as_mut(),
                z0,
                times,
                |_| n,
                opts,
                &cfg,
                &mut out,
            )?,
            Stepping::StepSize(h) => {
                let h = h.to_f64();
                let count =
                    move |dt: f64| ((dt.abs() / h) * (1.0 - 1e-12)).ceil().max(1.0) as usize;
                fixed(
                    &mut rhs,
                    stepper.as_mut(),
                    z0,
                    times,
                    count,
                    opts,
                    &cfg,
                    &mut out,
                )?
            }
        }
    }
    let mut stats = out.stats;
    stats.nfe = rhs.nfe;
    stats.njvp = rhs.njvp;
    Ok(Solution {
        states: out.states,
        times: times.to_vec(),
        stats,
        steps: out.steps,
        step_states: out.step_states,
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

// ------------------------------------------------------------------------ the dynamics

/// The state variables and outputs of an evaluation kept on the tape for Jacobian products.
type Linearization<'t, E> = (Vec<Var<'t, E>>, Vec<Var<'t, E>>);

/// Evaluates the dynamics on the scratch tape and copies the results out.
struct Rhs<'t, 'f, E: Element> {
    f: &'f dyn Dynamics<E>,
    tape: &'t Tape<E>,
    params: Vec<Var<'t, E>>,
    shapes: Vec<(usize, usize)>,
    /// Tape length to truncate back to after each evaluation (the parameters, plus a recorded
    /// linearisation while one is active).
    base: usize,
    mark: usize,
    lin: Option<Linearization<'t, E>>,
    nfe: usize,
    njvp: usize,
}

impl<'t, 'f, E: Element> Rhs<'t, 'f, E> {
    fn new(
        f: &'f dyn Dynamics<E>,
        tape: &'t Tape<E>,
        params: Vec<Var<'t, E>>,
        z0: &[Tensor<E>],
    ) -> Self {
        let mark = tape.len();
        Rhs {
            f,
            tape,
            params,
            shapes: z0.iter().map(|z| z.shape()).collect(),
            base: mark,
            mark,
            lin: None,
            nfe: 0,
            njvp: 0,
        }
    }

    fn record(&mut self, t: E, y: &[Tensor<E>]) -> (Vec<Var<'t, E>>, Vec<Var<'t, E>>) {
        let tv = self.tape.var(Tensor::scalar(t));
        let zv: Vec<Var<'t, E>> = y.iter().map(|c| self.tape.var_from(c)).collect();
        let fo = self.f.eval(self.tape, tv, &zv, &self.params);
        let shapes: Vec<(usize, usize)> = fo.iter().map(|v| v.shape()).collect();
        check_output(&shapes, &self.shapes);
        self.nfe += 1;
        (zv, fo)
    }

    /// `out = f(t, y)`.
    fn eval(&mut self, t: E, y: &[Tensor<E>], out: &mut [Tensor<E>]) {
        self.tape.truncate(self.base);
        let (_, fo) = self.record(t, y);
        for (o, v) in out.iter_mut().zip(&fo) {
            v.with_value(|val| o.copy_from(val));
        }
        self.tape.truncate(self.base);
    }

    /// Records `f(t, y)` and keeps it on the tape for Jacobian products; writes `f(t, y)`.
    fn linearize(&mut self, t: E, y: &[Tensor<E>], out: &mut [Tensor<E>]) {
        self.release();
        let (zv, fo) = self.record(t, y);
        for (o, v) in out.iter_mut().zip(&fo) {
            v.with_value(|val| o.copy_from(val));
        }
        self.lin = Some((zv, fo));
        self.base = self.tape.len();
    }

    fn release(&mut self) {
        self.lin = None;
        self.base = self.mark;
        self.tape.truncate(self.mark);
    }

    /// `out = J v` (flattened) at the recorded linearisation point, by one forward sweep.
    fn jvp(&mut self, v: &[f64], out: &mut [f64]) {
        let (zv, fo) = self.lin.as_ref().expect("jvp without a linearisation");
        let mut off = 0;
        let tangents: Vec<Var<'t, E>> = self
            .shapes
            .iter()
            .map(|&(r, c)| {
                let t = Tensor::from_fn(r, c, |i, j| E::from_f64(v[off + i * c + j]));
                off += r * c;
                self.tape.constant(t)
            })
            .collect();
        let res = self
            .tape
            .jvp(fo, zv, &tangents)
            .expect("jvp of the dynamics failed");
        let mut off = 0;
        for r in &res {
            r.with_value(|val| {
                for (o, x) in out[off..off + val.len()].iter_mut().zip(val.as_slice()) {
                    *o = x.to_f64();
                }
                off += val.len();
            });
        }
        self.tape.truncate(self.base);
        self.njvp += 1;
    }
}

// ------------------------------------------------------------------- state arithmetic

fn alloc_like<E: Element>(z: &[Tensor<E>]) -> Vec<Tensor<E>> {
    z.iter()
        .map(|c| Tensor::zeros(c.rows(), c.cols()))
        .collect()
}

/// `out = y + h Σ_j w_j k_j` (terms with `w_j = 0` are skipped).
fn combine<E: Element>(
    out: &mut [Tensor<E>],
    y: &[Tensor<E>],
    h: E,
    w: &[f64],
    k: &[Vec<Tensor<E>>],
) {
    for (ch, o) in out.iter_mut().enumerate() {
        o.copy_from(&y[ch]);
        for (j, &wj) in w.iter().enumerate() {
            if wj != 0.0 {
                o.axpy(h * E::from_f64(wj), &k[j][ch]);
            }
        }
    }
}

/// `out = h Σ_j w_j k_j`.
fn combine_diff<E: Element>(out: &mut [Tensor<E>], h: E, w: &[f64], k: &[Vec<Tensor<E>>]) {
    for (ch, o) in out.iter_mut().enumerate() {
        o.fill(E::ZERO);
        for (j, &wj) in w.iter().enumerate() {
            if wj != 0.0 {
                o.axpy(h * E::from_f64(wj), &k[j][ch]);
            }
        }
    }
}

fn finite<E: Element>(z: &[Tensor<E>]) -> bool {
    z.iter().all(|c| c.all_finite())
}

fn flatten<E: Element>(z: &[Tensor<E>], out: &mut [f64]) {
    let mut off = 0;
    for c in z {
        for (o, x) in out[off..off + c.len()].iter_mut().zip(c.as_slice()) {
            *o = x.to_f64();
        }
        off += c.len();
    }
}

fn unflatten<E: Element>(v: &[f64], out: &mut [Tensor<E>]) {
    let mut off = 0;
    for c in out {
        let n = c.len();
        for (o, x) in c.as_mut_slice().iter_mut().zip(&v[off..off + n]) {
            *o = E::from_f64(*x);
        }
        off += n;
    }
}

/// Error-control settings shared by the steppers.
struct Control {
    rtol: f64,
    atol: f64,
    /// Channels that take part in error control.
    mask: Vec<bool>,
}

impl Control {
    fn new<E: Element>(o: &Options<E>, channels: usize) -> Self {
        Control {
            rtol: o.rtol.to_f64(),
            atol: o.atol.to_f64(),
            mask: o
                .error_channels
                .clone()
                .unwrap_or_else(|| vec![true; channels]),
        }
    }

    /// Hairer's scaled RMS norm `sqrt(mean_i (e_i / sc_i)²)` with
    /// `sc_i = atol + rtol · max(|a_i|, |b_i|)`, over the masked channels (Hairer, Nørsett &
    /// Wanner 1993, eq. II.4.11); `all` takes every channel.
    ///
    /// A component with `sc_i = 0` (`atol = 0` and the component exactly zero at both ends)
    /// has no scale to be measured against and is left out of the sum, so pure relative control
    /// of a state with exact zeros is well defined instead of `0/0`. The sum is rescaled when
    /// the squares would overflow, so a huge but finite state or derivative gives a huge but
    /// finite norm.
    fn norm<E: Element>(
        &self,
        e: &[Tensor<E>],
        a: &[Tensor<E>],
        b: &[Tensor<E>],
        all: bool,
    ) -> f64 {
        let ratios = || {
            (0..e.len())
                .filter(move |&ch| all || self.mask[ch])
                .flat_map(move |ch| {
                    e[ch]
                        .as_slice()
                        .iter()
                        .zip(a[ch].as_slice())
                        .zip(b[ch].as_slice())
                        .map(move |((x, p), q)| {
                            let sc = self.atol + self.rtol * p.to_f64().abs().max(q.to_f64().abs());
                            let x = x.to_f64();
                            if sc == 0.0 {
                                0.0
                            } else {
                                x / sc
                            }
                        })
                })
        };
        let count: usize = (0..e.len())
            .filter(|&ch| all || self.mask[ch])
            .map(|ch| e[ch].len())
            .sum();
        if count == 0 {
            return 0.0;
        }
        let sum: f64 = ratios().map(|r| r * r).sum();
        if sum.is_finite() {
            return (sum / count as f64).sqrt();
        }
        // Overflow (or a non-finite ratio): scale by the largest ratio first.
        let big = ratios().fold(0.0f64, |m, r| m.max(r.abs()));
        if !big.is_finite() {
            return big;
        }
        let sum: f64 = ratios().map(|r| (r / big) * (r / big)).sum();
        big * (sum / count as f64).sqrt()
    }
}

// ------------------------------------------------------------------------- steppers

/// What an attempted step produced.
enum Outcome {
    /// The candidate is in the stepper; the scaled error norm (0 when not requested).
    Done(f64),
    /// A stage, the candidate or the error estimate was NaN or infinite.
    NonFinite,
    /// The Newton iteration of an implicit method did not converge.
    NewtonFailed,
}

/// A one-step method: attempts steps from the current state, keeps the candidate, and
/// interpolates inside the last attempted step.
#[allow(clippy::too_many_arguments)]
trait Stepper<E: Element> {
    /// Order of the propagated solution (for the initial step size).
    fn order(&self) -> usize;
    /// Whether interpolation is as accurate as the method (else steps stop at save times).
    fn dense_ok(&self) -> bool;
    /// Exponent denominator `q + 1` of the error estimate.
    fn error_exponent(&self) -> f64;
    /// `f(t, y)` at the current point (evaluated if not known yet).
    fn f0(&mut self, rhs: &mut Rhs<'_, '_, E>, t: E, y: &[Tensor<E>]) -> &[Tensor<E>];
    /// Attempts a step of signed size `h`.
    fn attempt(
        &mut self,
        rhs: &mut Rhs<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        cfg: &Control,
        stats: &mut Stats,
    ) -> Outcome;
    /// The candidate state `y₁` of the last attempt.
    fn candidate(&self) -> &[Tensor<E>];
    /// Writes `y(t + θh)` for the last attempted (accepted) step into `out`.
    fn interpolate(
        &mut self,
        rhs: &mut Rhs<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        theta: f64,
        out: &mut [Tensor<E>],
    );
    /// Accepts the last attempt: swaps the candidate into `y`.
    fn accept(&mut self, y: &mut Vec<Tensor<E>>);
}

/// Cubic Hermite interpolation from values and derivatives at both ends of a step.
fn hermite<E: Element>(
    y0: &[Tensor<E>],
    y1: &[Tensor<E>],
    f0: &[Tensor<E>],
    f1: &[Tensor<E>],
    h: E,
    theta: f64,
    out: &mut [Tensor<E>],
) {
    let (t2, t3) = (theta * theta, theta * theta * theta);
    let h00 = E::from_f64(2.0 * t3 - 3.0 * t2 + 1.0);
    let h10 = h * E::from_f64(t3 - 2.0 * t2 + theta);
    let h01 = E::from_f64(-2.0 * t3 + 3.0 * t2);
    let h11 = h * E::from_f64(t3 - t2);
    for ch in 0..out.len() {
        let o = out[ch].as_mut_slice();
        let (a, b, c, d) = (
            y0[ch].as_slice(),
            y1[ch].as_slice(),
            f0[ch].as_slice(),
            f1[ch].as_slice(),
        );
        for i in 0..o.len() {
            o[i] = h00 * a[i] + h10 * c[i] + h01 * b[i] + h11 * d[i];
        }
    }
}

/// The generic explicit Runge–Kutta stepper over a [`Tableau`], exploiting FSAL. All stage
/// buffers are allocated once per solve.
struct Erk<E: Element> {
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
    fn new(tab: &'static Tableau, z0: &[Tensor<E>]) -> Self {
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

    fn f0(&mut self, rhs: &mut Rhs<'_, '_, E>, t: E, y: &[Tensor<E>]) -> &[Tensor<E>] {
        if !self.f0_valid {
            rhs.eval(t, y, &mut self.k[0]);
            self.f0_valid = true;
        }
        &self.k[0]
    }

    fn attempt(
        &mut self,
        rhs: &mut Rhs<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        cfg: &Control,
        _stats: &mut Stats,
    ) -> Outcome {
        self.f0(rhs, t, y);
        if !finite(&self.k[0]) {
            return Outcome::NonFinite;
        }
        let tab = self.tab;
        let s = tab.stages();
        for i in 1..s {
            combine(&mut self.ytmp, y, h, tab.a[i], &self.k);
            let ti = t + h * E::from_f64(tab.c[i]);
            let rest = &mut self.k[i..];
            rhs.eval(ti, &self.ytmp, &mut rest[0]);
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
                err = cfg.norm(&self.err, y, &self.ynew, false);
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
        rhs: &mut Rhs<'_, '_, E>,
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
                rhs.eval(t + h, &self.ynew, &mut self.fnew);
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
struct Sdirk<E: Element> {
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
    fn new(tab: &'static SdirkTableau, z0: &[Tensor<E>]) -> Self {
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
        rhs: &mut Rhs<'_, '_, E>,
        t: E,
        y: &[Tensor<E>],
        h: f64,
        stats: &mut Stats,
    ) -> bool {
        rhs.linearize(t, y, &mut self.f0);
        self.f0_valid = true;
        stats.njac += 1;
        self.hg = h * self.tab.gamma;
        let n = self.n;
        if let Some(lu) = &mut self.lu {
            for j in 0..n {
                self.col.fill(0.0);
                self.col[j] = 1.0;
                rhs.jvp(&self.col, &mut self.r);
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
    fn lin_solve(&mut self, rhs: &mut Rhs<'_, '_, E>, stats: &mut Stats) {
        stats.linear_solves += 1;
        if let Some(lu) = &self.lu {
            self.dx.copy_from_slice(&self.r);
            lu.solve(&mut self.dx);
            return;
        }
        let hg = self.hg;
        let gm = self.gmres.as_mut().expect("dense or matrix-free");
        let mut op = |v: &[f64], out: &mut [f64]| {
            rhs.jvp(v, out);
            for (o, x) in out.iter_mut().zip(v) {
                *o = x - hg * *o;
            }
        };
        gm.solve(&mut op, &self.r, &mut self.dx, 1e-10, 500);
    }

    /// Runs the Newton iteration of stage `i`; leaves `Y` in `self.ys`.
    fn newton(
        &mut self,
        rhs: &mut Rhs<'_, '_, E>,
        ti: E,
        cfg: &Control,
        stats: &mut Stats,
    ) -> Outcome {
        let kappa = (10.0 * f64::EPSILON / cfg.rtol.max(1e-300)).max(cfg.rtol.sqrt().min(0.03));
        let hg = E::from_f64(self.hg);
        for (y, b) in self.ys.iter_mut().zip(&self.base) {
            y.copy_from(b);
        }
        let mut eta = self.eta.max(f64::EPSILON).powf(0.8);
        let mut prev = 0.0;
        for it in 0..10 {
            stats.newton_iters += 1;
            rhs.eval(ti, &self.ys, &mut self.fs);
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
            self.lin_solve(rhs, stats);
            let mut sum = 0.0;
            let mut off = 0;
            for y in &mut self.ys {
                for (i, v) in y.as_mut_slice().iter_mut().enumerate() {
                    let d = self.dx[off + i];
                    *v += E::from_f64(d);
                    let sc = cfg.atol + cfg.rtol * v.to_f64().abs();
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

    fn f0(&mut self, rhs: &mut Rhs<'_, '_, E>, t: E, y: &[Tensor<E>]) -> &[Tensor<E>] {
        if !self.f0_valid {
            rhs.eval(t, y, &mut self.f0);
            self.f0_valid = true;
        }
        &self.f0
    }

    fn attempt(
        &mut self,
        rhs: &mut Rhs<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        cfg: &Control,
        stats: &mut Stats,
    ) -> Outcome {
        let out = self.attempt_inner(rhs, t, h, y, want_err, cfg, stats);
        rhs.release();
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
        _rhs: &mut Rhs<'_, '_, E>,
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
        rhs: &mut Rhs<'_, '_, E>,
        t: E,
        h: E,
        y: &[Tensor<E>],
        want_err: bool,
        cfg: &Control,
        stats: &mut Stats,
    ) -> Outcome {
        if !self.prepare(rhs, t, y, h.to_f64(), stats) {
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
            match self.newton(rhs, ti, cfg, stats) {
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
            self.lin_solve(rhs, stats);
            unflatten(&self.dx, &mut self.err);
            err = cfg.norm(&self.err, y, &self.ynew, false);
            if !err.is_finite() {
                return Outcome::NonFinite;
            }
        }
        Outcome::Done(err)
    }
}

// --------------------------------------------------------------------------- drivers

struct Output<E: Element> {
    states: Vec<Vec<Tensor<E>>>,
    steps: Vec<E>,
    record: bool,
    step_states: Vec<Vec<Tensor<E>>>,
    record_states: bool,
    stats: Stats,
}

/// Fixed steps: `count(Δt)` equal steps between consecutive save times.
#[allow(clippy::too_many_arguments)]
fn fixed<E: Element>(
    rhs: &mut Rhs<'_, '_, E>,
    st: &mut dyn Stepper<E>,
    z0: &[Tensor<E>],
    times: &[E],
    count: impl Fn(f64) -> usize,
    opts: &Options<E>,
    cfg: &Control,
    out: &mut Output<E>,
) -> Result<(), OdeError> {
    let mut y = z0.to_vec();
    let mut attempted = 0usize;
    for w in times.windows(2) {
        let (ta, tb) = (w[0], w[1]);
        let n = count((tb - ta).to_f64());
        let h = (tb - ta) / E::from_usize(n);
        for j in 0..n {
            if attempted >= opts.max_steps {
                return Err(OdeError::MaxSteps {
                    t: (ta + h * E::from_usize(j)).to_f64(),
                    steps: attempted,
                });
            }
            let t = ta + h * E::from_usize(j);
            let outcome = st.attempt(rhs, t, h, &y, false, cfg, &mut out.stats);
            attempted += 1;
            match outcome {
                Outcome::Done(_) => {}
                Outcome::NonFinite => {
                    return Err(OdeError::NonFinite {
                        t: t.to_f64(),
                        step: attempted - 1,
                    })
                }
                Outcome::NewtonFailed => {
                    return Err(OdeError::NewtonDiverged {
                        t: t.to_f64(),
                        h: h.to_f64(),
                    })
                }
            }
            st.accept(&mut y);
            out.stats.accepted += 1;
            out.stats.last_step = h.to_f64();
            if out.record {
                out.steps.push(if j + 1 == n {
                    tb
                } else {
                    ta + h * E::from_usize(j + 1)
                });
            }
            if out.record_states {
                out.step_states.push(y.clone());
            }
        }
        out.states.push(y.clone());
    }
    Ok(())
}

/// Constants of the step-size controller.
///
/// PI control `h_new = h · safety · err^(−α) · err_prev^β` with `α = 0.7/k`, `β = 0.4/k`,
/// `k = q + 1` the exponent of the error estimate (Gustafsson 1991; Hairer & Wanner 1996,
/// Section IV.2), after a rejection pure I control `safety · err^(−1/k)` and no growth for
/// the next step; factors clamped to `[0.2, 10]`, safety 0.9.
const SAFETY: f64 = 0.9;
const FAC_MIN: f64 = 0.2;
const FAC_MAX: f64 = 10.0;

/// Hairer's initial step (Hairer, Nørsett & Wanner 1993, Section II.4, algorithm "starting
/// step size"); returns a magnitude.
#[allow(clippy::too_many_arguments)]
fn initial_step<E: Element>(
    rhs: &mut Rhs<'_, '_, E>,
    st: &mut dyn Stepper<E>,
    t0: E,
    y0: &[Tensor<E>],
    dir: f64,
    span: f64,
    max_step: f64,
    cfg: &Control,
) -> f64 {
    let order = st.order();
    let f0 = st.f0(rhs, t0, y0).to_vec();
    let d0 = cfg.norm(y0, y0, y0, false);
    // ‖f0‖ and ‖f1 − f0‖ with the scale of y0.
    let scaled = |v: &[Tensor<E>]| cfg.norm(v, y0, y0, false);
    let d1 = scaled(&f0);
    let mut h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    // A derivative so large that d0/d1 underflows still needs a positive first step.
    if !(h0 > 0.0 && h0.is_finite()) {
        h0 = f64::MIN_POSITIVE.max(1e-12 * span);
    }
    h0 = h0.min(max_step).min(span);
    let mut y1 = y0.to_vec();
    for (a, f) in y1.iter_mut().zip(&f0) {
        a.axpy(E::from_f64(dir * h0), f);
    }
    let mut f1 = alloc_like(y0);
    rhs.eval(t0 + E::from_f64(dir * h0), &y1, &mut f1);
    for (a, b) in f1.iter_mut().zip(&f0) {
        a.axpy(-E::ONE, b);
    }
    let d2 = scaled(&f1) / h0;
    if !(d1.is_finite() && d2.is_finite()) {
        return h0;
    }
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / (order as f64 + 1.0))
    };
    (100.0 * h0).min(h1).min(max_step).min(span)
}

/// Adaptive stepping over `[times[0], times[last]]` with dense output at the save times.
fn adaptive<E: Element>(
    rhs: &mut Rhs<'_, '_, E>,
    st: &mut dyn Stepper<E>,
    z0: &[Tensor<E>],
    times: &[E],
    opts: &Options<E>,
    cfg: &Control,
    out: &mut Output<E>,
) -> Result<(), OdeError> {
    let t0 = times[0];
    let t_end = *times.last().expect("checked");
    let dir = if t_end > t0 { 1.0 } else { -1.0 };
    let span = (t_end - t0).to_f64().abs();
    let max_step = opts.max_step.map_or(f64::INFINITY, |h| h.to_f64());
    let min_step = opts.min_step.to_f64();
    let k = st.error_exponent();
    let (alpha, beta) = (0.7 / k, 0.4 / k);

    let mut y = z0.to_vec();
    let mut t = t0;
    if !finite(st.f0(rhs, t, &y)) {
        return Err(OdeError::NonFinite {
            t: t.to_f64(),
            step: 0,
        });
    }
    let mut h = match opts.first_step {
        Some(h) => h.to_f64().min(span),
        None => initial_step(rhs, st, t, &y, dir, span, max_step, cfg),
    };
    let mut next = 1usize;
    let mut attempted = 0usize;
    let mut err_prev = 1.0f64;
    let mut rejected_last = false;
    let mut interp = alloc_like(z0);
    let dense_ok = st.dense_ok();
    while next < times.len() {
        h = h.min(max_step);
        // Steps end exactly at the last time, or at every save time when interpolation would
        // be less accurate than the method.
        let target = if dense_ok { t_end } else { times[next] };
        let remaining = (target - t).to_f64() * dir;
        // Land exactly on the target; stretch a step that would leave a sliver behind.
        let last = h >= remaining * (1.0 - 1e-12) || h * 1.01 >= remaining;
        let h_step = if last { remaining } else { h };
        if attempted >= opts.max_steps {
            return Err(OdeError::MaxSteps {
                t: t.to_f64(),
                steps: attempted,
            });
        }
        let hs = E::from_f64(dir * h_step);
        let t_new = if last { target } else { t + hs };
        if !last && (h < min_step || t_new == t) {
            return Err(OdeError::StepSizeUnderflow {
                t: t.to_f64(),
                h: dir * h,
            });
        }
        let outcome = st.attempt(rhs, t, hs, &y, true, cfg, &mut out.stats);
        attempted += 1;
        let err = match outcome {
            Outcome::Done(e) => e,
            Outcome::NonFinite => {
                return Err(OdeError::NonFinite {
                    t: t.to_f64(),
                    step: attempted - 1,
                })
            }
            Outcome::NewtonFailed => {
                out.stats.rejected += 1;
                rejected_last = true;
                h = h_step * 0.5;
                if h < min_step || t + E::from_f64(dir * h) == t || h <= 1e-14 * span {
                    return Err(OdeError::NewtonDiverged {
                        t: t.to_f64(),
                        h: dir * h_step,
                    });
                }
                continue;
            }
        };
        if err <= 1.0 {
            // Save times inside (t, t_new]: exact at the end of the step, dense output inside.
            while next < times.len() && (times[next] - t_new).to_f64() * dir <= 0.0 {
                if times[next] == t_new {
                    out.states.push(st.candidate().to_vec());
                } else {
                    let theta = (times[next] - t).to_f64() / hs.to_f64();
                    st.interpolate(rhs, t, hs, &y, theta, &mut interp);
                    out.states.push(interp.clone());
                }
                next += 1;
            }
            st.accept(&mut y);
            t = t_new;
            out.stats.accepted += 1;
            out.stats.last_step = hs.to_f64();
            if out.record {
                out.steps.push(t);
            }
            if out.record_states {
                out.step_states.push(y.clone());
            }
            let mut fac = SAFETY * err.max(1e-10).powf(-alpha) * err_prev.powf(beta);
            fac = fac.clamp(FAC_MIN, FAC_MAX);
            if rejected_last {
                fac = fac.min(1.0);
            }
            err_prev = err.max(1e-4);
            rejected_last = false;
            // A step shortened to hit a save time does not shrink the next one.
            h = if last && h_step < h {
                (h_step * fac).max(h.min(h_step * FAC_MAX))
            } else {
                h_step * fac
            };
        } else {
            out.stats.rejected += 1;
            rejected_last = true;
            let fac = (SAFETY * err.powf(-1.0 / k)).clamp(FAC_MIN, 1.0);
            h = h_step * fac;
            if h < min_step || t + E::from_f64(dir * h) == t {
                return Err(OdeError::StepSizeUnderflow {
                    t: t.to_f64(),
                    h: dir * h,
                });
            }
        }
    }
    Ok(())
}
