//! Elementwise arithmetic: add, sub, mul, div, neg and the scalar forms.
//!
//! | op | forward | VJP (ḡ = cotangent) | JVP (ṫ = tangent) |
//! |---|---|---|---|
//! | add | a + b | (ḡ, ḡ) | ṫa + ṫb |
//! | sub | a − b | (ḡ, −ḡ) | ṫa − ṫb |
//! | mul | a ⊙ b | (ḡ ⊙ b, ḡ ⊙ a) | ṫa ⊙ b + a ⊙ ṫb |
//! | div | a ⊘ b | (ḡ ⊘ b, −ḡ ⊙ y ⊘ b) | (ṫa − y ⊙ ṫb) ⊘ b |
//! | neg | −a | −ḡ | −ṫ |
//! | add_scalar(c) | a + c | ḡ | ṫ |
//! | mul_scalar(c) | c a | c ḡ | c ṫ |

use smallvec::smallvec;

use super::{add_opt, Grads, Prim};
use crate::{Element, Tensor, Var};

pub(super) fn binary_shape<E: Element>(name: &str, x: &[&Tensor<E>]) -> (usize, usize) {
    assert_eq!(
        x[0].shape(),
        x[1].shape(),
        "{name}: shapes {:?} and {:?} differ (the primitive takes equal shapes; Var operators broadcast)",
        x[0].shape(),
        x[1].shape()
    );
    x[0].shape()
}

#[inline]
pub(super) fn zip<E: Element>(x: &[&Tensor<E>], out: &mut Tensor<E>, f: impl Fn(E, E) -> E) {
    let (a, b) = (x[0].as_slice(), x[1].as_slice());
    for ((o, &a), &b) in out.as_mut_slice().iter_mut().zip(a).zip(b) {
        *o = f(a, b);
    }
}

#[inline]
pub(super) fn map<E: Element>(x: &Tensor<E>, out: &mut Tensor<E>, f: impl Fn(E) -> E) {
    for (o, &a) in out.as_mut_slice().iter_mut().zip(x.as_slice()) {
        *o = f(a);
    }
}

pub(super) fn vjp<'t, E: Element>(
    p: &Prim<E>,
    x: &[Var<'t, E>],
    y: Var<'t, E>,
    g: Var<'t, E>,
    needs: &[bool],
) -> Grads<'t, E> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    match p {
        Prim::Add => smallvec![Some(g), Some(g)],
        Prim::Sub => smallvec![Some(g), need(1).then(|| -g)],
        Prim::Mul => smallvec![need(0).then(|| g * x[1]), need(1).then(|| g * x[0])],
        Prim::Div => {
            let gb = need(0).then(|| g / x[1]);
            let gy = need(1).then(|| -(g * y / x[1]));
            smallvec![gb, gy]
        }
        Prim::Neg => smallvec![Some(-g)],
        Prim::AddScalar(_) => smallvec![Some(g)],
        Prim::MulScalar(c) => smallvec![Some(g * *c)],
        _ => unreachable!("arith::vjp called for {}", p.name()),
    }
}

pub(super) fn jvp<'t, E: Element>(
    p: &Prim<E>,
    x: &[Var<'t, E>],
    y: Var<'t, E>,
    t: &[Option<Var<'t, E>>],
) -> Option<Var<'t, E>> {
    match p {
        Prim::Add => add_opt(t[0], t[1]),
        Prim::Sub => add_opt(t[0], t[1].map(|t| -t)),
        Prim::Mul => add_opt(t[0].map(|t| t * x[1]), t[1].map(|t| x[0] * t)),
        Prim::Div => {
            let num = add_opt(t[0], t[1].map(|t| -(y * t)));
            num.map(|n| n / x[1])
        }
        Prim::Neg => t[0].map(|t| -t),
        Prim::AddScalar(_) => t[0],
        Prim::MulScalar(c) => t[0].map(|t| t * *c),
        _ => unreachable!("arith::jvp called for {}", p.name()),
    }
}
