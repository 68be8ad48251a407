//! A plain MLP of [`Linear`] layers.

use std::ops::Range;

use autodiff::{Element, Var};

use super::{Act, Init, Linear};
use crate::Params;

/// A plain MLP `sizes[0] → sizes[1] → … → sizes[k]` of [`Linear`] layers with an activation
/// between layers and none after the last.
///
/// Linear layer `i` is named `{prefix}.{2i}` — the keys of PyTorch's
/// `nn.Sequential(Linear, Act, Linear, Act, …, Linear)`, where each activation takes a slot.
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: Vec<Linear>,
    act: Act,
    range: Range<usize>,
}

impl Mlp {
    /// Builds an MLP with the given widths (at least two: input and output).
    pub fn new<E: Element, R: Init + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        sizes: &[usize],
        act: Act,
        rng: &mut R,
    ) -> Self {
        assert!(
            sizes.len() >= 2,
            "Mlp `{prefix}`: need at least input and output widths, got {sizes:?}"
        );
        let start = params.len();
        let layers = sizes
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                Linear::new(
                    params,
                    &format!("{prefix}.{}", 2 * i),
                    w[0],
                    w[1],
                    true,
                    rng,
                )
            })
            .collect();
        Mlp {
            layers,
            act,
            range: start..params.len(),
        }
    }

    /// Applies the MLP to `x` (`n × sizes[0]` → `n × sizes[k]`).
    pub fn forward<'t, E: Element>(&self, p: &[Var<'t, E>], x: Var<'t, E>) -> Var<'t, E> {
        let last = self.layers.len() - 1;
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(p, h);
            if i < last {
                h = self.act.apply(h);
            }
        }
        h
    }

    /// The store indices this MLP uses.
    pub fn param_range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// A copy that addresses its parameters relative to [`param_range`](Self::param_range),
    /// to be applied to `&p[mlp.param_range()]` (as [`OdeNet::relative`](super::OdeNet::relative)).
    pub fn relative(&self) -> Mlp {
        let mut mlp = self.clone();
        let by = self.range.start;
        mlp.layers.iter_mut().for_each(|l| l.shift(by));
        mlp.range = 0..self.range.len();
        mlp
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[Linear] {
        &self.layers
    }

    /// The activation between layers.
    pub fn act(&self) -> Act {
        self.act
    }
}
