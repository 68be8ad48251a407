//! `odeint`: an ODE solve recorded as ONE differentiable node on the tape.
//!
//! The forward pass runs [`solve`](crate::solve) on plain values; no tape runs through the
//! solver. The node's VJP integrates the adjoint system backwards (Chen et al. 2018,
//! Algorithm 1) and its JVP integrates the forward-sensitivity system; both are themselves
//! `odeint` calls on the same tape, so derivatives of any order pass through a solve.

use std::cell::RefCell;
use std::rc::Rc;

use autodiff::{CustomOp, Element, Tape, TapeFn, Tensor, Var};

use crate::adjoint::{self, AdjointDynamics, SensitivityDynamics};
use crate::solve::check_times;
use crate::{direct, solve, Dynamics, OdeError, Options, Stats};

/// How the VJP (reverse-mode derivative) of a solve is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Adjoint {
    /// Chen et al. 2018, Algorithm 1: the augmented state `[z, a, ∂L/∂θ]` integrated backwards
    /// from each save time to the previous one, `z` reset to its stored forward value at every
    /// save time. Memory does not grow with the number of steps, and the VJP is itself an
    /// `odeint` call, so it can be differentiated again.
    #[default]
    Backsolve,
    /// Checkpoints stored on the forward pass (`checkpoints` per save interval, evenly spaced in
    /// time). The backward pass re-solves each segment forward from its checkpoint and
    /// integrates `[a, ∂L/∂θ]` backwards against a cubic Hermite interpolant of that re-solve,
    /// so `z` is never reconstructed backwards: stable for dynamics that are not reversible in
    /// practice. A segment of more than a few steps is first split the same way, recursively
    /// (Griewank 1992's recursive checkpointing), so memory holds `checkpoints` states per
    /// level and a short trajectory, not the whole solve. Gives first derivatives only (a
    /// request for a differentiable VJP is an error; use `Backsolve` or `Direct` for higher
    /// order).
    /// With `Stepping::Steps(n)`, each checkpoint segment takes `⌈n / checkpoints⌉` steps.
    Checkpointed {
        /// Checkpoints per save interval (at least 1).
        checkpoints: usize,
    },
    /// Discretise-then-optimise: the solver's accepted steps are replayed with tape operations,
    /// so the gradient is the exact derivative of the discrete solution (step sizes held
    /// fixed). Memory grows with the number of steps; the reference the others are checked
    /// against.
    Direct,
}

/// Function evaluations and steps of one `odeint` call, by phase: its forward solve, the
/// first-order derivative rules (adjoint VJPs and sensitivity JVPs), and everything nested
/// deeper (derivatives of those derivatives), filled in as they happen.
///
/// `nfe` counts every evaluation of the dynamics given to `odeint`, wherever it happens: in
/// the solves, in the time-gradient and sensitivity terms evaluated at the save times, and in
/// the re-evaluations that make a derivative differentiable again. The step counters sum the
/// solves of each phase.
#[derive(Clone, Debug, Default)]
pub struct OdeStats(Rc<RefCell<StatsInner>>);

#[derive(Debug, Default)]
struct StatsInner {
    /// Summed solver statistics per phase (forward, backward, nested).
    solves: [Stats; 3],
    /// Evaluations of the user's dynamics per phase.
    evals: [usize; 3],
    /// The phase that evaluations count towards now; `None` outside the op's own rules, where
    /// only a derivative of a recorded derivative can evaluate the dynamics (nested).
    phase: Option<usize>,
}

/// Phase indices of [`OdeStats`].
pub(crate) const FORWARD: usize = 0;
pub(crate) const BACKWARD: usize = 1;
const NESTED: usize = 2;

impl OdeStats {
    fn phase_stats(&self, phase: usize) -> Stats {
        let inner = self.0.borrow();
        let mut s = inner.solves[phase];
        s.nfe = inner.evals[phase];
        s
    }

    /// Statistics of the forward solve.
    pub fn forward(&self) -> Stats {
        self.phase_stats(FORWARD)
    }

    /// Statistics of the first-order derivative passes run so far (adjoint VJPs and
    /// sensitivity JVPs of this solve).
    pub fn backward(&self) -> Stats {
        self.phase_stats(BACKWARD)
    }

    /// Statistics of higher-order derivative passes: the derivatives of the adjoint and
    /// sensitivity solves (Hessian-vector products, gradients of gradients).
    pub fn nested(&self) -> Stats {
        self.phase_stats(NESTED)
    }

    /// All phases together.
    pub fn total(&self) -> Stats {
        let mut s = self.forward();
        s += self.backward();
        s += self.nested();
        s.nfe = self.0.borrow().evals.iter().sum();
        s
    }

    /// Adds the statistics of a solve to `phase` (capped at nested).
    pub(crate) fn add_solve(&self, phase: usize, s: Stats) {
        self.0.borrow_mut().solves[phase.min(NESTED)] += s;
    }

    /// Counts one evaluation of the user's dynamics in the current phase.
    fn count_eval(&self) {
        let mut inner = self.0.borrow_mut();
        let phase = inner.phase.unwrap_or(NESTED).min(NESTED);
        inner.evals[phase] += 1;
    }

    /// Makes evaluations count towards `phase` until the guard is dropped.
    pub(crate) fn enter(&self, phase: usize) -> PhaseGuard {
        let prev = self.0.borrow_mut().phase.replace(phase.min(NESTED));
        PhaseGuard {
            stats: self.clone(),
            prev,
        }
    }
}

/// Restores the previous phase of an [`OdeStats`] when dropped.
pub(crate) struct PhaseGuard {
    stats: OdeStats,
    prev: Option<usize>,
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.stats.0.borrow_mut().phase = self.prev;
    }
}

/// The user's dynamics with every evaluation counted in an [`OdeStats`].
pub(crate) struct Counted<E: Element> {
    pub(crate) f: Rc<dyn Dynamics<E>>,
    pub(crate) stats: OdeStats,
}

impl<E: Element> Dynamics<E> for Counted<E> {
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        z: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> Vec<Var<'t, E>> {
        self.stats.count_eval();
        self.f.eval(tape, t, z, params)
    }
}

/// Where an `odeint` node sits: the statistics it reports into, how many derivative levels
/// deep it was created, and the label its errors carry.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) stats: OdeStats,
    pub(crate) depth: usize,
    pub(crate) label: &'static str,
}

impl Context {
    /// The context of a solve run by one of this node's derivative rules.
    fn inner(&self, label: &'static str) -> Context {
        Context {
            stats: self.stats.clone(),
            depth: self.depth + 1,
            label,
        }
    }
}

/// The result of [`odeint`]: the state at every save time, as tape variables.
#[derive(Debug)]
pub struct OdeSolution<'t, E: Element> {
    /// `states[k][c]`: channel `c` of the state at save time `k` (`states[0]` is `z0`).
    pub states: Vec<Vec<Var<'t, E>>>,
    /// Forward and backward statistics (backward ones fill in when the tape is differentiated).
    pub stats: OdeStats,
}

impl<'t, E: Element> OdeSolution<'t, E> {
    /// The state at the last save time.
    pub fn last(&self) -> &[Var<'t, E>] {
        self.states.last().expect("at least the initial state")
    }
}

/// Save times: plain values, or tape variables (then gradients reach them).
#[derive(Clone, Debug)]
pub enum Times<'t, E: Element> {
    /// Fixed times.
    Values(Vec<E>),
    /// Differentiable `1 × 1` times.
    Vars(Vec<Var<'t, E>>),
}

impl<'t, E: Element> Times<'t, E> {
    fn values(&self) -> Vec<E> {
        match self {
            Times::Values(v) => v.clone(),
            Times::Vars(v) => v
                .iter()
                .map(|t| {
                    assert_eq!(
                        t.shape(),
                        (1, 1),
                        "odeint: time variables must be 1x1, got {:?}",
                        t.shape()
                    );
                    t.item()
                })
                .collect(),
        }
    }
}

impl<'t, E: Element> From<&[E]> for Times<'t, E> {
    fn from(v: &[E]) -> Self {
        Times::Values(v.to_vec())
    }
}
impl<'t, E: Element> From<Vec<E>> for Times<'t, E> {
    fn from(v: Vec<E>) -> Self {
        Times::Values(v)
    }
}
impl<'t, E: Element, const N: usize> From<[E; N]> for Times<'t, E> {
    fn from(v: [E; N]) -> Self {
        Times::Values(v.to_vec())
    }
}
impl<'t, E: Element, const N: usize> From<&[E; N]> for Times<'t, E> {
    fn from(v: &[E; N]) -> Self {
        Times::Values(v.to_vec())
    }
}
impl<'t, E: Element> From<&[Var<'t, E>]> for Times<'t, E> {
    fn from(v: &[Var<'t, E>]) -> Self {
        Times::Vars(v.to_vec())
    }
}
impl<'t, E: Element> From<Vec<Var<'t, E>>> for Times<'t, E> {
    fn from(v: Vec<Var<'t, E>>) -> Self {
        Times::Vars(v)
    }
}
impl<'t, E: Element, const N: usize> From<[Var<'t, E>; N]> for Times<'t, E> {
    fn from(v: [Var<'t, E>; N]) -> Self {
        Times::Vars(v.to_vec())
    }
}

/// Solves `dz/dt = f(t, z; θ)` from `z0` at `times[0]` and returns the state at every save time,
/// recorded as ONE node on `tape` (or, with [`Adjoint::Direct`], as the solver's steps).
///
/// Gradients reach `z0`, `params` and, when `times` are variables, the times
/// (`dL/dt_k = g_kᵀ f(z(t_k), t_k)` for the cotangent `g_k` of the state at `t_k`,
/// `dL/dt₀ = −a(t₀)ᵀ f(z(t₀), t₀)`). The strategy of the VJP is `opts`' adjoint setting.
///
/// ```
/// use std::rc::Rc;
/// use autodiff::{Tape, Tensor};
/// use ode::{dynamics, odeint, Dynamics, Options};
///
/// // dz/dt = −k z: z(1) = z0 e^{−k}, dz(1)/dk = −z0 e^{−k}.
/// let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|_tape, _t, z, p| vec![-(z[0] * p[0])]));
/// let tape = Tape::new();
/// let z0 = tape.var(Tensor::from_f64s(1, 1, &[2.0]));
/// let k = tape.var(Tensor::from_f64s(1, 1, &[0.5]));
/// let sol = odeint(&tape, &f, &[z0], &[k], [0.0, 1.0], &Options::dopri5(1e-10, 1e-10)).unwrap();
/// let z1 = sol.last()[0];
/// let g = tape.grad(z1.sum(), &[z0, k]).unwrap();
/// assert!((z1.item() - 2.0 * (-0.5f64).exp()).abs() < 1e-8);
/// assert!((g[1].item() + 2.0 * (-0.5f64).exp()).abs() < 1e-7);
/// ```
pub fn odeint<'t, E: Element>(
    tape: &'t Tape<E>,
    f: &Rc<dyn Dynamics<E>>,
    z0: &[Var<'t, E>],
    params: &[Var<'t, E>],
    times: impl Into<Times<'t, E>>,
    opts: &Options<E>,
) -> autodiff::Result<OdeSolution<'t, E>> {
    let times = times.into();
    let tv = times.values();
    let wrap = |e: OdeError| autodiff::Error::new("odeint", e);
    // Every strategy checks the user's times and options the same way, before any work (and
    // before the Checkpointed strategy divides the intervals into segments).
    check_times(&tv).map_err(wrap)?;
    opts.validate(z0.len()).map_err(wrap)?;
    if let Adjoint::Checkpointed { checkpoints: 0 } = opts.adjoint {
        return Err(wrap(OdeError::InvalidOptions(
            "Checkpointed adjoint needs at least one checkpoint per interval".into(),
        )));
    }
    let stats = OdeStats::default();
    let f: Rc<dyn Dynamics<E>> = Rc::new(Counted {
        f: f.clone(),
        stats: stats.clone(),
    });
    if opts.adjoint == Adjoint::Direct {
        return direct::odeint_direct(tape, &f, z0, params, &times, opts, stats);
    }
    let ctx = Context {
        stats,
        depth: 0,
        label: "odeint (forward solve)",
    };
    odeint_node(tape, &f, z0, params, times, opts, ctx)
}

/// Records the solve as one node (every strategy but `Direct`), in the given context.
pub(crate) fn odeint_node<'t, E: Element>(
    tape: &'t Tape<E>,
    f: &Rc<dyn Dynamics<E>>,
    z0: &[Var<'t, E>],
    params: &[Var<'t, E>],
    times: Times<'t, E>,
    opts: &Options<E>,
    ctx: Context,
) -> autodiff::Result<OdeSolution<'t, E>> {
    let tv = times.values();
    let c = z0.len();
    let stats = ctx.stats.clone();
    let op = Rc::new(OdeintOp {
        f: f.clone(),
        opts: opts.clone(),
        times: tv.clone(),
        n_state: c,
        n_params: params.len(),
        time_vars: matches!(times, Times::Vars(_)),
        ctx,
        saved: RefCell::new(None),
    });
    let mut inputs: Vec<Var<'t, E>> = z0.iter().chain(params).copied().collect();
    if let Times::Vars(t) = &times {
        inputs.extend(t);
    }
    let outs = tape.custom(op, &inputs)?;
    let mut states = vec![z0.to_vec()];
    states.extend(outs.chunks(c.max(1)).map(|s| s.to_vec()));
    if c == 0 {
        states.resize(tv.len(), Vec::new());
    }
    Ok(OdeSolution { states, stats })
}

/// What the `Checkpointed` strategy keeps from the forward pass.
pub(crate) struct Saved<E> {
    /// `(time, state)` checkpoints in forward order, save times included.
    pub(crate) checkpoints: Vec<(E, Vec<Tensor<E>>)>,
    /// Accepted steps of the forward solve in each checkpoint segment.
    pub(crate) seg_steps: Vec<usize>,
}

pub(crate) struct OdeintOp<E: Element> {
    pub(crate) f: Rc<dyn Dynamics<E>>,
    pub(crate) opts: Options<E>,
    pub(crate) times: Vec<E>,
    pub(crate) n_state: usize,
    pub(crate) n_params: usize,
    pub(crate) time_vars: bool,
    pub(crate) ctx: Context,
    pub(crate) saved: RefCell<Option<Saved<E>>>,
}

impl<E: Element> CustomOp<E> for OdeintOp<E> {
    fn name(&self) -> &str {
        "odeint"
    }

    fn forward(&self, inputs: &[&Tensor<E>]) -> autodiff::Result<Vec<Tensor<E>>> {
        let (c, p) = (self.n_state, self.n_params);
        let z0: Vec<Tensor<E>> = inputs[..c].iter().map(|t| (*t).clone()).collect();
        let theta: Vec<Tensor<E>> = inputs[c..c + p].iter().map(|t| (*t).clone()).collect();
        let label = self.ctx.label;
        let wrap = |e: OdeError| autodiff::Error::new(label, e);
        let stats = &self.ctx.stats;
        let phase = self.ctx.depth;
        let _phase = stats.enter(phase);
        let outs: Vec<Tensor<E>> = match self.opts.adjoint {
            Adjoint::Checkpointed { checkpoints } => {
                let fwd = adjoint::forward_with_checkpoints(
                    &*self.f,
                    &z0,
                    &theta,
                    &self.times,
                    &self.opts,
                    checkpoints,
                )
                .map_err(wrap)?;
                stats.add_solve(phase, fwd.stats);
                *self.saved.borrow_mut() = Some(fwd.saved);
                fwd.outs
            }
            _ => {
                let sol = solve(&*self.f, &z0, &theta, &self.times, &self.opts).map_err(wrap)?;
                stats.add_solve(phase, sol.stats);
                sol.states.into_iter().skip(1).flatten().collect()
            }
        };
        Ok(outs)
    }

    fn vjp<'t>(
        &self,
        x: &[Var<'t, E>],
        y: &[Var<'t, E>],
        g: &[Option<Var<'t, E>>],
        needs: &[bool],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        let _phase = self.ctx.stats.enter(self.ctx.depth + 1);
        match self.opts.adjoint {
            Adjoint::Checkpointed { .. } => {
                if x[0].tape().creates_graph() {
                    return Err(autodiff::Error::new(
                        "odeint (vjp)",
                        OdeError::InvalidOptions(
                            "the Checkpointed adjoint gives first derivatives only; use Adjoint::Backsolve or \
                             Adjoint::Direct to differentiate a gradient again"
                                .into(),
                        ),
                    ));
                }
                adjoint::checkpointed_vjp(self, x, y, g, needs)
            }
            _ => self.backsolve_vjp(x, y, g, needs),
        }
    }

    fn jvp<'t>(
        &self,
        x: &[Var<'t, E>],
        y: &[Var<'t, E>],
        t: &[Option<Var<'t, E>>],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        let _phase = self.ctx.stats.enter(self.ctx.depth + 1);
        self.sensitivity_jvp(x, y, t)
    }
}

impl<E: Element> OdeintOp<E> {
    /// The save time `k` as a `1 × 1` variable (the input variable when times are variables).
    pub(crate) fn time<'t>(&self, x: &[Var<'t, E>], k: usize) -> Var<'t, E> {
        if self.time_vars {
            x[self.n_state + self.n_params + k]
        } else {
            x[0].tape().scalar(self.times[k])
        }
    }

    /// The times of the interval from save time `from` to save time `to`.
    fn interval<'t>(&self, x: &[Var<'t, E>], from: usize, to: usize) -> Times<'t, E> {
        if self.time_vars {
            Times::Vars(vec![self.time(x, from), self.time(x, to)])
        } else {
            Times::Values(vec![self.times[from], self.times[to]])
        }
    }

    /// The state at save time `k`: the inputs for `k = 0`, the op's outputs after.
    pub(crate) fn state<'t>(
        &self,
        x: &[Var<'t, E>],
        y: &[Var<'t, E>],
        k: usize,
    ) -> Vec<Var<'t, E>> {
        let c = self.n_state;
        if k == 0 {
            x[..c].to_vec()
        } else {
            y[(k - 1) * c..k * c].to_vec()
        }
    }

    /// `f(z, t_k; θ)` recorded on the tape with `t_k`, `z` and `θ` as independent inputs of
    /// `f` (see [`eval_isolated`]).
    pub(crate) fn f_at<'t>(
        &self,
        x: &[Var<'t, E>],
        z: &[Var<'t, E>],
        k: usize,
    ) -> autodiff::Result<Vec<Var<'t, E>>> {
        let theta = &x[self.n_state..self.n_state + self.n_params];
        eval_isolated(&self.f, self.time(x, k), z, theta)
    }

    /// `Σ_c ⟨w_c, f(z_k, t_k)_c⟩` recorded on the tape: the derivative of `⟨w, z(t_k)⟩` with
    /// respect to `t_k`.
    pub(crate) fn dot_f<'t>(
        &self,
        x: &[Var<'t, E>],
        z: &[Var<'t, E>],
        k: usize,
        w: &[Option<Var<'t, E>>],
    ) -> autodiff::Result<Option<Var<'t, E>>> {
        if w.iter().all(|w| w.is_none()) {
            return Ok(None);
        }
        let fz = self.f_at(x, z, k)?;
        let mut acc: Option<Var<'t, E>> = None;
        for (wc, fc) in w.iter().zip(&fz) {
            if let Some(wc) = wc {
                let term = (*wc * *fc).sum();
                acc = Some(match acc {
                    None => term,
                    Some(a) => a + term,
                });
            }
        }
        Ok(acc)
    }

    /// Chen et al. 2018, Algorithm 1, one save interval at a time, each an `odeint` call of the
    /// augmented system (so the VJP is itself differentiable).
    fn backsolve_vjp<'t>(
        &self,
        x: &[Var<'t, E>],
        y: &[Var<'t, E>],
        g: &[Option<Var<'t, E>>],
        needs: &[bool],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        let tape = x[0].tape();
        let (c, p, n) = (self.n_state, self.n_params, self.times.len());
        let theta = &x[c..c + p];
        let cot = |k: usize| -> Vec<Option<Var<'t, E>>> {
            if k == 0 {
                vec![None; c]
            } else {
                g[(k - 1) * c..k * c].to_vec()
            }
        };
        let mut grads: Vec<Option<Var<'t, E>>> = vec![None; x.len()];
        if self.time_vars {
            for k in 1..n {
                if needs[c + p + k] {
                    grads[c + p + k] = self.dot_f(x, &self.state(x, y, k), k, &cot(k))?;
                }
            }
        }
        let need_theta = needs[c..c + p].iter().any(|&b| b);
        let last = self.state(x, y, n - 1);
        let mut a: Vec<Var<'t, E>> = cot(n - 1)
            .into_iter()
            .zip(&last)
            .map(|(g, z)| g.unwrap_or_else(|| zeros_like(*z)))
            .collect();
        let mut a_theta: Vec<Var<'t, E>> = if need_theta {
            theta.iter().map(|t| zeros_like(*t)).collect()
        } else {
            Vec::new()
        };
        let aug: Rc<dyn Dynamics<E>> = Rc::new(AdjointDynamics {
            f: self.f.clone(),
            n_state: c,
            with_params: need_theta,
        });
        let aug_opts = adjoint::adjoint_options(&self.opts, c, if need_theta { p } else { 0 });
        for k in (1..n).rev() {
            let mut init = self.state(x, y, k);
            init.extend(&a);
            init.extend(&a_theta);
            let sol = odeint_node(
                tape,
                &aug,
                &init,
                theta,
                self.interval(x, k, k - 1),
                &aug_opts,
                self.ctx
                    .inner("odeint (adjoint solve of the backward pass)"),
            )?;
            let end = sol.last();
            a = end[c..2 * c].to_vec();
            a_theta = end[2 * c..].to_vec();
            if k > 1 {
                for (ac, gc) in a.iter_mut().zip(cot(k - 1)) {
                    if let Some(gc) = gc {
                        *ac = *ac + gc;
                    }
                }
            }
        }
        if self.time_vars && needs[c + p] {
            let a_opt: Vec<Option<Var<'t, E>>> = a.iter().map(|v| Some(*v)).collect();
            grads[c + p] = self.dot_f(x, &x[..c], 0, &a_opt)?.map(|v| -v);
        }
        for (i, ai) in a.into_iter().enumerate() {
            if needs[i] {
                grads[i] = Some(ai);
            }
        }
        for (i, gi) in a_theta.into_iter().enumerate() {
            if needs[c + i] {
                grads[c + i] = Some(gi);
            }
        }
        Ok(grads)
    }

    /// Forward sensitivities: `[z, ż]` with `dż/dt = ∂f/∂z ż + ∂f/∂θ θ̇`, started from
    /// `ż₀ − f(z₀, t₀) ṫ₀`; the tangent at `t_k` adds `f(z_k, t_k) ṫ_k`. One `odeint` call.
    fn sensitivity_jvp<'t>(
        &self,
        x: &[Var<'t, E>],
        y: &[Var<'t, E>],
        t: &[Option<Var<'t, E>>],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        let tape = x[0].tape();
        let (c, p, n) = (self.n_state, self.n_params, self.times.len());
        let z0 = &x[..c];
        let theta = &x[c..c + p];
        let tdot = |k: usize| if self.time_vars { t[c + p + k] } else { None };
        let mut zd0: Vec<Var<'t, E>> = (0..c)
            .map(|i| t[i].unwrap_or_else(|| zeros_like(z0[i])))
            .collect();
        if let Some(t0d) = tdot(0) {
            let fz = self.f_at(x, z0, 0)?;
            for (zd, fc) in zd0.iter_mut().zip(fz) {
                *zd = *zd - fc * t0d;
            }
        }
        let with_params = t[c..c + p].iter().any(|t| t.is_some());
        let mut init = z0.to_vec();
        init.extend(&zd0);
        let mut ps = theta.to_vec();
        if with_params {
            ps.extend((0..p).map(|i| t[c + i].unwrap_or_else(|| zeros_like(theta[i]))));
        }
        let sens: Rc<dyn Dynamics<E>> = Rc::new(SensitivityDynamics {
            f: self.f.clone(),
            n_state: c,
            n_params: p,
            with_params,
        });
        let times: Times<'t, E> = if self.time_vars {
            Times::Vars((0..n).map(|k| self.time(x, k)).collect())
        } else {
            Times::Values(self.times.clone())
        };
        let sens_opts = adjoint::sensitivity_options(&self.opts, c);
        let sol = odeint_node(
            tape,
            &sens,
            &init,
            &ps,
            times,
            &sens_opts,
            self.ctx.inner("odeint (sensitivity solve of the JVP)"),
        )?;
        let mut out = Vec::with_capacity((n - 1) * c);
        for k in 1..n {
            let zk = self.state(x, y, k);
            let extra: Vec<Option<Var<'t, E>>> = match tdot(k) {
                Some(tk) => {
                    let fz = self.f_at(x, &zk, k)?;
                    fz.into_iter().map(|fc| Some(fc * tk)).collect()
                }
                None => vec![None; c],
            };
            for (i, e) in extra.into_iter().enumerate() {
                let base = sol.states[k][c + i];
                out.push(Some(match e {
                    Some(e) => base + e,
                    None => base,
                }));
            }
        }
        Ok(out)
    }
}

/// Evaluates `f(t, z; θ)` on the tape of `t` with `t`, `z` and `θ` as independent inputs of
/// `f` ([`Tape::isolated`]), differentiable with respect to all three to any order.
///
/// On the solver's scratch tapes the inputs are fresh leaves anyway; on the caller's tape they
/// are not (`z` is the solve's output, which depends on `θ` and the times), and a dynamics that
/// differentiates itself there (the adjoint system's VJP with respect to `θ`, a JVP along `t`)
/// would otherwise follow those dependencies back into the solve: wrong mixed derivatives, or
/// a JVP that re-enters the solve's own JVP without end.
pub(crate) fn eval_isolated<'t, E: Element>(
    f: &Rc<dyn Dynamics<E>>,
    t: Var<'t, E>,
    z: &[Var<'t, E>],
    theta: &[Var<'t, E>],
) -> autodiff::Result<Vec<Var<'t, E>>> {
    let (c, f) = (z.len(), f.clone());
    let func: TapeFn<E> = Rc::new(move |tape, a| Ok(f.eval(tape, a[0], &a[1..1 + c], &a[1 + c..])));
    let mut args = Vec::with_capacity(1 + c + theta.len());
    args.push(t);
    args.extend(z);
    args.extend(theta);
    t.tape().isolated(&func, &args)
}

pub(crate) fn zeros_like<'t, E: Element>(v: Var<'t, E>) -> Var<'t, E> {
    let (r, c) = v.shape();
    v.tape().zeros(r, c)
}
