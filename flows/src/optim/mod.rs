//! First-order optimizers, gradient clipping and learning-rate schedules.
//!
//! Every optimizer implements [`Optimizer`]: `step(params, grads)` with one gradient per store
//! entry, in store order (what `tape.grad(loss, &params.vars(&tape))` returns). State buffers
//! are allocated on the first step and reused afterwards. Hyperparameters are `f64`; updates
//! run in the store's precision.
//!
//! The built-in optimizers also implement [`StatefulOptimizer`]: their moments, momentum
//! buffers, step count and learning rate as an [`OptimizerState`], which
//! [`train::save_checkpoint`](crate::train::save_checkpoint) writes so that a resumed run
//! continues exactly. Hyperparameters (β, ε, momentum, weight decay) are configuration, not
//! state: the resumed run builds its optimizer with them as the first run did.
//!
//! ```
//! use autodiff::{Tape, Tensor};
//! use flows::optim::{Adam, Optimizer};
//! use flows::Params;
//!
//! // Minimise ‖θ − 3‖².
//! let mut params = Params::<f64>::new();
//! params.add("theta", Tensor::zeros(1, 2));
//! let mut opt = Adam::new(0.1);
//! for _ in 0..500 {
//!     let tape = Tape::new();
//!     let p = params.vars(&tape);
//!     let loss = (p[0] - 3.0).square().sum();
//!     let grads = tape.grad(loss, &p).unwrap();
//!     opt.step(&mut params, &grads);
//! }
//! assert!((params.tensor(0).get(0, 0) - 3.0).abs() < 1e-3);
//! ```

mod adam;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamW};
pub use schedule::{Constant, Cosine, Schedule, Scheduled, StepDecay, Warmup};
pub use sgd::Sgd;

use std::fmt;

use autodiff::{Element, Tensor};

use crate::Params;

/// A gradient-based optimizer over a [`Params`] store.
pub trait Optimizer<E: Element> {
    /// Updates `params` from `grads` (one per entry, in store order). Panics if the count or a
    /// shape does not match the store, naming the entry.
    fn step(&mut self, params: &mut Params<E>, grads: &[Tensor<E>]);
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate (schedules call this before each step).
    fn set_lr(&mut self, lr: f64);
    /// Number of steps taken so far.
    fn steps(&self) -> u64;
}

/// The state of an optimizer that a checkpoint must keep for a resumed run to continue
/// exactly ([`StatefulOptimizer::state`]).
///
/// Buffers carry PyTorch's names (`exp_avg`, `exp_avg_sq` for Adam and AdamW,
/// `momentum_buffer` for SGD) and hold one tensor per store entry in store order; an optimizer
/// that has not stepped yet has no buffers (they are allocated on the first step).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<E: Element> {
    /// Which optimizer this is (`"Adam"`, `"AdamW"`, `"Sgd"`); state is only loaded into the
    /// same kind.
    pub kind: String,
    /// Steps taken ([`Optimizer::steps`]); Adam's bias correction depends on it.
    pub steps: u64,
    /// The learning rate at the time (restored, as PyTorch's `load_state_dict` does: set
    /// another one after loading to change it).
    pub lr: f64,
    /// Named buffers, each one tensor per store entry in store order.
    pub buffers: Vec<(String, Vec<Tensor<E>>)>,
}

/// Why an [`OptimizerState`] cannot be loaded into an optimizer: `item` (`optimizer` or a
/// buffer's name) should be `expected` but is `found`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateMismatch {
    /// What disagrees.
    pub item: String,
    /// What the optimizer needs.
    pub expected: String,
    /// What the state holds.
    pub found: String,
}

impl fmt::Display for StateMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "optimizer state `{}`: expected {}, found {}",
            self.item, self.expected, self.found
        )
    }
}

impl std::error::Error for StateMismatch {}

/// An [`Optimizer`] whose state can be saved and restored (checkpoints).
///
/// A separate trait rather than default methods on [`Optimizer`], so that an optimizer
/// without it cannot be checkpointed by mistake: saving a stateful optimizer as if it were
/// stateless would make the resumed run silently differ.
pub trait StatefulOptimizer<E: Element>: Optimizer<E> {
    /// A copy of the state.
    fn state(&self) -> OptimizerState<E>;

    /// Replaces the state with `state` (as taken by [`state`](Self::state) from an optimizer
    /// of the same kind and configuration). Fails without changing anything if the kind
    /// differs, a buffer is missing, unexpected or of the wrong length, or the buffers are
    /// absent although steps were taken. Buffer shapes are checked against the store by the
    /// next [`step`](Optimizer::step) (and against the parameters by the checkpoint loader).
    fn load_state(&mut self, state: OptimizerState<E>) -> Result<(), StateMismatch>;
}

/// The buffers `names` taken from `state`, checked: the kind must be `kind`; after a step all
/// of `names` must be there (before the first, none or all), each with as many tensors as the
/// first and no other buffer. Returns the buffers in the order of `names` (empty if absent).
fn take_buffers<E: Element>(
    state: &mut OptimizerState<E>,
    kind: &str,
    names: &[&str],
) -> Result<Vec<Vec<Tensor<E>>>, StateMismatch> {
    if state.kind != kind {
        return Err(StateMismatch {
            item: "optimizer".into(),
            expected: format!("{kind} state"),
            found: format!("{} state", state.kind),
        });
    }
    let listed = |b: &[(String, Vec<Tensor<E>>)]| {
        let v: Vec<&str> = b.iter().map(|(n, _)| n.as_str()).collect();
        format!("buffers [{}]", v.join(", "))
    };
    let wanted = format!("buffers [{}]", names.join(", "));
    if let Some((extra, _)) = state
        .buffers
        .iter()
        .find(|(n, _)| !names.contains(&n.as_str()))
    {
        return Err(StateMismatch {
            item: extra.clone(),
            expected: format!("only {wanted} for this {kind} configuration"),
            found: listed(&state.buffers),
        });
    }
    if state.buffers.is_empty() {
        // Stepping allocates the buffers, so a state with steps and no buffers cannot have
        // come from this configuration (e.g. an SGD without momentum loaded into one with).
        if state.steps > 0 && !names.is_empty() {
            return Err(StateMismatch {
                item: names[0].into(),
                expected: format!("{wanted} after {} steps", state.steps),
                found: "no buffers".into(),
            });
        }
        return Ok(vec![Vec::new(); names.len()]);
    }
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let Some(pos) = state.buffers.iter().position(|(n, _)| n == name) else {
            return Err(StateMismatch {
                item: (*name).into(),
                expected: wanted.clone(),
                found: listed(&state.buffers),
            });
        };
        out.push(state.buffers.remove(pos).1);
    }
    if let Some((i, b)) = out
        .iter()
        .enumerate()
        .find(|(_, b)| b.len() != out[0].len())
    {
        return Err(StateMismatch {
            item: names[i].into(),
            expected: format!("{} tensors (as `{}`)", out[0].len(), names[0]),
            found: format!("{} tensors", b.len()),
        });
    }
    Ok(out)
}

/// Allocates state buffers on the first call; afterwards checks they still fit.
fn ensure_state<E: Element>(bufs: &mut Vec<Tensor<E>>, params: &Params<E>, op: &str) {
    if bufs.is_empty() && !params.is_empty() {
        *bufs = params.zeros_like();
    } else {
        params.assert_matches(bufs, op);
    }
}

/// Scales `grads` in place so their global L2 norm is at most `max_norm` and returns the norm
/// before clipping, as `torch.nn.utils.clip_grad_norm_`: with `N = √(Σᵢ‖gᵢ‖²)` every gradient
/// is multiplied by `max_norm / (N + 1e-6)` when that is below 1. If `N` is not finite the
/// gradients are left unchanged (check the returned value).
pub fn clip_grad_norm<E: Element>(grads: &mut [Tensor<E>], max_norm: f64) -> f64 {
    let total = grads
        .iter()
        .map(|g| g.as_slice().iter().map(|x| x.to_f64().powi(2)).sum::<f64>())
        .sum::<f64>()
        .sqrt();
    if total.is_finite() {
        let coef = max_norm / (total + 1e-6);
        if coef < 1.0 {
            for g in grads.iter_mut() {
                g.scale(E::from_f64(coef));
            }
        }
    }
    total
}
