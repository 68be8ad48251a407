//! The AVX-512 kernels: 16 f32 / 8 f64 lanes, 6 rows × 4 vectors per block (24 of the 32 zmm
//! registers hold accumulators), masked loads and stores for a partial last vector.

small_gemm!(
    mod f32k: f32, __m512, lanes 16, mr 6, nv 4,
    feature "avx512f", detect ["avx512f"],
    zero = _mm512_setzero_ps(),
    set1(s) = _mm512_set1_ps(s),
    fmadd(x, y, z) = _mm512_fmadd_ps(x, y, z),
    mul(x, y) = _mm512_mul_ps(x, y),
    loadu(ptr) = _mm512_loadu_ps(ptr),
    storeu(ptr, val) = _mm512_storeu_ps(ptr, val),
    load_first(ptr, n) = _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, ptr),
    store_first(ptr, n, val) =
        _mm512_mask_storeu_ps(ptr, ((1u32 << n) - 1) as __mmask16, val),
    hsum(v) = _mm512_reduce_add_ps(v),
    narrow_rows 4, 4,
);
small_gemm!(
    mod f64k: f64, __m512d, lanes 8, mr 6, nv 4,
    feature "avx512f", detect ["avx512f"],
    zero = _mm512_setzero_pd(),
    set1(s) = _mm512_set1_pd(s),
    fmadd(x, y, z) = _mm512_fmadd_pd(x, y, z),
    mul(x, y) = _mm512_mul_pd(x, y),
    loadu(ptr) = _mm512_loadu_pd(ptr),
    storeu(ptr, val) = _mm512_storeu_pd(ptr, val),
    load_first(ptr, n) = _mm512_maskz_loadu_pd(((1u32 << n) - 1) as __mmask8, ptr),
    store_first(ptr, n, val) =
        _mm512_mask_storeu_pd(ptr, ((1u32 << n) - 1) as __mmask8, val),
    hsum(v) = _mm512_reduce_add_pd(v),
    narrow_rows 4, 4,
);
