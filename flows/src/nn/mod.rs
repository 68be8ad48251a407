//! Layers and networks whose parameters live in a [`Params`] store.
//!
//! A layer is created with `&mut Params<E>`, a name prefix and an rng; it adds its tensors to
//! the store under PyTorch's `state_dict` names and keeps only their indices. It is applied
//! with `forward(p, ...)` where `p` is [`Params::vars`] (or the same list an ODE solver hands
//! to the dynamics), so a layer holds no tape state and one network serves many tapes.
//!
//! Initialisation follows PyTorch's default for `nn.Linear`: weight and bias uniform on
//! `±1/√fan_in`. (PyTorch draws the weight with `kaiming_uniform_(a = √5)`, whose bound
//! `gain · √(3/fan_in)` with `gain = √(2/(1 + a²)) = √(1/3)` is exactly `1/√fan_in`.)
//!
//! Time-conditioned layers take the time `t` as a `1 × 1` [`Var`].
//!
//! [`Params`]: crate::Params
//! [`Params::vars`]: crate::Params::vars

mod init;
mod layers;
mod mlp;
mod odenet;

pub use init::{uniform_init, Init, Zeros};
pub use layers::{ConcatLinear, ConcatSquash, LayerKind, Linear, TimeLayer};
pub use mlp::Mlp;
pub use odenet::OdeNet;

use autodiff::{Element, Var};

/// An elementwise activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// tanh x.
    Tanh,
    /// ln(1 + eˣ).
    Softplus,
    /// x for x > 0, eˣ − 1 otherwise.
    Elu,
    /// x σ(x) (SiLU).
    Swish,
    /// max(x, 0).
    Relu,
    /// 1 / (1 + e⁻ˣ).
    Sigmoid,
    /// x.
    Identity,
}

impl Act {
    /// Applies the activation elementwise.
    pub fn apply<'t, E: Element>(self, x: Var<'t, E>) -> Var<'t, E> {
        match self {
            Act::Tanh => x.tanh(),
            Act::Softplus => x.softplus(),
            Act::Elu => x.elu(),
            Act::Swish => x.swish(),
            Act::Relu => x.relu(),
            Act::Sigmoid => x.sigmoid(),
            Act::Identity => x,
        }
    }

    /// The activation on one number (for tests and plain-value evaluation).
    pub fn eval(self, x: f64) -> f64 {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        match self {
            Act::Tanh => x.tanh(),
            Act::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Act::Elu => {
                if x > 0.0 {
                    x
                } else {
                    x.exp_m1()
                }
            }
            Act::Swish => x * sig(x),
            Act::Relu => x.max(0.0),
            Act::Sigmoid => sig(x),
            Act::Identity => x,
        }
    }
}
