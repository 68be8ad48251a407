//! Elementwise transcendental kernels over slices, for `f32` ([`f32k`]) and `f64` ([`f64k`]),
//! and the run-time choice of the instruction set every kernel of the crate uses.
//!
//! # Paths
//!
//! The crate is compiled for the target's baseline, so one build runs on any x86-64 CPU and a
//! crate depending on it needs no `-C target-cpu` flag. The hot loops (these kernels, the GEMM
//! kernels) are compiled several times, for AVX-512, for AVX2+FMA and for the baseline, and
//! the widest [`Path`] the CPU supports is chosen once per process ([`active`]). Setting the
//! environment variable `FLOWTAPE_KERNELS` to `baseline` (or `scalar`), `avx2` or `avx512`
//! before the first kernel call lowers the choice, for testing and comparisons; a path the CPU
//! lacks falls back to the widest one it has (with a warning on stderr). The `*_on` variants
//! take the path explicitly, so tests can check every path in one process. Only this crate's
//! kernels follow the choice: the `gemm` crate behind large products does its own detection.
//!
//! # Algorithms
//!
//! Each kernel applies the same function to every element of `x` and writes it to `out`
//! (`min(x.len(), out.len())` elements). The per-element code is branch-free — special cases are
//! handled with selects, ranges with clamps, and `2^n` is built from exponent bits — so LLVM turns
//! each loop into vector code for the path's SIMD width. The std functions are calls into libm
//! and never vectorize.
//!
//! * `exp(x)`: Cody–Waite range reduction `x = n·ln2 + r`, `|r| ≤ ln2/2`, with `ln2` split into a
//!   high part with trailing zero bits (so `n·ln2_hi` is exact) and a low correction; `n` is
//!   rounded with the "add 1.5·2^p" trick, which also leaves `n` in the low bits of the sum.
//!   `e^r` is a Taylor polynomial (degree 13 for f64, 7 for f32; truncation error well below
//!   half an ulp on the reduced range). The result is scaled by `2^n` as two exact powers of
//!   two `2^(n/2)·2^(n-n/2)`, so overflow to `+inf`, gradual underflow into subnormals (a single
//!   rounding) and underflow to `0` all come out right without branches.
//! * `ln(x)`: `x = 2^e·m` with `m ∈ [√½, √2)`, read from the bits (subnormals are first scaled
//!   by `2^p`); with `f = m - 1`, `s = f/(2+f)`:
//!   `ln(1+f) = f - f²/2 + s·(f²/2 + R(s²))`, `R(z) = 2z/3 + 2z²/5 + …` (the `atanh` series),
//!   which keeps the large term `f` exact and confines the division's rounding to a small
//!   correction. `e·ln2` is added last in split form.
//! * `tanh(x) = -t/(t+2)` with `t = expm1(-2|x|)`, sign restored at the end. `expm1` reuses the
//!   `exp` reduction and returns `2^n·q + (2^n - 1)` with `q = expm1(r)`, which is accurate in
//!   the relative sense near 0 (where `n = 0`), so `tanh(x) ≈ x` keeps full precision for tiny
//!   `|x|`; for large `|x|`, `t` rounds to `-1` and the result is exactly `±1`.
//! * `sigmoid(x)`: with `e = exp(-|x|) ∈ (0, 1]`, `1/(1+e)` for `x ≥ 0` and `e/(1+e)` for
//!   `x < 0`; never overflows and keeps relative accuracy deep into the negative tail
//!   (subnormal results included).
//! * `softplus(x) = max(x, 0) + log1p(exp(-|x|))`, with `log1p(u)` for `u ∈ [0, 1]` from the
//!   same `ln(1+f)` formula, splitting `1 + u = 2^e·(1+f)` exactly (`f = u` or `(u-1)/2`) on
//!   the slightly wider interval `f ∈ [-1/4, 1/2)`, so no rounding of `1 + u` is involved. So
//!   `softplus(x) = x` exactly for large `x` and `≈ eˣ` with relative accuracy for very
//!   negative `x`.
//!
//! Measured accuracy against std (see `tests/kernels.rs`): within a few ulp everywhere for both
//! precisions, special values (`±0`, `±inf`, NaN, subnormals) as std.

use crate::cpu;
use crate::Element;

pub use crate::cpu::Path;

/// The path the kernels use in this process: the widest the CPU supports, unless
/// `FLOWTAPE_KERNELS` asked for a lower one. Decided on the first call and fixed afterwards.
pub fn active() -> Path {
    cpu::active()
}

/// The name of the [`active`] path (`"baseline"`, `"avx2"` or `"avx512"`), for logs and
/// benchmark reports.
pub fn active_path() -> &'static str {
    cpu::active().name()
}

/// The CPU's model name, for benchmark reports: on x86-64 the CPUID brand string followed by
/// the family and model numbers (virtual machines often shorten the brand, and the numbers
/// tell the microarchitecture apart); elsewhere the model line of `/proc/cpuinfo`; `"unknown"`
/// if neither is available.
pub fn cpu_name() -> String {
    cpu::cpu_name()
}

/// Calls `f` inside a function compiled for the [`active`] path's instruction set, so loops
/// that get inlined into `f` are vectorized for that path's width (an elementwise loop over
/// slices, say, in a [`CustomOp`](crate::CustomOp)). Plain safe code either way: if LLVM does
/// not inline a callee, that callee simply runs as compiled for the baseline. A large closure
/// is best marked `#[inline(always)]` (allowed on a closure passed as an argument), since
/// it is instantiated in one wrapper per path.
///
/// ```
/// let (a, b) = (vec![1.0f32; 1000], vec![2.0f32; 1000]);
/// let mut out = vec![0.0f32; 1000];
/// autodiff::kernels::vectorize(|| {
///     for ((o, &x), &y) in out.iter_mut().zip(&a).zip(&b) {
///         *o = x * y + 1.0;
///     }
/// });
/// assert!(out.iter().all(|&v| v == 3.0));
/// ```
#[inline]
pub fn vectorize<R>(f: impl FnMut() -> R) -> R {
    vectorize_on(cpu::active(), f)
}

/// [`vectorize`] on `path`, or on the widest path below it that the CPU supports.
#[inline]
pub fn vectorize_on<R>(path: Path, f: impl FnMut() -> R) -> R {
    cpu::run(path, cpu::Call(f))
}

/// `C = alpha·A·B + beta·C` exactly as [`Element::gemm`], with this crate's kernels run on
/// `path` (or the widest path below it that the CPU supports), so tests can check each path.
/// Panics, naming the operand and the shape, if a slice is too short for the given shape and
/// strides.
#[allow(clippy::too_many_arguments)]
pub fn gemm_on<E: Element>(
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
    crate::matmul::gemm(
        path, m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc,
    )
}

/// Defines, for each per-element function `one`, a marker type for the generic loop and the
/// public slice functions `name` (active path) and `name_on` (explicit path).
macro_rules! kernel_fns {
    ($t:ident; $( $(#[$doc:meta])* $name:ident, $on:ident, $ty:ident, $one:ident; )*) => {
        $(
            struct $ty;

            impl Scalar for $ty {
                #[inline(always)]
                fn at<const F: bool>(x: $t) -> $t {
                    $one::<F>(x)
                }
            }

            $(#[$doc])*
            ///
            /// Runs on the [active](crate::kernels::active) path.
            pub fn $name(x: &[$t], out: &mut [$t]) {
                $on(crate::cpu::active(), x, out)
            }

            #[doc = concat!(
                "[`", stringify!($name), "`] on `path`, or on the widest path below it that ",
                "the CPU supports."
            )]
            pub fn $on(path: Path, x: &[$t], out: &mut [$t]) {
                crate::cpu::run(
                    path,
                    Each::<$ty> {
                        x,
                        out,
                        s: ::core::marker::PhantomData,
                    },
                )
            }
        )*
    };
}

macro_rules! kernels {
    (
        $(#[$meta:meta])*
        mod $m:ident { float: $t:ident, bits: $u:ident, mant: $mant:expr, consts: { $($c:item)* } }
    ) => {
        $(#[$meta])*
        pub mod $m {
            use super::Path;
            use crate::cpu::Kernel;

            /// Unsigned integer type with the float's width, for bit manipulation.
            type U = $u;
            /// Number of explicit mantissa bits.
            const MANT: u32 = $mant;
            /// Exponent bias.
            const BIAS: U = (1 << (<$u>::BITS - 2 - $mant)) - 1;
            /// `1.5·2^MANT`: adding it to a value of magnitude `< 2^(MANT-1)` rounds to the
            /// nearest integer (in the current round-to-nearest mode) and leaves that integer,
            /// offset by the bits of `SHIFT`, in the low bits of the sum.
            const SHIFT: $t = 1.5 * (1u64 << $mant) as $t;
            const LOG2E: $t = ::core::$t::consts::LOG2_E;
            /// `2^MANT`: brings a subnormal into the normal range.
            const TWO_MANT: $t = (1u64 << $mant) as $t;
            /// Bits of `√½` rounded: the lower end of the mantissa interval in `ln`.
            const SQRT_HALF_BITS: U = ::core::$t::consts::FRAC_1_SQRT_2.to_bits();

            $($c)*

            /// `a·b + c`, fused (one rounding) on paths with hardware FMA (`F`). Without it,
            /// `mul_add` would be a libm call that blocks vectorization, so fall back to the
            /// unfused form; the algorithms never rely on the fused rounding for correctness.
            #[inline(always)]
            fn fma<const F: bool>(a: $t, b: $t, c: $t) -> $t {
                if F {
                    a.mul_add(b, c)
                } else {
                    a * b + c
                }
            }

            /// Horner evaluation of `c[0] + x·c[1] + x²·c[2] + …` (unrolled: `c` is a constant).
            #[inline(always)]
            fn poly<const F: bool>(x: $t, c: &[$t]) -> $t {
                let (last, rest) = c.split_last().expect("non-empty coefficients");
                rest.iter().rev().fold(*last, |acc, &ci| fma::<F>(acc, x, ci))
            }

            /// `2^k` for `k` in the normal exponent range, built from the exponent bits.
            #[inline(always)]
            fn pow2(k_biased: U) -> $t {
                <$t>::from_bits(k_biased.wrapping_shl(MANT))
            }

            /// Cody–Waite reduction `x = n·ln2 + r`: returns `(r, n + BIAS)` with `|r| ≤ ln2/2`
            /// (up to rounding). `x` must be finite and `|x·log2e| < 2^(MANT-2)`, or NaN (then
            /// `r` is NaN and the exponent is garbage, which the callers never use unmasked).
            #[inline(always)]
            fn reduce<const F: bool>(x: $t) -> ($t, U) {
                let t = fma::<F>(x, LOG2E, SHIFT);
                let nf = t - SHIFT;
                // `t`'s bits minus `SHIFT`'s bits is `n` (same binade), so `n + BIAS` is:
                let nb = t.to_bits().wrapping_sub(SHIFT.to_bits()).wrapping_add(BIAS);
                // `nf·LN2_HI` is exact (LN2_HI has enough trailing zeros), so the first step
                // loses nothing; the second adds the low part of ln2.
                let r = fma::<F>(-nf, LN2_HI, x);
                let r = fma::<F>(-nf, LN2_LO, r);
                (r, nb)
            }

            /// `exp(x)` for every `x` (NaN-preserving, overflow to inf, underflow to 0).
            #[inline(always)]
            fn exp1<const F: bool>(x: $t) -> $t {
                // Clamps written as selects so NaN passes through (`max`/`min` would drop it).
                let x = if x > EXP_HI { EXP_HI } else { x };
                let x = if x < EXP_LO { EXP_LO } else { x };
                let (r, nb) = reduce::<F>(x);
                let p = poly::<F>(r, &EXP_C);
                // Split 2^n into two factors so each is a normal number for every n in the
                // clamped range: p·2^n1 is exact, the second product rounds once (correct
                // overflow to inf and gradual underflow).
                let n1b = (nb.wrapping_add(BIAS)) >> 1; // (n + 2·BIAS)/2 = n/2 + BIAS, n ≥ -2·BIAS
                let n2b = nb.wrapping_sub(n1b).wrapping_add(BIAS);
                p * pow2(n1b) * pow2(n2b)
            }

            /// `expm1(y)` for `y` in `[TANH_CLAMP, 0]` or NaN (the range `tanh` needs, where
            /// `2^n` stays normal).
            #[inline(always)]
            fn expm1_neg<const F: bool>(y: $t) -> $t {
                let (r, nb) = reduce::<F>(y);
                // expm1(r) = r + r²·(1/2 + r/6 + …): relative-accurate for tiny r.
                let q = fma::<F>(r * r, poly::<F>(r, &EXPM1_C), r);
                let s = pow2(nb);
                // 2^n·(1+q) - 1 = 2^n·q + (2^n - 1); `s - 1` is exact for the n used here.
                fma::<F>(s, q, s - 1.0)
            }

            /// `ln(x)` for a positive, finite, normal `x`, whose exponent is corrected by
            /// `eadj` (used for pre-scaled subnormals). Other inputs give garbage, not UB.
            #[inline(always)]
            fn ln_core<const F: bool>(x: $t, eadj: $t) -> $t {
                let u = x.to_bits();
                // Offset so the biased exponent of x/√½ sits in the top bits of a non-negative
                // integer: a logical shift then reads `e + BIAS` with m ∈ [√½, √2).
                let tt = u.wrapping_sub(SQRT_HALF_BITS).wrapping_add(BIAS << MANT);
                let eb = tt >> MANT;
                let m = <$t>::from_bits(u.wrapping_sub(eb.wrapping_shl(MANT)).wrapping_add(BIAS << MANT));
                // e as a float without an int→float conversion (not a single instruction for
                // 64-bit lanes on AVX2): put eb in the low bits of SHIFT and subtract.
                let e = <$t>::from_bits(SHIFT.to_bits().wrapping_add(eb)) - SHIFT - (BIAS as $t) + eadj;
                ln_parts::<F>(m - 1.0, e, 0.0, &LN_C)
            }

            /// `ln(2^e·(1+f)) + lo` for `f` in the reduced interval that the coefficients `c` of
            /// `R(z)` cover and a small integer `e`. With `s = f/(2+f)`,
            /// `ln(1+f) = f - f²/2 + s·(f²/2 + R(s²))` keeps the large term `f` exact.
            #[inline(always)]
            fn ln_parts<const F: bool>(f: $t, e: $t, lo: $t, c: &[$t]) -> $t {
                let s = f / (2.0 + f);
                let z = s * s;
                let r = z * poly::<F>(z, c);
                let hfsq = 0.5 * f * f;
                fma::<F>(e, LN2_HI, f - (hfsq - fma::<F>(s, hfsq + r, fma::<F>(e, LN2_LO, lo))))
            }

            /// `ln(x)` for every `x`, with std's special values.
            #[inline(always)]
            fn ln1<const F: bool>(x: $t) -> $t {
                let sub = x < <$t>::MIN_POSITIVE;
                let xs = if sub { x * TWO_MANT } else { x };
                let adj = if sub { -(MANT as $t) } else { 0.0 };
                let r = ln_core::<F>(xs, adj);
                let r = if x == <$t>::INFINITY { x } else { r };
                let r = if x == 0.0 { <$t>::NEG_INFINITY } else { r };
                // Negative and NaN inputs.
                if x >= 0.0 {
                    r
                } else {
                    <$t>::NAN
                }
            }

            /// `log1p(u)` for `u ∈ [0, 1]` (NaN propagates). `1 + u = 2^e·(1+f)` is split
            /// without rounding `1 + u`: `f = u` below 1/2, else `e = 1` and `f = (u-1)/2`, where
            /// `u - 1` is exact (Sterbenz). So tiny `u` keep full relative accuracy, with no
            /// correction term for the rounding of `1 + u` (and no second division).
            #[inline(always)]
            fn log1p_unit<const F: bool>(u: $t) -> $t {
                let big = u >= 0.5;
                let f = if big { (u - 1.0) * 0.5 } else { u };
                let e = if big { 1.0 } else { 0.0 };
                ln_parts::<F>(f, e, 0.0, &LOG1P_C)
            }

            /// `tanh(x)` for every `x`.
            #[inline(always)]
            fn tanh1<const F: bool>(x: $t) -> $t {
                let y = -2.0 * x.abs();
                let y = if y < TANH_CLAMP { TANH_CLAMP } else { y };
                let t = expm1_neg::<F>(y);
                (-t / (t + 2.0)).copysign(x)
            }

            /// `1/(1+exp(-x))` for every `x`.
            #[inline(always)]
            fn sigmoid1<const F: bool>(x: $t) -> $t {
                let e = exp1::<F>(-x.abs());
                let inv = 1.0 / (1.0 + e);
                if x >= 0.0 {
                    inv
                } else {
                    // NaN lands here too, and e is NaN then.
                    e * inv
                }
            }

            /// `ln(1+exp(x))` for every `x`.
            #[inline(always)]
            fn softplus1<const F: bool>(x: $t) -> $t {
                let e = exp1::<F>(-x.abs());
                // `x` itself when NaN, so the result is NaN (log1p_unit does not propagate it).
                let m = if x <= 0.0 { 0.0 } else { x };
                m + log1p_unit::<F>(e)
            }

            /// The per-element functions, as types the generic loop [`Each`] is
            /// instantiated with once per path.
            trait Scalar {
                fn at<const F: bool>(x: $t) -> $t;
            }

            /// `out[i] = S(x[i])` for `i < min(x.len(), out.len())`.
            struct Each<'a, S> {
                x: &'a [$t],
                out: &'a mut [$t],
                s: ::core::marker::PhantomData<S>,
            }

            impl<S: Scalar> Kernel for Each<'_, S> {
                type Output = ();
                #[inline(always)]
                fn run<const F: bool>(self) {
                    for (o, &v) in self.out.iter_mut().zip(self.x) {
                        *o = S::at::<F>(v);
                    }
                }
            }

            kernel_fns! {
                $t;
                /// `out[i] = exp(x[i])`: `+inf` on overflow, `0` (through the subnormals) on
                /// underflow, NaN for NaN.
                exp, exp_on, Exp, exp1;
                /// `out[i] = ln(x[i])`: `-inf` at `±0`, NaN below zero, `+inf` at `+inf`,
                /// subnormal inputs exact to the same accuracy as normal ones.
                ln, ln_on, Ln, ln1;
                /// `out[i] = tanh(x[i])`: relative accuracy near 0 (`tanh(±0) = ±0`), exactly
                /// `±1` for large `|x|`.
                tanh, tanh_on, Tanh, tanh1;
                /// `out[i] = 1/(1+exp(-x[i]))`, overflow-free and relative-accurate for very
                /// negative `x` (where it is `≈ eˣ`).
                sigmoid, sigmoid_on, Sigmoid, sigmoid1;
                /// `out[i] = ln(1+exp(x[i]))` without overflow: exactly `x` for large `x`,
                /// `≈ eˣ` with relative accuracy for very negative `x`.
                softplus, softplus_on, Softplus, softplus1;
            }
        }
    };
}

kernels! {
    /// `f32` kernels.
    mod f32k {
        float: f32,
        bits: u32,
        mant: 23,
        consts: {
            /// ln2 to 16 significant bits: `n·LN2_HI` is exact for `|n| < 2^8`.
            const LN2_HI: f32 = 0.693_145_75;
            /// `ln2 - LN2_HI`.
            const LN2_LO: f32 = 1.428_606_8e-6;
            /// Above this `exp` overflows (`ln(f32::MAX) ≈ 88.72`).
            const EXP_HI: f32 = 89.0;
            /// Below this `exp` rounds to 0 (`ln(2^-150) ≈ -103.97`).
            const EXP_LO: f32 = -104.0;
            /// `expm1(-24)` rounds to -1, so `tanh` is exactly ±1 beyond `|x| = 12`.
            const TANH_CLAMP: f32 = -24.0;
            /// `1/k!` for `k = 0..=7`.
            const EXP_C: [f32; 8] = [
                1.0,
                1.0,
                0.5,
                0.166_666_67,
                0.041_666_668,
                0.008_333_334,
                0.001_388_888_9,
                0.000_198_412_7,
            ];
            /// `1/k!` for `k = 2..=8`.
            const EXPM1_C: [f32; 7] = [
                0.5,
                0.166_666_67,
                0.041_666_668,
                0.008_333_334,
                0.001_388_888_9,
                0.000_198_412_7,
                2.480_158_8e-5,
            ];
            /// `2/(2k+1)` for `k = 1..=4`.
            const LN_C: [f32; 4] = [0.666_666_7, 0.4, 0.285_714_3, 0.222_222_22];
            /// `2/(2k+1)` for `k = 1..=5`: `log1p`'s interval reaches `|s| ≤ 1/5`.
            const LOG1P_C: [f32; 5] = [0.666_666_7, 0.4, 0.285_714_3, 0.222_222_22, 0.181_818_18];
        }
    }
}

kernels! {
    /// `f64` kernels.
    mod f64k {
        float: f64,
        bits: u64,
        mant: 52,
        consts: {
            /// ln2 to 32 significant bits: `n·LN2_HI` is exact for `|n| < 2^21`.
            const LN2_HI: f64 = 0.693_147_180_369_123_8;
            /// `ln2 - LN2_HI`.
            const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
            /// Above this `exp` overflows (`ln(f64::MAX) ≈ 709.78`).
            const EXP_HI: f64 = 710.0;
            /// Below this `exp` rounds to 0 (`ln(2^-1075) ≈ -745.13`).
            const EXP_LO: f64 = -746.0;
            /// `expm1(-50)` rounds to -1, so `tanh` is exactly ±1 beyond `|x| = 25`.
            const TANH_CLAMP: f64 = -50.0;
            /// `1/k!` for `k = 0..=13`.
            const EXP_C: [f64; 14] = [
                1.0,
                1.0,
                0.5,
                0.166_666_666_666_666_66,
                0.041_666_666_666_666_664,
                0.008_333_333_333_333_333,
                0.001_388_888_888_888_889,
                0.000_198_412_698_412_698_4,
                2.480_158_730_158_73e-5,
                2.755_731_922_398_589_3e-6,
                2.755_731_922_398_589e-7,
                2.505_210_838_544_172e-8,
                2.087_675_698_786_81e-9,
                1.605_904_383_682_161_3e-10,
            ];
            /// `1/k!` for `k = 2..=13`.
            const EXPM1_C: [f64; 12] = [
                0.5,
                0.166_666_666_666_666_66,
                0.041_666_666_666_666_664,
                0.008_333_333_333_333_333,
                0.001_388_888_888_888_889,
                0.000_198_412_698_412_698_4,
                2.480_158_730_158_73e-5,
                2.755_731_922_398_589_3e-6,
                2.755_731_922_398_589e-7,
                2.505_210_838_544_172e-8,
                2.087_675_698_786_81e-9,
                1.605_904_383_682_161_3e-10,
            ];
            /// `2/(2k+1)` for `k = 1..=10`.
            const LN_C: [f64; 10] = [
                0.666_666_666_666_666_6,
                0.4,
                0.285_714_285_714_285_7,
                0.222_222_222_222_222_2,
                0.181_818_181_818_181_82,
                0.153_846_153_846_153_85,
                0.133_333_333_333_333_33,
                0.117_647_058_823_529_41,
                0.105_263_157_894_736_84,
                0.095_238_095_238_095_23,
            ];
            /// `2/(2k+1)` for `k = 1..=11`: `log1p`'s interval reaches `|s| ≤ 1/5`.
            const LOG1P_C: [f64; 11] = [
                0.666_666_666_666_666_6,
                0.4,
                0.285_714_285_714_285_7,
                0.222_222_222_222_222_2,
                0.181_818_181_818_181_82,
                0.153_846_153_846_153_85,
                0.133_333_333_333_333_33,
                0.117_647_058_823_529_41,
                0.105_263_157_894_736_84,
                0.095_238_095_238_095_23,
                0.086_956_521_739_130_43,
            ];
        }
    }
}
