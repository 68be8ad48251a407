//! The GEMM driver behind [`Element::gemm`]: checks that the slices hold every element the
//! shape and strides reach, then picks a kernel — the direct loops for skinny shapes
//! (`skinny`), the packing-free small-`n` kernel (`smallgemm`, per path), or the `gemm`
//! crate.
//!
//! The checks come first and panic, naming the operand, the shape and the strides, because
//! the last two kernels read and write through raw pointers: a safe caller with a short
//! slice must get a panic, never an out-of-bounds access.

use crate::cpu::Path;
use crate::Element;

/// `C = alpha·A·B + beta·C` on `path` (the contract of [`Element::gemm`]).
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
) {
    if m == 0 || n == 0 {
        return;
    }
    check("C", "m x n", (m, n), c.len(), (rsc, csc));
    if k == 0 {
        // An empty sum: C = beta·C (not read when beta = 0). Done here so that no kernel
        // sees a degenerate shape.
        for i in 0..m {
            for j in 0..n {
                let at = (i as isize * rsc + j as isize * csc) as usize;
                c[at] = if beta == E::ZERO {
                    E::ZERO
                } else {
                    beta * c[at]
                };
            }
        }
        return;
    }
    check("A", "m x k", (m, k), a.len(), (rsa, csa));
    check("B", "k x n", (k, n), b.len(), (rsb, csb));

    if crate::skinny::gemm(
        path, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
    ) {
        return;
    }
    // n ≤ 64 with contiguous rows of B (G·W, Gᵀ·X): the register-blocked kernel that skips
    // packing A (measured 3-9% faster than the crate there).
    if E::small_gemm(
        path, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
    ) {
        return;
    }
    // SAFETY: `check` verified above that every offset i·rs + j·cs the shape reaches (i, j
    // within m×k, k×n and m×n) lies inside `a`, `b` and `c`, which is all the crate touches;
    // `c` is exclusively borrowed and the crate runs on this thread only
    // (`Parallelism::None`). The crate computes `dst = alpha_g·dst + beta_g·lhs·rhs` and does
    // not read `dst` when `read_dst` is false, so our (alpha, beta) map to its
    // (beta_g, alpha_g).
    unsafe {
        ::gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            csc,
            rsc,
            beta != E::ZERO,
            a.as_ptr(),
            csa,
            rsa,
            b.as_ptr(),
            csb,
            rsb,
            beta,
            alpha,
            false,
            false,
            false,
            ::gemm::Parallelism::None,
        )
    }
}

/// Panics unless every offset `i·rs + j·cs` (`i < rows`, `j < cols`, both `> 0`) lies in
/// `0..len`, naming the operand (`what`), its shape and strides.
fn check(
    what: &str,
    dims: &str,
    (rows, cols): (usize, usize),
    len: usize,
    (rs, cs): (isize, isize),
) {
    // In i128 nothing overflows: each term is below 2^64 · 2^63.
    let span = |count: usize, stride: isize| (count as i128 - 1) * stride as i128;
    let (r, c) = (span(rows, rs), span(cols, cs));
    let lo = r.min(0) + c.min(0);
    let hi = r.max(0) + c.max(0);
    if lo < 0 || hi >= len as i128 {
        panic!(
            "gemm: {what} ({dims} = {rows}x{cols}, strides ({rs}, {cs})) reaches offsets \
             {lo}..={hi}, outside its slice of length {len}"
        );
    }
}
