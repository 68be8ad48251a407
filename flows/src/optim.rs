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

/// The moment estimates shared by [`Adam`] and [`AdamW`].
#[derive(Clone, Debug)]
struct Moments<E: Element> {
    beta1: f64,
    beta2: f64,
    eps: f64,
    t: u64,
    m: Vec<Tensor<E>>,
    v: Vec<Tensor<E>>,
}

impl<E: Element> Moments<E> {
    fn new() -> Self {
        Moments {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            t: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    fn state(&self, kind: &str, lr: f64) -> OptimizerState<E> {
        let buffers = if self.m.is_empty() && self.t == 0 {
            Vec::new()
        } else {
            vec![
                ("exp_avg".to_string(), self.m.clone()),
                ("exp_avg_sq".to_string(), self.v.clone()),
            ]
        };
        OptimizerState {
            kind: kind.into(),
            steps: self.t,
            lr,
            buffers,
        }
    }

    /// Loads `state` and returns its learning rate; unchanged on error.
    fn load_state(
        &mut self,
        mut state: OptimizerState<E>,
        kind: &str,
    ) -> Result<f64, StateMismatch> {
        let mut bufs = take_buffers(&mut state, kind, &["exp_avg", "exp_avg_sq"])?;
        self.v = bufs.pop().expect("two buffers");
        self.m = bufs.pop().expect("two buffers");
        self.t = state.steps;
        Ok(state.lr)
    }

    /// One bias-corrected Adam update of `params` (Kingma & Ba, 2015, Algorithm 1):
    /// m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², θ ← θ − lr · m̂ / (√v̂ + ε) with
    /// m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ). `l2` > 0 adds `l2 · θ` to the gradient first (coupled
    /// L2 regularisation, as `torch.optim.Adam(weight_decay=…)`).
    fn update(&mut self, params: &mut Params<E>, grads: &[Tensor<E>], lr: f64, l2: f64, op: &str) {
        params.assert_matches(grads, op);
        ensure_state(&mut self.m, params, op);
        ensure_state(&mut self.v, params, op);
        self.t += 1;
        let t = self.t as i32;
        let (b1, b2) = (E::from_f64(self.beta1), E::from_f64(self.beta2));
        let (c1, c2) = (E::ONE - b1, E::ONE - b2);
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        // θ −= (lr / bc1) · m / (√v / √bc2 + ε)
        let step = E::from_f64(lr / bc1);
        let inv_sqrt_bc2 = E::from_f64(1.0 / bc2.sqrt());
        let eps = E::from_f64(self.eps);
        let l2 = E::from_f64(l2);
        for (((theta, g), m), v) in params
            .tensors_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            let th = theta.as_mut_slice();
            let ms = m.as_mut_slice();
            let vs = v.as_mut_slice();
            for (((th, &g), m), v) in th.iter_mut().zip(g.as_slice()).zip(ms).zip(vs) {
                let g = if l2 != E::ZERO { g + l2 * *th } else { g };
                *m = b1 * *m + c1 * g;
                *v = b2 * *v + c2 * g * g;
                *th -= step * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
            }
        }
    }
}

/// Adam (Kingma & Ba, 2015) with bias correction; optional coupled L2 weight decay as in
/// `torch.optim.Adam`. Defaults: β = (0.9, 0.999), ε = 1e-8, no weight decay.
#[derive(Clone, Debug)]
pub struct Adam<E: Element> {
    lr: f64,
    weight_decay: f64,
    mom: Moments<E>,
}

impl<E: Element> Adam<E> {
    /// Adam with learning rate `lr` and the default β and ε.
    pub fn new(lr: f64) -> Self {
        Adam {
            lr,
            weight_decay: 0.0,
            mom: Moments::new(),
        }
    }

    /// Sets β₁ and β₂.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.mom.beta1 = beta1;
        self.mom.beta2 = beta2;
        self
    }

    /// Sets ε.
    pub fn eps(mut self, eps: f64) -> Self {
        self.mom.eps = eps;
        self
    }

    /// L2 penalty added to the gradient (`g + λθ`); for decoupled decay use [`AdamW`].
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

impl<E: Element> StatefulOptimizer<E> for Adam<E> {
    fn state(&self) -> OptimizerState<E> {
        self.mom.state("Adam", self.lr)
    }
    fn load_state(&mut self, state: OptimizerState<E>) -> Result<(), StateMismatch> {
        self.lr = self.mom.load_state(state, "Adam")?;
        Ok(())
    }
}

impl<E: Element> Optimizer<E> for Adam<E> {
    fn step(&mut self, params: &mut Params<E>, grads: &[Tensor<E>]) {
        self.mom
            .update(params, grads, self.lr, self.weight_decay, "Adam::step");
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn steps(&self) -> u64 {
        self.mom.t
    }
}

/// AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019). Each step first
/// shrinks `θ ← θ (1 − lr·λ)`, then applies the bias-corrected Adam update with the raw
/// gradient, as `torch.optim.AdamW`. Defaults: β = (0.9, 0.999), ε = 1e-8, λ = 0.01.
#[derive(Clone, Debug)]
pub struct AdamW<E: Element> {
    lr: f64,
    weight_decay: f64,
    mom: Moments<E>,
}

impl<E: Element> AdamW<E> {
    /// AdamW with learning rate `lr` and decay `weight_decay` (λ).
    pub fn new(lr: f64, weight_decay: f64) -> Self {
        AdamW {
            lr,
            weight_decay,
            mom: Moments::new(),
        }
    }

    /// Sets β₁ and β₂.
    pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
        self.mom.beta1 = beta1;
        self.mom.beta2 = beta2;
        self
    }

    /// Sets ε.
    pub fn eps(mut self, eps: f64) -> Self {
        self.mom.eps = eps;
        self
    }
}

impl<E: Element> StatefulOptimizer<E> for AdamW<E> {
    fn state(&self) -> OptimizerState<E> {
        self.mom.state("AdamW", self.lr)
    }
    fn load_state(&mut self, state: OptimizerState<E>) -> Result<(), StateMismatch> {
        self.lr = self.mom.load_state(state, "AdamW")?;
        Ok(())
    }
}

impl<E: Element> Optimizer<E> for AdamW<E> {
    fn step(&mut self, params: &mut Params<E>, grads: &[Tensor<E>]) {
        params.assert_matches(grads, "AdamW::step");
        if self.weight_decay != 0.0 {
            let shrink = E::from_f64(1.0 - self.lr * self.weight_decay);
            for t in params.tensors_mut() {
                t.scale(shrink);
            }
        }
        self.mom.update(params, grads, self.lr, 0.0, "AdamW::step");
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn steps(&self) -> u64 {
        self.mom.t
    }
}

/// Stochastic gradient descent with optional momentum, Nesterov momentum and coupled weight
/// decay, following `torch.optim.SGD`: `g ← g + λθ`; `b ← g` on the first step, else
/// `b ← μb + (1−d)g`; the step direction is `g + μb` (Nesterov) or `b`; `θ ← θ − lr·step`.
#[derive(Clone, Debug)]
pub struct Sgd<E: Element> {
    lr: f64,
    momentum: f64,
    dampening: f64,
    nesterov: bool,
    weight_decay: f64,
    t: u64,
    buf: Vec<Tensor<E>>,
}

impl<E: Element> Sgd<E> {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            t: 0,
            buf: Vec::new(),
        }
    }

    /// Sets the momentum μ.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets the dampening d of the momentum buffer.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Uses Nesterov momentum (needs μ > 0 and no dampening).
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// L2 penalty added to the gradient.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

impl<E: Element> StatefulOptimizer<E> for Sgd<E> {
    fn state(&self) -> OptimizerState<E> {
        // Plain SGD keeps no buffer; with momentum the buffer exists from the first step.
        let buffers = if self.momentum == 0.0 || (self.t == 0 && self.buf.is_empty()) {
            Vec::new()
        } else {
            vec![("momentum_buffer".to_string(), self.buf.clone())]
        };
        OptimizerState {
            kind: "Sgd".into(),
            steps: self.t,
            lr: self.lr,
            buffers,
        }
    }
    fn load_state(&mut self, mut state: OptimizerState<E>) -> Result<(), StateMismatch> {
        let names: &[&str] = if self.momentum == 0.0 {
            &[]
        } else {
            &["momentum_buffer"]
        };
        let mut bufs = take_buffers(&mut state, "Sgd", names)?;
        self.buf = bufs.pop().unwrap_or_default();
        self.t = state.steps;
        self.lr = state.lr;
        Ok(())
    }
}

impl<E: Element> Optimizer<E> for Sgd<E> {
    fn step(&mut self, params: &mut Params<E>, grads: &[Tensor<E>]) {
        assert!(
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "Sgd::step: Nesterov momentum needs momentum > 0 and zero dampening"
        );
        params.assert_matches(grads, "Sgd::step");
        let lr = E::from_f64(self.lr);
        let wd = E::from_f64(self.weight_decay);
        let first = self.t == 0;
        self.t += 1;
        if self.momentum == 0.0 {
            for (theta, g) in params.tensors_mut().zip(grads) {
                for (th, &g) in theta.as_mut_slice().iter_mut().zip(g.as_slice()) {
                    *th -= lr * (g + wd * *th);
                }
            }
            return;
        }
        ensure_state(&mut self.buf, params, "Sgd::step");
        let mu = E::from_f64(self.momentum);
        let keep = E::from_f64(1.0 - self.dampening);
        for ((theta, g), b) in params.tensors_mut().zip(grads).zip(&mut self.buf) {
            for ((th, &g), b) in theta
                .as_mut_slice()
                .iter_mut()
                .zip(g.as_slice())
                .zip(b.as_mut_slice())
            {
                let g = g + wd * *th;
                *b = if first { g } else { mu * *b + keep * g };
                let d = if self.nesterov { g + mu * *b } else { *b };
                *th -= lr * d;
            }
        }
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn steps(&self) -> u64 {
        self.t
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

/// A learning-rate schedule: the rate to use at step `step` (counting from 0).
///
/// Closures `Fn(u64) -> f64` are schedules.
pub trait Schedule {
    /// Learning rate at `step`.
    fn lr_at(&self, step: u64) -> f64;
}

impl<F: Fn(u64) -> f64> Schedule for F {
    fn lr_at(&self, step: u64) -> f64 {
        self(step)
    }
}

/// A constant rate.
#[derive(Clone, Copy, Debug)]
pub struct Constant(pub f64);

impl Schedule for Constant {
    fn lr_at(&self, _step: u64) -> f64 {
        self.0
    }
}

/// `lr · γ^⌊step / every⌋` (PyTorch's `StepLR`).
#[derive(Clone, Copy, Debug)]
pub struct StepDecay {
    /// Initial rate.
    pub lr: f64,
    /// Factor applied every `every` steps.
    pub gamma: f64,
    /// Period in steps (must be positive).
    pub every: u64,
}

impl Schedule for StepDecay {
    fn lr_at(&self, step: u64) -> f64 {
        assert!(self.every > 0, "StepDecay: period must be positive");
        self.lr * self.gamma.powf((step / self.every) as f64)
    }
}

/// Cosine annealing from `lr` to `min_lr` over `total` steps (Loshchilov & Hutter, 2017):
/// `min_lr + ½(lr − min_lr)(1 + cos(π·step/total))`, constant at `min_lr` afterwards.
#[derive(Clone, Copy, Debug)]
pub struct Cosine {
    /// Initial rate.
    pub lr: f64,
    /// Final rate.
    pub min_lr: f64,
    /// Length of the annealing in steps.
    pub total: u64,
}

impl Schedule for Cosine {
    fn lr_at(&self, step: u64) -> f64 {
        if self.total == 0 || step >= self.total {
            return self.min_lr;
        }
        let frac = step as f64 / self.total as f64;
        self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + (std::f64::consts::PI * frac).cos())
    }
}

/// Linear warm-up over the first `steps` steps: `inner(step) · min(1, (step + 1)/steps)`.
#[derive(Clone, Copy, Debug)]
pub struct Warmup<S> {
    /// Warm-up length in steps.
    pub steps: u64,
    /// The schedule that is warmed up.
    pub inner: S,
}

impl<S: Schedule> Schedule for Warmup<S> {
    fn lr_at(&self, step: u64) -> f64 {
        let f = if self.steps == 0 {
            1.0
        } else {
            ((step + 1) as f64 / self.steps as f64).min(1.0)
        };
        self.inner.lr_at(step) * f
    }
}

/// An optimizer whose learning rate follows a schedule: before step `k` (counting from 0) it
/// sets the rate to `schedule.lr_at(k)`.
#[derive(Clone, Debug)]
pub struct Scheduled<O, S> {
    /// The wrapped optimizer.
    pub opt: O,
    /// The schedule.
    pub schedule: S,
}

impl<O, S> Scheduled<O, S> {
    /// Wraps `opt` so its rate follows `schedule`.
    pub fn new(opt: O, schedule: S) -> Self {
        Scheduled { opt, schedule }
    }
}

/// The wrapped optimizer's state (the schedule is configuration: it derives the rate from the
/// restored step count).
impl<E: Element, O: StatefulOptimizer<E>, S: Schedule> StatefulOptimizer<E> for Scheduled<O, S> {
    fn state(&self) -> OptimizerState<E> {
        self.opt.state()
    }
    fn load_state(&mut self, state: OptimizerState<E>) -> Result<(), StateMismatch> {
        self.opt.load_state(state)
    }
}

impl<E: Element, O: Optimizer<E>, S: Schedule> Optimizer<E> for Scheduled<O, S> {
    fn step(&mut self, params: &mut Params<E>, grads: &[Tensor<E>]) {
        let lr = self.schedule.lr_at(self.opt.steps());
        self.opt.set_lr(lr);
        self.opt.step(params, grads);
    }
    fn lr(&self) -> f64 {
        self.opt.lr()
    }
    fn set_lr(&mut self, lr: f64) {
        self.opt.set_lr(lr);
    }
    fn steps(&self) -> u64 {
        self.opt.steps()
    }
}
