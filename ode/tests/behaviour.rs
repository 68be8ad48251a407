//! Save times, directions, quadrature channels, typed errors and the implicit solvers' paths.

mod common;

use autodiff::{Tape, Tensor, Var};
use common::*;
use ode::{dynamics, solve, Method, OdeError, Options, Stats, Stepping, DENSE_JACOBIAN_MAX};

fn osc_z0() -> Vec<Tensor<f64>> {
    vec![Tensor::from_f64s(1, 2, &[1.0, 0.0])]
}

#[test]
fn forward_then_backward_returns_to_the_start() {
    let f = van_der_pol();
    let mu = [Tensor::scalar(1.0)];
    let z0 = [Tensor::from_f64s(1, 2, &[1.5, -0.5])];
    for m in [Method::Dopri5, Method::Tsit5, Method::Sdirk2] {
        let opts = Options::new(m).rtol(1e-9).atol(1e-9);
        let fwd = solve(&f, &z0, &mu, &[0.0, 3.0], &opts).unwrap();
        let back = solve(&f, fwd.last(), &mu, &[3.0, 0.0], &opts).unwrap();
        let err = back.last()[0].max_abs_diff(&z0[0]);
        assert!(err < 1e-5, "{m}: forward-backward error {err}");
        assert!(back.stats.last_step < 0.0, "backward steps are negative");
    }
}

#[test]
fn decreasing_save_times_are_dense_output_of_a_backward_solve() {
    let f = oscillator();
    // Start at t = 5 with the exact state, integrate back to 0.
    let t0 = 5.0f64;
    let z5 = vec![Tensor::from_f64s(1, 2, &[t0.cos(), -t0.sin()])];
    let times = [5.0, 4.3, 2.1, 0.7, 0.0];
    let sol = solve(&f, &z5, &[], &times, &Options::dopri5(1e-9, 1e-9)).unwrap();
    assert_eq!(sol.states.len(), times.len());
    assert_eq!(sol.states[0][0], z5[0]);
    for (t, z) in times.iter().zip(&sol.states) {
        let err = max_err(&z[0], &[t.cos(), -t.sin()]);
        assert!(err < 1e-7, "t = {t}: error {err}");
    }
}

#[test]
fn dense_output_between_steps_is_accurate_and_costs_no_steps() {
    let f = oscillator();
    let tol = 1e-8;
    let times: Vec<f64> = (0..=97).map(|i| i as f64 * 0.1031).collect();
    for m in [Method::Dopri5, Method::Bosh3, Method::Sdirk2] {
        let opts = Options::new(m).rtol(tol).atol(tol).record_steps(true);
        let ends = solve(&f, &osc_z0(), &[], &[0.0, *times.last().unwrap()], &opts).unwrap();
        let sol = solve(&f, &osc_z0(), &[], &times, &opts).unwrap();
        // Interpolation does not change the step sequence.
        assert_eq!(sol.steps, ends.steps, "{m}");
        let steps_between = times.iter().filter(|t| !sol.steps.contains(t)).count();
        assert!(
            steps_between > 50,
            "{m}: most save times fall between steps"
        );
        let mut worst = 0.0f64;
        for (t, z) in times.iter().zip(&sol.states) {
            worst = worst.max(max_err(&z[0], &[t.cos(), -t.sin()]));
        }
        let bound = tol * (2.0 * sol.stats.accepted as f64).max(100.0);
        assert!(
            worst < bound,
            "{m}: dense output error {worst} (bound {bound})"
        );
    }
}

/// DOP853 used to stop at every save time (it had no continuous extension); with Hairer's
/// seventh-order dense output it fills them in like the other methods, as accurately.
#[test]
fn dopri8_fills_save_times_by_its_dense_output() {
    let f = oscillator();
    let times = [0.0, 0.3, 1.7, 2.0];
    let sol = solve(
        &f,
        &osc_z0(),
        &[],
        &times,
        &Options::dopri8(1e-8, 1e-8).record_steps(true),
    )
    .unwrap();
    for t in &times[1..times.len() - 1] {
        assert!(!sol.steps.contains(t), "dopri8 must not step onto {t}");
    }
    assert_eq!(sol.steps.last(), times.last());
    for (t, z) in times.iter().zip(&sol.states) {
        assert!(max_err(&z[0], &[t.cos(), -t.sin()]) < 1e-7);
    }
}

#[test]
fn quadrature_channels_can_be_left_out_of_error_control() {
    // z' = −z and a quadrature q' = 1e3 z² (1 + 0.5 sin 20t) starting at 0 with a tiny atol:
    // controlling q forces small steps near t = 0, where |q| is tiny.
    let f = dynamics::<f64, _>(
        |_tape: &Tape<f64>, t: Var<'_, f64>, z: &[Var<'_, f64>], _p| {
            let w = (t * 20.0).sin() * 0.5 + 1.0;
            Ok(vec![-z[0], z[0] * z[0] * w * 1e3])
        },
    );
    let z0 = [
        Tensor::from_f64s(1, 1, &[1.0]),
        Tensor::from_f64s(1, 1, &[0.0]),
    ];
    let t1 = 3.0;
    let reference = solve(&f, &z0, &[], &[0.0, t1], &Options::dopri8(1e-13, 1e-13)).unwrap();
    let base = Options::dopri5(1e-6, 1e-12);
    let with = solve(&f, &z0, &[], &[0.0, t1], &base).unwrap();
    let without = solve(
        &f,
        &z0,
        &[],
        &[0.0, t1],
        &base.clone().error_channels(vec![true, false]),
    )
    .unwrap();
    let q_ref = reference.last()[1].item();
    let z_err = (without.last()[0].item() - (-t1).exp()).abs();
    let q_err = (without.last()[1].item() - q_ref).abs() / q_ref;
    eprintln!(
        "with q: {:?}\nwithout q: {:?}\nz err {z_err:e}, q rel err {q_err:e}",
        with.stats, without.stats
    );
    assert!(
        without.stats.accepted * 2 <= with.stats.accepted,
        "{} vs {} steps",
        without.stats.accepted,
        with.stats.accepted
    );
    assert!(z_err < 1e-6, "z error {z_err}");
    assert!(q_err < 1e-4, "q relative error {q_err}");
}

#[test]
fn nan_in_the_dynamics_is_a_typed_error() {
    let f = dynamics::<f64, _>(
        |tape: &Tape<f64>, t: Var<'_, f64>, z: &[Var<'_, f64>], _p| {
            let bad = if t.item() > 0.5 { f64::NAN } else { 0.0 };
            Ok(vec![-z[0] + tape.scalar(bad)])
        },
    );
    let z0 = [Tensor::from_f64s(1, 1, &[1.0])];
    for opts in [
        Options::dopri5(1e-6, 1e-6),
        Options::fixed(Method::Rk4, 10),
        Options::new(Method::Sdirk2),
    ] {
        match solve(&f, &z0, &[], &[0.0, 1.0], &opts) {
            Err(OdeError::NonFinite { t, .. }) => assert!(t <= 0.5 + 1e-12 && t > 0.0, "t = {t}"),
            other => panic!("{:?}: expected NonFinite, got {other:?}", opts.method),
        }
    }
    let nan0 = [Tensor::from_f64s(1, 1, &[f64::NAN])];
    assert!(matches!(
        solve(&f, &nan0, &[], &[0.0, 1.0], &Options::dopri5(1e-6, 1e-6)),
        Err(OdeError::NonFinite { step: 0, .. })
    ));
}

#[test]
fn step_budgets_and_impossible_tolerances_are_typed_errors() {
    let f = oscillator();
    let r = solve(
        &f,
        &osc_z0(),
        &[],
        &[0.0, 10.0],
        &Options::dopri5(1e-8, 1e-8).max_steps(5),
    );
    assert!(
        matches!(r, Err(OdeError::MaxSteps { steps: 5, .. })),
        "{r:?}"
    );
    let r = solve(
        &f,
        &osc_z0(),
        &[],
        &[0.0, 10.0],
        &Options::dopri5(1e-8, 1e-8).min_step(0.5),
    );
    assert!(
        matches!(r, Err(OdeError::StepSizeUnderflow { .. })),
        "{r:?}"
    );
    // A tolerance far below round-off: rejected up front (it is below the element type's
    // precision), or, were it let through, the steps collapse to the round-off level and the
    // solve stops with a typed error instead of crawling forever.
    let r = solve(
        &f,
        &osc_z0(),
        &[],
        &[0.0, 10.0],
        &Options::dopri5(1e-30, 1e-30).max_steps(10_000),
    );
    assert!(
        matches!(
            r,
            Err(OdeError::StepSizeUnderflow { .. }
                | OdeError::MaxSteps { .. }
                | OdeError::InvalidOptions(_))
        ),
        "{r:?}"
    );
    if let Err(OdeError::MaxSteps { t, .. }) = r {
        assert!(t < 1e-3, "the steps must have collapsed, reached t = {t}");
    }
    let r = solve(
        &f,
        &osc_z0(),
        &[],
        &[0.0, 10.0],
        &Options::fixed(Method::Rk4, 100).max_steps(50),
    );
    assert!(
        matches!(r, Err(OdeError::MaxSteps { steps: 50, .. })),
        "{r:?}"
    );
}

#[test]
fn invalid_times_and_options_are_rejected_before_any_work() {
    let f = oscillator();
    let o = Options::dopri5(1e-6, 1e-6);
    for times in [
        vec![],
        vec![0.0, 1.0, 0.5],
        vec![0.0, 0.0],
        vec![1.0, 0.0, 0.5],
        vec![0.0, f64::NAN],
    ] {
        let r = solve(&f, &osc_z0(), &[], &times, &o);
        assert!(
            matches!(r, Err(OdeError::InvalidTimes(_))),
            "{times:?}: {r:?}"
        );
    }
    let bad = [
        Options::new(Method::Rk4),
        o.clone().rtol(-1.0),
        o.clone().rtol(0.0).atol(0.0),
        o.clone().error_channels(vec![true, false]),
        Options::fixed(Method::Rk4, 0),
        Options::fixed_step(Method::Rk4, -0.1),
        o.clone().max_steps(0),
    ];
    for opts in bad {
        let r = solve(&f, &osc_z0(), &[], &[0.0, 1.0], &opts);
        assert!(
            matches!(r, Err(OdeError::InvalidOptions(_))),
            "{opts:?}: {r:?}"
        );
        let msg = r.unwrap_err().to_string();
        assert!(msg.starts_with("invalid solver options"), "{msg}");
    }
    // A single time is just the initial state.
    let sol = solve(&f, &osc_z0(), &[], &[2.0], &o).unwrap();
    assert_eq!(sol.states, vec![osc_z0()]);
    assert_eq!(sol.stats.nfe, 0);
}

#[test]
#[should_panic(
    expected = "Dynamics::eval: output channel 0 has shape (1, 1) but state channel 0 has shape (1, 2)"
)]
fn output_shape_mismatch_panics_with_the_shapes() {
    let f = dynamics::<f64, _>(|_tape, _t, z, _p| Ok(vec![z[0].sum()]));
    let _ = solve(
        &f,
        &osc_z0(),
        &[],
        &[0.0, 1.0],
        &Options::dopri5(1e-6, 1e-6),
    );
}

#[test]
fn fixed_step_modes_hit_every_save_time() {
    let f = oscillator();
    let times = [0.0, 0.25, 1.0];
    let sol = solve(
        &f,
        &osc_z0(),
        &[],
        &times,
        &Options::fixed(Method::Rk4, 7).record_steps(true),
    )
    .unwrap();
    assert_eq!(sol.stats.accepted, 14);
    assert_eq!(sol.stats.nfe, 14 * 4);
    assert!(sol.steps.contains(&0.25) && sol.steps.contains(&1.0));
    let sol = solve(
        &f,
        &osc_z0(),
        &[],
        &times,
        &Options::fixed_step(Method::Rk4, 0.1),
    )
    .unwrap();
    assert_eq!(sol.stats.accepted, 3 + 8, "⌈0.25/0.1⌉ + ⌈0.75/0.1⌉ steps");
    assert!(matches!(
        Options::<f64>::fixed_step(Method::Rk4, 0.1).stepping,
        Stepping::StepSize(_)
    ));
    for (t, z) in times.iter().zip(&sol.states) {
        assert!(max_err(&z[0], &[t.cos(), -t.sin()]) < 1e-5);
    }
}

#[test]
fn fsal_methods_spend_one_evaluation_less_per_step() {
    let f = oscillator();
    let d = solve(
        &f,
        &osc_z0(),
        &[],
        &[0.0, 1.0],
        &Options::fixed(Method::Dopri5, 10),
    )
    .unwrap();
    let r = solve(
        &f,
        &osc_z0(),
        &[],
        &[0.0, 1.0],
        &Options::fixed(Method::Rk4, 10),
    )
    .unwrap();
    assert_eq!(d.stats.nfe, 1 + 10 * 6, "dopri5: 7 stages, the last reused");
    assert_eq!(r.stats.nfe, 10 * 4);
}

#[test]
fn dynamics_may_differentiate_internally() {
    // Gradient flow z' = −∇V(z), V = Σ z⁴/4, with the gradient taken on the solver's tape.
    let f = dynamics::<f64, _>(|tape: &Tape<f64>, _t, z: &[Var<'_, f64>], _p| {
        let v = (z[0].powi(4) * 0.25).sum();
        let g = tape.grad_graph(v, &[z[0]]).unwrap();
        Ok(vec![-g[0]])
    });
    let z0 = [Tensor::from_f64s(1, 1, &[1.0])];
    let sol = solve(&f, &z0, &[], &[0.0, 1.0], &Options::dopri5(1e-10, 1e-10)).unwrap();
    // z' = −z³ ⇒ z(t) = 1/√(1 + 2t).
    assert!((sol.last()[0].item() - 1.0 / 3f64.sqrt()).abs() < 1e-8);
    // The implicit methods take Jacobian products through the same internal gradient.
    let sol = solve(
        &f,
        &z0,
        &[],
        &[0.0, 1.0],
        &Options::new(Method::Sdirk2).rtol(1e-8).atol(1e-8),
    )
    .unwrap();
    assert!((sol.last()[0].item() - 1.0 / 3f64.sqrt()).abs() < 1e-5);
}

#[test]
fn large_systems_use_matrix_free_gmres() {
    // Heat equation u_t = u_xx on (0, 1), zero boundary values, N interior points; the exact
    // semi-discrete solution of a sine mode decays with its eigenvalue.
    let n = 2 * DENSE_JACOBIAN_MAX;
    let dx = 1.0 / (n + 1) as f64;
    let mut lap = vec![0.0; n * n];
    for i in 0..n {
        lap[i * n + i] = -2.0 / (dx * dx);
        if i > 0 {
            lap[i * n + i - 1] = 1.0 / (dx * dx);
        }
        if i + 1 < n {
            lap[i * n + i + 1] = 1.0 / (dx * dx);
        }
    }
    let f = dynamics::<f64, _>(|_tape, _t, z, p| Ok(vec![z[0].matmul(p[0])]));
    let mode = |k: f64| {
        Tensor::from_fn(1, n, |_, i| {
            (k * std::f64::consts::PI * (i + 1) as f64 * dx).sin()
        })
    };
    let z0 = [mode(1.0)];
    let p = [Tensor::from_vec(n, n, lap)];
    let t1 = 0.05;
    let lambda = -4.0 / (dx * dx) * (std::f64::consts::PI * dx / 2.0).sin().powi(2);
    let sol = solve(
        &f,
        &z0,
        &p,
        &[0.0, t1],
        &Options::new(Method::Sdirk2).rtol(1e-6).atol(1e-8),
    )
    .unwrap();
    let mut want = mode(1.0);
    want.scale((lambda * t1).exp());
    let err = sol.last()[0].max_abs_diff(&want);
    eprintln!("heat: err {err:e}, {:?}", sol.stats);
    assert!(err < 1e-4, "error {err}");
    // Matrix-free: far fewer JVPs than N per Jacobian.
    assert!(sol.stats.njvp < sol.stats.njac * n, "{:?}", sol.stats);
    let explicit = solve(&f, &z0, &p, &[0.0, t1], &Options::dopri5(1e-6, 1e-8)).unwrap();
    assert!(
        explicit.stats.accepted > 5 * sol.stats.accepted,
        "{:?} vs {:?}",
        explicit.stats,
        sol.stats
    );
}

#[test]
fn stats_add_up() {
    let a = Stats {
        nfe: 3,
        accepted: 1,
        rejected: 2,
        last_step: 0.5,
        ..Stats::default()
    };
    let mut b = Stats {
        nfe: 10,
        accepted: 4,
        njac: 1,
        last_step: 0.1,
        ..Stats::default()
    };
    b += a;
    assert_eq!(
        (b.nfe, b.accepted, b.rejected, b.njac, b.last_step),
        (13, 5, 2, 1, 0.5)
    );
}

#[test]
fn works_in_single_precision() {
    let f = dynamics::<f32, _>(|_tape, _t, z, _p| Ok(vec![-z[0]]));
    let z0 = [Tensor::<f32>::from_f64s(1, 1, &[1.0])];
    let sol = solve(
        &f,
        &z0,
        &[],
        &[0.0, 1.0],
        &Options::<f32>::dopri5(1e-5, 1e-6),
    )
    .unwrap();
    assert!((sol.last()[0].item() - (-1.0f32).exp()).abs() < 1e-4);
}
