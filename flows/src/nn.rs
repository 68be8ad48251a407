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

use std::ops::Range;

use autodiff::{Element, Tensor, Var};
use rand::Rng;

use crate::Params;

/// Draws a `rows × cols` tensor uniform on `±1/√fan_in` (PyTorch's `nn.Linear` default).
pub fn uniform_init<E: Element, R: Rng + ?Sized>(
    rows: usize,
    cols: usize,
    fan_in: usize,
    rng: &mut R,
) -> Tensor<E> {
    assert!(fan_in > 0, "uniform_init: fan_in must be positive");
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::rand_uniform(rows, cols, E::from_f64(-bound), E::from_f64(bound), rng)
}

/// Where a layer's initial values come from: every random generator (`&mut rng`, PyTorch's
/// default initialisation, [`uniform_init`]) or [`Zeros`], for a layer built only to load
/// weights into (then [`Params::load_into`] fills it, checking every name and shape).
///
/// ```
/// use flows::nn::{Act, OdeNet, Zeros};
/// use flows::Params;
///
/// let mut params = Params::<f64>::new();
/// let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[8], Act::Tanh, &mut Zeros);
/// assert!(params.tensors().all(|t| t.as_slice().iter().all(|&v| v == 0.0)));
/// # let _ = net;
/// ```
pub trait Init {
    /// A `rows × cols` tensor for a weight of fan-in `fan_in`.
    fn uniform<E: Element>(&mut self, rows: usize, cols: usize, fan_in: usize) -> Tensor<E>;
}

impl<R: Rng + ?Sized> Init for R {
    fn uniform<E: Element>(&mut self, rows: usize, cols: usize, fan_in: usize) -> Tensor<E> {
        uniform_init(rows, cols, fan_in, self)
    }
}

/// Zero initial values: a layer built to receive loaded weights, without a random generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Zeros;

impl Init for Zeros {
    fn uniform<E: Element>(&mut self, rows: usize, cols: usize, fan_in: usize) -> Tensor<E> {
        assert!(fan_in > 0, "Zeros: fan_in must be positive");
        Tensor::zeros(rows, cols)
    }
}

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
    fn shift(&mut self, by: usize) {
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

/// Which time-conditioned layer an [`OdeNet`] is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// [`ConcatSquash`] layers (FFJORD's default `concatsquash`).
    ConcatSquash,
    /// [`ConcatLinear`] layers (FFJORD's `concat`).
    Concat,
}

/// One layer of an [`OdeNet`].
#[derive(Clone, Debug)]
pub enum TimeLayer {
    /// A [`ConcatSquash`] layer.
    Squash(ConcatSquash),
    /// A [`ConcatLinear`] layer.
    Concat(ConcatLinear),
}

impl TimeLayer {
    fn shift(&mut self, by: usize) {
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
    /// to be applied to `&p[mlp.param_range()]` (as [`OdeNet::relative`]).
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
