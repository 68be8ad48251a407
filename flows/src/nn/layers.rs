//! The layers: [`Linear`] and FFJORD's time-conditioned [`ConcatSquash`] and [`ConcatLinear`].

use autodiff::{Element, Var};

use super::Init;
use crate::Params;

/// Shape check shared by the layers: `x` must have `cols` columns.
fn check_cols<E: Element>(op: &str, name: &str, x: Var<'_, E>, cols: usize) {
    let (r, c) = x.shape();
    assert_eq!(
        c, cols,
        "{op} `{name}`: input is {r}x{c}, expected {cols} columns"
    );
}

fn check_time<E: Element>(op: &str, name: &str, t: Var<'_, E>) {
    assert_eq!(
        t.shape(),
        (1, 1),
        "{op} `{name}`: time must be 1x1, got {:?}",
        t.shape()
    );
}

/// An affine map `y = x Wᵀ + b` (PyTorch's `nn.Linear`).
///
/// Parameters: `{prefix}.weight` of shape `[out, in]` and, optionally, `{prefix}.bias`
/// (`1 × out` in memory, `[out]` on file). Init: both uniform on `±1/√in`.
#[derive(Clone, Debug)]
pub struct Linear {
    name: String,
    weight: usize,
    bias: Option<usize>,
    in_features: usize,
    out_features: usize,
}

impl Linear {
    /// Adds a linear layer `in_features → out_features` to `params` under `prefix`.
    pub fn new<E: Element, R: Init + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        rng: &mut R,
    ) -> Self {
        let weight = params.add(
            format!("{prefix}.weight"),
            rng.uniform(out_features, in_features, in_features),
        );
        let bias = bias.then(|| {
            params.add(
                format!("{prefix}.bias"),
                rng.uniform(1, out_features, in_features),
            )
        });
        Linear {
            name: prefix.to_string(),
            weight,
            bias,
            in_features,
            out_features,
        }
    }

    /// `x Wᵀ + b` for `x` of shape `n × in` (→ `n × out`).
    pub fn forward<'t, E: Element>(&self, p: &[Var<'t, E>], x: Var<'t, E>) -> Var<'t, E> {
        check_cols("Linear", &self.name, x, self.in_features);
        match self.bias {
            Some(b) => x.linear(p[self.weight], p[b]),
            None => x.matmul_t(p[self.weight]),
        }
    }

    /// Index of the weight in the store.
    pub fn weight_index(&self) -> usize {
        self.weight
    }

    /// Index of the bias in the store, if there is one.
    pub fn bias_index(&self) -> Option<usize> {
        self.bias
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The name prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the stored indices down by `by` (see [`OdeNet::relative`]).
    pub(super) fn shift(&mut self, by: usize) {
        self.weight -= by;
        if let Some(b) = &mut self.bias {
            *b -= by;
        }
    }
}

/// FFJORD's time-conditioned layer (Grathwohl et al., 2019):
/// `out = (x Wᵀ + b) ⊙ σ(t w_g + b_g) + t w_b`, the gate and the shift depending on `t` only.
///
/// Parameters (the PyTorch module layout, so FFJORD checkpoints convert by name):
/// `{prefix}._layer.weight` `[out, in]`, `{prefix}._layer.bias` `[out]`,
/// `{prefix}._hyper_gate.weight` `[out, 1]`, `{prefix}._hyper_gate.bias` `[out]`,
/// `{prefix}._hyper_bias.weight` `[out, 1]` (no bias). Init: each as a PyTorch `nn.Linear`
/// (the hyper layers have fan-in 1, so they start uniform on `±1`).
#[derive(Clone, Debug)]
pub struct ConcatSquash {
    layer: Linear,
    hyper_gate: Linear,
    hyper_bias: Linear,
}

impl ConcatSquash {
    /// Adds a concat-squash layer `in_features → out_features` under `prefix`.
    pub fn new<E: Element, R: Init + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut R,
    ) -> Self {
        let layer = Linear::new(
            params,
            &format!("{prefix}._layer"),
            in_features,
            out_features,
            true,
            rng,
        );
        let hyper_bias = Linear::new(
            params,
            &format!("{prefix}._hyper_bias"),
            1,
            out_features,
            false,
            rng,
        );
        let hyper_gate = Linear::new(
            params,
            &format!("{prefix}._hyper_gate"),
            1,
            out_features,
            true,
            rng,
        );
        ConcatSquash {
            layer,
            hyper_gate,
            hyper_bias,
        }
    }

    /// Applies the layer to `x` (`n × in`) at time `t` (`1 × 1`).
    pub fn forward<'t, E: Element>(
        &self,
        p: &[Var<'t, E>],
        t: Var<'t, E>,
        x: Var<'t, E>,
    ) -> Var<'t, E> {
        check_time("ConcatSquash", self.layer.name(), t);
        check_cols(
            "ConcatSquash",
            self.layer.name(),
            x,
            self.layer.in_features(),
        );
        // (x Wᵀ + b) ⊙ g + s = x (diag(g) W)ᵀ + (b ⊙ g + s): the gate scales the rows of the
        // small out × in weight instead of the n × out activations, which saves two passes
        // over the batch in the forward pass and more in every derivative of it.
        let gate = self.hyper_gate.forward(p, t).sigmoid(); // 1 × out
        let shift = self.hyper_bias.forward(p, t); // 1 × out
        let w = p[self.layer.weight_index()] * gate.t();
        let b = match self.layer.bias_index() {
            Some(bi) => p[bi] * gate + shift,
            None => shift,
        };
        x.linear(w, b)
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.layer.in_features()
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.layer.out_features()
    }

    /// The main linear map `x Wᵀ + b`.
    pub fn layer(&self) -> &Linear {
        &self.layer
    }

    /// The gate `t w_g + b_g` (before the sigmoid).
    pub fn hyper_gate(&self) -> &Linear {
        &self.hyper_gate
    }

    /// The shift `t w_b`.
    pub fn hyper_bias(&self) -> &Linear {
        &self.hyper_bias
    }
}

/// A linear layer that sees the time as an extra first input column:
/// `out = [t, x] Wᵀ + b` with `t` broadcast over the rows (FFJORD's `ConcatLinear`).
///
/// Parameters: `{prefix}._layer.weight` `[out, in + 1]` (column 0 multiplies `t`),
/// `{prefix}._layer.bias` `[out]`. Computed as `x W[:, 1:]ᵀ + t W[:, 0]ᵀ + b`, which equals
/// the concatenated form without copying the batch.
#[derive(Clone, Debug)]
pub struct ConcatLinear {
    layer: Linear,
}

impl ConcatLinear {
    /// Adds a concat layer `in_features (+ t) → out_features` under `prefix`.
    pub fn new<E: Element, R: Init + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        rng: &mut R,
    ) -> Self {
        ConcatLinear {
            layer: Linear::new(
                params,
                &format!("{prefix}._layer"),
                in_features + 1,
                out_features,
                true,
                rng,
            ),
        }
    }

    /// Applies the layer to `x` (`n × in`) at time `t` (`1 × 1`).
    pub fn forward<'t, E: Element>(
        &self,
        p: &[Var<'t, E>],
        t: Var<'t, E>,
        x: Var<'t, E>,
    ) -> Var<'t, E> {
        let name = self.layer.name();
        check_time("ConcatLinear", name, t);
        let n_in = self.layer.in_features();
        check_cols("ConcatLinear", name, x, n_in - 1);
        let w = p[self.layer.weight_index()];
        let wt = w.slice_cols(0, 1).t(); // 1 × out
        let wx = w.slice_cols(1, n_in); // out × in
        let mut y = x.matmul_t(wx) + t * wt;
        if let Some(b) = self.layer.bias_index() {
            y = y + p[b];
        }
        y
    }

    /// Input width, not counting `t`.
    pub fn in_features(&self) -> usize {
        self.layer.in_features() - 1
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.layer.out_features()
    }

    /// The underlying linear map on `[t, x]`.
    pub fn layer(&self) -> &Linear {
        &self.layer
    }
}

/// Which time-conditioned layer an [`OdeNet`](super::OdeNet) is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// [`ConcatSquash`] layers (FFJORD's default `concatsquash`).
    ConcatSquash,
    /// [`ConcatLinear`] layers (FFJORD's `concat`).
    Concat,
}

/// One layer of an [`OdeNet`](super::OdeNet).
#[derive(Clone, Debug)]
pub enum TimeLayer {
    /// A [`ConcatSquash`] layer.
    Squash(ConcatSquash),
    /// A [`ConcatLinear`] layer.
    Concat(ConcatLinear),
}

impl TimeLayer {
    pub(super) fn shift(&mut self, by: usize) {
        match self {
            TimeLayer::Squash(l) => {
                l.layer.shift(by);
                l.hyper_gate.shift(by);
                l.hyper_bias.shift(by);
            }
            TimeLayer::Concat(l) => l.layer.shift(by),
        }
    }

    /// Applies the layer to `x` at time `t`.
    pub fn forward<'t, E: Element>(
        &self,
        p: &[Var<'t, E>],
        t: Var<'t, E>,
        x: Var<'t, E>,
    ) -> Var<'t, E> {
        match self {
            TimeLayer::Squash(l) => l.forward(p, t, x),
            TimeLayer::Concat(l) => l.forward(p, t, x),
        }
    }
}
