//! The vector field [`OdeNet`] `f(t, z)` of time-conditioned layers.

use std::ops::Range;

use autodiff::{Element, Var};

use super::{Act, ConcatLinear, ConcatSquash, Init, LayerKind, TimeLayer};
use crate::Params;

/// An MLP vector field `f(t, z)`: time-conditioned layers `dim → h₁ → … → h_k → dim` with an
/// activation between layers and none after the last (FFJORD's `ODEnet`).
///
/// Layer `i` is named `{prefix}.layers.{i}` (so `{prefix}.layers.0._layer.weight`, …), as in
/// FFJORD's module tree; activations hold no parameters.
///
/// ```
/// use autodiff::{Tape, Tensor};
/// use flows::nn::{Act, OdeNet};
/// use flows::Params;
/// use rand::SeedableRng;
///
/// let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
/// let mut params = Params::<f64>::new();
/// let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[16, 16], Act::Tanh, &mut rng);
/// assert_eq!(net.param_range(), 0..params.len());
///
/// let tape = Tape::new();
/// let p = params.vars(&tape);
/// let z = tape.constant(Tensor::randn(5, 2, &mut rng));
/// let dz = net.forward(&p, tape.scalar(0.3), z);
/// assert_eq!(dz.shape(), (5, 2));
/// ```
#[derive(Clone, Debug)]
pub struct OdeNet {
    layers: Vec<TimeLayer>,
    act: Act,
    dim: usize,
    hidden: Vec<usize>,
    range: Range<usize>,
}

impl OdeNet {
    /// Builds an ODE net of the given layer kind.
    pub fn new<E: Element, R: Init + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        dim: usize,
        hidden: &[usize],
        kind: LayerKind,
        act: Act,
        rng: &mut R,
    ) -> Self {
        assert!(dim > 0, "OdeNet `{prefix}`: dimension must be positive");
        let start = params.len();
        let mut widths = Vec::with_capacity(hidden.len() + 2);
        widths.push(dim);
        widths.extend_from_slice(hidden);
        widths.push(dim);
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let name = format!("{prefix}.layers.{i}");
                match kind {
                    LayerKind::ConcatSquash => {
                        TimeLayer::Squash(ConcatSquash::new(params, &name, w[0], w[1], rng))
                    }
                    LayerKind::Concat => {
                        TimeLayer::Concat(ConcatLinear::new(params, &name, w[0], w[1], rng))
                    }
                }
            })
            .collect();
        OdeNet {
            layers,
            act,
            dim,
            hidden: hidden.to_vec(),
            range: start..params.len(),
        }
    }

    /// An ODE net of [`ConcatSquash`] layers.
    pub fn concat_squash<E: Element, R: Init + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        dim: usize,
        hidden: &[usize],
        act: Act,
        rng: &mut R,
    ) -> Self {
        Self::new(
            params,
            prefix,
            dim,
            hidden,
            LayerKind::ConcatSquash,
            act,
            rng,
        )
    }

    /// An ODE net of [`ConcatLinear`] layers.
    pub fn concat<E: Element, R: Init + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        dim: usize,
        hidden: &[usize],
        act: Act,
        rng: &mut R,
    ) -> Self {
        Self::new(params, prefix, dim, hidden, LayerKind::Concat, act, rng)
    }

    /// `f(t, z)` for `z` of shape `n × dim` and `t` of shape `1 × 1` (→ `n × dim`).
    pub fn forward<'t, E: Element>(
        &self,
        p: &[Var<'t, E>],
        t: Var<'t, E>,
        z: Var<'t, E>,
    ) -> Var<'t, E> {
        let last = self.layers.len() - 1;
        let mut h = z;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(p, t, h);
            if i < last {
                h = self.act.apply(h);
            }
        }
        h
    }

    /// The store indices this net uses (contiguous: the net adds all its entries at once).
    pub fn param_range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// A copy that addresses its parameters relative to [`param_range`](Self::param_range):
    /// `net.relative().forward(&p[net.param_range()], t, z)` equals `net.forward(&p, t, z)`.
    /// Use it to hand an ODE solver only this net's parameters (e.g. one block of a stacked
    /// CNF).
    pub fn relative(&self) -> OdeNet {
        let mut net = self.clone();
        let by = self.range.start;
        net.layers.iter_mut().for_each(|l| l.shift(by));
        net.range = 0..self.range.len();
        net
    }

    /// State dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Hidden widths.
    pub fn hidden(&self) -> &[usize] {
        &self.hidden
    }

    /// The activation between layers.
    pub fn act(&self) -> Act {
        self.act
    }

    /// The layers, input first.
    pub fn layers(&self) -> &[TimeLayer] {
        &self.layers
    }
}
