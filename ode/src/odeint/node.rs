//! What the derivative rules of one `odeint` node work from: its dynamics, settings, save
//! times and inputs, and how to record a solve of their own as a node.

use std::rc::Rc;

use autodiff::{Element, Tape, TapeFn, Var};

use super::types::{Context, OdeSolution, Times};
use crate::{Dynamics, Options};

/// Records a solve as one `odeint` node on `tape` in the given context.
///
/// The adjoint and sensitivity rules run their own solves through it, so those solves are
/// differentiable nodes again (derivatives of any order), while the strategies stay below the
/// op that dispatches to them: the op hands this function down instead of being imported.
pub(crate) type RecordFn<E> = for<'t> fn(
    &'t Tape<E>,
    &Rc<dyn Dynamics<E>>,
    &[Var<'t, E>],
    &[Var<'t, E>],
    Times<'t, E>,
    &Options<E>,
    Context,
) -> autodiff::Result<OdeSolution<'t, E>>;

/// One recorded solve as its derivative rules see it. Its inputs on the tape are
/// `[z0 channels…, θ…, times… (when they are variables)]` and its outputs the state channels
/// at save times `1…n−1`.
pub(crate) struct Node<E: Element> {
    /// The user's dynamics (every evaluation counted in the node's statistics).
    pub(crate) f: Rc<dyn Dynamics<E>>,
    pub(crate) opts: Options<E>,
    /// The save time values.
    pub(crate) times: Vec<E>,
    pub(crate) n_state: usize,
    pub(crate) n_params: usize,
    /// Whether the times are inputs of the node (then they receive gradients).
    pub(crate) time_vars: bool,
    pub(crate) ctx: Context,
    pub(crate) record: RecordFn<E>,
}

impl<E: Element> Node<E> {
    /// The save time `k` as a `1 × 1` variable (the input variable when times are variables).
    pub(crate) fn time<'t>(&self, x: &[Var<'t, E>], k: usize) -> Var<'t, E> {
        if self.time_vars {
            x[self.n_state + self.n_params + k]
        } else {
            x[0].tape().scalar(self.times[k])
        }
    }

    /// The times of the interval from save time `from` to save time `to`.
    pub(crate) fn interval<'t>(&self, x: &[Var<'t, E>], from: usize, to: usize) -> Times<'t, E> {
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

    /// Records a solve run by one of this node's derivative rules, one derivative level deeper.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record_inner<'t>(
        &self,
        tape: &'t Tape<E>,
        f: &Rc<dyn Dynamics<E>>,
        z0: &[Var<'t, E>],
        params: &[Var<'t, E>],
        times: Times<'t, E>,
        opts: &Options<E>,
        label: &'static str,
    ) -> autodiff::Result<OdeSolution<'t, E>> {
        (self.record)(tape, f, z0, params, times, opts, self.ctx.inner(label))
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
    let func: TapeFn<E> = Rc::new(move |tape, a| f.eval(tape, a[0], &a[1..1 + c], &a[1 + c..]));
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
