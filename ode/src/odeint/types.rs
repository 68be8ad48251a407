//! The values an `odeint` call takes and returns, and where a node sits among the solves.

use autodiff::{Element, Var};

use super::stats::OdeStats;

/// The result of [`odeint`](crate::odeint()): the state at every save time, as tape variables.
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
    pub(crate) fn values(&self) -> Vec<E> {
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
    pub(crate) fn inner(&self, label: &'static str) -> Context {
        Context {
            stats: self.stats.clone(),
            depth: self.depth + 1,
            label,
        }
    }
}
