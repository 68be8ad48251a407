//! The scalar types a [`Tensor`](crate::Tensor) can hold: `f32` and `f64`.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::cpu::{self, Path};
use crate::kernels;

/// Keeps [`Element`] closed to `f32` and `f64` (its kernels are written and tested for those
/// two), and carries the per-type kernel hooks that must stay out of the public API.
pub(crate) mod sealed {
    use crate::cpu::Path;

    /// Implemented for `f32` and `f64` only; unnameable outside the crate.
    pub trait Sealed {
        /// The packing-free small-`n` GEMM kernel of `path` for this type: `C = alpha·A·B +
        /// beta·C` if the path has such a kernel and the shape and layout suit it; returns
        /// `false`, touching nothing, otherwise. Checks the slice bounds itself.
        #[allow(clippy::too_many_arguments)]
        fn small_gemm(
            path: Path,
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
        ) -> bool
        where
            Self: Sized;
    }
}

/// A floating-point element type (`f32` or `f64`).
///
/// Besides the usual arithmetic it carries the slice kernels the tape's primitives run on:
/// GEMM and the vectorized transcendental functions. They live here, behind the trait, so the
/// primitives are written once for both precisions. The trait is sealed: only `f32` and `f64`
/// implement it.
pub trait Element:
    sealed::Sealed
    + Copy
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
    /// (`rs*` is the row stride, `cs*` the column stride; transposes are stride swaps), with
    /// `A` of shape `m × k`, `B` `k × n` and `C` `m × n`, element `(i, j)` of each at offset
    /// `i·rs + j·cs` of its slice. When `beta == 0`, `C` is not read. Runs on the
    /// [active](crate::kernels::active) kernel path.
    ///
    /// # Panics
    /// If an offset the shape and strides reach lies outside its slice (the message names
    /// the operand, its shape and strides).
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
                crate::matmul::gemm(
                    cpu::active(),
                    m,
                    k,
                    n,
                    alpha,
                    a,
                    rsa,
                    csa,
                    b,
                    rsb,
                    csb,
                    beta,
                    c,
                    rsc,
                    csc,
                )
            }
        }

        impl sealed::Sealed for $t {
            #[allow(unused_variables)]
            fn small_gemm(
                path: Path,
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
            ) -> bool {
                #[cfg(target_arch = "x86_64")]
                match path.clamp() {
                    Path::Avx512 => {
                        return crate::smallgemm::avx512::$k::gemm(
                            m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
                        )
                    }
                    Path::Avx2 => {
                        return crate::smallgemm::avx2::$k::gemm(
                            m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
                        )
                    }
                    _ => {}
                }
                false
            }
        }
    };
}

impl_element!(f32, "f32", f32k);
impl_element!(f64, "f64", f64k);
