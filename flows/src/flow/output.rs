//! What a pass of a flow returns: the log-density, the base point, the integrated channels.

use autodiff::{Element, Var};
use ode::OdeStats;

use crate::regularizers::Reg;

/// One integrated channel of a [`LogProb`].
#[derive(Clone, Debug)]
pub struct RegTerm<'t, E: Element> {
    /// Which built-in term (`None` for a user's [`Channel`](crate::regularizers::Channel)).
    pub reg: Option<Reg>,
    /// The channel's name ([`Channel::name`](crate::regularizers::Channel::name)).
    pub name: String,
    /// Its weight λ in [`LogProb::loss`].
    pub weight: E,
    /// `∫₀ᵀ r(z(t), t) dt` per sample (`n × 1`), summed over the blocks.
    pub per_sample: Var<'t, E>,
    /// The batch mean of `per_sample` (`1 × 1`): the value `R` entering the loss.
    pub value: Var<'t, E>,
}

/// The log-density of a batch, the integrated channels and what the solves cost.
pub struct LogProb<'t, E: Element> {
    /// log p(x) per row (`n × 1`).
    pub log_prob: Var<'t, E>,
    /// The base point z(T) (`n × d`).
    pub z: Var<'t, E>,
    /// Statistics of each block's solve (backward ones fill in after differentiation).
    pub stats: Vec<OdeStats>,
    /// The configured channels, built-in regularizers first, each in the order it was added.
    pub reg: Vec<RegTerm<'t, E>>,
    /// The end time the blocks were integrated to (`1 × 1`): drawn by STEER in training, `T`
    /// otherwise. Gradients reach a learnable `T` through it.
    pub end_time: Var<'t, E>,
}

impl<'t, E: Element> LogProb<'t, E> {
    /// The negative log-likelihood `−mean log p(x)` (`1 × 1`).
    pub fn nll(&self) -> Var<'t, E> {
        -self.log_prob.mean()
    }

    /// `Σ_k λ_k R_k` over the channels, `None` without any.
    pub fn reg_loss(&self) -> Option<Var<'t, E>> {
        self.reg
            .iter()
            .map(|r| r.value.mul_scalar(r.weight))
            .reduce(|a, b| a + b)
    }

    /// The training loss `−mean log p(x) + Σ_k λ_k R_k` (`1 × 1`).
    pub fn loss(&self) -> Var<'t, E> {
        match self.reg_loss() {
            Some(r) => self.nll() + r,
            None => self.nll(),
        }
    }

    /// The term of regularizer `reg`, if it is configured.
    pub fn term(&self, reg: Reg) -> Option<&RegTerm<'t, E>> {
        self.reg.iter().find(|r| r.reg == Some(reg))
    }

    /// The term whose channel is called `name` (built-in or the user's own).
    pub fn term_named(&self, name: &str) -> Option<&RegTerm<'t, E>> {
        self.reg.iter().find(|r| r.name == name)
    }
}
