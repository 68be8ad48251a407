//! The AVX2 + FMA kernels: 8 f32 / 4 f64 lanes, 6 rows × 2 vectors per block (12 of the 16
//! ymm registers hold accumulators, 2 a row of `B`, 1 the broadcast). A partial last vector
//! goes through `vmaskmov` (masked-off lanes are not accessed, so they cannot fault); full
//! vectors use plain loads and stores, which are faster than masked ones on AMD.

use std::arch::x86_64::*;

/// Lane mask with the first `n` of 8 32-bit lanes set.
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn first32(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Lane mask with the first `n` of 4 64-bit lanes set.
///
/// # Safety
/// AVX2 available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn first64(n: usize) -> __m256i {
    _mm256_cmpgt_epi64(_mm256_set1_epi64x(n as i64), _mm256_setr_epi64x(0, 1, 2, 3))
}

/// Sum of the 8 lanes.
///
/// # Safety
/// AVX available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// Sum of the 4 lanes.
///
/// # Safety
/// AVX available.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum_pd(v: __m256d) -> f64 {
    let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
}

small_gemm!(
    mod f32k: f32, __m256, lanes 8, mr 6, nv 2,
    feature "avx2,fma", detect ["avx2", "fma"],
    zero = _mm256_setzero_ps(),
    set1(s) = _mm256_set1_ps(s),
    fmadd(x, y, z) = _mm256_fmadd_ps(x, y, z),
    mul(x, y) = _mm256_mul_ps(x, y),
    loadu(ptr) = _mm256_loadu_ps(ptr),
    storeu(ptr, val) = _mm256_storeu_ps(ptr, val),
    load_first(ptr, n) = _mm256_maskload_ps(ptr, super::first32(n)),
    store_first(ptr, n, val) = _mm256_maskstore_ps(ptr, super::first32(n), val),
    hsum(v) = super::hsum_ps(v),
    narrow_rows 4, 2,
);
small_gemm!(
    mod f64k: f64, __m256d, lanes 4, mr 6, nv 2,
    feature "avx2,fma", detect ["avx2", "fma"],
    zero = _mm256_setzero_pd(),
    set1(s) = _mm256_set1_pd(s),
    fmadd(x, y, z) = _mm256_fmadd_pd(x, y, z),
    mul(x, y) = _mm256_mul_pd(x, y),
    loadu(ptr) = _mm256_loadu_pd(ptr),
    storeu(ptr, val) = _mm256_storeu_pd(ptr, val),
    load_first(ptr, n) = _mm256_maskload_pd(ptr, super::first64(n)),
    store_first(ptr, n, val) = _mm256_maskstore_pd(ptr, super::first64(n), val),
    hsum(v) = super::hsum_pd(v),
    narrow_rows 4, 2,
);
