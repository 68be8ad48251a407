//! `odeint`: an ODE solve recorded as ONE differentiable node on the tape.
//!
//! The forward pass runs [`solve`](crate::solve) on plain values; no tape runs through the
//! solver. The node's VJP integrates the adjoint system backwards (Chen et al. 2018,
//! Algorithm 1) and its JVP integrates the forward-sensitivity system; both are themselves
//! `odeint` calls on the same tape, so derivatives of any order pass through a solve.
//!
//! Files: [`types`] and [`stats`] hold what a call takes and returns, [`node`] what the
//! derivative rules know of a node, [`systems`] the adjoint and sensitivity dynamics, [`vjp`] the
//! VJP skeleton the adjoint strategies share; the strategies are [`backsolve`],
//! [`checkpointed`] and [`direct`], the JVP is [`sensitivity`]; [`event`] composes `odeint`
//! into terminal events with a differentiable event time.

mod backsolve;
mod checkpointed;
mod direct;
mod event;
mod node;
mod sensitivity;
mod stats;
mod systems;
mod types;
mod vjp;

use std::cell::RefCell;
use std::rc::Rc;

use autodiff::{CustomOp, Element, Tape, Tensor, Var};

use crate::options::Adjoint;
use crate::solve::check_times;
use crate::{solve, Dynamics, OdeError, Options};
use checkpointed::Saved;
pub use event::{event_fn, odeint_event, Event, EventError, EventFn, EventSolution};
use node::Node;
use stats::Counted;
pub use stats::OdeStats;
use types::Context;
pub use types::{OdeSolution, Times};

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
/// let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|_tape, _t, z, p| Ok(vec![-(z[0] * p[0])])));
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
    opts.adjoint.validate().map_err(wrap)?;
    let stats = OdeStats::default();
    let f: Rc<dyn Dynamics<E>> = Rc::new(Counted {
        f: f.clone(),
        stats: stats.clone(),
    });
    if opts.adjoint.strategy == Adjoint::Direct {
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
fn odeint_node<'t, E: Element>(
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
        node: Node {
            f: f.clone(),
            opts: opts.clone(),
            times: tv.clone(),
            n_state: c,
            n_params: params.len(),
            time_vars: matches!(times, Times::Vars(_)),
            ctx,
            record: odeint_node::<E>,
        },
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

/// The op recorded on the tape: a [`Node`] and what its strategy kept from the forward pass.
struct OdeintOp<E: Element> {
    node: Node<E>,
    saved: RefCell<Option<Saved<E>>>,
}

impl<E: Element> CustomOp<E> for OdeintOp<E> {
    fn name(&self) -> &str {
        "odeint"
    }

    fn forward(&self, inputs: &[&Tensor<E>]) -> autodiff::Result<Vec<Tensor<E>>> {
        let (c, p) = (self.node.n_state, self.node.n_params);
        let z0: Vec<Tensor<E>> = inputs[..c].iter().map(|t| (*t).clone()).collect();
        let theta: Vec<Tensor<E>> = inputs[c..c + p].iter().map(|t| (*t).clone()).collect();
        let label = self.node.ctx.label;
        let wrap = |e: OdeError| autodiff::Error::new(label, e);
        let stats = &self.node.ctx.stats;
        let phase = self.node.ctx.depth;
        let _phase = stats.enter(phase);
        let outs: Vec<Tensor<E>> = match self.node.opts.adjoint.strategy {
            Adjoint::Checkpointed { checkpoints } => {
                let fwd = checkpointed::forward_with_checkpoints(
                    &*self.node.f,
                    &z0,
                    &theta,
                    &self.node.times,
                    &self.node.opts,
                    checkpoints,
                )
                .map_err(wrap)?;
                stats.add_solve(phase, fwd.stats);
                *self.saved.borrow_mut() = Some(fwd.saved);
                fwd.outs
            }
            _ => {
                let sol = solve(
                    &*self.node.f,
                    &z0,
                    &theta,
                    &self.node.times,
                    &self.node.opts,
                )
                .map_err(wrap)?;
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
        let _phase = self.node.ctx.stats.enter(self.node.ctx.depth + 1);
        match self.node.opts.adjoint.strategy {
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
                let saved = self.saved.borrow();
                let saved = saved.as_ref().expect("the checkpointed forward pass ran");
                checkpointed::checkpointed_vjp(&self.node, saved, x, y, g, needs)
            }
            _ => backsolve::backsolve_vjp(&self.node, x, y, g, needs),
        }
    }

    fn jvp<'t>(
        &self,
        x: &[Var<'t, E>],
        y: &[Var<'t, E>],
        t: &[Option<Var<'t, E>>],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        let _phase = self.node.ctx.stats.enter(self.node.ctx.depth + 1);
        sensitivity::sensitivity_jvp(&self.node, x, y, t)
    }
}
