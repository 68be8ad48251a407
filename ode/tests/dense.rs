//! Dense output: the continuous extensions' orders (by their order conditions and by the
//! fitted error slope inside one step), continuity at step ends, agreement of the interpolated
//! save times with a solve that steps onto them, and the dense solution object.

mod common;

use autodiff::Tensor;
use common::*;
use ode::{dynamics, solve, solve_dense, DenseError, Method, OdeError, Options, Solution};

/// The methods with their own continuous extension and its order.
const EXTENSIONS: [(Method, usize); 3] =
    [(Method::Dopri5, 4), (Method::Tsit5, 4), (Method::Dopri8, 7)];

#[test]
fn continuous_extensions_satisfy_their_order_conditions() {
    for (m, p) in EXTENSIONS {
        let tab = m.tableau().expect("explicit");
        for theta in [0.1, 0.25, 0.5, 0.7, 0.9] {
            // The residuals are scaled by θ^−ρ, which magnifies the coefficients' rounding.
            let r = tab.dense_order_residual(theta, p);
            let tol = 1e-13 / theta.powi(p as i32);
            assert!(r < tol, "{m} at θ = {theta}: order {p} residual {r:e}");
            // Not one order more inside the step: the extension's order is exactly p.
            let r = tab.dense_order_residual(theta, p + 1);
            assert!(
                r > 1e-6,
                "{m} at θ = {theta}: order {} residual {r:e}",
                p + 1
            );
        }
        // At θ = 1 the extension is the step itself.
        let w = tab.dense_weights(1.0);
        for (i, b) in tab.b.iter().enumerate() {
            assert!((w[i] - b).abs() < 1e-13, "{m}: b_{i}(1) = {} vs {b}", w[i]);
        }
        assert!(w[tab.stages()..].iter().all(|x| x.abs() < 1e-13));
        for d in tab.dense_stages {
            let sum: f64 = d.a.iter().sum();
            assert!(
                (sum - d.c).abs() < 1e-13,
                "{m}: dense stage Σa = {sum}, c = {}",
                d.c
            );
        }
    }
    assert_eq!(Method::Dopri8.tableau().unwrap().dense_stage_count(), 16);
    assert_eq!(Method::Tsit5.tableau().unwrap().dense_degree(), 4);
    assert_eq!(Method::Dopri8.tableau().unwrap().dense_degree(), 7);
}

/// Least-squares slope of log(err) against log(h).
fn slope(hs: &[f64], errs: &[f64]) -> f64 {
    let xs: Vec<f64> = hs.iter().map(|h| h.ln()).collect();
    let ys: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    num / den
}

#[test]
fn interpolant_error_inside_one_step_falls_with_the_extension_order() {
    // y' = y cos t, y(0) = 1: y = exp(sin t). One step of size h (a huge tolerance accepts
    // it); the interpolant's error at an interior θ is O(h^(p+1)) for an extension of order
    // p, so its slope against h is p + 1 (the step's own end is more accurate).
    let f = dynamics::<f64, _>(|_tape, t, z, _p| Ok(vec![z[0] * t.cos()]));
    let z0 = [Tensor::scalar(1.0)];
    for (m, p) in EXTENSIONS {
        let hs: &[f64] = if p == 7 {
            &[1.6, 0.8, 0.4, 0.2]
        } else {
            &[0.4, 0.2, 0.1, 0.05]
        };
        for theta in [0.3, 0.5, 0.8] {
            let errs: Vec<f64> = hs
                .iter()
                .map(|&h| {
                    let opts = Options::new(m).rtol(1e3).atol(1e3).first_step(h);
                    let sol = solve_dense(&f, &z0, &[], &[0.0, h], &opts).unwrap();
                    assert_eq!(sol.stats.accepted, 1, "{m}: one step");
                    let t = theta * h;
                    (sol.evaluate(t).unwrap()[0].item() - t.sin().exp()).abs()
                })
                .collect();
            let s = slope(hs, &errs);
            eprintln!("{m} θ = {theta}: errors {errs:?}, slope {s:.2}");
            let want = (p + 1) as f64;
            assert!(
                (s - want).abs() < 0.6,
                "{m} at θ = {theta}: slope {s:.2}, expected {want} (errors {errs:?})"
            );
        }
    }
}

#[test]
fn the_interpolant_is_continuous_at_step_ends() {
    let f = kepler();
    let z0 = kepler_z0(0.5);
    for m in [
        Method::Bosh3,
        Method::Dopri5,
        Method::Tsit5,
        Method::Dopri8,
        Method::Sdirk2,
    ] {
        let sol = solve_dense(
            &f,
            &z0,
            &[],
            &[0.0, 6.0],
            &Options::new(m).rtol(1e-7).atol(1e-7),
        )
        .unwrap();
        let dense = sol.dense.as_ref().unwrap();
        assert_eq!(dense.steps(), sol.stats.accepted);
        assert!(dense.steps() > 10);
        let mut worst = 0.0f64;
        for i in 1..dense.steps() {
            let left = dense.evaluate_step(i - 1, 1.0);
            let right = dense.evaluate_step(i, 0.0);
            worst = worst.max(left[0].max_abs_diff(&right[0]));
        }
        eprintln!("{m}: largest jump at a step end {worst:.1e}");
        assert!(
            worst < 1e-12,
            "{m}: the interpolant jumps by {worst:e} at a step end"
        );
        // The last step ends on the solve's final state.
        let end = dense.evaluate(6.0).unwrap();
        assert!(end[0].max_abs_diff(&sol.last()[0]) < 1e-12);
    }
}

/// The harmonic oscillator's exact state (cos t, −sin t).
fn osc_exact(t: f64) -> [f64; 2] {
    [t.cos(), -t.sin()]
}

#[test]
fn save_times_no_longer_force_steps_and_agree_with_a_stepped_solve() {
    let f = oscillator();
    let z0 = [Tensor::from_f64s(1, 2, &[1.0, 0.0])];
    let (t1, tol) = (10.0, 1e-8);
    let times: Vec<f64> = (0..201).map(|i| t1 * i as f64 / 200.0).collect();
    for (m, _) in EXTENSIONS {
        let opts = Options::new(m).rtol(tol).atol(tol);
        let two = solve(&f, &z0, &[], &[0.0, t1], &opts).unwrap();
        let many = solve(&f, &z0, &[], &times, &opts).unwrap();
        // The same steps: the save times are filled in, not stepped onto.
        assert_eq!(many.stats.accepted, two.stats.accepted, "{m}");
        assert_eq!(many.last()[0], two.last()[0], "{m}");
        let extra = many.stats.nfe - two.stats.nfe;
        // DOP853's extension evaluates 3 stages more in a step that holds save times (its
        // fourth, f(t + h, y₁), is the next step's first, except after the last step); the FSAL
        // pairs need none.
        let allowed = if m == Method::Dopri8 {
            3 * many.stats.accepted + 1
        } else {
            0
        };
        assert!(
            extra <= allowed,
            "{m}: {extra} more evaluations for the save times"
        );
        // A solve that steps onto every save time (one solve per interval, chained).
        let mut z = z0.to_vec();
        let mut worst_vs_stepped = 0.0f64;
        let mut worst_vs_exact = 0.0f64;
        for k in 1..times.len() {
            let sol = solve(&f, &z, &[], &[times[k - 1], times[k]], &opts).unwrap();
            z = sol.last().to_vec();
            worst_vs_stepped = worst_vs_stepped.max(many.states[k][0].max_abs_diff(&z[0]));
            worst_vs_exact = worst_vs_exact.max(max_err(&many.states[k][0], &osc_exact(times[k])));
        }
        eprintln!(
            "{m}: {} vs {} evaluations; dense vs stepped {worst_vs_stepped:.1e}, vs exact {worst_vs_exact:.1e}",
            many.stats.nfe, two.stats.nfe
        );
        let bound = tol * (2.0 * many.stats.accepted as f64).max(100.0);
        assert!(
            worst_vs_exact < bound,
            "{m}: error {worst_vs_exact:e} (bound {bound:e})"
        );
        assert!(
            worst_vs_stepped < 2.0 * bound,
            "{m}: {worst_vs_stepped:e} from the stepped solve"
        );
    }
}

#[test]
fn the_dense_solution_is_accurate_everywhere_forwards_and_backwards() {
    let f = oscillator();
    let tol = 1e-9;
    for (m, _) in EXTENSIONS {
        for (ta, tb) in [(0.0, 7.0), (7.0, 0.0)] {
            let z0 = [Tensor::from_f64s(1, 2, &osc_exact(ta))];
            let sol = solve_dense(
                &f,
                &z0,
                &[],
                &[ta, tb],
                &Options::new(m).rtol(tol).atol(tol),
            )
            .unwrap();
            let mut worst = 0.0f64;
            for i in 0..=997 {
                let t = ta + (tb - ta) * i as f64 / 997.0;
                let z = sol.evaluate(t).unwrap();
                worst = worst.max(max_err(&z[0], &osc_exact(t)));
            }
            let bound = tol * (2.0 * sol.stats.accepted as f64).max(100.0);
            assert!(
                worst < bound,
                "{m} on [{ta}, {tb}]: error {worst:e} (bound {bound:e})"
            );
        }
    }
}

#[test]
fn evaluating_outside_the_solved_interval_is_a_typed_error() {
    let f = oscillator();
    let z0 = [Tensor::from_f64s(1, 2, &[1.0, 0.0])];
    let sol = solve_dense(&f, &z0, &[], &[1.0, 3.0], &Options::tsit5(1e-6, 1e-6)).unwrap();
    for t in [0.5, 3.0 + 1e-9, f64::NAN, f64::INFINITY] {
        match sol.evaluate(t) {
            Err(DenseError::OutOfRange { t0, t1, .. }) => assert_eq!((t0, t1), (1.0, 3.0)),
            other => panic!("t = {t}: {other:?}"),
        }
    }
    assert!(sol.evaluate(1.0).is_ok() && sol.evaluate(3.0).is_ok());
    let back = solve_dense(&f, &z0, &[], &[3.0, 1.0], &Options::tsit5(1e-6, 1e-6)).unwrap();
    assert!(back.evaluate(2.0).is_ok());
    assert!(matches!(
        back.evaluate(3.5),
        Err(DenseError::OutOfRange { .. })
    ));
    // A plain solve keeps no dense solution; fixed steps cannot record one.
    let plain: Solution<f64> =
        solve(&f, &z0, &[], &[1.0, 3.0], &Options::tsit5(1e-6, 1e-6)).unwrap();
    assert_eq!(plain.evaluate(2.0).unwrap_err(), DenseError::NotRecorded);
    let fixed = solve_dense(&f, &z0, &[], &[1.0, 3.0], &Options::fixed(Method::Rk4, 10));
    assert!(matches!(fixed, Err(OdeError::InvalidOptions(_))));
    // The message names the interval.
    let msg = sol.evaluate(9.0).unwrap_err().to_string();
    assert!(msg.contains("outside the solved interval"), "{msg}");
}
