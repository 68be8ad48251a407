//! The scalar types a [`Tensor`](crate::Tensor) can hold: `f32` and `f64`.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::kernels;

/// A floating-point element type (`f32` or `f64`).
///
/// Besides the usual arithmetic it carries the slice kernels the tape's primitives run on:
/// GEMM and the vectorized transcendental functions. They live here, behind the trait, so the
/// primitives are written once for both precisions.
pub trait Element:
    Copy
    + Default
    + Debug
    + Display
    + PartialOrd
    + Send
    + Sync
    + Sum
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// Machine epsilon.
    const EPSILON: Self;
    /// Name used in messages and file headers ("f32" or "f64").
    const NAME: &'static str;

    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Converts from `usize`.
    fn from_usize(n: usize) -> Self {
        Self::from_f64(n as f64)
    }

    /// Absolute value.
    fn abs(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// `true` unless NaN or infinite.
    fn is_finite(self) -> bool;
    /// Larger of two values (NaN-ignoring, as `f64::max`).
    fn max(self, other: Self) -> Self;
    /// Smaller of two values (NaN-ignoring, as `f64::min`).
    fn min(self, other: Self) -> Self;
    /// Sign: -1, 0 or +1 (0 at 0, unlike `f64::signum`).
    fn sign(self) -> Self {
        if self > Self::ZERO {
            Self::ONE
        } else if self < Self::ZERO {
            -Self::ONE
        } else {
            Self::ZERO
        }
    }
    /// Integer power.
    fn powi(self, n: i32) -> Self;
    /// Real power.
    fn powf(self, p: Self) -> Self;
    /// Scalar exponential.
    fn exp(self) -> Self;
    /// Scalar natural logarithm.
    fn ln(self) -> Self;
    /// Scalar sine.
    fn sin(self) -> Self;
    /// Scalar cosine.
    fn cos(self) -> Self;

    /// `out[i] = exp(x[i])`, vectorized.
    fn vexp(x: &[Self], out: &mut [Self]);
    /// `out[i] = ln(x[i])`, vectorized.
    fn vln(x: &[Self], out: &mut [Self]);
    /// `out[i] = tanh(x[i])`, vectorized.
    fn vtanh(x: &[Self], out: &mut [Self]);
    /// `out[i] = 1 / (1 + exp(-x[i]))`, vectorized.
    fn vsigmoid(x: &[Self], out: &mut [Self]);
    /// `out[i] = ln(1 + exp(x[i]))`, vectorized and overflow-free.
    fn vsoftplus(x: &[Self], out: &mut [Self]);
    /// `out[i] = sin(x[i])`.
    fn vsin(x: &[Self], out: &mut [Self]);
    /// `out[i] = cos(x[i])`.
    fn vcos(x: &[Self], out: &mut [Self]);

    /// General matrix multiply `C = alpha * A B + beta * C` on strided row/column layouts
    /// (`rs*` is the row stride, `cs*` the column stride; transposes are stride swaps).
    /// When `beta == 0`, `C` is not read.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        rsa: isize,
        csa: isize,
        b: &[Self],
        rsb: isize,
        csb: isize,
        beta: Self,
        c: &mut [Self],
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_element {
    ($t:ident, $name:expr, $k:ident) => {
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const EPSILON: Self = $t::EPSILON;
            const NAME: &'static str = $name;

            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn abs(self) -> Self {
                $t::abs(self)
            }
            #[inline]
            fn sqrt(self) -> Self {
                $t::sqrt(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                $t::is_finite(self)
            }
            #[inline]
            fn max(self, other: Self) -> Self {
                $t::max(self, other)
            }
            #[inline]
            fn min(self, other: Self) -> Self {
                $t::min(self, other)
            }
            #[inline]
            fn powi(self, n: i32) -> Self {
                $t::powi(self, n)
            }
            #[inline]
            fn powf(self, p: Self) -> Self {
                $t::powf(self, p)
            }
            #[inline]
            fn exp(self) -> Self {
                $t::exp(self)
            }
            #[inline]
            fn ln(self) -> Self {
                $t::ln(self)
            }
            #[inline]
            fn sin(self) -> Self {
                $t::sin(self)
            }
            #[inline]
            fn cos(self) -> Self {
                $t::cos(self)
            }
            fn vexp(x: &[Self], out: &mut [Self]) {
                kernels::$k::exp(x, out)
            }
            fn vln(x: &[Self], out: &mut [Self]) {
                kernels::$k::ln(x, out)
            }
            fn vtanh(x: &[Self], out: &mut [Self]) {
                kernels::$k::tanh(x, out)
            }
            fn vsigmoid(x: &[Self], out: &mut [Self]) {
                kernels::$k::sigmoid(x, out)
            }
            fn vsoftplus(x: &[Self], out: &mut [Self]) {
                kernels::$k::softplus(x, out)
            }
            fn vsin(x: &[Self], out: &mut [Self]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.sin();
                }
            }
            fn vcos(x: &[Self], out: &mut [Self]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.cos();
                }
            }
            fn gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                rsa: isize,
                csa: isize,
                b: &[Self],
                rsb: isize,
                csb: isize,
                beta: Self,
                c: &mut [Self],
                rsc: isize,
                csc: isize,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                if skinny::gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) {
                    return;
                }
                // n ≤ 64 with contiguous rows of B (G·W, Gᵀ·X): the register-blocked kernel
                // that skips packing A (measured 3-9% faster than the crate there).
                #[cfg(target_arch = "x86_64")]
                if crate::smallgemm::$k::gemm(
                    m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
                ) {
                    return;
                }
                // SAFETY: the callers (Tensor::matmul_into) check that every index reachable
                // from these strides lies inside the three slices. The crate computes
                // `dst = alpha_g·dst + beta_g·lhs·rhs` and does not read `dst` when
                // `read_dst` is false, so our (alpha, beta) map to its (beta_g, alpha_g).
                unsafe {
                    ::gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        csc,
                        rsc,
                        beta != 0.0,
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
        }
    };
}

impl_element!(f32, "f32", f32k);
impl_element!(f64, "f64", f64k);

/// Direct loops for the degenerate GEMM shapes of narrow layers (`k ≤ 4`: a rank-k update,
/// e.g. the 2→64 input layer and the VJP of the 64→2 output layer; `n ≤ 4` with a transposed
/// `A`: axpys, e.g. the weight gradient of the output layer), where the blocked kernels of
/// the `gemm` crate spend their time packing and on edge tiles: measured 1.3–8× faster there
/// at batch 512. Plain slice code; the inner loops run over contiguous packed data so LLVM
/// vectorizes them.
mod skinny {
    use super::Element;

    /// Columns of `B` packed per pass of the rank-k path.
    const NB: usize = 64;
    /// Rows of `C` per strip of the axpy path (one or two vector registers per column).
    const IB: usize = 16;

    /// Handles `C = alpha·A·B + beta·C` (same contract as [`Element::gemm`], `m, n > 0`) if the
    /// shape is skinny and the layout suits one of the direct loops; returns `false` otherwise.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm<E: Element>(
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
        let ab = (alpha, a, rsa, csa, b, rsb, csb);
        match (k, n) {
            (1, _) if csc == 1 => rank_k::<E, 1>(m, n, ab, beta, c, rsc),
            (2, _) if csc == 1 => rank_k::<E, 2>(m, n, ab, beta, c, rsc),
            (3, _) if csc == 1 => rank_k::<E, 3>(m, n, ab, beta, c, rsc),
            (4, _) if csc == 1 => rank_k::<E, 4>(m, n, ab, beta, c, rsc),
            (_, 1) => narrow_n::<E, 1>(m, k, ab, beta, c, rsc, csc),
            (_, 2) => narrow_n::<E, 2>(m, k, ab, beta, c, rsc, csc),
            (_, 3) => narrow_n::<E, 3>(m, k, ab, beta, c, rsc, csc),
            (_, 4) => narrow_n::<E, 4>(m, k, ab, beta, c, rsc, csc),
            _ => false,
        }
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
    #[inline(never)]
    fn rank_k<E: Element, const K: usize>(
        m: usize,
        n: usize,
        (alpha, a, rsa, csa, b, rsb, csb): Operands<'_, E>,
        beta: E,
        c: &mut [E],
        rsc: usize,
    ) -> bool {
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
        true
    }

    /// `row[j] = beta·row[j] + Σ_p ai[p]·bp[p][j]` (`row` not read when `beta == 0`).
    #[inline(always)]
    fn rank_k_row<E: Element, const K: usize>(
        row: &mut [E],
        ai: &[E; K],
        bp: &[[E; NB]; K],
        beta: E,
    ) {
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
    #[inline(never)]
    fn narrow_n<E: Element, const N: usize>(
        m: usize,
        k: usize,
        (alpha, a, rsa, csa, b, rsb, csb): Operands<'_, E>,
        beta: E,
        c: &mut [E],
        rsc: usize,
        csc: usize,
    ) -> bool {
        if rsa != 1 {
            return false;
        }
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
        true
    }
}
