//! The kernel template `small_gemm!`, expanded once per element type and ISA in `avx512` and
//! `avx2`.

/// One kernel: module `$k` for element `$t` on the ISA `$feat` (detected with `$detect`).
///
/// The ISA-specific parts come in as expressions over named arguments: a vector of zeros,
/// a broadcast, an FMA `a·b + c`, a product, unaligned full loads/stores, and loads/stores of
/// the first `lanes` lanes only (`lanes < LANES`), which must not touch memory past them.
macro_rules! small_gemm {
    (
        mod $k:ident: $t:ident, $vec:ty, lanes $lanes:literal, mr $mr:literal, nv $nv:literal,
        feature $feat:literal, detect [$($detect:tt),*],
        zero = $zero:expr,
        set1($s1:ident) = $set1:expr,
        fmadd($fa:ident, $fb:ident, $fc:ident) = $fmadd:expr,
        mul($ma:ident, $mb:ident) = $mul:expr,
        loadu($lp:ident) = $loadu:expr,
        storeu($sp:ident, $sv:ident) = $storeu:expr,
        load_first($lfp:ident, $lfn:ident) = $load_first:expr,
        store_first($sfp:ident, $sfn:ident, $sfv:ident) = $store_first:expr,
        hsum($hv:ident) = $hsum:expr,
        narrow_rows $nr12:literal, $nr34:literal $(,)?
    ) => {
        pub(crate) mod $k {
            #[allow(unused_imports)]
            use std::arch::x86_64::*;

            use crate::smallgemm::{covers, K_MAX, NARROW_N, N_MAX};

            /// Lanes of a vector register.
            const LANES: usize = $lanes;
            /// Rows of `C` per register block.
            const MR: usize = $mr;
            /// Vectors per row of a block: `MR × NV` accumulators plus `NV` rows of `B` and a
            /// broadcast fit in the register file.
            const NV: usize = $nv;
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
                if n <= NARROW_N && k >= LANES && csa == 1 {
                    return narrow_gemm(m, k, n, alpha, a, rsa, b, rsb, csb, beta, c, rsc, csc);
                }
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
                    || !($(std::arch::is_x86_feature_detected!($detect))&&*)
                {
                    return false;
                }
                // SAFETY: `covers` checked that every A[i·rsa + p·csa], B[p·rsb + j] and
                // C[i·rsc + j] (i < m, p < k, j < n) lies inside its slice, which is all `run`
                // touches (partial vectors beyond n are neither loaded nor stored), and the
                // ISA was detected above.
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

            /// `C = alpha·A·B + beta·C` for `n ≤ NARROW_N` columns and rows of `A` contiguous
            /// (`x·Wᵀ` and `G·W` of a layer with 1–4 outputs, `m × k` with `k ≥ LANES`): each
            /// `C[i, j]` is a dot product of row `i` of `A` with column `j` of `B`, packed
            /// contiguously first (at most 4 × 512 elements). Vectorizing along `k` keeps every
            /// lane busy, where the panel kernel would use `n` of its lanes. Returns `false`,
            /// touching nothing, if the layout, shape or CPU does not suit.
            #[allow(clippy::too_many_arguments)]
            fn narrow_gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: $t,
                a: &[$t],
                rsa: isize,
                b: &[$t],
                rsb: isize,
                csb: isize,
                beta: $t,
                c: &mut [$t],
                rsc: isize,
                csc: isize,
            ) -> bool {
                if m == 0 || n == 0 || n > NARROW_N || !(LANES..=K_MAX).contains(&k) {
                    return false;
                }
                if [rsa, rsb, csb, rsc, csc].iter().any(|&s| s < 0) {
                    return false;
                }
                let [rsa, rsb, csb, rsc, csc] = [rsa, rsb, csb, rsc, csc].map(|s| s as usize);
                if !covers(a.len(), m, rsa, k, 1)
                    || !covers(b.len(), k, rsb, n, csb)
                    || !covers(c.len(), m, rsc, n, csc)
                    || !($(std::arch::is_x86_feature_detected!($detect))&&*)
                {
                    return false;
                }
                // Column j of B as bt[j·ldbt + p], p < k: B itself when its columns are
                // contiguous (x·Wᵀ: the rows of W), else packed (G·W with a k × n weight).
                // The pack buffer is left uninitialised beyond the n·k elements written:
                // zeroing all 4·512 would cost as much as the product.
                let mut pack = [std::mem::MaybeUninit::<$t>::uninit(); NARROW_N * K_MAX];
                let (bt, ldbt) = if rsb == 1 {
                    (b.as_ptr(), csb)
                } else {
                    for j in 0..n {
                        for p in 0..k {
                            // Safe indexing, in bounds by `covers`.
                            pack[j * k + p].write(b[p * rsb + j * csb]);
                        }
                    }
                    (pack.as_ptr() as *const $t, k)
                };
                let (a, c) = (a.as_ptr(), c.as_mut_ptr());
                // SAFETY: `covers` checked every A[i·rsa + p], B[p·rsb + j·csb] and
                // C[i·rsc + j·csc] (i < m, p < k, j < n) against the slices; `bt[j·ldbt + p]`
                // is either such a B element or one of the n·k initialised packed ones. That
                // is all `narrow` touches (the partial last vector of a row only its
                // `k mod LANES` lanes), and the ISA was detected above.
                unsafe {
                    let args = (m, k, alpha, a, rsa, bt, ldbt, beta, c, rsc, csc);
                    match n {
                        1 => narrow::<1, $nr12>(args),
                        2 => narrow::<2, $nr12>(args),
                        3 => narrow::<3, $nr34>(args),
                        _ => narrow::<4, $nr34>(args),
                    }
                }
                true
            }

            /// `(m, k, alpha, a, rsa, bt, ldbt, beta, c, rsc, csc)` of [`narrow`].
            type Narrow = (
                usize,
                usize,
                $t,
                *const $t,
                usize,
                *const $t,
                usize,
                $t,
                *mut $t,
                usize,
                usize,
            );

            /// `N` columns of `C`, `R` rows at a time (then single rows).
            ///
            /// # Safety
            /// The ISA available; `a[i·rsa + p]` valid for `i < m`, `p < k`; `bt[j·ldbt + p]`
            /// for `j < N`, `p < k`; `c[i·rsc + j·csc]` for `i < m`, `j < N`.
            #[target_feature(enable = $feat)]
            unsafe fn narrow<const N: usize, const R: usize>(
                (m, k, alpha, a, rsa, bt, ldbt, beta, c, rsc, csc): Narrow,
            ) {
                let mut i = 0;
                // SAFETY: each call covers rows i..i + R ≤ m (or one row).
                unsafe {
                    while i + R <= m {
                        let (ai, ci) = (a.add(i * rsa), c.add(i * rsc));
                        narrow_block::<N, R>(k, alpha, ai, rsa, bt, ldbt, beta, ci, rsc, csc);
                        i += R;
                    }
                    while i < m {
                        let (ai, ci) = (a.add(i * rsa), c.add(i * rsc));
                        narrow_block::<N, 1>(k, alpha, ai, rsa, bt, ldbt, beta, ci, rsc, csc);
                        i += 1;
                    }
                }
            }

            /// `R × N` dot products of length `k`: `R·N` vector accumulators over the depth,
            /// each reduced horizontally at the end.
            ///
            /// # Safety
            /// As for [`narrow`], for rows `0..R`.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn narrow_block<const N: usize, const R: usize>(
                k: usize,
                alpha: $t,
                a: *const $t,
                rsa: usize,
                bt: *const $t,
                ldbt: usize,
                beta: $t,
                c: *mut $t,
                rsc: usize,
                csc: usize,
            ) {
                // SAFETY: all pointers are within the ranges of the contract; the last
                // partial vector loads only its `k - p` lanes.
                unsafe {
                    let mut acc = [[zero(); N]; R];
                    let mut p = 0;
                    while p < k {
                        let lanes = LANES.min(k - p);
                        let get = |ptr: *const $t| {
                            if lanes == LANES {
                                let $lp = ptr;
                                $loadu
                            } else {
                                let ($lfp, $lfn) = (ptr, lanes);
                                $load_first
                            }
                        };
                        let mut bv = [zero(); N];
                        for (j, x) in bv.iter_mut().enumerate() {
                            *x = get(bt.add(j * ldbt + p));
                        }
                        for (r, accr) in acc.iter_mut().enumerate() {
                            let x = get(a.add(r * rsa + p));
                            for (s, bv) in accr.iter_mut().zip(&bv) {
                                *s = fmadd(x, *bv, *s);
                            }
                        }
                        p += lanes;
                    }
                    for (r, accr) in acc.iter().enumerate() {
                        for (j, s) in accr.iter().enumerate() {
                            let $hv = *s;
                            let dot: $t = $hsum;
                            let v = if alpha == 1.0 { dot } else { alpha * dot };
                            let cij = c.add(r * rsc + j * csc);
                            // beta == 0: C is not read (it may hold NaN).
                            *cij = if beta == 0.0 { v } else { beta * *cij + v };
                        }
                    }
                }
            }

            /// Splits `C` into panels of up to `NC` columns.
            ///
            /// # Safety
            /// The ISA available; `a[i·rsa + p·csa]`, `b[p·ldb + j]` and `c[i·rsc + j]` valid
            /// for all `i < m`, `p < k`, `j < n` (reads of `c` only when `beta != 0`).
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feat)]
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
                    // Lanes of the last vector that exist (LANES: a full vector).
                    let tail = nc - (nv - 1) * LANES;
                    // SAFETY: columns j0..j0 + nc ≤ n of B and C, the last vector of each row
                    // limited to `tail` lanes (the caller's bounds).
                    unsafe {
                        let (b, c) = (b.add(j0), c.add(j0));
                        let args = (m, k, alpha, a, rsa, csa, b, ldb, tail, beta, c, rsc);
                        match nv {
                            1 => panel::<1>(args),
                            2 if NV >= 2 => panel::<2>(args),
                            3 if NV >= 3 => panel::<3>(args),
                            _ => panel::<NV>(args),
                        }
                    }
                    j0 += nc;
                }
            }

            /// `(m, k, alpha, a, rsa, csa, b, ldb, tail, beta, c, rsc)` of one panel.
            type Panel = (
                usize,
                usize,
                $t,
                *const $t,
                usize,
                usize,
                *const $t,
                usize,
                usize,
                $t,
                *mut $t,
                usize,
            );

            /// One panel of `V` vectors per row: full `MR`-row blocks, then the remainder.
            ///
            /// # Safety
            /// As for [`run`], restricted to the panel's columns, `tail` the lanes of the last
            /// vector that exist.
            #[target_feature(enable = $feat)]
            unsafe fn panel<const V: usize>(
                (m, k, alpha, a, rsa, csa, b, ldb, tail, beta, c, rsc): Panel,
            ) {
                let mut i = 0;
                // SAFETY: each block covers rows i..i + R ≤ m.
                unsafe {
                    while i + MR <= m {
                        let (ai, ci) = (a.add(i * rsa), c.add(i * rsc));
                        block::<MR, V>(k, alpha, ai, rsa, csa, b, ldb, tail, beta, ci, rsc);
                        i += MR;
                    }
                    let (ai, ci) = (a.add(i * rsa), c.add(i * rsc));
                    let args = (k, alpha, ai, rsa, csa, b, ldb, tail, beta, ci, rsc);
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
            #[target_feature(enable = $feat)]
            unsafe fn block_t<const R: usize, const V: usize>(
                (k, alpha, a, rsa, csa, b, ldb, tail, beta, c, rsc): (
                    usize,
                    $t,
                    *const $t,
                    usize,
                    usize,
                    *const $t,
                    usize,
                    usize,
                    $t,
                    *mut $t,
                    usize,
                ),
            ) {
                // SAFETY: forwarded contract.
                unsafe { block::<R, V>(k, alpha, a, rsa, csa, b, ldb, tail, beta, c, rsc) }
            }

            /// A vector of zeros.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn zero() -> $vec {
                $zero
            }

            /// A vector with every lane `x`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn set1($s1: $t) -> $vec {
                $set1
            }

            /// `a·b + c`, fused.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn fmadd($fa: $vec, $fb: $vec, $fc: $vec) -> $vec {
                $fmadd
            }

            /// `a·b`.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn mul($ma: $vec, $mb: $vec) -> $vec {
                $mul
            }

            /// Loads vector `v` of a row of `V` vectors whose last one has `tail` lanes.
            ///
            /// # Safety
            /// The ISA available; the lanes that exist readable.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn load<const V: usize>(row: *const $t, v: usize, tail: usize) -> $vec {
                // SAFETY: the caller's contract; a partial load touches only `tail` lanes.
                unsafe {
                    if v + 1 == V && tail < LANES {
                        let ($lfp, $lfn) = (row.add(v * LANES), tail);
                        $load_first
                    } else {
                        let $lp = row.add(v * LANES);
                        $loadu
                    }
                }
            }

            /// Stores `x` as vector `v` of such a row.
            ///
            /// # Safety
            /// The ISA available; the lanes that exist writable.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn store<const V: usize>(row: *mut $t, v: usize, tail: usize, x: $vec) {
                // SAFETY: the caller's contract; a partial store touches only `tail` lanes.
                unsafe {
                    if v + 1 == V && tail < LANES {
                        let ($sfp, $sfn, $sfv) = (row.add(v * LANES), tail, x);
                        $store_first
                    } else {
                        let ($sp, $sv) = (row.add(v * LANES), x);
                        $storeu
                    }
                }
            }

            /// `R` rows × `V` vectors of `C`: the accumulators live in registers across the
            /// whole depth loop; each step loads one row of `B` and broadcasts `R` entries of
            /// `A`.
            ///
            /// # Safety
            /// The ISA available; `a[r·rsa + p·csa]` valid for `r < R`, `p < k`; `b[p·ldb + j]`
            /// and `c[r·rsc + j]` valid for the lanes `j` of the first `V − 1` vectors and the
            /// first `tail` lanes of the last one.
            #[allow(clippy::too_many_arguments)]
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn block<const R: usize, const V: usize>(
                k: usize,
                alpha: $t,
                a: *const $t,
                rsa: usize,
                csa: usize,
                b: *const $t,
                ldb: usize,
                tail: usize,
                beta: $t,
                c: *mut $t,
                rsc: usize,
            ) {
                // SAFETY: the ISA is available (the caller's contract).
                let mut acc = [[unsafe { zero() }; V]; R];
                // SAFETY: every pointer below is one the contract declares valid; the last
                // vector of a row is loaded/stored partially when it has fewer lanes.
                unsafe {
                    for p in 0..k {
                        let bp = b.add(p * ldb);
                        let mut bv = [zero(); V];
                        for (v, x) in bv.iter_mut().enumerate() {
                            *x = load::<V>(bp, v, tail);
                        }
                        let ap = a.add(p * csa);
                        for (r, accr) in acc.iter_mut().enumerate() {
                            let x = set1(*ap.add(r * rsa));
                            for (s, bv) in accr.iter_mut().zip(&bv) {
                                *s = fmadd(x, *bv, *s);
                            }
                        }
                    }
                    let va = set1(alpha);
                    let vb = set1(beta);
                    for (r, accr) in acc.iter().enumerate() {
                        let cr = c.add(r * rsc);
                        for (v, s) in accr.iter().enumerate() {
                            // alpha is 1 for every product the tape makes: skip the scaling.
                            let mut x = if alpha == 1.0 { *s } else { mul(*s, va) };
                            // beta == 0: C is not read (it may hold NaN).
                            if beta != 0.0 {
                                x = fmadd(load::<V>(cr, v, tail), vb, x);
                            }
                            store::<V>(cr, v, tail, x);
                        }
                    }
                }
            }
        }
    };
}
