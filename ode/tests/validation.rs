//! Bad input gets a clear, typed error and never a wrong value as `Ok`: time lists and options
//! checked the same way by every strategy, Direct replays checked against the solve, error
//! norms that survive exact zeros and huge values, tolerances below the element type's
//! precision, and errors labelled with the phase they come from.

use std::rc::Rc;

use autodiff::{Tape, Tensor};
use ode::{dynamics, odeint, solve, Adjoint, Dynamics, Method, OdeError, Options};

fn strategies() -> [Adjoint; 3] {
    [
        Adjoint::Backsolve,
        Adjoint::Checkpointed { checkpoints: 3 },
        Adjoint::Direct,
    ]
}

fn decay() -> Rc<dyn Dynamics<f64>> {
    Rc::new(dynamics(|_tape, _t, z, p| Ok(vec![-(z[0] * p[0])])))
}

fn ode_error(e: &autodiff::Error) -> &OdeError {
    e.downcast_ref::<OdeError>()
        .unwrap_or_else(|| panic!("not an OdeError: {e}"))
}

#[test]
fn every_strategy_validates_the_whole_time_list_and_names_the_users_times() {
    for adj in strategies() {
        for times in [
            vec![0.0, 1.0, 0.5],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0],
            vec![0.0, f64::NAN],
        ] {
            let tape = Tape::<f64>::new();
            let z0 = tape.var(Tensor::scalar(1.0));
            let k = tape.var(Tensor::scalar(0.5));
            let o = Options::dopri5(1e-6, 1e-6).adjoint(adj);
            let err = odeint(&tape, &decay(), &[z0], &[k], times.clone(), &o).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(ode_error(&err), OdeError::InvalidTimes(_)),
                "{adj:?} {times:?}: {msg}"
            );
            // The message quotes the user's times (not a checkpoint grid).
            let last = times.last().unwrap();
            assert!(
                msg.contains(&format!("= {last}")),
                "{adj:?} {times:?}: {msg}"
            );
        }
    }
}

#[test]
fn checkpointed_validates_fixed_steps_before_dividing_them() {
    let tape = Tape::<f64>::new();
    let z0 = tape.var(Tensor::scalar(1.0));
    let k = tape.var(Tensor::scalar(0.5));
    for adj in strategies() {
        let o = Options::fixed(Method::Rk4, 0).adjoint(adj);
        let err = odeint(&tape, &decay(), &[z0], &[k], [0.0, 1.0], &o).unwrap_err();
        assert!(
            matches!(ode_error(&err), OdeError::InvalidOptions(_)),
            "{adj:?}: {err}"
        );
    }
}

#[test]
fn a_direct_replay_that_drifts_from_the_solve_is_an_error_not_a_value() {
    // z' = −1e4 (z − cos t): Dopri5 keeps it stable by error control, but the replay of its
    // steps on the tape amplifies the rounding of the recorded step sizes.
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|_tape, t, z, _p| {
        Ok(vec![(z[0] - t.cos()) * -1e4])
    }));
    let o = Options::dopri5(1e-6, 1e-6);
    let plain = solve(&*f, &[Tensor::scalar(0.0)], &[], &[0.0, 10.0], &o).unwrap();
    assert!((plain.last()[0].item() - 10f64.cos()).abs() < 1e-3);
    let tape = Tape::<f64>::new();
    let z0 = tape.var(Tensor::scalar(0.0));
    match odeint(
        &tape,
        &f,
        &[z0],
        &[],
        [0.0, 10.0],
        &o.clone().adjoint(Adjoint::Direct),
    ) {
        Err(e) => assert!(
            matches!(ode_error(&e), OdeError::ReplayDiverged { .. }),
            "{e}"
        ),
        // Should the replay ever be stable here, it must then agree with the solve.
        Ok(sol) => assert!((sol.last()[0].item() - plain.last()[0].item()).abs() < 1e-5),
    }
    // A well-behaved problem replays to the solve's value.
    let tape = Tape::<f64>::new();
    let z0 = tape.var(Tensor::scalar(1.0));
    let k = tape.var(Tensor::scalar(0.5));
    let sol = odeint(
        &tape,
        &decay(),
        &[z0],
        &[k],
        [0.0, 1.0, 2.0],
        &o.adjoint(Adjoint::Direct),
    )
    .unwrap();
    assert!((sol.last()[0].item() - (-1.0f64).exp()).abs() < 1e-5);
}

#[test]
fn pure_relative_tolerance_handles_components_that_are_exactly_zero() {
    // z = (e^{−t}, 0): the second component is exactly zero throughout, atol = 0.
    let f = dynamics::<f64, _>(|_tape, _t, z, _p| Ok(vec![-z[0]]));
    let z0 = [Tensor::from_f64s(1, 2, &[1.0, 0.0])];
    let sol = solve(&f, &z0, &[], &[0.0, 1.0], &Options::dopri5(1e-8, 0.0)).unwrap();
    let z1 = &sol.last()[0];
    assert!((z1.get(0, 0) - (-1.0f64).exp()).abs() < 1e-7, "{z1:?}");
    assert_eq!(z1.get(0, 1), 0.0);
}

#[test]
fn huge_but_finite_derivatives_are_integrated() {
    // z' = 1e200 from z0 = 1: z(1) = 1e200. The squares in the initial-step norm overflow;
    // the norm must not, or the first step comes out zero.
    let f = dynamics::<f64, _>(|tape, _t, _z, _p| Ok(vec![tape.constant(Tensor::scalar(1e200))]));
    let sol = solve(
        &f,
        &[Tensor::scalar(1.0)],
        &[],
        &[0.0, 1.0],
        &Options::dopri5(1e-6, 1e-6),
    )
    .unwrap();
    let z1 = sol.last()[0].item();
    assert!((z1 / 1e200 - 1.0).abs() < 1e-10, "{z1}");
    assert!(sol.stats.nfe < 2000, "{} evaluations", sol.stats.nfe);
}

#[test]
fn tolerances_below_the_element_precision_are_rejected_with_a_clear_message() {
    let f = dynamics::<f32, _>(|_tape, _t, z, _p| Ok(vec![-z[0]]));
    let z0 = [Tensor::<f32>::from_f64s(1, 1, &[1.0])];
    let r = solve(
        &f,
        &z0,
        &[],
        &[0.0, 1.0],
        &Options::<f32>::dopri5(1e-12, 1e-12),
    );
    let Err(OdeError::InvalidOptions(msg)) = r else {
        panic!("{r:?}")
    };
    assert!(msg.contains("rtol") && msg.contains("f32"), "{msg}");
    // Single precision at a tolerance it can reach still works.
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

#[test]
fn errors_of_the_backward_pass_are_labelled_with_their_phase() {
    let tape = Tape::<f64>::new();
    let z0 = tape.var(Tensor::scalar(1.0));
    let k = tape.var(Tensor::scalar(0.5));
    // The forward solve succeeds; the adjoint solve runs out of steps.
    let o = Options::dopri5(1e-8, 1e-8).adjoint_solver(Options::dopri5(1e-8, 1e-8).max_steps(2));
    let sol = odeint(&tape, &decay(), &[z0], &[k], [0.0, 3.0], &o).unwrap();
    let err = tape.grad(sol.last()[0].sum(), &[z0, k]).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(ode_error(&err), OdeError::MaxSteps { .. }),
        "{msg}"
    );
    assert!(msg.contains("backward pass"), "{msg}");
    assert!(!msg.contains("forward solve"), "{msg}");
}

#[test]
fn a_faithful_single_precision_replay_is_accepted() {
    // Fixed-step RK4 in f32 on a tanh network: the replay on the tape rounds differently
    // from the value solve (≈1e-5 here), which is not a divergence.
    let f: Rc<dyn Dynamics<f32>> = Rc::new(dynamics(|_tape, _t, z, p| {
        Ok(vec![
            (z[0].matmul(p[0]) * 3.0f32).tanh().matmul(p[1]) * 4.0f32,
        ])
    }));
    let mut z0 = Tensor::<f32>::zeros(64, 2);
    for (i, v) in z0.as_mut_slice().iter_mut().enumerate() {
        *v = ((i * 37 % 19) as f32 - 9.0) * 0.4;
    }
    let w1 = Tensor::<f32>::from_f64s(2, 4, &[0.9, -0.7, 0.4, 1.1, -0.5, 0.8, -1.2, 0.3]);
    let w2 = Tensor::<f32>::from_f64s(4, 2, &[0.6, -0.9, 1.0, 0.2, -0.4, 0.7, 0.5, -1.1]);
    let o = Options::<f32>::fixed(Method::Rk4, 10).adjoint(Adjoint::Direct);
    let plain = solve(
        &*f,
        &[z0.clone()],
        &[w1.clone(), w2.clone()],
        &[0.0, 1.0],
        &o,
    )
    .unwrap();
    let tape = Tape::<f32>::new();
    let (z, a, b) = (tape.var(z0), tape.var(w1), tape.var(w2));
    let sol = odeint(&tape, &f, &[z], &[a, b], [0.0, 1.0], &o).unwrap();
    let diff = sol.last()[0].value().max_abs_diff(&plain.last()[0]);
    assert!(diff < 1e-3, "{diff}");
}
