//! Adam and AdamW, which share their moment estimates.

use autodiff::{Element, Tensor};

use super::{
    ensure_state, take_buffers, Optimizer, OptimizerState, StateMismatch, StatefulOptimizer,
};
use crate::Params;

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
