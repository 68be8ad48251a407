//! Elementwise functions y = φ(x). For all of them VJP = ḡ ⊙ φ'(x) and JVP = ṫ ⊙ φ'(x), so each
//! function is defined by its forward kernel and its derivative φ' written with tape ops.

use crate::{Element, Var};

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
    /// |x|; φ' = sign(x) (a constant: its own derivative is zero almost everywhere).
    Abs,
    /// max(x, 0); φ' = [x > 0] (a constant).
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
            Fun::Relu => each(x, out, |v| if v > E::ZERO { v } else { E::ZERO }),
            Fun::Sin => E::vsin(x, out),
            Fun::Cos => E::vcos(x, out),
            Fun::Powi(2) => each(x, out, |v| v * v),
            Fun::Powi(n) => each(x, out, |v| v.powi(n)),
            Fun::Powf(p) => each(x, out, |v| v.powf(p)),
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
            Fun::Abs => x.tape().constant(x.with_value(|v| v.map(E::sign))),
            Fun::Relu => x
                .tape()
                .constant(x.with_value(|v| v.map(|a| if a > E::ZERO { E::ONE } else { E::ZERO }))),
            Fun::Sin => x.cos(),
            Fun::Cos => -x.sin(),
            Fun::Powi(0) => x.tape().constant(x.with_value(|v| v.map(|_| E::ZERO))),
            Fun::Powi(1) => x.tape().constant(x.with_value(|v| v.map(|_| E::ONE))),
            Fun::Powi(n) => x.powi(n - 1) * E::from_f64(n as f64),
            Fun::Powf(p) => x.powf(p - E::ONE) * p,
        }
    }
}

#[inline]
fn each<E: Element>(x: &[E], out: &mut [E], f: impl Fn(E) -> E) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}
