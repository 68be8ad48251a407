//! The solve as one differentiable op: adjoint VJPs (every strategy), forward-sensitivity JVPs,
//! time gradients, second order through a solve, and memory that does not grow with steps.

use std::rc::Rc;

use autodiff::testing::{check_grads, check_jvp, check_vjp, eval, tape_fn, CheckOpts};
use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, odeint, Adjoint, Dynamics, Method, OdeError, Options};
use rand::SeedableRng;

/// A small neural dynamics f(t, z) = tanh([z, t] W1 + b1) W2 with batch 3, state dim 2.
fn neural() -> Rc<dyn Dynamics<f64>> {
    Rc::new(dynamics(|tape, t, z, p| {
        let (r, _) = z[0].shape();
        let zt = tape.concat_cols(&[z[0], t.broadcast_to(r, 1)]);
        Ok(vec![(zt.matmul(p[0]) + p[1]).tanh().matmul(p[2])])
    }))
}

fn neural_inputs(seed: u64) -> Vec<Tensor<f64>> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut w1 = Tensor::randn(3, 8, &mut rng);
    w1.scale(0.7);
    let mut w2 = Tensor::randn(8, 2, &mut rng);
    w2.scale(0.4);
    vec![
        Tensor::randn(3, 2, &mut rng),
        w1,
        Tensor::randn(1, 8, &mut rng),
        w2,
    ]
}

/// Linear dynamics dz/dt = z A with a parameter matrix, plus a quadrature channel ‖z‖².
fn linear_with_quadrature() -> Rc<dyn Dynamics<f64>> {
    Rc::new(dynamics(|_tape, _t, z, p| {
        Ok(vec![z[0].matmul(p[0]), z[0].square().sum_axis(1)])
    }))
}

fn strategies() -> [Adjoint; 3] {
    [
        Adjoint::Backsolve,
        Adjoint::Checkpointed { checkpoints: 3 },
        Adjoint::Direct,
    ]
}

fn tight(adjoint: Adjoint) -> Options<f64> {
    Options::dopri5(1e-11, 1e-11).adjoint(adjoint)
}

/// The loss-side function for the checks: the state at two save times.
fn solve_fn(
    f: Rc<dyn Dynamics<f64>>,
    opts: Options<f64>,
) -> impl for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Vec<Var<'t, f64>> + Clone + 'static {
    tape_fn(move |tape, v| {
        let sol = odeint(tape, &f, &v[..1], &v[1..], [0.0, 0.4, 1.0], &opts).unwrap();
        vec![sol.states[1][0], sol.states[2][0].tanh()]
    })
}

fn loose() -> CheckOpts {
    CheckOpts {
        eps: 1e-5,
        rtol: 2e-6,
        atol: 1e-7,
        seed: 1,
    }
}

#[test]
fn vjp_and_jvp_of_neural_ode_match_finite_differences_every_strategy() {
    let xs = neural_inputs(0);
    for adj in strategies() {
        let f = solve_fn(neural(), tight(adj));
        check_vjp(&f, &xs, &loose()).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
        check_jvp(&f, &xs, &loose()).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
    }
}

#[test]
fn vjp_of_analytic_linear_ode_with_quadrature_channel() {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(4);
    let a = Tensor::from_f64s(2, 2, &[-0.5, 1.0, -1.0, -0.2]);
    let z0 = Tensor::randn(2, 2, &mut rng);
    for adj in strategies() {
        let f = linear_with_quadrature();
        let opts = tight(adj).error_channels(vec![true, false]);
        let g = tape_fn(move |tape, v| {
            let q0 = tape.zeros(2, 1);
            let sol = odeint(tape, &f, &[v[0], q0], &v[1..], [0.0, 1.5], &opts).unwrap();
            vec![sol.last()[0], sol.last()[1]]
        });
        let xs = [z0.clone(), a.clone()];
        check_vjp(&g, &xs, &loose()).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
        check_jvp(&g, &xs, &loose()).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
    }
}

#[test]
fn strategies_agree_to_1e_6() {
    let xs = neural_inputs(1);
    let grads: Vec<Vec<Tensor<f64>>> = strategies()
        .iter()
        .map(|&adj| {
            let f = neural();
            let tape = Tape::new();
            let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
            let opts = Options::dopri5(1e-10, 1e-10).adjoint(adj);
            let sol = odeint(&tape, &f, &v[..1], &v[1..], [0.0, 0.5, 1.0], &opts).unwrap();
            let loss = (sol.states[1][0].square().sum() + sol.states[2][0].sin().sum()) * 0.5;
            tape.grad(loss, &v).unwrap()
        })
        .collect();
    for (adj, g) in strategies().iter().zip(&grads).skip(1) {
        for (a, b) in g.iter().zip(&grads[0]) {
            assert!(
                a.max_abs_diff(b) < 1e-6,
                "{adj:?} differs from Backsolve by {}",
                a.max_abs_diff(b)
            );
        }
    }
}

#[test]
fn gradients_reach_start_and_end_times() {
    let xs = neural_inputs(2);
    for adj in strategies() {
        let f = neural();
        let opts = tight(adj);
        let g = tape_fn(move |tape, v| {
            let t0 = v[4];
            let t1 = v[5];
            let t2 = v[6];
            let sol = odeint(tape, &f, &v[..1], &v[1..4], vec![t0, t1, t2], &opts).unwrap();
            vec![sol.states[1][0], sol.states[2][0].square()]
        });
        let mut all = xs.clone();
        all.extend([
            Tensor::scalar(0.1),
            Tensor::scalar(0.6),
            Tensor::scalar(1.1),
        ]);
        check_vjp(&g, &all, &loose()).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
        check_jvp(&g, &all, &loose()).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
    }
}

#[test]
fn backwards_in_time_and_fixed_step_rk4() {
    let xs = neural_inputs(3);
    for adj in strategies() {
        let f = neural();
        // Fixed steps: the discrete (Direct) gradient and the continuous adjoints agree to O(h⁴).
        let opts = Options::fixed(Method::Rk4, 200).adjoint(adj);
        let g = tape_fn(move |tape, v| {
            let sol = odeint(tape, &f, &v[..1], &v[1..], [1.0, 0.2], &opts).unwrap();
            vec![sol.last()[0]]
        });
        check_vjp(&g, &xs, &loose()).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
    }
}

#[test]
fn second_order_through_a_solve() {
    // grad-of-grad and JVP-of-VJP through odeint: Backsolve (the adjoint is itself an odeint
    // op) and Direct (tape ops) both give Hessian-vector products that match finite differences.
    let xs = neural_inputs(5);
    for adj in [Adjoint::Backsolve, Adjoint::Direct] {
        let f = neural();
        let opts = Options::dopri5(1e-10, 1e-10).adjoint(adj);
        let g = tape_fn(move |tape, v| {
            let sol = odeint(tape, &f, &v[..1], &v[1..], [0.0, 0.7], &opts).unwrap();
            vec![sol.last()[0].square().sum()]
        });
        let o = CheckOpts {
            eps: 1e-4,
            rtol: 1e-5,
            atol: 1e-6,
            seed: 2,
        };
        check_grads(&g, &xs, 2, &o).unwrap_or_else(|e| panic!("{adj:?}: {e}"));
    }
}

#[test]
fn hvp_matches_finite_differences_of_gradients() {
    let xs = neural_inputs(6);
    let f = neural();
    let opts = Options::dopri5(1e-11, 1e-11);
    let grad_at = |x: &[Tensor<f64>]| -> Vec<Tensor<f64>> {
        let tape = Tape::new();
        let v: Vec<Var<'_, f64>> = x.iter().map(|x| tape.var(x.clone())).collect();
        let sol = odeint(&tape, &f, &v[..1], &v[1..], [0.0, 0.8], &opts).unwrap();
        tape.grad(sol.last()[0].sin().sum(), &v).unwrap()
    };
    let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
    let dirs: Vec<Tensor<f64>> = xs
        .iter()
        .map(|x| Tensor::randn(x.rows(), x.cols(), &mut rng))
        .collect();
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let dv: Vec<Var<'_, f64>> = dirs.iter().map(|d| tape.constant(d.clone())).collect();
    let sol = odeint(&tape, &f, &v[..1], &v[1..], [0.0, 0.8], &opts).unwrap();
    let hv = tape.hvp(sol.last()[0].sin().sum(), &v, &dv).unwrap();
    let h = 1e-5;
    let shift = |s: f64| -> Vec<Tensor<f64>> {
        xs.iter()
            .zip(&dirs)
            .map(|(x, d)| {
                let mut x = x.clone();
                x.axpy(s, d);
                x
            })
            .collect()
    };
    let (gp, gm) = (grad_at(&shift(h)), grad_at(&shift(-h)));
    for ((hv, p), m) in hv.iter().zip(&gp).zip(&gm) {
        let fd = p.zip_map(m, |a, b| (a - b) / (2.0 * h));
        let err = hv.value().max_abs_diff(&fd);
        assert!(err < 1e-5 * (1.0 + fd.max_abs()), "hvp error {err}");
    }
}

#[test]
fn checkpointed_refuses_higher_order_with_a_clear_error() {
    let xs = neural_inputs(7);
    let f = neural();
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let opts = Options::dopri5(1e-6, 1e-6).adjoint(Adjoint::Checkpointed { checkpoints: 2 });
    let sol = odeint(&tape, &f, &v[..1], &v[1..], [0.0, 0.5], &opts).unwrap();
    let err = tape.grad_graph(sol.last()[0].sum(), &v).unwrap_err();
    assert!(err.to_string().contains("first derivatives only"), "{err}");
    assert!(matches!(
        err.downcast_ref::<OdeError>(),
        Some(OdeError::InvalidOptions(_))
    ));
}

#[test]
fn forward_errors_are_typed() {
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|_tape, _t, z, _p| Ok(vec![z[0].square()])));
    let tape = Tape::new();
    let z0 = tape.var(Tensor::scalar(1.0));
    // z' = z², z(0) = 1 blows up at t = 1.
    let err = odeint(
        &tape,
        &f,
        &[z0],
        &[],
        [0.0, 2.0],
        &Options::dopri5(1e-8, 1e-8).max_steps(10_000),
    )
    .unwrap_err();
    let ode_err = err.downcast_ref::<OdeError>().expect("an OdeError inside");
    assert!(
        matches!(
            ode_err,
            OdeError::StepSizeUnderflow { .. }
                | OdeError::MaxSteps { .. }
                | OdeError::NonFinite { .. }
        ),
        "{ode_err:?}"
    );
}

#[test]
fn backward_statistics_are_recorded() {
    let xs = neural_inputs(8);
    let f = neural();
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let sol = odeint(
        &tape,
        &f,
        &v[..1],
        &v[1..],
        [0.0, 1.0],
        &Options::dopri5(1e-6, 1e-6),
    )
    .unwrap();
    assert!(sol.stats.forward().nfe > 0);
    assert_eq!(sol.stats.backward().nfe, 0);
    let _ = tape.grad(sol.last()[0].sum(), &v).unwrap();
    assert!(sol.stats.backward().nfe > 0);
    assert!(sol.stats.backward().accepted > 0);
}

#[test]
fn seminorm_takes_fewer_backward_steps_with_the_same_gradient() {
    let xs = neural_inputs(10);
    let run = |seminorm: bool| {
        let f = neural();
        let tape = Tape::new();
        let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
        let opts = Options::dopri5(1e-7, 1e-7).seminorm(seminorm);
        let sol = odeint(&tape, &f, &v[..1], &v[1..], [0.0, 2.0], &opts).unwrap();
        let g = tape.grad(sol.last()[0].square().sum(), &v).unwrap();
        (g, sol.stats.backward().nfe)
    };
    let (g_full, nfe_full) = run(false);
    let (g_semi, nfe_semi) = run(true);
    assert!(
        nfe_semi <= nfe_full,
        "seminorm {nfe_semi} vs full {nfe_full}"
    );
    for (a, b) in g_full.iter().zip(&g_semi) {
        assert!(a.max_abs_diff(b) < 1e-4 * (1.0 + a.max_abs()));
    }
}

#[test]
fn jvp_of_vjp_uses_the_sensitivity_of_the_adjoint() {
    // d/dk of the gradient of z(1) for z' = −k z, analytically: z(1) = z0 e^{−k},
    // ∂z/∂k = −z0 e^{−k}, ∂²z/∂k² = z0 e^{−k}.
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|_tape, _t, z, p| Ok(vec![-(z[0] * p[0])])));
    let tape = Tape::new();
    let z0 = tape.var(Tensor::scalar(1.5));
    let k = tape.var(Tensor::scalar(0.3));
    let sol = odeint(
        &tape,
        &f,
        &[z0],
        &[k],
        [0.0, 1.0],
        &Options::dopri5(1e-12, 1e-12),
    )
    .unwrap();
    let gk = tape.grad_graph(sol.last()[0].sum(), &[k]).unwrap()[0];
    let one = tape.constant(Tensor::scalar(1.0));
    let hk = tape.jvp(&[gk], &[k], &[one]).unwrap()[0].item();
    let e = (-0.3f64).exp();
    assert!((gk.item() + 1.5 * e).abs() < 1e-9, "{}", gk.item());
    assert!((hk - 1.5 * e).abs() < 1e-8, "{hk}");
}

#[test]
fn evaluation_matches_plain_solve() {
    let xs = neural_inputs(11);
    let f = neural();
    let opts = Options::dopri5(1e-8, 1e-8);
    let plain = ode::solve(&*f, &xs[..1], &xs[1..], &[0.0, 1.0], &opts).unwrap();
    let out = eval(
        &tape_fn(move |tape, v| {
            let sol = odeint(tape, &f, &v[..1], &v[1..], [0.0, 1.0], &opts).unwrap();
            vec![sol.last()[0]]
        }),
        &xs,
    );
    assert_eq!(out[0], plain.states[1][0]);
}
