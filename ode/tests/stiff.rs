//! The stiff family: Kværnø's ESDIRK 3(2) and 5(4) tableaux (order conditions, L-stability),
//! their order by fitted error slopes, tolerance met by the adaptive solves, dense output,
//! gradients through Checkpointed and Direct against finite differences, and regression tests
//! for SDIRK2's error estimate and the Newton norm with `atol = 0`.

use std::rc::Rc;

use autodiff::testing::{check_jvp, check_vjp, tape_fn, CheckOpts};
use autodiff::{Tape, Tensor, Var};
use ode::tableau::{self, order_residual, EsdirkTableau};
use ode::{dynamics, odeint, solve, Adjoint, Dynamics, Method, OdeError, Options, Stepping};

const KVAERNO: [&EsdirkTableau; 2] = [&tableau::KVAERNO3, &tableau::KVAERNO5];

#[test]
fn kvaerno_tableaux_satisfy_their_order_conditions_and_no_more() {
    for t in KVAERNO {
        t.validate(1e-14)
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
        let a = t.full_a();
        let r = order_residual(&a, t.b, t.order + 1);
        assert!(
            r > 1e-4,
            "{} satisfies order {} (residual {r:e})",
            t.name,
            t.order + 1
        );
        let r = order_residual(&a, &t.b_hat(), t.error_order + 1);
        assert!(
            r > 1e-4,
            "{}: embedded order {} (residual {r:e})",
            t.name,
            t.error_order + 1
        );
        // The embedded solution is the second-last stage.
        let emb = &a[t.stages() - 2];
        for (x, y) in t.b_hat().iter().zip(emb) {
            assert!(
                (x - y).abs() < 1e-15,
                "{}: b̂ is not the second-last row",
                t.name
            );
        }
    }
}

#[test]
fn esdirk_validation_catches_corrupted_tableaux() {
    let mut t = tableau::KVAERNO5;
    let row: &'static [f64] = Box::leak(
        tableau::KVAERNO5.a[3]
            .iter()
            .enumerate()
            .map(|(j, &x)| if j == 1 { x + 1e-6 } else { x })
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    let mut rows = tableau::KVAERNO5.a.to_vec();
    rows[3] = row;
    t.a = Box::leak(rows.into_boxed_slice());
    assert!(matches!(t.validate(1e-12), Err(OdeError::InvalidTableau(m)) if m.contains("row 3")));
    // An order claim one too high fails at that order.
    let mut t = tableau::KVAERNO3;
    t.order = 4;
    assert!(matches!(t.validate(1e-12), Err(OdeError::InvalidTableau(m)) if m.contains("order 4")));
    let mut t = tableau::KVAERNO3;
    t.error_order = 3;
    assert!(
        matches!(t.validate(1e-12), Err(OdeError::InvalidTableau(m)) if m.contains("embedded"))
    );
}

/// A complex number as (re, im).
type C = (f64, f64);

fn cmul(a: C, b: C) -> C {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

fn cdiv(a: C, b: C) -> C {
    let d = b.0 * b.0 + b.1 * b.1;
    ((a.0 * b.0 + a.1 * b.1) / d, (a.1 * b.0 - a.0 * b.1) / d)
}

/// The stage values of `y' = λy`, `y₀ = 1`, after one step with `z = hλ`: `(I − zA) Y = 1`
/// solved by forward substitution (`A` is lower triangular). The last one is the stability
/// function `R(z)` of a stiffly accurate method, the second-last that of Kværnø's embedded one.
fn stage_stability(a: &[Vec<f64>], z: C) -> Vec<C> {
    let mut y: Vec<C> = Vec::with_capacity(a.len());
    for (i, row) in a.iter().enumerate() {
        let mut s = (1.0, 0.0);
        for (j, yj) in y.iter().enumerate() {
            let t = cmul((z.0 * row[j], z.1 * row[j]), *yj);
            s = (s.0 + t.0, s.1 + t.1);
        }
        y.push(cdiv(s, (1.0 - z.0 * row[i], -z.1 * row[i])));
    }
    y
}

#[test]
fn kvaerno_methods_are_l_stable() {
    for t in KVAERNO {
        let a = t.full_a();
        // R(z) → 0 at −∞, like 1/z.
        for &x in &[-1e4, -1e6, -1e8] {
            let r = *stage_stability(&a, (x, 0.0)).last().unwrap();
            let m = r.0.hypot(r.1);
            assert!(m * x.abs() < 50.0, "{}: |R({x})| = {m:e}", t.name);
        }
        // A-stable: |R| ≤ 1 on the imaginary axis and the negative real axis.
        for k in 0..=400 {
            let y = 10f64.powf(-3.0 + 9.0 * k as f64 / 400.0);
            for z in [(0.0, y), (-y, 0.0)] {
                let r = *stage_stability(&a, z).last().unwrap();
                assert!(r.0.hypot(r.1) <= 1.0 + 1e-12, "{}: |R({z:?})| > 1", t.name);
            }
        }
    }
    // Alexander's SDIRK2 too (its stages have no explicit first one).
    let a: Vec<Vec<f64>> = vec![
        vec![tableau::SDIRK2.gamma, 0.0],
        tableau::SDIRK2.a[1].to_vec(),
    ];
    let r = *stage_stability(&a, (-1e8, 0.0)).last().unwrap();
    assert!(r.0.hypot(r.1) < 1e-6);
}

/// `y' = λ (y − cos t) − sin t` with `y(0) = 1` has the solution `cos t` for every λ.
fn prothero_robinson(lambda: f64) -> impl Dynamics<f64> {
    dynamics::<f64, _>(move |_tape, t, z, _p| Ok(vec![(z[0] - t.cos()) * lambda - t.sin()]))
}

#[test]
fn one_huge_stiff_step_is_damped_by_the_solver() {
    // y' = −10⁸ y: one step of size 1 leaves |y₁| ≈ |R(−10⁸)| ≪ 1 (an A- but not L-stable
    // method would leave |y₁| near 1).
    let f = dynamics::<f64, _>(|_tape, _t, z, _p| Ok(vec![z[0] * -1e8]));
    for m in [Method::Kvaerno3, Method::Kvaerno5, Method::Sdirk2] {
        let opts = Options::new(m).stepping(Stepping::Steps(1));
        let sol = solve(
            &f,
            &[Tensor::from_f64s(1, 1, &[1.0])],
            &[],
            &[0.0, 1.0],
            &opts,
        )
        .unwrap();
        let y1 = sol.last()[0].item();
        assert!(y1.abs() < 1e-6, "{m}: y₁ = {y1:e}");
    }
}

/// Least-squares slope of `log err` against `log h`.
fn slope(hs: &[f64], errs: &[f64]) -> f64 {
    let xs: Vec<f64> = hs.iter().map(|h| h.ln()).collect();
    let ys: Vec<f64> = errs.iter().map(|e| e.ln()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    sxy / sxx
}

/// `y' = y cos t`, `y(0) = 1`: `y = exp(sin t)`.
fn smooth() -> impl Dynamics<f64> {
    dynamics::<f64, _>(|_tape, t, z, _p| Ok(vec![z[0] * t.cos()]))
}

#[test]
fn fixed_step_errors_fall_with_the_claimed_order() {
    let f = smooth();
    let t1: f64 = 2.0;
    let exact = t1.sin().exp();
    for (m, p, steps) in [
        (Method::Sdirk2, 2.0, [20, 40, 80, 160]),
        (Method::Kvaerno3, 3.0, [10, 20, 40, 80]),
        (Method::Kvaerno5, 5.0, [8, 16, 32, 64]),
    ] {
        let mut hs = Vec::new();
        let mut errs = Vec::new();
        for n in steps {
            // Tight tolerances: the Newton iterations must not limit the accuracy.
            let opts = Options::new(m)
                .stepping(Stepping::Steps(n))
                .rtol(1e-12)
                .atol(1e-12);
            let z0 = [Tensor::from_f64s(1, 1, &[1.0])];
            let sol = solve(&f, &z0, &[], &[0.0, t1], &opts).unwrap();
            hs.push(t1 / n as f64);
            errs.push((sol.last()[0].item() - exact).abs());
        }
        let s = slope(&hs, &errs);
        eprintln!("{m}: slope {s:.3} errors {errs:?}");
        assert!((s - p).abs() < 0.3, "{m}: slope {s:.3} (errors {errs:?})");
    }
}

/// Global error at the end of the harmonic oscillator over one period and of the smooth
/// problem, relative to the tolerance.
fn tolerance_ratio(m: Method, tol: f64) -> f64 {
    let osc = dynamics::<f64, _>(|_tape, _t, z, _p| {
        let x = z[0].slice_cols(0, 1);
        let v = z[0].slice_cols(1, 2);
        Ok(vec![z[0].tape().concat_cols(&[v, -x])])
    });
    let t1 = 2.0 * std::f64::consts::PI;
    let opts = Options::new(m).rtol(tol).atol(tol);
    let sol = solve(
        &osc,
        &[Tensor::from_f64s(1, 2, &[1.0, 0.0])],
        &[],
        &[0.0, t1],
        &opts,
    )
    .unwrap();
    let z = sol.last()[0].as_slice().to_vec();
    let e1 = (z[0] - 1.0).abs().max(z[1].abs());
    let sol = solve(
        &smooth(),
        &[Tensor::from_f64s(1, 1, &[1.0])],
        &[],
        &[0.0, 4.0],
        &opts,
    )
    .unwrap();
    let e2 = (sol.last()[0].item() - 4f64.sin().exp()).abs();
    e1.max(e2) / tol
}

#[test]
fn adaptive_solves_meet_their_tolerance() {
    // Regression: SDIRK2 used to miss it 171× on ode_basics' oscillator (its h³ estimate
    // compared two second-order formulas). The global error of a 2π oscillator stays within a
    // few tolerances for every implicit method with an embedded pair.
    for m in [Method::Sdirk2, Method::Kvaerno3, Method::Kvaerno5] {
        for tol in [1e-4, 1e-6, 1e-8] {
            let r = tolerance_ratio(m, tol);
            eprintln!("{m} tol {tol:e}: global error {r:.2} × tol");
            assert!(r < 6.0, "{m} at tol {tol:e}: global error {r:.1} × tol");
        }
    }
}

#[test]
fn sdirk2_estimate_is_first_order_without_an_f0_term() {
    let t = tableau::SDIRK2;
    assert_eq!(t.error_order, 1);
    assert_eq!(Method::Sdirk2.error_order(), Some(1));
    // Σe = 0 and Σ e c ≠ 0: the estimate is O(h²), not O(h³).
    let e = |i: usize| t.b_err[i];
    assert_eq!(t.err_f0, 0.0);
    assert!((e(0) + e(1)).abs() < 1e-15);
    assert!((e(0) * t.c[0] + e(1) * t.c[1]).abs() > 0.05);
}

#[test]
fn newton_norm_with_atol_zero_and_an_exact_zero_component() {
    // Regression: with atol = 0 the second component (exactly 0 throughout) gave 0/0 = NaN
    // in the Newton convergence norm and every step failed.
    let f = dynamics::<f64, _>(|_tape, _t, z, _p| Ok(vec![z[0] * z[0].slice_cols(0, 1) * -1.0]));
    for m in [
        Method::Sdirk2,
        Method::Kvaerno3,
        Method::Kvaerno5,
        Method::ImplicitEuler,
    ] {
        let opts = Options::new(m).rtol(1e-6).atol(0.0);
        let z0 = [Tensor::from_f64s(1, 2, &[1.0, 0.0])];
        let sol = solve(&f, &z0, &[], &[0.0, 1.0], &opts).unwrap_or_else(|e| panic!("{m}: {e}"));
        let z = sol.last()[0].as_slice().to_vec();
        // y₁' = −y₁²: y₁ = 1/(1 + t).
        assert!((z[0] - 0.5).abs() < 1e-3, "{m}: {z:?}");
        assert_eq!(z[1], 0.0);
    }
}

#[test]
fn stiff_prothero_robinson_is_cheap_and_accurate() {
    for m in [Method::Kvaerno3, Method::Kvaerno5] {
        let f = prothero_robinson(-1e6);
        let opts = Options::new(m).rtol(1e-6).atol(1e-6);
        let sol = solve(
            &f,
            &[Tensor::from_f64s(1, 1, &[1.0])],
            &[],
            &[0.0, 10.0],
            &opts,
        )
        .unwrap();
        let err = (sol.last()[0].item() - 10f64.cos()).abs();
        assert!(err < 1e-5, "{m}: error {err:e}");
        // An explicit method would need ~10⁷ steps; the L-stable ones follow the solution.
        assert!(
            sol.stats.accepted < 2000,
            "{m}: {} steps",
            sol.stats.accepted
        );
    }
}

#[test]
fn kvaerno3_dense_output_is_accurate_between_steps() {
    let f = smooth();
    let times: Vec<f64> = (0..=200).map(|i| 4.0 * i as f64 / 200.0).collect();
    let tol = 1e-7;
    let opts = Options::new(Method::Kvaerno3).rtol(tol).atol(tol);
    let dense = solve(&f, &[Tensor::from_f64s(1, 1, &[1.0])], &[], &times, &opts).unwrap();
    let ends = solve(
        &f,
        &[Tensor::from_f64s(1, 1, &[1.0])],
        &[],
        &[0.0, 4.0],
        &opts,
    )
    .unwrap();
    // Interpolation, not extra steps, serves the save times.
    assert_eq!(dense.stats.accepted, ends.stats.accepted);
    let worst = times
        .iter()
        .zip(&dense.states)
        .map(|(t, z)| (z[0].item() - t.sin().exp()).abs())
        .fold(0.0, f64::max);
    assert!(worst < 20.0 * tol, "dense output error {worst:e}");
}

/// Van der Pol with μ as a parameter, moderately stiff at μ = 20.
fn van_der_pol() -> Rc<dyn Dynamics<f64>> {
    Rc::new(dynamics(|tape, _t, z, p| {
        let x = z[0].slice_cols(0, 1);
        let v = z[0].slice_cols(1, 2);
        let dv = p[0] * (x.square().rsub_scalar(1.0)) * v - x;
        Ok(vec![tape.concat_cols(&[v, dv])])
    }))
}

fn solve_fn(
    opts: Options<f64>,
) -> impl for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Vec<Var<'t, f64>> + Clone + 'static {
    let f = van_der_pol();
    tape_fn(move |tape, v| {
        let sol = odeint(tape, &f, &v[..1], &v[1..], [0.0, 0.3, 0.8], &opts).unwrap();
        vec![sol.states[1][0], sol.states[2][0].tanh()]
    })
}

fn inputs() -> Vec<Tensor<f64>> {
    vec![
        Tensor::from_f64s(1, 2, &[2.0, 0.5]),
        Tensor::from_f64s(1, 1, &[20.0]),
    ]
}

#[test]
fn gradients_through_kvaerno_match_finite_differences() {
    let check = CheckOpts {
        eps: 1e-5,
        rtol: 1e-5,
        atol: 1e-7,
        seed: 3,
    };
    for (m, tol) in [(Method::Kvaerno5, 1e-11), (Method::Kvaerno3, 1e-10)] {
        for adj in [Adjoint::Checkpointed { checkpoints: 2 }, Adjoint::Direct] {
            let opts = Options::new(m).rtol(tol).atol(tol).adjoint(adj);
            let f = solve_fn(opts);
            check_vjp(&f, &inputs(), &check).unwrap_or_else(|e| panic!("{m} {adj:?}: {e}"));
            if adj == Adjoint::Direct {
                // Forward mode through the recorded implicit stages.
                check_jvp(&f, &inputs(), &check).unwrap_or_else(|e| panic!("{m} {adj:?}: {e}"));
            }
        }
    }
}

#[test]
fn kvaerno_runs_matrix_free_on_large_systems_and_in_f32() {
    // The semi-discrete heat equation u' = L u on n = 2·64 + 2 points (beyond the dense
    // Jacobian limit, so GMRES with JVPs): a sine mode decays with its eigenvalue.
    let n = 2 * ode::DENSE_JACOBIAN_MAX + 2;
    let dx = 1.0 / (n + 1) as f64;
    let f = dynamics::<f64, _>(move |tape, _t, z, _p| {
        // (u_{i−1} − 2u_i + u_{i+1}) / dx² with zero boundary values.
        let zero = tape.zeros(1, 1);
        let left = tape.concat_cols(&[zero, z[0].slice_cols(0, n - 1)]);
        let right = tape.concat_cols(&[z[0].slice_cols(1, n), zero]);
        Ok(vec![(left + right - z[0] * 2.0) * (1.0 / (dx * dx))])
    });
    let pi = std::f64::consts::PI;
    let mode = Tensor::from_fn(1, n, |_, i| (pi * (i + 1) as f64 * dx).sin());
    let lambda = -4.0 / (dx * dx) * (pi * dx / 2.0).sin().powi(2);
    let t1 = 0.05;
    for m in [Method::Kvaerno3, Method::Kvaerno5] {
        let opts = Options::new(m).rtol(1e-6).atol(1e-8);
        let sol = solve(&f, std::slice::from_ref(&mode), &[], &[0.0, t1], &opts).unwrap();
        let mut want = mode.clone();
        want.scale((lambda * t1).exp());
        let err = sol.last()[0].max_abs_diff(&want);
        assert!(err < 1e-5, "{m}: error {err:e}");
        // Explicit methods need ~1000 steps here (|λ_max| ≈ 6.8·10⁴); the accuracy of the
        // slow mode decides the implicit step.
        assert!(sol.stats.accepted < 100, "{m}: {:?}", sol.stats);
    }
    // f32: the stiff Prothero–Robinson problem at rtol 1e-4.
    let g = dynamics::<f32, _>(|_tape, t, z, _p| Ok(vec![(z[0] - t.cos()) * -1e5f32 - t.sin()]));
    for m in [Method::Kvaerno3, Method::Kvaerno5] {
        let opts = Options::<f32>::new(m).rtol(1e-4).atol(1e-4);
        let sol = solve(
            &g,
            &[Tensor::from_f64s(1, 1, &[1.0])],
            &[],
            &[0.0, 3.0],
            &opts,
        )
        .unwrap();
        let err = (sol.last()[0].item() - 3f32.cos()).abs();
        assert!(err < 1e-3, "{m} (f32): error {err:e}");
    }
}
