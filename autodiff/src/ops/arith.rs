//! Elementwise arithmetic with broadcasting, and the scalar affine map.
//!
//! Binary ops accept operands of equal shape or where one side is a `1 × c` row, an `r × 1`
//! column or a `1 × 1` scalar; the broadcast is done inside the kernel (nothing is
//! materialised), and the VJP sums the cotangent back to each operand's shape with `sum_to`
//! ([`unbroadcast`]), the one place gradients are un-broadcast.
//!
//! | op | forward | VJP (ḡ = cotangent) | JVP (ṫ = tangent) |
//! |---|---|---|---|
//! | add | a + b | (ḡ, ḡ) | ṫa + ṫb |
//! | sub | a − b | (ḡ, −ḡ) | ṫa − ṫb |
//! | mul | a ⊙ b | (ḡ ⊙ b, ḡ ⊙ a) | ṫa ⊙ b + a ⊙ ṫb |
//! | div | a ⊘ b | (ḡ ⊘ b, −ḡ ⊙ y ⊘ b) | (ṫa − y ⊙ ṫb) ⊘ b |
//! | affine(m, c) | m a + c | m ḡ | m ṫ |
//! | prod3(k) | k a ⊙ b ⊙ c | (k ḡbc, k aḡc, k abḡ) | k(ȧbc + aḃc + abċ) |
//!
//! `prod3` (equal shapes) is the fused triple product that second derivatives of tanh
//! networks are made of; its rules are prod3s again, so the set stays closed.

use smallvec::smallvec;

use super::{add_opt, Grads, Prim};
use crate::{Element, Tensor, Var};

pub(super) fn binary_shape<E: Element>(name: &str, x: &[&Tensor<E>]) -> (usize, usize) {
    let (sa, sb) = (x[0].shape(), x[1].shape());
    if sa == sb {
        return sa;
    }
    let dim = |p: usize, q: usize| {
        if p == q || q == 1 {
            p
        } else if p == 1 {
            q
        } else {
            panic!(
                "{name}: shapes {sa:?} and {sb:?} do not broadcast (each axis must match or be 1)"
            )
        }
    };
    (dim(sa.0, sb.0), dim(sa.1, sb.1))
}

/// `out = f(a, b)` elementwise with broadcasting; the common layouts get their own loops so
/// they vectorize.
#[inline(always)]
pub(super) fn zip<E: Element>(x: &[&Tensor<E>], out: &mut Tensor<E>, f: impl Fn(E, E) -> E) {
    let (a, b) = (x[0], x[1]);
    let (r, c) = out.shape();
    let o = out.as_mut_slice();
    let (av, bv) = (a.as_slice(), b.as_slice());
    if c == 0 || r == 0 {
        return;
    }
    match (a.shape() == (r, c), b.shape()) {
        (true, sb) if sb == (r, c) => {
            for ((o, &a), &b) in o.iter_mut().zip(av).zip(bv) {
                *o = f(a, b);
            }
        }
        (true, (1, 1)) => {
            let b = bv[0];
            for (o, &a) in o.iter_mut().zip(av) {
                *o = f(a, b);
            }
        }
        (true, (1, _)) => {
            for (orow, arow) in o.chunks_exact_mut(c).zip(av.chunks_exact(c)) {
                for ((o, &a), &b) in orow.iter_mut().zip(arow).zip(bv) {
                    *o = f(a, b);
                }
            }
        }
        (true, _) => {
            for ((orow, arow), &b) in o.chunks_exact_mut(c).zip(av.chunks_exact(c)).zip(bv) {
                for (o, &a) in orow.iter_mut().zip(arow) {
                    *o = f(a, b);
                }
            }
        }
        _ => {
            // The first operand is broadcast (rare in practice): index both through their strides.
            let stride = |t: &Tensor<E>| {
                let (tr, tc) = t.shape();
                (if tr == 1 { 0 } else { tc }, usize::from(tc != 1))
            };
            let ((ra, ca), (rb, cb)) = (stride(a), stride(b));
            for (i, orow) in o.chunks_exact_mut(c).enumerate() {
                for (j, o) in orow.iter_mut().enumerate() {
                    *o = f(av[i * ra + j * ca], bv[i * rb + j * cb]);
                }
            }
        }
    }
}

#[inline(always)]
pub(super) fn map<E: Element>(x: &Tensor<E>, out: &mut Tensor<E>, f: impl Fn(E) -> E) {
    for (o, &a) in out.as_mut_slice().iter_mut().zip(x.as_slice()) {
        *o = f(a);
    }
}

/// Sums a cotangent of the broadcast shape back to an operand's shape.
pub(crate) fn unbroadcast<'t, E: Element>(g: Var<'t, E>, shape: (usize, usize)) -> Var<'t, E> {
    g.sum_to(shape.0, shape.1)
}

pub(super) fn vjp<'t, E: Element>(
    p: &Prim<E>,
    x: &[Var<'t, E>],
    y: Var<'t, E>,
    g: Var<'t, E>,
    needs: &[bool],
) -> Grads<'t, E> {
    let need = |i: usize| needs.get(i).copied().unwrap_or(false);
    let shape = |i: usize| x[i].shape();
    match *p {
        Prim::Add => smallvec![
            need(0).then(|| unbroadcast(g, shape(0))),
            need(1).then(|| unbroadcast(g, shape(1)))
        ],
        Prim::Sub => smallvec![
            need(0).then(|| unbroadcast(g, shape(0))),
            need(1).then(|| unbroadcast(-g, shape(1)))
        ],
        Prim::Mul => smallvec![
            need(0).then(|| unbroadcast(g * x[1], shape(0))),
            need(1).then(|| unbroadcast(g * x[0], shape(1)))
        ],
        Prim::Div => smallvec![
            need(0).then(|| unbroadcast(g / x[1], shape(0))),
            need(1).then(|| unbroadcast(-(g * y / x[1]), shape(1)))
        ],
        Prim::Affine { mul, .. } => smallvec![Some(g.affine(mul, E::ZERO))],
        _ => unreachable!("arith::vjp called for {}", p.name()),
    }
}

pub(super) fn jvp<'t, E: Element>(
    p: &Prim<E>,
    x: &[Var<'t, E>],
    y: Var<'t, E>,
    t: &[Option<Var<'t, E>>],
) -> Option<Var<'t, E>> {
    let out = match *p {
        Prim::Add => add_opt(t[0], t[1]),
        Prim::Sub => add_opt(t[0], t[1].map(|t| -t)),
        Prim::Mul => add_opt(t[0].map(|t| t * x[1]), t[1].map(|t| x[0] * t)),
        Prim::Div => {
            let num = add_opt(t[0], t[1].map(|t| -(y * t)));
            num.map(|n| n / x[1])
        }
        Prim::Affine { mul, .. } => return t[0].map(|t| t.affine(mul, E::ZERO)),
        _ => unreachable!("arith::jvp called for {}", p.name()),
    };
    // A tangent of a broadcast operand alone is smaller than the output.
    let (r, c) = y.shape();
    out.map(|t| t.broadcast_to(r, c))
}

pub(super) fn prod3_shape<E: Element>(x: &[&Tensor<E>]) -> (usize, usize) {
    assert!(
        x[0].shape() == x[1].shape() && x[1].shape() == x[2].shape(),
        "prod3: shapes {:?}, {:?} and {:?} differ",
        x[0].shape(),
        x[1].shape(),
        x[2].shape()
    );
    x[0].shape()
}

#[inline(always)]
pub(super) fn prod3<E: Element>(x: &[&Tensor<E>], k: E, out: &mut Tensor<E>) {
    let (a, b, c) = (x[0].as_slice(), x[1].as_slice(), x[2].as_slice());
    for (((o, &a), &b), &c) in out.as_mut_slice().iter_mut().zip(a).zip(b).zip(c) {
        *o = k * a * b * c;
    }
}

pub(super) fn prod3_vjp<'t, E: Element>(
    x: &[Var<'t, E>],
    k: E,
    g: Var<'t, E>,
    needs: &[bool],
) -> Grads<'t, E> {
    let (a, b, c) = (x[0], x[1], x[2]);
    smallvec![
        needs[0].then(|| g.prod3(b, c, k)),
        needs[1].then(|| a.prod3(g, c, k)),
        needs[2].then(|| a.prod3(b, g, k)),
    ]
}

pub(super) fn prod3_jvp<'t, E: Element>(
    x: &[Var<'t, E>],
    k: E,
    t: &[Option<Var<'t, E>>],
) -> Option<Var<'t, E>> {
    let (a, b, c) = (x[0], x[1], x[2]);
    add_opt(
        add_opt(
            t[0].map(|ta| ta.prod3(b, c, k)),
            t[1].map(|tb| a.prod3(tb, c, k)),
        ),
        t[2].map(|tc| a.prod3(b, tc, k)),
    )
}
