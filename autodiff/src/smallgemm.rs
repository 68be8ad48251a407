//! Packing-free AVX-512 GEMM for the shapes of MLP layers at batch size: `n ≤ 64` output
//! columns, any `m`, `k ≤ 512`, row-major `C`, `B` with contiguous rows.
//!
//! There a block of `MR` rows × 64 columns of `C` fits in zmm registers and a 64-column panel
//! of `B` stays in L1/L2, so the kernel reads `A` straight from memory (broadcast loads, any
//! strides) instead of packing it as the `gemm` crate does. On this Zen 4 both run close to the
//! FMA ceiling (≈115 GFLOP/s f32, ≈57 f64: 512-bit FMAs issue on two 256-bit pipes), so
//! skipping the packing gains 3–9% on `G·W` and on the weight gradients `Gᵀ·X`.
//!
//! `B` with strided columns (`x·Wᵀ`) is declined: repacking the 64×64 weight per call cost as
//! much as it saved (0.92–1.02× the `gemm` crate, scalar or gathered: Zen 4 gathers are slow),
//! so it stays on the general path.
//! The entry points also decline (return `false`, touching nothing) when the CPU lacks
//! AVX-512F, the shape is out of the measured range, or the strides would reach outside the
//! slices; the caller then falls back to the general path.

/// Largest `n` handled: one or two register panels.
const N_MAX: usize = 64;
/// Largest `k` handled: the range measured (a 512×64 panel of `B` still sits in L2).
const K_MAX: usize = 512;

/// Whether `len` covers every index `i·rs + j·cs` for `i < rows`, `j < cols` (`rows, cols > 0`).
fn covers(len: usize, rows: usize, rs: usize, cols: usize, cs: usize) -> bool {
    (rows - 1)
        .checked_mul(rs)
        .and_then(|x| (cols - 1).checked_mul(cs).and_then(|y| x.checked_add(y)))
        .is_some_and(|last| last < len)
}

macro_rules! small_gemm {
    (
        $k:ident, $t:ident, $mask:ty, $lanes:literal,
        $set1:ident, $fmadd:ident, $mul:ident, $loadu:ident, $maskz_loadu:ident,
        $mask_storeu:ident, $zero:ident
    ) => {
        pub(crate) mod $k {
            use std::arch::x86_64::*;

            use super::{covers, K_MAX, N_MAX};

            /// Lanes of a zmm register.
            const LANES: usize = $lanes;
            /// Rows of `C` per register block.
            const MR: usize = 6;
            /// zmm registers per row of a block: `MR × NV` accumulators plus `NV` rows of `B`
            /// and a broadcast fit in the 32 registers.
            const NV: usize = 4;
            /// Columns of `C` per panel.
            const NC: usize = NV * LANES;

            /// `C = alpha·A·B + beta·C` (the contract of `Element::gemm`) if the CPU, layout
            /// and shape suit this kernel; returns `false`, touching nothing, otherwise.
            #[allow(clippy::too_many_arguments)]
            pub(crate) fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: $t,
                a: &[$t],
                rsa: isize,
                csa: isize,
                b: &[$t],
                rsb: isize,
                csb: isize,
                beta: $t,
                c: &mut [$t],
                rsc: isize,
                csc: isize,
            ) -> bool {
                if m == 0 || k == 0 || k > K_MAX || n == 0 || n > N_MAX || csb != 1 || csc != 1 {
                    return false;
                }
                if [rsa, csa, rsb, rsc].iter().any(|&s| s < 0) {
                    return false;
                }
                let [rsa, csa, rsb, rsc] = [rsa, csa, rsb, rsc].map(|s| s as usize);
                if !covers(a.len(), m, rsa, k, csa)
                    || !covers(b.len(), k, rsb, n, 1)
                    || !covers(c.len(), m, rsc, n, 1)
                    || !std::arch::is_x86_feature_detected!("avx512f")
                {
                    return false;
                }
                // SAFETY: `covers` checked that every A[i·rsa + p·csa], B[p·rsb + j] and
                // C[i·rsc + j] (i < m, p < k, j < n) lies inside its slice, which is all `run`
                // touches (masked lanes beyond n are neither loaded nor stored), and AVX-512F
                // was detected above.
                unsafe {
                    run(
                        m,
                        k,
                        n,
                        alpha,
                        a.as_ptr(),
                        rsa,
                        csa,
                        b.as_ptr(),
                        rsb,
                        beta,
                        c.as_mut_ptr(),
                        rsc,
                    )
                };
                true
            }

            /// Splits `C` into panels of up to `NC` columns.
            ///
            /// # Safety
            /// AVX-512F available; `a[i·rsa + p·csa]`, `b[p·ldb + j]` and `c[i·rsc + j]` valid
            /// for all `i < m`, `p < k`, `j < n` (reads of `c` only when `beta != 0`).
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = "avx512f")]
            unsafe fn run(
                m: usize,
                k: usize,
                n: usize,
                alpha: $t,
                a: *const $t,
                rsa: usize,
                csa: usize,
                b: *const $t,
                ldb: usize,
                beta: $t,
                c: *mut $t,
                rsc: usize,
            ) {
                let mut j0 = 0;
                while j0 < n {
                    let nc = NC.min(n - j0);
                    let nv = nc.div_ceil(LANES);
                    let tail = nc - (nv - 1) * LANES;
                    let mask: $mask = if tail == LANES {
                        <$mask>::MAX
                    } else {
                        (1 << tail) - 1
                    };
                    // SAFETY: columns j0..j0 + nc < n of B and C, with the last vector of
                    // each row masked to the `tail` columns that exist (the caller's bounds).
                    unsafe {
                        let (b, c) = (b.add(j0), c.add(j0));
                        let args = (m, k, alpha, a, rsa, csa, b, ldb, mask, beta, c, rsc);
                        match nv {
                            1 => panel::<1>(args),
                            2 => panel::<2>(args),
                            3 => panel::<3>(args),
                            _ => panel::<4>(args),
                        }
                    }
                    j0 += nc;
                }
            }

            /// `(m, k, alpha, a, rsa, csa, b, ldb, mask, beta, c, rsc)` of one panel.
            type Panel = (
                usize,
                usize,
                $t,
                *const $t,
                usize,
                usize,
                *const $t,
                usize,
                $mask,
                $t,
                *mut $t,
                usize,
            );

            /// One panel of `V` vectors per row: full `MR`-row blocks, then the remainder.
            ///
            /// # Safety
            /// As for [`run`], restricted to the panel's columns, `mask` selecting the lanes of
            /// the last vector that exist.
            #[target_feature(enable = "avx512f")]
            unsafe fn panel<const V: usize>(
                (m, k, alpha, a, rsa, csa, b, ldb, mask, beta, c, rsc): Panel,
            ) {
                let mut i = 0;
                // SAFETY: each block covers rows i..i + R ≤ m.
                unsafe {
                    while i + MR <= m {
                        let (ai, ci) = (a.add(i * rsa), c.add(i * rsc));
                        block::<MR, V>(k, alpha, ai, rsa, csa, b, ldb, mask, beta, ci, rsc);
                        i += MR;
                    }
                    let (ai, ci) = (a.add(i * rsa), c.add(i * rsc));
                    let args = (k, alpha, ai, rsa, csa, b, ldb, mask, beta, ci, rsc);
                    match m - i {
                        0 => {}
                        1 => block_t::<1, V>(args),
                        2 => block_t::<2, V>(args),
                        3 => block_t::<3, V>(args),
                        4 => block_t::<4, V>(args),
                        _ => block_t::<5, V>(args),
                    }
                }
            }

            /// [`block`] with its arguments in a tuple (for the remainder dispatch).
            #[allow(clippy::type_complexity)]
            #[target_feature(enable = "avx512f")]
            unsafe fn block_t<const R: usize, const V: usize>(
                (k, alpha, a, rsa, csa, b, ldb, mask, beta, c, rsc): (
                    usize,
                    $t,
                    *const $t,
                    usize,
                    usize,
                    *const $t,
                    usize,
                    $mask,
                    $t,
                    *mut $t,
                    usize,
                ),
            ) {
                // SAFETY: forwarded contract.
                unsafe { block::<R, V>(k, alpha, a, rsa, csa, b, ldb, mask, beta, c, rsc) }
            }

            /// `R` rows × `V` vectors of `C`: the accumulators live in registers across the
            /// whole depth loop; each step loads one row of `B` and broadcasts `R` entries of
            /// `A`.
            ///
            /// # Safety
            /// AVX-512F; `a[r·rsa + p·csa]` valid for `r < R`, `p < k`; `b[p·ldb + j]` and
            /// `c[r·rsc + j]` valid for the lanes `j` of the first `V − 1` vectors and the lanes
            /// of the last one selected by `mask`.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            #[target_feature(enable = "avx512f")]
            unsafe fn block<const R: usize, const V: usize>(
                k: usize,
                alpha: $t,
                a: *const $t,
                rsa: usize,
                csa: usize,
                b: *const $t,
                ldb: usize,
                mask: $mask,
                beta: $t,
                c: *mut $t,
                rsc: usize,
            ) {
                let mut acc = [[$zero(); V]; R];
                // SAFETY: every pointer below is one the contract declares valid; the last
                // vector of a row is loaded/stored under `mask`, which suppresses the access
                // (and any fault) for lanes past the end.
                unsafe {
                    for p in 0..k {
                        let bp = b.add(p * ldb);
                        let mut bv = [$zero(); V];
                        for (v, x) in bv.iter_mut().enumerate() {
                            *x = if v + 1 == V {
                                $maskz_loadu(mask, bp.add(v * LANES))
                            } else {
                                $loadu(bp.add(v * LANES))
                            };
                        }
                        let ap = a.add(p * csa);
                        for (r, accr) in acc.iter_mut().enumerate() {
                            let x = $set1(*ap.add(r * rsa));
                            for (s, bv) in accr.iter_mut().zip(&bv) {
                                *s = $fmadd(x, *bv, *s);
                            }
                        }
                    }
                    let va = $set1(alpha);
                    let vb = $set1(beta);
                    for (r, accr) in acc.iter().enumerate() {
                        let cr = c.add(r * rsc);
                        for (v, s) in accr.iter().enumerate() {
                            let mv = if v + 1 == V { mask } else { <$mask>::MAX };
                            let mut x = $mul(*s, va);
                            // beta == 0: C is not read (it may hold NaN).
                            if beta != 0.0 {
                                x = $fmadd($maskz_loadu(mv, cr.add(v * LANES)), vb, x);
                            }
                            $mask_storeu(cr.add(v * LANES), mv, x);
                        }
                    }
                }
            }
        }
    };
}

small_gemm!(
    f32k,
    f32,
    __mmask16,
    16,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_mul_ps,
    _mm512_loadu_ps,
    _mm512_maskz_loadu_ps,
    _mm512_mask_storeu_ps,
    _mm512_setzero_ps
);
small_gemm!(
    f64k,
    f64,
    __mmask8,
    8,
    _mm512_set1_pd,
    _mm512_fmadd_pd,
    _mm512_mul_pd,
    _mm512_loadu_pd,
    _mm512_maskz_loadu_pd,
    _mm512_mask_storeu_pd,
    _mm512_setzero_pd
);
