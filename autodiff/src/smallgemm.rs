//! Packing-free GEMM for the shapes of MLP layers at batch size: `n ≤ 64` output columns, any
//! `m`, `k ≤ 512`, row-major `C`, `B` with contiguous rows; one kernel per vector ISA
//! (`avx512::{f32k, f64k}`, `avx2::{f32k, f64k}`).
//!
//! A block of `MR` rows × `NC` columns of `C` lives in vector registers across the whole depth
//! loop and a panel of `B` stays in L1/L2, so the kernel reads `A` straight from memory
//! (broadcast loads, any strides) instead of packing it as the `gemm` crate does. With
//! AVX-512 (32 zmm registers) one panel covers 64 columns (6 × 4 accumulators); with AVX2 (16
//! ymm registers) a panel is 6 rows × 2 vectors (16 f32 / 8 f64 columns), the classic Haswell
//! register block. On Zen 4 both the AVX-512 kernel and the crate run close to the FMA
//! ceiling, and skipping the packing gains 3–9% on `G·W` and on the weight gradients `Gᵀ·X`.
//! The AVX2 kernel was measured on a Zen 5 restricted to AVX2 against the crate's own AVX2
//! kernels (the crate built without `x86-v4`), at batch 512: `G·W` 512×64×64 1–2% faster,
//! `Gᵀ·X` 64×512×64 18% faster in f32 and equal in f64, `Gᵀ·X` 2×512×64 13–15% faster. It
//! has not been timed on an AVX2-only CPU.
//!
//! `B` with strided columns (`x·Wᵀ`) is declined: repacking the 64×64 weight per call cost as
//! much as it saved (0.92–1.02× the `gemm` crate on Zen 4, scalar or gathered: Zen 4 gathers
//! are slow), so it stays on the general path. (The skinny `k ≤ 4` products repack their tiny
//! `B` and come here; see `skinny.rs`.)
//!
//! Outputs of 1–4 columns with rows of `A` contiguous (the last layer's `x·Wᵀ` and the `G·W`
//! of its VJP) take a dot-product kernel instead, vectorized along `k`: the panel kernel would
//! fill `n` of its lanes and the `gemm` crate spends its time on edge tiles there. At
//! 512×64×2: 1.9 µs f32 / 3.4 f64 against 9.6–12 for the crate (`x·Wᵀ`) and 6–7 for the
//! panel kernel (`G·W`).
//!
//! The entry points also decline (return `false`, touching nothing) when the CPU lacks the
//! ISA, the shape is out of the measured range, or the strides would reach outside the
//! slices; the caller then falls back to the general path.

/// Largest `n` handled: the panels of one 64-column block.
const N_MAX: usize = 64;
/// Largest `k` handled: the range measured (a 512×64 panel of `B` still sits in L2).
const K_MAX: usize = 512;
/// Largest `n` of the dot-product kernel for narrow outputs.
const NARROW_N: usize = 4;

/// Whether `len` covers every index `i·rs + j·cs` for `i < rows`, `j < cols` (`rows, cols > 0`).
fn covers(len: usize, rows: usize, rs: usize, cols: usize, cs: usize) -> bool {
    (rows - 1)
        .checked_mul(rs)
        .and_then(|x| (cols - 1).checked_mul(cs).and_then(|y| x.checked_add(y)))
        .is_some_and(|last| last < len)
}

// The kernel template comes first, so the ISA modules below can expand it.
#[macro_use]
mod kernel;

pub(crate) mod avx2;
pub(crate) mod avx512;
