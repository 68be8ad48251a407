//! Direct loops for the degenerate GEMM shapes of narrow layers (`k ≤ 4`: a rank-k update,
//! e.g. the 2→64 input layer and the VJP of the 64→2 output layer; `n ≤ 4` with a transposed
//! `A`: axpys, e.g. the weight gradient of the output layer), where the blocked kernels of
//! the `gemm` crate spend their time packing and on edge tiles: measured 1.3–8× faster there
//! at batch 512. Plain slice code; the inner loops run over contiguous packed data so LLVM
//! vectorizes them.

use crate::cpu::{self, Path};
use crate::Element;

/// Columns of `B` packed per pass of the rank-k path.
const NB: usize = 64;
/// Rows of `C` per strip of the axpy path (one or two vector registers per column).
const IB: usize = 16;

/// Handles `C = alpha·A·B + beta·C` (same contract as [`Element::gemm`], `m, n > 0`, bounds
/// already checked) on `path` if the shape is skinny and the layout suits one of the direct
/// loops; returns `false`, touching nothing, otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<E: Element>(
    path: Path,
    m: usize,
    k: usize,
    n: usize,
    alpha: E,
    a: &[E],
    rsa: isize,
    csa: isize,
    b: &[E],
    rsb: isize,
    csb: isize,
    beta: E,
    c: &mut [E],
    rsc: isize,
    csc: isize,
) -> bool {
    if [rsa, csa, rsb, csb, rsc, csc].iter().any(|&s| s < 0) || k == 0 {
        return false;
    }
    let (rsa, csa, rsb, csb, rsc, csc) = (
        rsa as usize,
        csa as usize,
        rsb as usize,
        csb as usize,
        rsc as usize,
        csc as usize,
    );
    if k <= 4 && n <= NB && csc == 1 {
        // On the AVX2 and AVX-512 paths, the intrinsics kernel of smallgemm.rs with B packed
        // contiguously (at most 4×64 elements) beats the rank-k loop below as compiled in the
        // paths' wrappers, where LLVM's generic x86 tuning reloads the packed B from the
        // stack for every row (measured: 1.5-2x slower than the same loop built with
        // -C target-cpu=native; the intrinsics kernel matches or beats that, except the AVX2
        // `G·W` with k = 2, about 20% slower, outweighed by the `x·Wᵀ` cases, 20% faster).
        // The baseline path has no such kernel and keeps the loop.
        let mut bp = [E::ZERO; 4 * NB];
        for p in 0..k {
            for j in 0..n {
                bp[p * n + j] = b[p * rsb + j * csb];
            }
        }
        if E::small_gemm(
            path,
            m,
            k,
            n,
            alpha,
            a,
            rsa as isize,
            csa as isize,
            &bp[..k * n],
            n as isize,
            1,
            beta,
            c,
            rsc as isize,
            1,
        ) {
            return true;
        }
    }
    let ab = (alpha, a, rsa, csa, b, rsb, csb);
    // Each loop runs inside the path's `#[target_feature]` wrapper (inlined into it), so its
    // vector loops get that path's width.
    macro_rules! on_path {
        ($call:expr) => {
            cpu::run(
                path,
                cpu::Call(
                    #[inline(always)]
                    move || $call,
                ),
            )
        };
    }
    match (k, n) {
        (1, _) if csc == 1 => on_path!(rank_k::<E, 1>(m, n, ab, beta, c, rsc)),
        (2, _) if csc == 1 => on_path!(rank_k::<E, 2>(m, n, ab, beta, c, rsc)),
        (3, _) if csc == 1 => on_path!(rank_k::<E, 3>(m, n, ab, beta, c, rsc)),
        (4, _) if csc == 1 => on_path!(rank_k::<E, 4>(m, n, ab, beta, c, rsc)),
        (_, 1) if rsa == 1 => on_path!(narrow_n::<E, 1>(m, k, ab, beta, c, rsc, csc)),
        (_, 2) if rsa == 1 => on_path!(narrow_n::<E, 2>(m, k, ab, beta, c, rsc, csc)),
        (_, 3) if rsa == 1 => on_path!(narrow_n::<E, 3>(m, k, ab, beta, c, rsc, csc)),
        (_, 4) if rsa == 1 => on_path!(narrow_n::<E, 4>(m, k, ab, beta, c, rsc, csc)),
        _ => return false,
    }
    true
}

/// `(alpha, A, rsa, csa, B, rsb, csb)`.
type Operands<'a, E> = (E, &'a [E], usize, usize, &'a [E], usize, usize);

/// `beta·c + alpha·acc`, without reading `c` when `beta == 0`.
#[inline(always)]
fn blend<E: Element>(c: E, beta: E, alpha: E, acc: E) -> E {
    if beta == E::ZERO {
        alpha * acc
    } else {
        beta * c + alpha * acc
    }
}

/// `k = K ≤ 4`, row-major `C`: each row of `C` is `Σ_p alpha·A[i,p]·B[p,:]`, computed in
/// one pass over the row against `B` packed contiguously.
#[inline(always)]
fn rank_k<E: Element, const K: usize>(
    m: usize,
    n: usize,
    (alpha, a, rsa, csa, b, rsb, csb): Operands<'_, E>,
    beta: E,
    c: &mut [E],
    rsc: usize,
) {
    let mut bp = [[E::ZERO; NB]; K];
    for j0 in (0..n).step_by(NB) {
        let nb = NB.min(n - j0);
        for (p, row) in bp.iter_mut().enumerate() {
            for (j, v) in row[..nb].iter_mut().enumerate() {
                *v = b[p * rsb + (j0 + j) * csb];
            }
        }
        for i in 0..m {
            let mut ai = [E::ZERO; K];
            for (p, v) in ai.iter_mut().enumerate() {
                *v = alpha * a[i * rsa + p * csa];
            }
            let row = &mut c[i * rsc + j0..i * rsc + j0 + nb];
            // Full blocks go through a fixed-size array so the inlined loops have a
            // constant trip count: with a run-time `nb` LLVM left most of each row to a
            // scalar epilogue (measured 3-4x slower).
            match <&mut [E; NB]>::try_from(&mut *row) {
                Ok(full) => rank_k_row(&mut full[..], &ai, &bp, beta),
                Err(_) => rank_k_row(row, &ai, &bp, beta),
            }
        }
    }
}

/// `row[j] = beta·row[j] + Σ_p ai[p]·bp[p][j]` (`row` not read when `beta == 0`).
#[inline(always)]
fn rank_k_row<E: Element, const K: usize>(row: &mut [E], ai: &[E; K], bp: &[[E; NB]; K], beta: E) {
    let n = row.len();
    // Two loops rather than a select inside one, so each is a straight vector loop.
    if beta == E::ZERO {
        for (j, v) in row.iter_mut().enumerate() {
            let mut acc = ai[0] * bp[0][..n][j];
            for p in 1..K {
                acc += ai[p] * bp[p][..n][j];
            }
            *v = acc;
        }
    } else {
        for (j, v) in row.iter_mut().enumerate() {
            let mut acc = beta * *v;
            for p in 0..K {
                acc += ai[p] * bp[p][..n][j];
            }
            *v = acc;
        }
    }
}

/// `n = N ≤ 4` with contiguous columns of `A` (`rsa == 1`, a transposed operand such as
/// `Hᵀ` in a weight gradient): columns of `C` are accumulated as axpys over the columns
/// of `A`. (Row-contiguous `A` would need dot products, whose horizontal reductions made a
/// direct loop no faster than the `gemm` crate there, so that case is left to it.)
#[inline(always)]
fn narrow_n<E: Element, const N: usize>(
    m: usize,
    k: usize,
    (alpha, a, rsa, csa, b, rsb, csb): Operands<'_, E>,
    beta: E,
    c: &mut [E],
    rsc: usize,
    csc: usize,
) {
    debug_assert_eq!(rsa, 1);
    for i0 in (0..m).step_by(IB) {
        let r = IB.min(m - i0);
        // One strip of IB rows of C: N×IB accumulators that stay in vector registers
        // across the whole depth loop (the inner lane loop has a constant length).
        let mut acc = [[E::ZERO; IB]; N];
        for p in 0..k {
            let base = p * csa + i0;
            let x: [E; IB] = if r == IB {
                a[base..base + IB].try_into().unwrap()
            } else {
                let mut x = [E::ZERO; IB];
                x[..r].copy_from_slice(&a[base..base + r]);
                x
            };
            for (j, accj) in acc.iter_mut().enumerate() {
                let bpj = b[p * rsb + j * csb];
                for l in 0..IB {
                    accj[l] += x[l] * bpj;
                }
            }
        }
        for i in 0..r {
            for (j, accj) in acc.iter().enumerate() {
                let cij = &mut c[(i0 + i) * rsc + j * csc];
                *cij = blend(*cij, beta, alpha, accj[i]);
            }
        }
    }
}
