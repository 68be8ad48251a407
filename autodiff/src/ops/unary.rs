//! Elementwise functions y = φ(x). For all of them VJP = ḡ ⊙ φ'(x) and JVP = ṫ ⊙ φ'(x), so each
//! function is defined by its forward kernel and its derivative φ' written with tape ops.

use smallvec::smallvec;

use super::{add_opt, Grads};
use crate::{Element, Tensor, Var};

/// An elementwise function with its derivative.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fun<E> {
    /// eˣ; φ' = y.
    Exp,
    /// ln x; φ' = 1/x.
    Log,
    /// tanh x; φ' = 1 − y².
    Tanh,
    /// σ(x) = 1/(1+e⁻ˣ); φ' = y(1 − y).
    Sigmoid,
    /// softplus(x) = ln(1+eˣ); φ' = σ(x).
    Softplus,
    /// √x; φ' = 1/(2y).
    Sqrt,
    /// |x|; φ' = sign(x), 0 at 0 and NaN at NaN (a constant: its own derivative is zero
    /// almost everywhere).
    Abs,
    /// max(x, 0), NaN at NaN; φ' = 1 where x > 0, 0 where x ≤ 0, NaN at NaN (a constant).
    Relu,
    /// sin x; φ' = cos x.
    Sin,
    /// cos x; φ' = −sin x.
    Cos,
    /// xⁿ; φ' = n xⁿ⁻¹.
    Powi(i32),
    /// xᵖ; φ' = p xᵖ⁻¹.
    Powf(E),
}

impl<E: Element> Fun<E> {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Fun::Exp => "exp",
            Fun::Log => "log",
            Fun::Tanh => "tanh",
            Fun::Sigmoid => "sigmoid",
            Fun::Softplus => "softplus",
            Fun::Sqrt => "sqrt",
            Fun::Abs => "abs",
            Fun::Relu => "relu",
            Fun::Sin => "sin",
            Fun::Cos => "cos",
            Fun::Powi(_) => "powi",
            Fun::Powf(_) => "powf",
        }
    }

    pub(crate) fn forward(&self, x: &[E], out: &mut [E]) {
        match *self {
            Fun::Exp => E::vexp(x, out),
            Fun::Log => E::vln(x, out),
            Fun::Tanh => E::vtanh(x, out),
            Fun::Sigmoid => E::vsigmoid(x, out),
            Fun::Softplus => E::vsoftplus(x, out),
            Fun::Sqrt => each(x, out, |v| v.sqrt()),
            Fun::Abs => each(x, out, |v| v.abs()),
            // Written so that NaN fails the test and passes through (as in PyTorch and JAX):
            // clamping it to 0 would hide a NaN produced upstream.
            Fun::Relu => each(x, out, |v| if v <= E::ZERO { E::ZERO } else { v }),
            Fun::Sin => E::vsin(x, out),
            Fun::Cos => E::vcos(x, out),
            Fun::Powi(2) => each(x, out, |v| v * v),
            Fun::Powi(n) => each(x, out, |v| v.powi(n)),
            Fun::Powf(p) => each(x, out, |v| v.powf(p)),
        }
    }

    /// `w ⊙ φ'(x)`: the VJP of a cotangent or the JVP of a tangent `w` (they coincide for an
    /// elementwise function). For tanh it is the fused `tanh_grad(w, y) = w ⊙ (1 − y²)`: one
    /// pass over memory instead of four, in the innermost loop of every tanh network.
    pub(crate) fn pullback<'t>(&self, x: Var<'t, E>, y: Var<'t, E>, w: Var<'t, E>) -> Var<'t, E> {
        match self {
            Fun::Tanh => w.tape().push_prim(super::Prim::TanhGrad, &[w, y]),
            _ => w * self.derivative(x, y),
        }
    }

    /// φ'(x) as a tape expression of the input `x` and output `y`.
    pub(crate) fn derivative<'t>(&self, x: Var<'t, E>, y: Var<'t, E>) -> Var<'t, E> {
        match *self {
            Fun::Exp => y,
            Fun::Log => x.powi(-1),
            Fun::Tanh => y.square().rsub_scalar(E::ONE),
            Fun::Sigmoid => y * y.rsub_scalar(E::ONE),
            Fun::Softplus => x.sigmoid(),
            Fun::Sqrt => y.powi(-1) * E::from_f64(0.5),
            // Both masks keep NaN where x is NaN: a derivative at a point that is not a number
            // is not a number, and a 0 there would let a NaN in the forward pass vanish from
            // the gradient.
            Fun::Abs => x.tape().constant(x.with_value(|v| v.map(sign_or_nan))),
            Fun::Relu => x.tape().constant(x.with_value(|v| v.map(step_or_nan))),
            Fun::Sin => x.cos(),
            Fun::Cos => -x.sin(),
            Fun::Powi(0) => x.tape().constant(x.with_value(|v| v.map(|_| E::ZERO))),
            Fun::Powi(1) => x.tape().constant(x.with_value(|v| v.map(|_| E::ONE))),
            Fun::Powi(n) => x.powi(n - 1) * E::from_f64(n as f64),
            Fun::Powf(p) => x.powf(p - E::ONE) * p,
        }
    }
}

/// sign(a) ∈ {−1, 0, 1}, or `a` itself when it is NaN.
fn sign_or_nan<E: Element>(a: E) -> E {
    if a > E::ZERO {
        E::ONE
    } else if a < E::ZERO {
        -E::ONE
    } else if a == E::ZERO {
        E::ZERO
    } else {
        a
    }
}

/// The Heaviside step with H(0) = 0 (relu's derivative), or `a` itself when it is NaN.
fn step_or_nan<E: Element>(a: E) -> E {
    if a > E::ZERO {
        E::ONE
    } else if a <= E::ZERO {
        E::ZERO
    } else {
        a
    }
}

#[inline(always)]
fn each<E: Element>(x: &[E], out: &mut [E], f: impl Fn(E) -> E) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

/// `tanh_grad(g, y) = g ⊙ (1 − y²)` takes equal shapes.
pub(super) fn tanh_grad_shape<E: Element>(x: &[&Tensor<E>]) -> (usize, usize) {
    assert_eq!(
        x[0].shape(),
        x[1].shape(),
        "tanh_grad: shapes {:?} and {:?} differ",
        x[0].shape(),
        x[1].shape()
    );
    x[0].shape()
}

/// VJP of `o = g ⊙ (1 − y²)`: ḡ_g = ḡ ⊙ (1 − y²) (itself a `tanh_grad`), ḡ_y = −2 ḡ ⊙ g ⊙ y.
pub(super) fn tanh_grad_vjp<'t, E: Element>(
    x: &[Var<'t, E>],
    gbar: Var<'t, E>,
    needs: &[bool],
) -> Grads<'t, E> {
    let (g, y) = (x[0], x[1]);
    smallvec![
        needs[0].then(|| gbar.tape().push_prim(super::Prim::TanhGrad, &[gbar, y])),
        needs[1].then(|| gbar.prod3(g, y, E::from_f64(-2.0)))
    ]
}

/// JVP of `o = g ⊙ (1 − y²)`: ṫ_g ⊙ (1 − y²) − 2 g ⊙ y ⊙ ṫ_y.
pub(super) fn tanh_grad_jvp<'t, E: Element>(
    x: &[Var<'t, E>],
    t: &[Option<Var<'t, E>>],
) -> Option<Var<'t, E>> {
    let (g, y) = (x[0], x[1]);
    add_opt(
        t[0].map(|tg| tg.tape().push_prim(super::Prim::TanhGrad, &[tg, y])),
        t[1].map(|ty| g.prod3(y, ty, E::from_f64(-2.0))),
    )
}
