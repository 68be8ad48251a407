//! Stochastic gradient descent with momentum.

use autodiff::{Element, Tensor};

use super::{
    ensure_state, take_buffers, Optimizer, OptimizerState, StateMismatch, StatefulOptimizer,
};
use crate::Params;

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
