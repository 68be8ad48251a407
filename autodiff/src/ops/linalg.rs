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

/// `linear(x, W, b) = x Wᵀ + b` (PyTorch's `F.linear`): `x` is `n × in`, `W` is `out × in`,
/// `b` a `1 × out` row. The bias is written into the output before the GEMM accumulates onto
/// it, so the layer costs one pass over memory, not two.
///
/// VJP: x̄ = ḡ W, W̄ = ḡᵀ x, b̄ = Σ_rows ḡ. JVP: ẋ Wᵀ + x Ẇᵀ + ḃ.
pub(super) fn linear_shape<E: Element>(x: &[&Tensor<E>]) -> (usize, usize) {
    let (n, k) = x[0].shape();
    let (out, k2) = x[1].shape();
    assert_eq!(
        k,
        k2,
        "linear: input {:?} does not match weight {:?} (out × in)",
        x[0].shape(),
        x[1].shape()
    );
    assert_eq!(
        x[2].shape(),
        (1, out),
        "linear: bias {:?} is not 1 x {out} for weight {:?}",
        x[2].shape(),
        x[1].shape()
    );
    (n, out)
}

pub(super) fn linear_forward<E: Element>(x: &[&Tensor<E>], out: &mut Tensor<E>) {
    let out_cols = out.cols();
    if out_cols > 0 {
        let b = x[2].as_slice();
        for row in out.as_mut_slice().chunks_exact_mut(out_cols) {
            row.copy_from_slice(b);
        }
    }
    crate::tensor::matmul_into(x[0], false, x[1], true, out, E::ONE);
}

pub(super) fn linear_vjp<'t, E: Element>(
    x: &[Var<'t, E>],
    g: Var<'t, E>,
    needs: &[bool],
) -> Grads<'t, E> {
    let (inp, w, b) = (x[0], x[1], x[2]);
    smallvec![
        needs[0].then(|| g.mm(w, false, false)),
        needs[1].then(|| g.mm(inp, true, false)),
        needs[2].then(|| g.sum_to(1, b.shape().1)),
    ]
}

pub(super) fn linear_jvp<'t, E: Element>(
    x: &[Var<'t, E>],
    t: &[Option<Var<'t, E>>],
) -> Option<Var<'t, E>> {
    let (inp, w) = (x[0], x[1]);
    let from_x = t[0].map(|tx| match t[2] {
        // Keep the fused form when both the input and the bias move.
        Some(tb) => tx.linear(w, tb),
        None => tx.matmul_t(w),
    });
    let from_b = if t[0].is_some() { None } else { t[2] };
    let out = add_opt(add_opt(from_x, t[1].map(|tw| inp.matmul_t(tw))), from_b);
    let n = inp.shape().0;
    out.map(|o| o.broadcast_to(n, w.shape().0))
}
