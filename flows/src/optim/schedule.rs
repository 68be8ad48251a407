//! Learning-rate schedules and the optimizer wrapper that follows one.

use autodiff::{Element, Tensor};

use super::{Optimizer, OptimizerState, StateMismatch, StatefulOptimizer};
use crate::Params;

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
