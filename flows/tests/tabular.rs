//! The tabular pipeline: the shipped digits, the seeded split, the preprocessing's
//! log-Jacobian (against finite differences) and inverse, saving it, and the NLL units.

use autodiff::Tensor;
use flows::tabular::{self, Nll, Preprocess, TabularError};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_pcg::Pcg64;

fn rng(seed: u64) -> Pcg64 {
    Pcg64::seed_from_u64(seed)
}

#[test]
fn digits_are_the_uci_test_set() {
    let d = tabular::digits().unwrap();
    assert_eq!(d.pixels.shape(), (1797, 64));
    assert_eq!(d.labels.len(), 1797);
    let mut counts = [0usize; 10];
    d.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert_eq!(
        tabular::integer_levels(&d.pixels),
        Some(tabular::DIGITS_LEVELS)
    );
    // The first image of scikit-learn's copy (a zero), its first two rows of pixels.
    assert_eq!(
        &d.pixels.row(0)[..16],
        &[0., 0., 5., 13., 9., 1., 0., 0., 0., 0., 13., 15., 10., 15., 5., 0.]
    );
    assert_eq!(d.labels[0], 0);
}

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let x = Tensor::from_fn(101, 2, |i, j| (10 * i + j) as f64);
    let a = tabular::split(&x, 0.1, 0.2, 7).unwrap();
    let b = tabular::split(&x, 0.1, 0.2, 7).unwrap();
    let c = tabular::split(&x, 0.1, 0.2, 8).unwrap();
    assert_eq!(a.indices, b.indices);
    assert_ne!(a.indices, c.indices);
    assert_eq!(
        (a.train.rows(), a.valid.rows(), a.test.rows()),
        (71, 10, 20)
    );
    let mut all: Vec<usize> = a.indices.concat();
    all.sort_unstable();
    assert_eq!(all, (0..101).collect::<Vec<_>>());
    // Rows follow their indices.
    for (k, &i) in a.indices[1].iter().enumerate() {
        assert_eq!(a.valid.row(k), x.row(i));
    }
}

#[test]
fn split_rejects_bad_fractions_and_tiny_data() {
    let x = Tensor::<f64>::zeros(10, 1);
    for (v, t) in [(-0.1, 0.1), (0.5, 0.5), (f64::NAN, 0.1)] {
        assert!(matches!(
            tabular::split(&x, v, t, 0),
            Err(TabularError::BadConfig(_))
        ));
    }
    let x3 = Tensor::<f64>::zeros(3, 1);
    assert!(matches!(
        tabular::split(&x3, 0.1, 0.1, 0),
        Err(TabularError::TooFewRows { rows: 3, .. })
    ));
}

/// Checks `forward`'s log-determinant against central differences of the map: the Jacobian
/// is diagonal (each output depends on its own column only) and the sum of the logs of its
/// diagonal is the returned log-determinant.
fn check_logdet(pre: &Preprocess, x: &Tensor<f64>, h: f64, tol: f64) {
    let (_, logdet) = pre.forward(x).unwrap();
    let d = x.cols();
    for (i, &ld) in logdet.iter().enumerate() {
        let row = Tensor::from_vec(1, d, x.row(i).to_vec());
        let mut fd_logdet = 0.0;
        for j in 0..d {
            let (mut xp, mut xm) = (row.clone(), row.clone());
            xp.set(0, j, row.get(0, j) + h);
            xm.set(0, j, row.get(0, j) - h);
            let (yp, _) = pre.forward(&xp).unwrap();
            let (ym, _) = pre.forward(&xm).unwrap();
            for k in 0..d {
                let dk = (yp.get(0, k) - ym.get(0, k)) / (2.0 * h);
                if k == j {
                    fd_logdet += dk.abs().ln();
                } else {
                    assert!(dk.abs() < 1e-9, "off-diagonal ∂y{k}/∂x{j} = {dk}");
                }
            }
        }
        assert!(
            (fd_logdet - ld).abs() < tol,
            "row {i}: log|det| {ld} vs finite differences {fd_logdet}"
        );
    }
}

fn uniform_data(n: usize, d: usize, lo: f64, hi: f64, seed: u64) -> Tensor<f64> {
    Tensor::rand_uniform(n, d, lo, hi, &mut rng(seed))
}

#[test]
fn fitted_maps_standardise_the_training_split() {
    let x = tabular::dequantize(&tabular::digits().unwrap().pixels, &mut rng(1));
    for pre in [
        Preprocess::fit_logit(&x, 17.0, 1e-6).unwrap(),
        Preprocess::fit_standardize(&x).unwrap(),
    ] {
        let (y, _) = pre.forward(&x).unwrap();
        for j in 0..64 {
            let col: Vec<f64> = (0..y.rows()).map(|i| y.get(i, j)).collect();
            let m = col.iter().sum::<f64>() / col.len() as f64;
            let v = col.iter().map(|c| (c - m).powi(2)).sum::<f64>() / col.len() as f64;
            assert!(
                m.abs() < 1e-9 && (v - 1.0).abs() < 1e-9,
                "column {j}: {m}, {v}"
            );
        }
    }
}

#[test]
fn constant_columns_are_only_shifted() {
    let x = Tensor::from_fn(5, 2, |i, j| if j == 0 { 3.0 } else { i as f64 });
    let pre = Preprocess::fit_standardize(&x).unwrap();
    assert_eq!(pre.std()[0], 1.0);
    let (y, _) = pre.forward(&x).unwrap();
    assert!(y.as_slice().iter().all(|v| v.is_finite()));
}

#[test]
fn logit_density_in_data_space_integrates_to_the_mass_of_the_interval() {
    // A 1-D standard normal model of y = T(x) carried back to [0, K] must integrate to
    // Φ(T(K)) − Φ(T(0)): the log-Jacobian is what makes it a density in x.
    let x = uniform_data(200, 1, 0.0, 5.0, 3);
    for alpha in [1e-6, 0.05] {
        let pre = Preprocess::fit_logit(&x, 5.0, alpha).unwrap();
        let m = 200_000;
        let h = 5.0 / m as f64;
        let grid = Tensor::from_fn(m, 1, |i, _| (i as f64 + 0.5) * h);
        let (y, logdet) = pre.forward(&grid).unwrap();
        let integral: f64 = (0..m)
            .map(|i| {
                let y = y.get(i, 0);
                (-0.5 * y * y - 0.5 * (2.0 * std::f64::consts::PI).ln() + logdet[i]).exp() * h
            })
            .sum();
        let ends = pre
            .forward(&Tensor::from_vec(2, 1, vec![0.0, 5.0]))
            .unwrap()
            .0;
        let mass = normal_cdf(ends.get(1, 0)) - normal_cdf(ends.get(0, 0));
        assert!(
            (integral - mass).abs() < 1e-4,
            "α = {alpha}: ∫ p_x = {integral}, expected {mass}"
        );
    }
}

/// Φ(x), the standard normal CDF, by the midpoint rule on [−40, x] (accurate to ~1e-10 here).
fn normal_cdf(x: f64) -> f64 {
    let (lo, n) = (-40.0f64, 400_000);
    let h = (x - lo) / n as f64;
    (0..n)
        .map(|i| {
            let t = lo + (i as f64 + 0.5) * h;
            (-0.5 * t * t).exp() * h
        })
        .sum::<f64>()
        / (2.0 * std::f64::consts::PI).sqrt()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn logit_log_jacobian_matches_finite_differences(
        seed in 0u64..1000,
        levels in 2.0f64..20.0,
        alpha in prop::sample::select(vec![1e-6, 0.05, 0.2]),
    ) {
        let train = uniform_data(50, 3, 0.0, levels, seed);
        let pre = Preprocess::fit_logit(&train, levels, alpha).unwrap();
        // Points away from the ends, where the logit's curvature is finite at step h.
        let x = uniform_data(4, 3, 0.01 * levels, 0.99 * levels, seed + 1);
        check_logdet(&pre, &x, 1e-6, 1e-6);
    }

    #[test]
    fn standardise_log_jacobian_matches_finite_differences(seed in 0u64..1000) {
        let train = Tensor::randn(30, 4, &mut rng(seed)).map(|v| 3.0 * v + 1.0);
        let pre = Preprocess::fit_standardize(&train).unwrap();
        check_logdet(&pre, &Tensor::randn(3, 4, &mut rng(seed + 1)), 1e-5, 1e-8);
    }

    #[test]
    fn forward_and_inverse_round_trip(
        seed in 0u64..1000,
        levels in 1.0f64..20.0,
        alpha in prop::sample::select(vec![1e-6, 0.05]),
    ) {
        let x = uniform_data(20, 3, 0.0, levels, seed);
        for pre in [
            Preprocess::fit_logit(&x, levels, alpha).unwrap(),
            Preprocess::fit_standardize(&x).unwrap(),
        ] {
            let (y, _) = pre.forward(&x).unwrap();
            let back = pre.inverse(&y).unwrap();
            prop_assert!(back.max_abs_diff(&x) < 1e-9 * levels.max(1.0));
            // and the other way round, from the model's space
            // (moderate y, whose preimage lies inside [0, K] for the logit map)
            let y2 = Tensor::<f64>::randn(5, 3, &mut rng(seed + 2)).map(|v| 0.5 * v);
            let (again, _) = pre.forward(&pre.inverse(&y2).unwrap()).unwrap();
            prop_assert!(again.max_abs_diff(&y2) < 1e-6);
        }
    }
}

#[test]
fn maps_save_and_load_exactly() {
    let dir = std::env::temp_dir().join(format!("flows-tabular-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = uniform_data(40, 5, 0.0, 17.0, 4);
    for (k, pre) in [
        Preprocess::fit_logit(&x, 17.0, 0.05).unwrap(),
        Preprocess::fit_standardize(&x).unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("pre{k}.safetensors"));
        pre.save(&path).unwrap();
        assert_eq!(Preprocess::load(&path).unwrap(), pre);
    }
    // A stored map with inconsistent shapes is refused with the tensor's name.
    let mut p = Preprocess::fit_standardize(&x).unwrap().to_params();
    *p.get_mut("preprocess.std").unwrap() = Tensor::ones(1, 4);
    let err = Preprocess::from_params(&p).unwrap_err();
    assert!(err.to_string().contains("preprocess.std"), "{err}");
    let missing = dir.join("missing.safetensors");
    assert!(matches!(
        Preprocess::load(&missing),
        Err(TabularError::File(flows::FlowError::Io { .. }))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn data_problems_are_typed_errors() {
    let x = uniform_data(10, 2, 0.0, 4.0, 5);
    let pre = Preprocess::fit_logit(&x, 4.0, 0.05).unwrap();
    assert!(matches!(
        pre.forward(&Tensor::<f64>::zeros(3, 3)),
        Err(TabularError::ColumnMismatch {
            expected: 2,
            found: 3
        })
    ));
    let mut bad = x.clone();
    bad.set(3, 1, 4.5);
    match pre.forward(&bad) {
        Err(TabularError::OutOfRange { row: 3, col: 1, .. }) => {}
        other => panic!("expected OutOfRange, got {other:?}"),
    }
    bad.set(3, 1, f64::NAN);
    assert!(matches!(
        pre.forward(&bad),
        Err(TabularError::NonFinite { row: 3, col: 1 })
    ));
    assert!(matches!(
        Preprocess::fit_logit(&x, 4.0, 0.5),
        Err(TabularError::BadConfig(_))
    ));
    assert!(matches!(
        Preprocess::fit_standardize(&Tensor::zeros(1, 2)),
        Err(TabularError::TooFewRows { .. })
    ));
    assert_eq!(tabular::integer_levels(&x), None);
}

#[test]
fn nll_units() {
    let nll = Nll::from_log_probs(&[-10.0, -12.0], 4);
    assert_eq!(nll.nats, 11.0);
    assert!((nll.bits_per_dim - 11.0 / (4.0 * std::f64::consts::LN_2)).abs() < 1e-12);
    assert!((nll.std_err - 1.0).abs() < 1e-12);
}

#[test]
fn image_grid_lays_out_images() {
    let x = Tensor::from_fn(5, 4, |i, j| if j == 0 { 16.0 } else { i as f64 * 0.0 });
    let img = tabular::image_grid(&x, 2, 2, 0.0, 16.0, 3, 2, 1).unwrap();
    // 3 across, 2 down, each 2·2 + 1 gap, plus a leading gap.
    assert_eq!((img.width, img.height), (3 * 5 + 1, 2 * 5 + 1));
    assert_eq!(img.pixel(1, 1), [0, 0, 0]); // pixel 0 of image 0: ink
    assert_eq!(img.pixel(1, 3), [255, 255, 255]); // pixel 1: blank
    assert!(tabular::image_grid(&x, 3, 2, 0.0, 16.0, 3, 2, 1).is_err());
}
