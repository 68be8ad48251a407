//! Adaptive solves meet their tolerances on problems with known solutions.

mod common;

use autodiff::Tensor;
use common::*;
use ode::{dynamics, solve, Method, Options};

/// Error-per-step control bounds the global error by about the number of steps times the
/// tolerance (for these problems, which do not amplify errors): a high-order method meets
/// the tolerance within a small factor, a low-order one within a factor of its step count.
fn bound(tol: f64, steps: usize) -> f64 {
    tol * (2.0 * steps as f64).max(100.0)
}

const ADAPTIVE: [Method; 6] = [
    Method::Bosh3,
    Method::Dopri5,
    Method::Tsit5,
    Method::Dopri8,
    Method::ImplicitEuler,
    Method::Sdirk2,
];

#[test]
fn exponential_decay_meets_tolerance() {
    let f = dynamics::<f64, _>(|_t, _time, z, _p| Ok(vec![-z[0]]));
    let z0 = [Tensor::from_f64s(1, 2, &[1.0, 2.0])];
    for m in ADAPTIVE {
        let tol = 1e-6;
        let sol = solve(
            &f,
            &z0,
            &[],
            &[0.0, 3.0],
            &Options::new(m).rtol(tol).atol(tol),
        )
        .unwrap();
        let e = (-3.0f64).exp();
        let err = max_err(&sol.states[1][0], &[e, 2.0 * e]);
        eprintln!("decay {m}: err {err:.2e}, {:?}", sol.stats);
        assert!(err < bound(tol, sol.stats.accepted), "{m}: error {err}");
        assert!(sol.stats.accepted > 1 && sol.stats.nfe > sol.stats.accepted);
    }
}

#[test]
fn harmonic_oscillator_meets_tolerance() {
    let f = oscillator();
    let z0 = [Tensor::from_f64s(1, 2, &[1.0, 0.0])];
    let t1 = 10.0f64;
    for m in ADAPTIVE {
        for tol in [1e-5, 1e-8] {
            if m == Method::ImplicitEuler && tol < 1e-6 {
                continue; // first order: too many steps for a tight tolerance
            }
            let sol = solve(
                &f,
                &z0,
                &[],
                &[0.0, t1],
                &Options::new(m).rtol(tol).atol(tol),
            )
            .unwrap();
            let err = max_err(&sol.states[1][0], &[t1.cos(), -t1.sin()]);
            eprintln!("oscillator {m} tol {tol:e}: err {err:.2e}, {:?}", sol.stats);
            assert!(
                err < bound(tol, sol.stats.accepted),
                "{m} at tol {tol}: error {err}"
            );
        }
    }
}

#[test]
fn kepler_orbit_returns_to_its_start_after_one_period() {
    let f = kepler();
    let z0 = kepler_z0(0.5);
    let period = 2.0 * std::f64::consts::PI;
    for m in [Method::Dopri5, Method::Tsit5, Method::Dopri8] {
        let tol = 1e-9;
        let sol = solve(
            &f,
            &z0,
            &[],
            &[0.0, period],
            &Options::new(m).rtol(tol).atol(tol),
        )
        .unwrap();
        let err = sol.states[1][0].max_abs_diff(&z0[0]);
        eprintln!("kepler {m}: err {err:.2e}, {:?}", sol.stats);
        assert!(err < 1e-6, "{m}: error {err}");
    }
}

#[test]
fn van_der_pol_matches_a_tight_reference() {
    let f = van_der_pol();
    let z0 = [Tensor::from_f64s(1, 2, &[2.0, 0.0])];
    let mu = [Tensor::scalar(5.0)];
    let times: Vec<f64> = (0..=10).map(|i| i as f64).collect();
    let reference = solve(&f, &z0, &mu, &times, &Options::dopri8(1e-12, 1e-12)).unwrap();
    for m in ADAPTIVE {
        let tol = 1e-6;
        if m == Method::ImplicitEuler {
            continue;
        }
        let sol = solve(&f, &z0, &mu, &times, &Options::new(m).rtol(tol).atol(tol)).unwrap();
        let err = sol
            .states
            .iter()
            .zip(&reference.states)
            .map(|(a, b)| a[0].max_abs_diff(&b[0]))
            .fold(0.0, f64::max);
        eprintln!("vdp {m}: err {err:.2e}, {:?}", sol.stats);
        assert!(err < 1e-3, "{m}: error {err}");
    }
}

#[test]
fn implicit_methods_need_far_fewer_steps_on_a_stiff_problem() {
    let (f, p) = stiff_linear();
    let z0 = [Tensor::from_f64s(1, 2, &[1.0, 1.0])];
    let t1 = 2.0;
    let tol = 1e-4;
    let explicit = solve(&f, &z0, &p, &[0.0, t1], &Options::dopri5(tol, tol)).unwrap();
    let want = stiff_exact(t1);
    assert!(max_err(&explicit.states[1][0], &want) < 1e-3);
    for m in [Method::ImplicitEuler, Method::Sdirk2] {
        let sol = solve(
            &f,
            &z0,
            &p,
            &[0.0, t1],
            &Options::new(m).rtol(tol).atol(tol),
        )
        .unwrap();
        let err = max_err(&sol.states[1][0], &want);
        let steps = sol.stats.accepted + sol.stats.rejected;
        let dsteps = explicit.stats.accepted + explicit.stats.rejected;
        eprintln!(
            "stiff {m}: err {err:.2e}, {steps} steps vs dopri5 {dsteps}; {:?}",
            sol.stats
        );
        assert!(
            err < if m.order() == 1 { 1e-2 } else { 1e-3 },
            "{m}: error {err}"
        );
        assert!(dsteps >= 10 * steps, "{m}: {steps} steps, dopri5 {dsteps}");
        assert!(sol.stats.njac > 0 && sol.stats.linear_solves > 0 && sol.stats.newton_iters > 0);
    }
}
