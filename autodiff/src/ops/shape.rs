//! Shape primitives, in adjoint pairs:
//!
//! | op | VJP | JVP |
//! |---|---|---|
//! | sum_to(r, c): sum over the axes that shrink to 1 | broadcast_to(input shape) | sum_to(ṫ) |
//! | broadcast_to(r, c): repeat a row, a column or a scalar | sum_to(input shape) | broadcast_to(ṫ) |
//! | slice_cols(a, b) | pad_cols(a, c) | slice_cols(ṫ) |
//! | pad_cols(a, c): zeros around | slice_cols(a, a + w) | pad_cols(ṫ) |
//! | concat_cols(x₁ … xₙ) | slices of ḡ | concat of the tangents |
//! | transpose | ḡᵀ | ṫᵀ |
//! | tile_rows(k): k copies stacked by rows | sum_row_blocks(k) | tile_rows(ṫ) |
//! | sum_row_blocks(k): sum of k stacked row blocks | tile_rows(k) | sum_row_blocks(ṫ) |
//!
//! The last pair exists for batched products (`Tape::vjp_batched`): k cotangents of an
//! `r × c` value travel stacked as one `k·r × c` matrix, and a primal value that meets them
//! in an elementwise rule is tiled to that height.

use smallvec::SmallVec;

use super::{Grads, Prim};
use crate::{Element, Tensor, Var};

pub(super) fn sum_to_shape<E: Element>(x: &Tensor<E>, r: usize, c: usize) -> (usize, usize) {
    let (xr, xc) = x.shape();
    assert!(
        (r == xr || r == 1) && (c == xc || c == 1),
        "sum_to: cannot reduce {xr}x{xc} to {r}x{c} (each target axis must equal the input's or be 1)"
    );
    (r, c)
}

pub(super) fn broadcast_to_shape<E: Element>(x: &Tensor<E>, r: usize, c: usize) -> (usize, usize) {
    let (xr, xc) = x.shape();
    assert!(
        (xr == r || xr == 1) && (xc == c || xc == 1),
        "broadcast_to: cannot broadcast {xr}x{xc} to {r}x{c} (each input axis must equal the target's or be 1)"
    );
    (r, c)
}

pub(super) fn slice_cols_shape<E: Element>(x: &Tensor<E>, a: usize, b: usize) -> (usize, usize) {
    assert!(
        a <= b && b <= x.cols(),
        "slice_cols: columns {a}..{b} out of a {}x{} tensor",
        x.rows(),
        x.cols()
    );
    (x.rows(), b - a)
}

pub(super) fn pad_cols_shape<E: Element>(
    x: &Tensor<E>,
    start: usize,
    total: usize,
) -> (usize, usize) {
    assert!(
        start + x.cols() <= total,
        "pad_cols: {}x{} placed at column {start} does not fit in {total} columns",
        x.rows(),
        x.cols()
    );
    (x.rows(), total)
}

pub(super) fn concat_cols_shape<E: Element>(x: &[&Tensor<E>]) -> (usize, usize) {
    assert!(!x.is_empty(), "concat_cols: no inputs");
    let r = x[0].rows();
    for t in x {
        assert_eq!(
            t.rows(),
            r,
            "concat_cols: row counts differ: {:?}",
            x.iter().map(|t| t.shape()).collect::<Vec<_>>()
        );
    }
    (r, x.iter().map(|t| t.cols()).sum())
}

pub(super) fn tile_rows_shape<E: Element>(x: &Tensor<E>, k: usize) -> (usize, usize) {
    assert!(
        k >= 1,
        "tile_rows: {k} copies of a {:?} tensor (at least 1)",
        x.shape()
    );
    (k * x.rows(), x.cols())
}

pub(super) fn sum_row_blocks_shape<E: Element>(x: &Tensor<E>, k: usize) -> (usize, usize) {
    let (r, c) = x.shape();
    assert!(
        k >= 1 && r % k == 0,
        "sum_row_blocks: {r}x{c} does not split into {k} row blocks of equal height"
    );
    (r / k, c)
}

/// Row-major storage makes the stacked copies one contiguous copy each.
pub(super) fn tile_rows<E: Element>(x: &Tensor<E>, out: &mut Tensor<E>) {
    let src = x.as_slice();
    if src.is_empty() {
        return;
    }
    for block in out.as_mut_slice().chunks_exact_mut(src.len()) {
        block.copy_from_slice(src);
    }
}

pub(super) fn sum_row_blocks<E: Element>(x: &Tensor<E>, out: &mut Tensor<E>) {
    let dst = out.as_mut_slice();
    if dst.is_empty() {
        return;
    }
    let mut blocks = x.as_slice().chunks_exact(dst.len());
    dst.copy_from_slice(blocks.next().expect("k >= 1 blocks"));
    for block in blocks {
        for (d, &s) in dst.iter_mut().zip(block) {
            *d += s;
        }
    }
}

pub(super) fn transpose<E: Element>(x: &Tensor<E>, out: &mut Tensor<E>) {
    let (r, c) = x.shape();
    let (src, dst) = (x.as_slice(), out.as_mut_slice());
    // Blocked so that both the reads and the writes stay within a few cache lines.
    const B: usize = 16;
    for i0 in (0..r).step_by(B) {
        for j0 in (0..c).step_by(B) {
            for i in i0..(i0 + B).min(r) {
                for j in j0..(j0 + B).min(c) {
                    dst[j * r + i] = src[i * c + j];
                }
            }
        }
    }
}

pub(super) fn sum_to<E: Element>(x: &Tensor<E>, out: &mut Tensor<E>) {
    let (xr, xc) = x.shape();
    let (r, c) = out.shape();
    let src = x.as_slice();
    let dst = out.as_mut_slice();
    // A sum over nothing is 0: an empty axis (a batch of 0 rows, or 0 features) reduces to
    // zeros of the target shape, which is also what keeps its VJP (a broadcast back to the
    // empty input) and JVP consistent.
    if src.is_empty() {
        dst.fill(E::ZERO);
        return;
    }
    match (r == xr, c == xc) {
        (true, true) => dst.copy_from_slice(src),
        (false, true) => {
            // Over rows: start from the first row and add the others (xr ≥ 1, xc ≥ 1 here).
            dst.copy_from_slice(&src[..xc]);
            for row in src.chunks_exact(xc).skip(1) {
                for (d, &s) in dst.iter_mut().zip(row) {
                    *d += s;
                }
            }
        }
        (true, false) => {
            for (d, row) in dst.iter_mut().zip(src.chunks_exact(xc)) {
                *d = row.iter().copied().sum();
            }
        }
        (false, false) => dst[0] = src.iter().copied().sum(),
    }
}

pub(super) fn broadcast_to<E: Element>(x: &Tensor<E>, out: &mut Tensor<E>) {
    let (xr, xc) = x.shape();
    let (_, c) = out.shape();
    let src = x.as_slice();
    let dst = out.as_mut_slice();
    if c == 0 {
        return;
    }
    for (i, row) in dst.chunks_exact_mut(c).enumerate() {
        match (xr == 1, xc == 1) {
            (_, true) => row.fill(src[if xr == 1 { 0 } else { i }]),
            (true, false) => row.copy_from_slice(src),
            (false, false) => row.copy_from_slice(&src[i * c..(i + 1) * c]),
        }
    }
}

pub(super) fn slice_cols<E: Element>(x: &Tensor<E>, a: usize, out: &mut Tensor<E>) {
    let (xc, w) = (x.cols(), out.cols());
    if w == 0 {
        return;
    }
    for (i, row) in out.as_mut_slice().chunks_exact_mut(w).enumerate() {
        row.copy_from_slice(&x.as_slice()[i * xc + a..i * xc + a + w]);
    }
}

pub(super) fn pad_cols<E: Element>(x: &Tensor<E>, start: usize, out: &mut Tensor<E>) {
    let (w, total) = (x.cols(), out.cols());
    out.fill(E::ZERO);
    if w == 0 {
        return;
    }
    for (i, row) in out.as_mut_slice().chunks_exact_mut(total).enumerate() {
        row[start..start + w].copy_from_slice(x.row(i));
    }
}

pub(super) fn concat_cols<E: Element>(x: &[&Tensor<E>], out: &mut Tensor<E>) {
    let total = out.cols();
    if total == 0 {
        return;
    }
    let mut off = 0;
    for t in x {
        let w = t.cols();
        if w > 0 {
            for (i, row) in out.as_mut_slice().chunks_exact_mut(total).enumerate() {
                row[off..off + w].copy_from_slice(t.row(i));
            }
        }
        off += w;
    }
}

pub(super) fn vjp<'t, E: Element>(
    p: &Prim<E>,
    x: &[Var<'t, E>],
    g: Var<'t, E>,
    needs: &[bool],
) -> Grads<'t, E> {
    match *p {
        Prim::SumTo(..) => {
            let (r, c) = x[0].shape();
            smallvec::smallvec![Some(g.broadcast_to(r, c))]
        }
        Prim::BroadcastTo(..) => {
            let (r, c) = x[0].shape();
            smallvec::smallvec![Some(g.sum_to(r, c))]
        }
        Prim::SliceCols(a, _) => smallvec::smallvec![Some(g.pad_cols(a, x[0].shape().1))],
        Prim::PadCols { start, .. } => {
            smallvec::smallvec![Some(g.slice_cols(start, start + x[0].shape().1))]
        }
        Prim::TileRows(k) => smallvec::smallvec![Some(g.sum_row_blocks(k))],
        Prim::SumRowBlocks(k) => smallvec::smallvec![Some(g.tile_rows(k))],
        Prim::ConcatCols => {
            let mut off = 0;
            let mut out: Grads<'t, E> = SmallVec::with_capacity(x.len());
            for (i, xi) in x.iter().enumerate() {
                let w = xi.shape().1;
                out.push(needs[i].then(|| g.slice_cols(off, off + w)));
                off += w;
            }
            out
        }
        _ => unreachable!("shape::vjp called for {}", p.name()),
    }
}

pub(super) fn jvp<'t, E: Element>(
    p: &Prim<E>,
    x: &[Var<'t, E>],
    t: &[Option<Var<'t, E>>],
) -> Option<Var<'t, E>> {
    match *p {
        Prim::SumTo(r, c) => t[0].map(|t| t.sum_to(r, c)),
        Prim::BroadcastTo(r, c) => t[0].map(|t| t.broadcast_to(r, c)),
        Prim::SliceCols(a, b) => t[0].map(|t| t.slice_cols(a, b)),
        Prim::PadCols { start, total } => t[0].map(|t| t.pad_cols(start, total)),
        Prim::TileRows(k) => t[0].map(|t| t.tile_rows(k)),
        Prim::SumRowBlocks(k) => t[0].map(|t| t.sum_row_blocks(k)),
        Prim::ConcatCols => {
            if t.iter().all(|t| t.is_none()) {
                return None;
            }
            let tape = x[0].tape();
            let parts: SmallVec<[Var<'t, E>; 4]> = x
                .iter()
                .zip(t)
                .map(|(xi, ti)| ti.unwrap_or_else(|| tape.zeros(xi.shape().0, xi.shape().1)))
                .collect();
            Some(tape.concat_cols(&parts))
        }
        _ => unreachable!("shape::jvp called for {}", p.name()),
    }
}
