//! Matrix product with optional transposes: y = op(a) · op(b).
//!
//! For y = A B: Ā = ḡ Bᵀ, B̄ = Aᵀ ḡ; with transposed operands the same identities are
//! rearranged so that every cotangent is again one matmul with stride-swapped operands.
//! JVP: ẏ = op(Ȧ) op(B) + op(A) op(Ḃ).

use smallvec::smallvec;

use super::{add_opt, Grads};
use crate::{Element, Tensor, Var};

pub(super) fn matmul_shape<E: Element>(x: &[&Tensor<E>], ta: bool, tb: bool) -> (usize, usize) {
    let (m, k) = if ta {
        (x[0].cols(), x[0].rows())
    } else {
        x[0].shape()
    };
    let (k2, n) = if tb {
        (x[1].cols(), x[1].rows())
    } else {
        x[1].shape()
    };
    assert_eq!(
        k,
        k2,
        "matmul: inner dimensions differ: {}{:?} · {}{:?}",
        if ta { "transpose of " } else { "" },
        x[0].shape(),
        if tb { "transpose of " } else { "" },
        x[1].shape()
    );
    (m, n)
}

pub(super) fn matmul_vjp<'t, E: Element>(
    x: &[Var<'t, E>],
    g: Var<'t, E>,
    ta: bool,
    tb: bool,
    needs: &[bool],
) -> Grads<'t, E> {
    let (a, b) = (x[0], x[1]);
    let (ga, gb) = match (ta, tb) {
        (false, false) => (
            needs[0].then(|| g.mm(b, false, true)),
            needs[1].then(|| a.mm(g, true, false)),
        ),
        (true, false) => (
            needs[0].then(|| b.mm(g, false, true)),
            needs[1].then(|| a.mm(g, false, false)),
        ),
        (false, true) => (
            needs[0].then(|| g.mm(b, false, false)),
            needs[1].then(|| g.mm(a, true, false)),
        ),
        (true, true) => (
            needs[0].then(|| b.mm(g, true, true)),
            needs[1].then(|| g.mm(a, true, true)),
        ),
    };
    smallvec![ga, gb]
}

pub(super) fn matmul_jvp<'t, E: Element>(
    x: &[Var<'t, E>],
    t: &[Option<Var<'t, E>>],
    ta: bool,
    tb: bool,
) -> Option<Var<'t, E>> {
    add_opt(
        t[0].map(|t| t.mm(x[1], ta, tb)),
        t[1].map(|t| x[0].mm(t, ta, tb)),
    )
}
