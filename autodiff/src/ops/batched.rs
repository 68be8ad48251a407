//! Batched pullbacks: each primitive's VJP applied to `k` cotangents at once.
//!
//! The `k` cotangents of an `r × c` output travel stacked by rows as one `k·r × c` matrix
//! (block `i` is cotangent `i`), which is what lets a matrix product pull all of them back with
//! one GEMM instead of `k` small ones. A rule is batched here only where it acts on the rows of
//! the cotangent independently, so that stacking commutes with it:
//!
//! * elementwise rules multiply by primal values of the output's shape, which are tiled to the
//!   stacked height (`tile`, memoized by the caller); values broadcast along rows (a bias row,
//!   a scalar) broadcast over the stack as they are;
//! * `ḡ·Bᵀ` (the left factor's cotangent of a product) is a GEMM on the stacked rows;
//! * the column ops (slices, pads, concatenation, a sum over columns) act within each row.
//!
//! Rules that mix rows — the cotangent of a right factor (`Aᵀḡ`), of a broadcast operand (a sum
//! over rows), a transpose, the row-block ops themselves — return `None`, and the caller falls
//! back to `k` separate products. Every batched rule is written with tape operations, so its
//! result is differentiable like any other VJP.

use smallvec::{smallvec, SmallVec};

use super::{Fun, Grads, Prim};
use crate::{Element, Var};

impl<E: Element> Prim<E> {
    /// The pullback of `k` cotangents stacked in `g` (`k·r × c` for an `r × c` output `y`), as
    /// stacked input cotangents (`k·rᵢ × cᵢ` each); `None` if this rule mixes rows for the
    /// inputs in `needs`. `tile` stacks `k` copies of a primal value (the caller memoizes it).
    pub(crate) fn vjp_batched<'t>(
        &self,
        x: &[Var<'t, E>],
        y: Var<'t, E>,
        g: Var<'t, E>,
        k: usize,
        needs: &[bool],
        tile: &mut dyn FnMut(Var<'t, E>) -> Var<'t, E>,
    ) -> Option<Grads<'t, E>> {
        let r = y.shape().0;
        let need = |i: usize| needs.get(i).copied().unwrap_or(false);
        // A needed operand must span the output's rows: the cotangent of one broadcast along
        // rows would be a sum over rows, which mixes the stacked blocks.
        if (0..x.len()).any(|i| need(i) && x[i].shape().0 != r && self.is_elementwise()) {
            return None;
        }
        // Elementwise rules read primal values at the stacked height: tile the row-aligned
        // ones, leave the row-broadcast ones (1 × c, 1 × 1) to broadcast over the stack.
        let mut at = |v: Var<'t, E>| if v.shape().0 == r { tile(v) } else { v };
        // Cotangent of an operand of shape (rᵢ, cᵢ) broadcast along columns: sum over columns
        // within each stacked row.
        let back = |gi: Var<'t, E>, xi: Var<'t, E>| gi.sum_to(k * r, xi.shape().1);
        let out: Grads<'t, E> = match *self {
            Prim::Add => smallvec![
                need(0).then(|| back(g, x[0])),
                need(1).then(|| back(g, x[1]))
            ],
            Prim::Sub => smallvec![
                need(0).then(|| back(g, x[0])),
                need(1).then(|| back(-g, x[1]))
            ],
            Prim::Mul => smallvec![
                need(0).then(|| back(g * at(x[1]), x[0])),
                need(1).then(|| back(g * at(x[0]), x[1]))
            ],
            Prim::Div => {
                let b = at(x[1]);
                smallvec![
                    need(0).then(|| back(g / b, x[0])),
                    need(1).then(|| back(-(g * at(y) / b), x[1]))
                ]
            }
            Prim::Affine { mul, .. } => smallvec![Some(g.affine(mul, E::ZERO))],
            Prim::TanhGrad => {
                // o = g' ⊙ (1 − y'²): ∂/∂g' = 1 − y'², ∂/∂y' = −2 g' ⊙ y'.
                let yt = at(x[1]);
                smallvec![
                    need(0).then(|| g.tape().push_prim(Prim::TanhGrad, &[g, yt])),
                    need(1).then(|| g.prod3(at(x[0]), yt, E::from_f64(-2.0)))
                ]
            }
            Prim::Map(f) => {
                // Functions whose derivative is read from the output need no tiled input.
                let xin = if f.derivative_reads_input() {
                    at(x[0])
                } else {
                    x[0]
                };
                smallvec![Some(f.pullback(xin, at(y), g))]
            }
            Prim::Prod3(c) => {
                let (a, b, d) = (at(x[0]), at(x[1]), at(x[2]));
                smallvec![
                    need(0).then(|| g.prod3(b, d, c)),
                    need(1).then(|| a.prod3(g, d, c)),
                    need(2).then(|| a.prod3(b, g, c)),
                ]
            }
            // y = A·op(B) with only A moving: Ā = ḡ·op(B)ᵀ, row by row.
            Prim::MatMul { ta: false, tb } if !need(1) => {
                smallvec![Some(g.mm(x[1], false, !tb)), None]
            }
            // y = x·Wᵀ + b with only x moving: x̄ = ḡ·W.
            Prim::Linear if !need(1) && !need(2) => {
                smallvec![Some(g.mm(x[1], false, false)), None, None]
            }
            Prim::SumTo(rows, _) if rows == x[0].shape().0 => {
                smallvec![Some(g.broadcast_to(k * rows, x[0].shape().1))]
            }
            Prim::BroadcastTo(rows, _) if rows == x[0].shape().0 => {
                smallvec![Some(g.sum_to(k * rows, x[0].shape().1))]
            }
            Prim::SliceCols(a, _) => smallvec![Some(g.pad_cols(a, x[0].shape().1))],
            Prim::PadCols { start, .. } => {
                smallvec![Some(g.slice_cols(start, start + x[0].shape().1))]
            }
            Prim::ConcatCols => {
                let mut off = 0;
                let mut out: Grads<'t, E> = SmallVec::with_capacity(x.len());
                for (i, xi) in x.iter().enumerate() {
                    let w = xi.shape().1;
                    out.push(need(i).then(|| g.slice_cols(off, off + w)));
                    off += w;
                }
                out
            }
            Prim::MatMul { .. }
            | Prim::Linear
            | Prim::SumTo(..)
            | Prim::BroadcastTo(..)
            | Prim::Transpose
            | Prim::TileRows(_)
            | Prim::SumRowBlocks(_) => return None,
        };
        Some(out)
    }

    /// Whether the rule combines operands elementwise (with broadcasting).
    fn is_elementwise(&self) -> bool {
        matches!(
            self,
            Prim::Add
                | Prim::Sub
                | Prim::Mul
                | Prim::Div
                | Prim::Affine { .. }
                | Prim::TanhGrad
                | Prim::Map(_)
                | Prim::Prod3(_)
        )
    }
}

impl<E: Element> Fun<E> {
    /// Whether [`derivative`](Fun::derivative) reads the input `x` (otherwise only the output).
    fn derivative_reads_input(&self) -> bool {
        !matches!(self, Fun::Exp | Fun::Tanh | Fun::Sigmoid | Fun::Sqrt)
    }
}
