//! Accuracy and special-value tests of the vectorized elementwise kernels against std, and of
//! the GEMM kernels against the definition, on every kernel path the running CPU supports.
//!
//! f64 kernels are compared with std's f64 functions, f32 kernels with the f64 std result (not
//! rounded, so the reported error includes the final rounding to f32). Errors are in ulps of the
//! reference. Run with `--nocapture` to see the measured maxima.

use autodiff::kernels::{self, f32k, f64k, Path};

/// The paths this CPU can run (always at least the baseline); each test loops over them, so
/// CI on an AVX-512 machine checks all three.
fn paths() -> Vec<Path> {
    let ps: Vec<Path> = Path::ALL.into_iter().filter(|p| p.is_supported()).collect();
    assert_eq!(ps[0], Path::Baseline, "the baseline is always supported");
    ps
}

/// Deterministic low-discrepancy sequence in `[0, 1)` (golden-ratio additive recurrence).
fn unit(n: usize) -> impl Iterator<Item = f64> {
    let g = 0.618_033_988_749_894_9_f64;
    (0..n).map(move |i| (0.5 + i as f64 * g).fract())
}

/// `n` points uniform in `[lo, hi]`.
fn linear(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    unit(n).map(|u| lo + (hi - lo) * u).collect()
}

/// `n` points `±10^e` with `e` uniform in `[lo, hi]`, alternating signs.
fn log_both(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    unit(n)
        .enumerate()
        .map(|(i, u)| if i % 2 == 0 { 1.0 } else { -1.0 } * 10f64.powf(lo + (hi - lo) * u))
        .collect()
}

/// `n` points `2^e` with `e` uniform in `[lo, hi]`.
fn pow2_pos(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    unit(n).map(|u| (lo + (hi - lo) * u).exp2()).collect()
}

/// Distance between `r` and the next f64 away from zero (smallest subnormal at 0).
fn ulp64(r: f64) -> f64 {
    let a = r.abs();
    if a == f64::MAX {
        return a - f64::from_bits(a.to_bits() - 1);
    }
    f64::from_bits(a.to_bits() + 1) - a
}

/// The f32 ulp at the f64 value `r` (its f32 rounding's spacing).
fn ulp32(r: f64) -> f64 {
    let a = (r as f32).abs();
    if a == f32::MAX {
        return (a - f32::from_bits(a.to_bits() - 1)) as f64;
    }
    (f32::from_bits(a.to_bits() + 1) - a) as f64
}

/// Error of `got` against `want` in ulps, with equal specials (inf, NaN) counting as exact.
fn ulps(got: f64, want: f64, ulp: fn(f64) -> f64) -> f64 {
    if got == want || (got.is_nan() && want.is_nan()) {
        return 0.0;
    }
    if !got.is_finite() || !want.is_finite() {
        return f64::INFINITY;
    }
    (got - want).abs() / ulp(want)
}

type K64 = fn(Path, &[f64], &mut [f64]);
type K32 = fn(Path, &[f32], &mut [f32]);

/// Largest ulp error of `kernel` on path `p` against `reference` over `xs`; panics past
/// `bound`.
fn check64(
    p: Path,
    name: &str,
    kernel: K64,
    reference: fn(f64) -> f64,
    xs: &[f64],
    bound: f64,
) -> f64 {
    let mut out = vec![0.0; xs.len()];
    kernel(p, xs, &mut out);
    let (mut worst, mut at) = (0.0, 0.0);
    for (&x, &y) in xs.iter().zip(&out) {
        let e = ulps(y, reference(x), ulp64);
        if e > worst {
            (worst, at) = (e, x);
        }
    }
    println!("{p:<8} f64 {name:<22} max {worst:.3} ulp at x = {at:e}");
    assert!(
        worst <= bound,
        "{p}: f64 {name}: {worst} ulp at x = {at:e} (got {}, want {})",
        one64(p, kernel, at),
        reference(at)
    );
    worst
}

/// Same as [`check64`] for an f32 kernel against an f64 reference.
fn check32(
    p: Path,
    name: &str,
    kernel: K32,
    reference: fn(f64) -> f64,
    xs: &[f64],
    bound: f64,
) -> f64 {
    let xs: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
    let mut out = vec![0.0; xs.len()];
    kernel(p, &xs, &mut out);
    let (mut worst, mut at) = (0.0, 0.0f32);
    for (&x, &y) in xs.iter().zip(&out) {
        let want = reference(x as f64);
        // A reference outside f32's range is compared after rounding (inf or 0 expected).
        let want = if (want as f32).is_infinite() || (want != 0.0 && want as f32 == 0.0) {
            (want as f32) as f64
        } else {
            want
        };
        let e = ulps(y as f64, want, ulp32);
        if e > worst {
            (worst, at) = (e, x);
        }
    }
    println!("{p:<8} f32 {name:<22} max {worst:.3} ulp at x = {at:e}");
    assert!(worst <= bound, "{p}: f32 {name}: {worst} ulp at x = {at:e}");
    worst
}

const N: usize = 100_000;

fn sigmoid_ref(x: f64) -> f64 {
    // exp(-|x|) never overflows; the negative branch keeps relative accuracy in the tail.
    let e = (-x.abs()).exp();
    if x >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

fn softplus_ref(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[test]
fn exp_accuracy() {
    for p in paths() {
        let mut xs = linear(-750.0, 712.0, N);
        xs.extend(log_both(-320.0, 3.0, N));
        check64(p, "exp", f64k::exp_on, f64::exp, &xs, 2.0);
        let mut xs = linear(-110.0, 90.0, N);
        xs.extend(log_both(-45.0, 2.0, N));
        check32(p, "exp", f32k::exp_on, f64::exp, &xs, 2.0);
    }
}

#[test]
fn ln_accuracy() {
    for p in paths() {
        let mut xs = pow2_pos(-1074.0, 1024.0, N);
        xs.extend(log_both(-17.0, -0.01, N).iter().map(|d| 1.0 + d));
        check64(p, "ln", f64k::ln_on, f64::ln, &xs, 2.0);
        let mut xs = pow2_pos(-149.0, 128.0, N);
        xs.extend(log_both(-8.0, -0.01, N).iter().map(|d| 1.0 + d));
        check32(p, "ln", f32k::ln_on, f64::ln, &xs, 2.0);
    }
}

#[test]
fn tanh_accuracy() {
    for p in paths() {
        let mut xs = linear(-30.0, 30.0, N);
        xs.extend(log_both(-310.0, 1.5, N));
        check64(p, "tanh", f64k::tanh_on, f64::tanh, &xs, 4.0);
        let mut xs = linear(-15.0, 15.0, N);
        xs.extend(log_both(-40.0, 1.2, N));
        check32(p, "tanh", f32k::tanh_on, f64::tanh, &xs, 3.0);
    }
}

#[test]
fn sigmoid_accuracy() {
    for p in paths() {
        let mut xs = linear(-760.0, 40.0, N);
        xs.extend(log_both(-310.0, 2.9, N));
        check64(p, "sigmoid", f64k::sigmoid_on, sigmoid_ref, &xs, 5.0);
        let mut xs = linear(-110.0, 20.0, N);
        xs.extend(log_both(-40.0, 2.0, N));
        check32(p, "sigmoid", f32k::sigmoid_on, sigmoid_ref, &xs, 3.0);
    }
}

#[test]
fn softplus_accuracy() {
    for p in paths() {
        let mut xs = linear(-760.0, 760.0, N);
        xs.extend(log_both(-310.0, 3.0, N));
        xs.extend(linear(-40.0, 40.0, N));
        check64(p, "softplus", f64k::softplus_on, softplus_ref, &xs, 5.0);
        let mut xs = linear(-110.0, 110.0, N);
        xs.extend(log_both(-40.0, 2.0, N));
        xs.extend(linear(-20.0, 20.0, N));
        check32(p, "softplus", f32k::softplus_on, softplus_ref, &xs, 3.0);
    }
}

/// Applies a kernel on path `p` to one value.
fn one64(p: Path, k: K64, x: f64) -> f64 {
    let mut o = [0.0];
    k(p, &[x], &mut o);
    o[0]
}

fn one32(p: Path, k: K32, x: f32) -> f32 {
    let mut o = [0.0];
    k(p, &[x], &mut o);
    o[0]
}

/// Bitwise equality, NaN equal to NaN.
fn same64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn special_values_f64() {
    for p in paths() {
        special_values_f64_on(p);
    }
}

fn special_values_f64_on(p: Path) {
    const INF: f64 = f64::INFINITY;
    const NINF: f64 = f64::NEG_INFINITY;
    const NAN: f64 = f64::NAN;
    const MAX: f64 = f64::MAX;
    const MIN_POSITIVE: f64 = f64::MIN_POSITIVE;
    let tiny = f64::from_bits(1); // smallest subnormal
    let cases: &[(&str, K64, f64, f64)] = &[
        ("exp", f64k::exp_on, 0.0, 1.0),
        ("exp", f64k::exp_on, -0.0, 1.0),
        ("exp", f64k::exp_on, INF, INF),
        ("exp", f64k::exp_on, NINF, 0.0),
        ("exp", f64k::exp_on, NAN, NAN),
        ("exp", f64k::exp_on, 709.9, INF),
        ("exp", f64k::exp_on, 1e300, INF),
        ("exp", f64k::exp_on, -746.0, 0.0),
        ("exp", f64k::exp_on, -1e300, 0.0),
        ("ln", f64k::ln_on, 0.0, NINF),
        ("ln", f64k::ln_on, -0.0, NINF),
        ("ln", f64k::ln_on, -1.0, NAN),
        ("ln", f64k::ln_on, NINF, NAN),
        ("ln", f64k::ln_on, -tiny, NAN),
        ("ln", f64k::ln_on, INF, INF),
        ("ln", f64k::ln_on, NAN, NAN),
        ("ln", f64k::ln_on, 1.0, 0.0),
        ("ln", f64k::ln_on, tiny, tiny.ln()),
        ("ln", f64k::ln_on, MAX, MAX.ln()),
        ("ln", f64k::ln_on, MIN_POSITIVE, MIN_POSITIVE.ln()),
        ("tanh", f64k::tanh_on, 0.0, 0.0),
        ("tanh", f64k::tanh_on, -0.0, -0.0),
        ("tanh", f64k::tanh_on, INF, 1.0),
        ("tanh", f64k::tanh_on, NINF, -1.0),
        ("tanh", f64k::tanh_on, 20.0, 1.0),
        ("tanh", f64k::tanh_on, -1e300, -1.0),
        ("tanh", f64k::tanh_on, NAN, NAN),
        ("tanh", f64k::tanh_on, tiny, tiny),
        ("tanh", f64k::tanh_on, -1e-200, -1e-200),
        ("sigmoid", f64k::sigmoid_on, 0.0, 0.5),
        ("sigmoid", f64k::sigmoid_on, INF, 1.0),
        ("sigmoid", f64k::sigmoid_on, NINF, 0.0),
        ("sigmoid", f64k::sigmoid_on, 40.0, 1.0),
        ("sigmoid", f64k::sigmoid_on, -800.0, 0.0),
        ("sigmoid", f64k::sigmoid_on, NAN, NAN),
        ("softplus", f64k::softplus_on, INF, INF),
        ("softplus", f64k::softplus_on, NINF, 0.0),
        ("softplus", f64k::softplus_on, 1e300, 1e300),
        ("softplus", f64k::softplus_on, 40.0, 40.0),
        ("softplus", f64k::softplus_on, 800.0, 800.0),
        ("softplus", f64k::softplus_on, -800.0, 0.0),
        ("softplus", f64k::softplus_on, NAN, NAN),
    ];
    for &(name, k, x, want) in cases {
        let got = one64(p, k, x);
        assert!(
            same64(got, want),
            "{p}: f64 {name}({x:e}) = {got:e}, want {want:e}"
        );
    }
    // Ordinary values (within an ulp, not bitwise: the result may differ by the last bit
    // with or without hardware FMA).
    assert!(ulps(one64(p, f64k::exp_on, 1.0), std::f64::consts::E, ulp64) <= 1.0);
    assert!(
        ulps(
            one64(p, f64k::softplus_on, 0.0),
            std::f64::consts::LN_2,
            ulp64
        ) <= 1.0
    );
    // Relative accuracy deep in the tails, where e^x is subnormal or tiny.
    for x in [-700.0f64, -720.0, -740.0, -50.0, -36.0] {
        let e = x.exp();
        for (name, k) in [
            ("sigmoid", f64k::sigmoid_on as K64),
            ("softplus", f64k::softplus_on),
        ] {
            let got = one64(p, k, x);
            assert!(
                ulps(got, e, ulp64) <= 2.0,
                "f64 {name}({x}) = {got:e}, want ≈ {e:e}"
            );
        }
    }
    // The largest values that do not overflow, and the subnormal range, match std.
    for x in [
        709.78,
        709.782712893384,
        -708.4,
        -709.0,
        -730.0,
        -744.4,
        -745.1,
    ] {
        let (got, want) = (one64(p, f64k::exp_on, x), x.exp());
        assert!(
            ulps(got, want, ulp64) <= 1.0,
            "f64 exp({x}) = {got:e}, want {want:e}"
        );
    }
}

#[test]
fn special_values_f32() {
    for p in paths() {
        special_values_f32_on(p);
    }
}

fn special_values_f32_on(p: Path) {
    const INF: f32 = f32::INFINITY;
    const NINF: f32 = f32::NEG_INFINITY;
    const NAN: f32 = f32::NAN;
    const MAX: f32 = f32::MAX;
    const MIN_POSITIVE: f32 = f32::MIN_POSITIVE;
    let tiny = f32::from_bits(1);
    let cases: &[(&str, K32, f32, f32)] = &[
        ("exp", f32k::exp_on, 0.0, 1.0),
        ("exp", f32k::exp_on, INF, INF),
        ("exp", f32k::exp_on, NINF, 0.0),
        ("exp", f32k::exp_on, NAN, NAN),
        ("exp", f32k::exp_on, 88.8, INF),
        ("exp", f32k::exp_on, -104.0, 0.0),
        ("ln", f32k::ln_on, 0.0, NINF),
        ("ln", f32k::ln_on, -0.0, NINF),
        ("ln", f32k::ln_on, -1.0, NAN),
        ("ln", f32k::ln_on, -tiny, NAN),
        ("ln", f32k::ln_on, INF, INF),
        ("ln", f32k::ln_on, NAN, NAN),
        ("ln", f32k::ln_on, 1.0, 0.0),
        ("ln", f32k::ln_on, tiny, ((tiny as f64).ln()) as f32),
        ("ln", f32k::ln_on, MAX, ((MAX as f64).ln()) as f32),
        (
            "ln",
            f32k::ln_on,
            MIN_POSITIVE,
            ((MIN_POSITIVE as f64).ln()) as f32,
        ),
        ("tanh", f32k::tanh_on, 0.0, 0.0),
        ("tanh", f32k::tanh_on, -0.0, -0.0),
        ("tanh", f32k::tanh_on, INF, 1.0),
        ("tanh", f32k::tanh_on, NINF, -1.0),
        ("tanh", f32k::tanh_on, 10.0, 1.0),
        ("tanh", f32k::tanh_on, NAN, NAN),
        ("tanh", f32k::tanh_on, tiny, tiny),
        ("tanh", f32k::tanh_on, -1e-30, -1e-30),
        ("sigmoid", f32k::sigmoid_on, 0.0, 0.5),
        ("sigmoid", f32k::sigmoid_on, INF, 1.0),
        ("sigmoid", f32k::sigmoid_on, NINF, 0.0),
        ("sigmoid", f32k::sigmoid_on, 20.0, 1.0),
        ("sigmoid", f32k::sigmoid_on, -110.0, 0.0),
        ("sigmoid", f32k::sigmoid_on, NAN, NAN),
        ("softplus", f32k::softplus_on, INF, INF),
        ("softplus", f32k::softplus_on, NINF, 0.0),
        ("softplus", f32k::softplus_on, 1e30, 1e30),
        ("softplus", f32k::softplus_on, 20.0, 20.0),
        ("softplus", f32k::softplus_on, -110.0, 0.0),
        ("softplus", f32k::softplus_on, NAN, NAN),
    ];
    for &(name, k, x, want) in cases {
        let got = one32(p, k, x);
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "{p}: f32 {name}({x:e}) = {got:e}, want {want:e}"
        );
    }
    assert!(ulps(one32(p, f32k::exp_on, 1.0) as f64, 1f64.exp(), ulp32) <= 1.0);
    assert!(ulps(one32(p, f32k::softplus_on, 0.0) as f64, 2f64.ln(), ulp32) <= 1.0);
    for x in [-80.0f32, -95.0, -100.0, -20.0] {
        let e = (x as f64).exp();
        for (name, k) in [
            ("sigmoid", f32k::sigmoid_on as K32),
            ("softplus", f32k::softplus_on),
        ] {
            let got = one32(p, k, x) as f64;
            assert!(
                ulps(got, e, ulp32) <= 2.0,
                "f32 {name}({x}) = {got:e}, want ≈ {e:e}"
            );
        }
    }
}

/// Vector bodies and scalar remainders give bitwise the same results, for every length and
/// misalignment, and no element past the end is written.
#[test]
fn odd_lengths_and_offsets() {
    for p in paths() {
        odd_lengths_and_offsets_on(p);
    }
}

fn odd_lengths_and_offsets_on(p: Path) {
    let xs64 = linear(-30.0, 30.0, 200);
    let xs32: Vec<f32> = xs64.iter().map(|&x| x as f32).collect();
    let k64: [K64; 5] = [
        f64k::exp_on,
        f64k::ln_on,
        f64k::tanh_on,
        f64k::sigmoid_on,
        f64k::softplus_on,
    ];
    let k32: [K32; 5] = [
        f32k::exp_on,
        f32k::ln_on,
        f32k::tanh_on,
        f32k::sigmoid_on,
        f32k::softplus_on,
    ];
    for k in k64 {
        for off in 0..5 {
            for len in 0..70 {
                let x = &xs64[off..off + len];
                let mut out = vec![7.0; len + 1];
                k(p, x, &mut out[..len]);
                for (i, &v) in x.iter().enumerate() {
                    assert!(
                        same64(out[i], one64(p, k, v)),
                        "{p}: len {len} off {off} i {i}"
                    );
                }
                assert_eq!(out[len], 7.0);
            }
        }
    }
    for k in k32 {
        for off in 0..5 {
            for len in 0..70 {
                let x = &xs32[off..off + len];
                let mut out = vec![7.0; len + 1];
                k(p, x, &mut out[..len]);
                for (i, &v) in x.iter().enumerate() {
                    let w = one32(p, k, v);
                    assert!(
                        out[i].to_bits() == w.to_bits() || (w.is_nan() && out[i].is_nan()),
                        "{p}: len {len} off {off} i {i}"
                    );
                }
                assert_eq!(out[len], 7.0);
            }
        }
    }
}

/// `C = alpha·op(A)·op(B) + beta·C` by the definition, in f64.
#[allow(clippy::too_many_arguments)]
fn gemm_ref(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: &[f64],
    (rsa, csa): (usize, usize),
    b: &[f64],
    (rsb, csb): (usize, usize),
    beta: f64,
    c: &[f64],
) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: f64 = (0..k)
                .map(|p| a[i * rsa + p * csa] * b[p * rsb + j * csb])
                .sum();
            out[i * n + j] = alpha * s
                + if beta == 0.0 {
                    0.0
                } else {
                    beta * c[i * n + j]
                };
        }
    }
    out
}

/// Runs the GEMM on path `p` for both precisions on one shape/layout and compares with the
/// definition; with `beta == 0`, `C` starts as NaN and must not leak into the result.
#[allow(clippy::too_many_arguments)]
fn check_gemm(p: Path, m: usize, k: usize, n: usize, ta: bool, tb: bool, alpha: f64, beta: f64) {
    let a: Vec<f64> = unit(m * k).map(|u| u - 0.5).collect();
    let b: Vec<f64> = unit(k * n + 7).skip(7).map(|u| 2.0 * u - 1.0).collect();
    let c0: Vec<f64> = if beta == 0.0 {
        vec![f64::NAN; m * n]
    } else {
        unit(m * n + 3).skip(3).collect()
    };
    // A is stored m×k (or k×m when transposed), B k×n (or n×k), all row-major.
    let sa = if ta { (1, m) } else { (k, 1) };
    let sb = if tb { (1, k) } else { (n, 1) };
    let want = gemm_ref(m, k, n, alpha, &a, sa, &b, sb, beta, &c0);
    let scale = (k as f64).max(1.0);
    let is = |(r, c): (usize, usize)| (r as isize, c as isize);
    let (rsa, csa) = is(sa);
    let (rsb, csb) = is(sb);

    let mut c = c0.clone();
    kernels::gemm_on(
        p, m, k, n, alpha, &a, rsa, csa, &b, rsb, csb, beta, &mut c, n as isize, 1,
    );
    let err = c
        .iter()
        .zip(&want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(
        err <= 1e-14 * scale,
        "{p}: f64 gemm m={m} k={k} n={n} ta={ta} tb={tb} beta={beta}: err {err}"
    );

    let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
    let (a32, b32) = (f(&a), f(&b));
    let mut c32 = f(&c0);
    kernels::gemm_on(
        p,
        m,
        k,
        n,
        alpha as f32,
        &a32,
        rsa,
        csa,
        &b32,
        rsb,
        csb,
        beta as f32,
        &mut c32,
        n as isize,
        1,
    );
    let err = c32
        .iter()
        .zip(&want)
        .map(|(&x, y)| (x as f64 - y).abs())
        .fold(0.0, f64::max);
    assert!(
        err <= 1e-5 * scale,
        "{p}: f32 gemm m={m} k={k} n={n} ta={ta} tb={tb} beta={beta}: err {err}"
    );
}

/// The generic kernel and the direct loops for skinny shapes (k ≤ 4, n ≤ 4), with every
/// transpose combination, blocking remainders and both `beta` cases.
#[test]
fn gemm_matches_definition() {
    let shapes = [
        (512, 64, 64),
        (37, 19, 23),
        (1, 1, 1),
        (300, 2, 130),
        (33, 1, 5),
        (70, 3, 64),
        (9, 4, 200),
        (512, 64, 2),
        (300, 600, 1),
        (64, 512, 2),
        (5, 700, 3),
        (257, 5, 4),
        (2, 512, 64),
    ];
    for p in paths() {
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (1.0, -2.0)] {
                    check_gemm(p, m, k, n, ta, tb, alpha, beta);
                }
            }
        }
    }
}

/// The packing-free kernels for `n ≤ 64` with contiguous rows of `B` (`tb = false`; the
/// transposed-`B` cases run alongside and take the general path, except for `k ≤ 4`, whose
/// tiny `B` is repacked for them): row counts that are and are not multiples of the 6-row
/// block, column counts off the vector widths (a partial last vector: 16/8 lanes with
/// AVX-512, 8/4 with AVX2) and across the panels, depths from 1 to the limit of 512 and just
/// past it, alpha/beta variants and NaN-filled `C` with beta = 0. With `n ≤ 4` and rows of `A`
/// contiguous (`ta = false`) the dot-product kernel runs instead, on `B` itself (`tb = true`)
/// or packed (`tb = false`), with depths on and off the vector width.
#[test]
fn gemm_small_n_kernel() {
    let shapes = [
        (512, 64, 64),
        (64, 512, 64),
        (515, 64, 63),
        (6, 5, 17),
        (7, 1, 33),
        (13, 64, 1),
        (5, 9, 3),
        (1, 512, 48),
        (37, 513, 40),
        (12, 64, 16),
        (11, 100, 8),
        (25, 33, 65),
        (257, 3, 63),
        (31, 2, 7),
        (12, 4, 64),
        (19, 1, 9),
        (37, 17, 3),
        (6, 512, 4),
        (9, 100, 2),
        (513, 64, 1),
        (3, 8, 4),
    ];
    for p in paths() {
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                for (alpha, beta) in [(1.0, 0.0), (-0.75, 0.0), (1.0, 1.0), (0.5, -2.0)] {
                    check_gemm(p, m, k, n, ta, tb, alpha, beta);
                }
            }
        }
    }
}

/// `Element::gemm` (the active path) agrees with the explicit-path entry point on it, and
/// with the definition, including a `k = 0` product (an empty sum: `C = beta·C`).
#[test]
fn element_gemm_runs_the_active_path() {
    use autodiff::Element;
    let (m, k, n) = (37, 19, 23);
    let a: Vec<f64> = unit(m * k).map(|u| u - 0.5).collect();
    let b: Vec<f64> = unit(k * n).map(|u| 2.0 * u - 1.0).collect();
    let (mut c1, mut c2) = (vec![0.0; m * n], vec![0.0; m * n]);
    f64::gemm(
        m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut c1, n as isize, 1,
    );
    kernels::gemm_on(
        kernels::active(),
        m,
        k,
        n,
        1.0,
        &a,
        k as isize,
        1,
        &b,
        n as isize,
        1,
        0.0,
        &mut c2,
        n as isize,
        1,
    );
    assert_eq!(c1, c2);
    let want = gemm_ref(m, k, n, 1.0, &a, (k, 1), &b, (n, 1), 0.0, &c1);
    assert!(c1.iter().zip(&want).all(|(x, y)| (x - y).abs() <= 1e-13));

    for p in paths() {
        let mut c = vec![f64::NAN, 2.0, 3.0, -4.0];
        kernels::gemm_on(p, 2, 0, 2, 1.0, &[], 0, 1, &[], 2, 1, 0.0, &mut c, 2, 1);
        assert_eq!(c, [0.0; 4], "{p}: k = 0, beta = 0 must write zeros");
        let mut c = vec![1.0, 2.0, 3.0, -4.0];
        kernels::gemm_on(p, 2, 0, 2, 1.0, &[], 0, 1, &[], 2, 1, 0.5, &mut c, 2, 1);
        assert_eq!(c, [0.5, 1.0, 1.5, -2.0], "{p}: k = 0 scales C by beta");
    }
}

/// Runs `f`, expecting a panic whose message contains `want`.
fn expect_panic(want: &str, f: impl FnOnce() + std::panic::UnwindSafe) {
    let err = std::panic::catch_unwind(f).expect_err("expected a panic");
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains(want), "panic message {msg:?} lacks {want:?}");
}

/// A safe caller cannot make the GEMM kernels read or write outside its slices: a slice one
/// element too short, or a negative stride that would reach before its start, panics (naming
/// the operand) before any kernel runs, on every path and for the shapes of every kernel
/// (skinny loops, the small-n kernel, the `gemm` crate).
#[test]
fn gemm_rejects_short_slices() {
    use autodiff::Element;
    for p in paths() {
        for &(m, k, n) in &[(64, 2, 64), (64, 64, 2), (64, 64, 64), (300, 80, 100)] {
            let a = vec![1.0f32; m * k];
            let b = vec![1.0f32; k * n];
            let c = vec![0.0f32; m * n];
            let (rk, rn) = (k as isize, n as isize);
            let run = move |a: &[f32], b: &[f32], c: &mut [f32], rsa: isize| {
                kernels::gemm_on(p, m, k, n, 1.0, a, rsa, 1, b, rn, 1, 0.0, c, rn, 1)
            };
            let (a1, b1, mut c1) = (a.clone(), b.clone(), c.clone());
            expect_panic("gemm: A", move || run(&a1[1..], &b1, &mut c1, rk));
            let (a1, b1, mut c1) = (a.clone(), b.clone(), c.clone());
            expect_panic("gemm: B", move || run(&a1, &b1[1..], &mut c1, rk));
            let (a1, b1, mut c1) = (a.clone(), b.clone(), c.clone());
            expect_panic("gemm: C", move || run(&a1, &b1, &mut c1[1..], rk));
            let (a1, b1, mut c1) = (a.clone(), b.clone(), c.clone());
            expect_panic("gemm: A", move || run(&a1, &b1, &mut c1, -rk));
            // The full slices pass.
            let (a1, b1, mut c1) = (a.clone(), b.clone(), c.clone());
            run(&a1, &b1, &mut c1, rk);
            assert!(c1.iter().all(|&v| v == k as f32), "{p}: {m}x{k}x{n}");
        }
    }
    // The public trait method checks too.
    let mut c = vec![0.0f64; 3];
    expect_panic("gemm: C", move || {
        f64::gemm(
            2, 1, 2, 1.0, &[1.0; 2], 1, 1, &[1.0; 2], 2, 1, 0.0, &mut c, 2, 1,
        )
    });
}

/// The path API: names round-trip, the active path is supported, a request for a path the
/// CPU lacks falls back to the widest one it has, and the CPU is named.
#[test]
fn path_selection() {
    for p in Path::ALL {
        assert_eq!(Path::parse(p.name()), Some(p));
        assert_eq!(
            Path::parse(&format!(" {} ", p.name().to_uppercase())),
            Some(p)
        );
        assert!(p.clamp() <= p && p.clamp().is_supported());
        assert_eq!(p.clamp() == p, p.is_supported());
    }
    assert_eq!(Path::parse("scalar"), Some(Path::Baseline));
    assert_eq!(Path::parse("avx1024"), None);
    let active = kernels::active();
    assert!(active.is_supported());
    assert_eq!(kernels::active_path(), active.name());
    // Without an override the active path is the widest supported one.
    if std::env::var_os("FLOWTAPE_KERNELS").is_none() {
        assert_eq!(Some(active), paths().last().copied());
    }
    let name = kernels::cpu_name();
    assert!(!name.trim().is_empty());
    println!(
        "cpu: {name}; active path: {active}; supported: {:?}",
        paths()
    );
}

/// `FLOWTAPE_KERNELS` lowers the path of a fresh process (read once, at the first use): the
/// test binary re-runs this test in a child process for each setting and checks there.
#[test]
fn env_override_selects_the_path() {
    const CHILD: &str = "FLOWTAPE_KERNELS_TEST_CHILD";
    if let Ok(want) = std::env::var(CHILD) {
        assert_eq!(kernels::active_path(), want);
        return;
    }
    let best = *paths().last().unwrap();
    let cases = [
        ("baseline", Path::Baseline),
        ("scalar", Path::Baseline),
        ("avx2", Path::Avx2.clamp()),
        ("avx512", Path::Avx512.clamp()),
        ("auto", best),
        ("nonsense", best),
    ];
    let exe = std::env::current_exe().unwrap();
    for (setting, want) in cases {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "env_override_selects_the_path",
                "--test-threads=1",
            ])
            .env("FLOWTAPE_KERNELS", setting)
            .env(CHILD, want.name())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "FLOWTAPE_KERNELS={setting}: child failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The child really ran the test (a filter typo would run nothing and succeed).
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        // A request that cannot be honoured says so on stderr.
        let warned = String::from_utf8_lossy(&out.stderr).contains("FLOWTAPE_KERNELS");
        let honoured = Path::parse(setting).is_none_or(|p| p.is_supported());
        assert_eq!(warned, !honoured && setting != "auto", "{setting}");
    }
}

/// `vectorize_on` runs the closure (on every path) and returns its result.
#[test]
fn vectorize_runs_the_closure_on_every_path() {
    let a: Vec<f64> = (0..1001).map(|i| i as f64 * 0.5).collect();
    let b: Vec<f64> = (0..1001).map(|i| 3.0 - i as f64).collect();
    for p in paths() {
        let mut out = vec![0.0; a.len()];
        let sum = kernels::vectorize_on(p, || {
            for ((o, &x), &y) in out.iter_mut().zip(&a).zip(&b) {
                *o = x * y - 1.0;
            }
            out.iter().sum::<f64>()
        });
        let want: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x * y - 1.0).collect();
        assert_eq!(out, want, "{p}");
        assert_eq!(sum, want.iter().sum::<f64>(), "{p}");
    }
}
