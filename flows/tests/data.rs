//! Toy distributions and tabular loaders.

use std::path::PathBuf;

use autodiff::Tensor;
use flows::data::{self, TOY_NAMES};
use flows::FlowError;
use rand::SeedableRng;
use rand_pcg::Pcg64;

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flows_data");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn sample(name: &str, n: usize, seed: u64) -> Tensor<f64> {
    data::toy(name, n, &mut Pcg64::seed_from_u64(seed)).unwrap()
}

fn radii(x: &Tensor<f64>) -> Vec<f64> {
    (0..x.rows())
        .map(|i| x.get(i, 0).hypot(x.get(i, 1)))
        .collect()
}

fn mean(x: &Tensor<f64>) -> (f64, f64) {
    let n = x.rows() as f64;
    let sx: f64 = (0..x.rows()).map(|i| x.get(i, 0)).sum();
    let sy: f64 = (0..x.rows()).map(|i| x.get(i, 1)).sum();
    (sx / n, sy / n)
}

#[test]
fn every_toy_has_shape_finite_values_scale_and_is_deterministic() {
    for name in TOY_NAMES {
        let a = sample(name, 2000, 7);
        assert_eq!(a.shape(), (2000, 2), "{name}");
        assert!(a.all_finite(), "{name}");
        let max = a.max_abs();
        assert!(max > 1.0 && max < 7.0, "{name}: max |x| = {max}");
        let (mx, my) = mean(&a);
        let centred = [
            "8gaussians",
            "2spirals",
            "checkerboard",
            "pinwheel",
            "circles",
            "rings",
        ];
        if centred.contains(&name) {
            assert!(
                mx.abs() < 0.2 && my.abs() < 0.2,
                "{name}: mean ({mx}, {my})"
            );
        }
        assert_eq!(a, sample(name, 2000, 7), "{name}: same seed, same data");
        assert_ne!(a, sample(name, 2000, 8), "{name}: other seed, other data");
        let f: Tensor<f32> = data::toy(name, 10, &mut Pcg64::seed_from_u64(1)).unwrap();
        assert_eq!(f.shape(), (10, 2));
    }
}

#[test]
fn eight_gaussians_cluster_at_the_eight_centres() {
    let x = data::eight_gaussians::<f64, _>(8000, &mut Pcg64::seed_from_u64(0));
    let r = 4.0 / 1.414;
    let sigma = 0.5 / 1.414;
    let mut counts = [0usize; 8];
    let mut within = 0;
    for i in 0..x.rows() {
        let (px, py) = (x.get(i, 0), x.get(i, 1));
        let (k, d) = (0..8)
            .map(|k| {
                let a = k as f64 * std::f64::consts::FRAC_PI_4;
                (k, (px - r * a.cos()).hypot(py - r * a.sin()))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        counts[k] += 1;
        if d < 3.0 * sigma {
            within += 1;
        }
    }
    // 2-D Gaussian: P(‖ε‖ < 3σ) = 1 − e^{−4.5} ≈ 0.989.
    assert!(within as f64 / 8000.0 > 0.97, "{within}");
    for c in counts {
        assert!((800..1200).contains(&c), "{counts:?}");
    }
}

#[test]
fn checkerboard_fills_the_even_squares() {
    let x = sample("checkerboard", 4000, 1);
    let mut cells = std::collections::HashSet::new();
    for i in 0..x.rows() {
        let (a, b) = (x.get(i, 0), x.get(i, 1));
        assert!(a.abs() <= 4.0 && b.abs() <= 4.0);
        let (c, r) = ((a / 2.0).floor() as i64, (b / 2.0).floor() as i64);
        assert_eq!((c + r).rem_euclid(2), 0, "({a}, {b})");
        cells.insert((c, r));
    }
    assert_eq!(cells.len(), 8);
}

#[test]
fn rings_and_circles_sit_at_their_radii() {
    for (name, rs, sigma) in [
        ("rings", vec![0.75, 1.5, 2.25, 3.0], 0.08),
        ("circles", vec![1.5, 3.0], 0.24),
    ] {
        let x = sample(name, 3000, 2);
        let mut hits = vec![0usize; rs.len()];
        for r in radii(&x) {
            let (k, d) = rs
                .iter()
                .enumerate()
                .map(|(k, &c)| (k, (r - c).abs()))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert!(d < 5.0 * sigma, "{name}: radius {r}");
            hits[k] += 1;
        }
        let expect = 3000 / rs.len();
        for h in &hits {
            assert!(h.abs_diff(expect) < expect / 5, "{name}: {hits:?}");
        }
    }
}

#[test]
fn swissroll_and_spirals_and_moons_have_their_spread() {
    let s = radii(&sample("swissroll", 3000, 3));
    let (lo, hi) = s
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), &r| (a.min(r), b.max(r)));
    // Radius t/5 with t ∈ [1.5π, 4.5π], blurred by noise of σ = 0.2.
    assert!(lo > 0.1 && lo < 1.2 && hi > 2.6 && hi < 3.8, "{lo} {hi}");

    let x = sample("2spirals", 3000, 3);
    let r = radii(&x);
    assert!(r.iter().cloned().fold(0.0, f64::max) < 3.6);
    // Point symmetric: as many points with x > 0 as with x < 0.
    let pos = (0..x.rows()).filter(|&i| x.get(i, 0) > 0.0).count();
    assert!(pos.abs_diff(1500) < 150);

    let m = sample("moons", 3000, 3);
    let upper = (0..m.rows()).filter(|&i| m.get(i, 1) > 0.4).count();
    assert!(upper > 900 && upper < 2100);
}

#[test]
fn pinwheel_has_five_arms() {
    let x = sample("pinwheel", 5000, 4);
    // Histogram of the angle of points at radius ≈ 2 (where r ≈ 1 before scaling).
    let mut bins = [0usize; 40];
    for i in 0..x.rows() {
        let (a, b) = (x.get(i, 0), x.get(i, 1));
        let r = a.hypot(b);
        if (1.6..2.4).contains(&r) {
            let t = b.atan2(a).rem_euclid(std::f64::consts::TAU);
            bins[(t / std::f64::consts::TAU * 40.0) as usize % 40] += 1;
        }
    }
    // Five arms: the histogram has five well-separated peaks (count local maxima above half
    // the largest bin on the circular histogram).
    let top = *bins.iter().max().unwrap();
    let peaks = (0..40)
        .filter(|&k| {
            let (l, r) = (bins[(k + 39) % 40], bins[(k + 1) % 40]);
            bins[k] * 2 > top && bins[k] >= l && bins[k] > r
        })
        .count();
    assert_eq!(peaks, 5, "{bins:?}");
}

#[test]
fn unknown_toy_is_a_typed_error() {
    let err = data::toy::<f64, _>("9gaussians", 4, &mut Pcg64::seed_from_u64(0)).unwrap_err();
    assert!(matches!(&err, FlowError::UnknownDataset { name } if name == "9gaussians"));
    assert!(err.to_string().contains("8gaussians"));
}

#[test]
fn standardize_gives_zero_mean_unit_std() {
    let x = sample("moons", 1000, 5);
    let (z, m, s) = data::standardize(&x);
    let (zm, zs) = data::column_stats(&z);
    for j in 0..2 {
        assert!(zm[j].abs() < 1e-12 && (zs[j] - 1.0).abs() < 1e-12);
        assert!((z.get(3, j) * s[j] + m[j] - x.get(3, j)).abs() < 1e-12);
    }
}

#[test]
fn csv_round_trip_header_and_blank_lines() {
    let path = tmp("ok.csv");
    std::fs::write(&path, "a, b ,c\n1,2,3\n\n-4.5, 5e-1 ,6\n7,8,9\n").unwrap();
    let x = data::load_csv(&path, true).unwrap();
    assert_eq!(x.shape(), (3, 3));
    assert_eq!(
        x.as_slice(),
        &[1.0, 2.0, 3.0, -4.5, 0.5, 6.0, 7.0, 8.0, 9.0]
    );
    let y = data::load_csv(&path, false);
    match y {
        Err(FlowError::Parse {
            line, column, text, ..
        }) => assert_eq!((line, column, text.as_str()), (1, 1, "a")),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn csv_errors_name_line_and_column() {
    let path = tmp("bad.csv");
    std::fs::write(&path, "1,2\n3,x4\n").unwrap();
    let err = data::load_csv(&path, false).unwrap_err();
    assert!(matches!(
        &err,
        FlowError::Parse { line: 2, column: 2, text, .. } if text == "x4"
    ));
    assert!(err.to_string().contains("line 2, column 2"), "{err}");

    std::fs::write(&path, "1,2\n3,4,5\n").unwrap();
    let err = data::load_csv(&path, false).unwrap_err();
    assert!(matches!(&err, FlowError::BadFile { reason, .. } if reason.contains("line 2")));

    std::fs::write(&path, "\n\n").unwrap();
    assert!(matches!(
        data::load_csv(&path, false),
        Err(FlowError::BadFile { .. })
    ));
    assert!(matches!(
        data::load_csv(tmp("nope.csv"), false),
        Err(FlowError::Io { .. })
    ));
}

#[test]
fn npy_round_trips_in_both_precisions() {
    let mut rng = Pcg64::seed_from_u64(9);
    let x = Tensor::<f64>::randn(7, 3, &mut rng);
    let p = tmp("x64.npy");
    data::save_npy(&p, &x).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "header is 64-byte aligned");
    assert_eq!(data::load_npy(&p).unwrap(), x);

    let xf = x.cast::<f32>();
    let p = tmp("x32.npy");
    data::save_npy(&p, &xf).unwrap();
    assert_eq!(data::load_npy(&p).unwrap(), xf.cast::<f64>());
}

/// A .npy file as NumPy writes it, with a chosen header dict and body.
fn npy(version: u8, dict: &str, body: &[u8]) -> Vec<u8> {
    let mut h = dict.to_string();
    let pre = if version == 1 { 10 } else { 12 };
    let pad = (64 - (pre + h.len() + 1) % 64) % 64;
    h.push_str(&" ".repeat(pad));
    h.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([version, 0]);
    if version == 1 {
        out.extend((h.len() as u16).to_le_bytes());
    } else {
        out.extend((h.len() as u32).to_le_bytes());
    }
    out.extend(h.as_bytes());
    out.extend(body);
    out
}

#[test]
fn npy_one_dimensional_and_version_two() {
    let body: Vec<u8> = [1.0f64, 2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = tmp("v1_1d.npy");
    std::fs::write(
        &p,
        npy(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
            &body,
        ),
    )
    .unwrap();
    let x = data::load_npy(&p).unwrap();
    assert_eq!((x.shape(), x.as_slice()), ((3, 1), &[1.0, 2.0, 3.0][..]));

    let body: Vec<u8> = [1.5f32, -2.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let p = tmp("v2.npy");
    std::fs::write(
        &p,
        npy(
            2,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 2), }",
            &body,
        ),
    )
    .unwrap();
    assert_eq!(data::load_npy(&p).unwrap().as_slice(), &[1.5, -2.0]);
}

#[test]
fn npy_errors_are_clear() {
    let f8: Vec<u8> = [0.0f64; 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        ("magic.npy", b"PK\x03\x04 not numpy".to_vec(), "magic"),
        (
            "fortran.npy",
            npy(
                1,
                "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }",
                &f8,
            ),
            "Fortran",
        ),
        (
            "bigendian.npy",
            npy(
                1,
                "{'descr': '>f8', 'fortran_order': False, 'shape': (2, 2), }",
                &f8,
            ),
            "big-endian",
        ),
        (
            "int.npy",
            npy(
                1,
                "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
                &f8,
            ),
            "'<i8'",
        ),
        (
            "rank3.npy",
            npy(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 2), }",
                &f8,
            ),
            "1-D and 2-D",
        ),
        (
            "short.npy",
            npy(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }",
                &f8,
            ),
            "needs 48 data bytes, the file has 32",
        ),
    ];
    for (file, bytes, needle) in cases {
        let p = tmp(file);
        std::fs::write(&p, bytes).unwrap();
        let err = data::load_npy(&p).unwrap_err();
        assert!(
            matches!(&err, FlowError::BadFile { reason, .. } if reason.contains(needle)),
            "{file}: {err}"
        );
    }
    assert!(matches!(
        data::load_npy(tmp("missing.npy")),
        Err(FlowError::Io { .. })
    ));
}

#[test]
fn npy_shape_too_large_to_address_is_a_bad_file_naming_the_shape() {
    // Byte counts that overflow usize: 2^61 · 1 · 8, 2^62 · 1 · 4, and 2^62 · 8 rows × cols.
    let cases = [
        (
            "<f8",
            "(2305843009213693952, 1)",
            "[2305843009213693952, 1]",
        ),
        (
            "<f4",
            "(4611686018427387904, 1)",
            "[4611686018427387904, 1]",
        ),
        (
            "<f8",
            "(4611686018427387904, 8)",
            "[4611686018427387904, 8]",
        ),
        ("<f8", "(2305843009213693952,)", "[2305843009213693952]"),
    ];
    for (i, (descr, shape, named)) in cases.into_iter().enumerate() {
        for body in [&[][..], &[0u8; 8][..]] {
            let p = tmp(&format!("huge_{i}_{}.npy", body.len()));
            let dict =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
            std::fs::write(&p, npy(1, &dict, body)).unwrap();
            let err = data::load_npy(&p).unwrap_err();
            assert!(
                matches!(&err, FlowError::BadFile { path, reason }
                    if path == &p && reason.contains(named) && reason.contains("fit in memory")),
                "{shape}: {err}"
            );
            assert!(err.to_string().contains(named), "{err}");
        }
    }
}

#[test]
fn csv_with_a_utf8_byte_order_mark_loads() {
    let path = tmp("bom.csv");
    std::fs::write(&path, "\u{feff}1,2\n3,4\n").unwrap();
    let x = data::load_csv(&path, false).unwrap();
    assert_eq!(
        (x.shape(), x.as_slice()),
        ((2, 2), &[1.0, 2.0, 3.0, 4.0][..])
    );

    // Before a header, as Excel's "CSV UTF-8" writes it.
    std::fs::write(&path, "\u{feff}x,y\n1.5,-2\n").unwrap();
    let x = data::load_csv(&path, true).unwrap();
    assert_eq!((x.shape(), x.as_slice()), ((1, 2), &[1.5, -2.0][..]));

    // Only a leading mark is one: elsewhere U+FEFF is a stray character in a field.
    std::fs::write(&path, "1,2\n\u{feff}3,4\n").unwrap();
    assert!(matches!(
        data::load_csv(&path, false),
        Err(FlowError::Parse {
            line: 2,
            column: 1,
            ..
        })
    ));
}
