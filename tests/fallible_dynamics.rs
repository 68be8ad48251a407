//! Dynamics, vector fields and channels return `Result`s: an error raised inside an
//! evaluation ends the solve (forward, adjoint, implicit) with that error instead of a panic
//! or a value, and reaches the caller of a flow.

use std::fmt;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use flows::cnf::{Cnf, Mode, VectorField};
use ode::{dynamics, odeint, solve, Adjoint, Dynamics, Method, OdeError, Options};

#[derive(Debug)]
struct Boom(f64);

impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "boom at t = {}", self.0)
    }
}

impl std::error::Error for Boom {}

/// dz/dt = −z, failing once t passes `t_fail`.
fn failing(t_fail: f64) -> impl Dynamics<f64> {
    dynamics::<f64, _>(move |_tape, t, z, _p| {
        let tv = t.item();
        if tv > t_fail {
            return Err(autodiff::Error::new("failing dynamics", Boom(tv)));
        }
        Ok(vec![-z[0]])
    })
}

fn expect_dynamics_error(err: &OdeError, t_fail: f64) {
    match err {
        OdeError::Dynamics { t, source } => {
            assert!(*t > t_fail, "reported at t = {t}");
            assert!(source.to_string().contains("boom"), "{source}");
        }
        other => panic!("expected OdeError::Dynamics, got {other}"),
    }
}

#[test]
fn an_error_in_the_dynamics_ends_every_kind_of_solve_with_that_error() {
    let z0 = [Tensor::from_f64s(1, 2, &[1.0, -2.0])];
    for opts in [
        Options::dopri5(1e-8, 1e-8),
        Options::fixed(Method::Rk4, 20),
        Options::fixed(Method::ImplicitEuler, 20),
    ] {
        let err = solve(&failing(0.5), &z0, &[], &[0.0, 1.0], &opts.solve).unwrap_err();
        expect_dynamics_error(&err, 0.5);
        // Dynamics that never fail on the interval solve as before.
        let sol = solve(&failing(2.0), &z0, &[], &[0.0, 1.0], &opts.solve).unwrap();
        let want = (-1.0f64).exp();
        // Implicit Euler with h = 0.05 is off by O(h): 0.9e-2.
        assert!((sol.last()[0].get(0, 0) - want).abs() < 2e-2);
    }
}

#[test]
fn an_error_in_the_dynamics_of_odeint_is_its_error() {
    // The error is odeint's, wrapping the OdeError.
    let f: Rc<dyn Dynamics<f64>> = Rc::new(failing(0.5));
    let tape = Tape::<f64>::new();
    let z0 = tape.var(Tensor::from_f64s(1, 1, &[1.0]));
    let Err(err) = odeint(
        &tape,
        &f,
        &[z0],
        &[],
        [0.0, 1.0],
        &Options::dopri5(1e-6, 1e-6).adjoint(Adjoint::Backsolve),
    ) else {
        panic!("the solve succeeded past the failure");
    };
    let ode = err.downcast_ref::<OdeError>().expect("an OdeError inside");
    expect_dynamics_error(ode, 0.5);
}

/// f(z) = −z that refuses to be evaluated past `t_fail`.
struct FailingField {
    t_fail: f64,
}

impl<E: Element> VectorField<E> for FailingField {
    fn eval<'t>(
        &self,
        t: Var<'t, E>,
        z: Var<'t, E>,
        _p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>> {
        let tv = t.item().to_f64();
        if tv > self.t_fail {
            return Err(autodiff::Error::new("FailingField", Boom(tv)));
        }
        Ok(-z)
    }
}

#[test]
fn a_vector_field_error_reaches_the_caller_of_log_prob() {
    let cnf = Cnf::<f64>::from_fields(vec![(Rc::new(FailingField { t_fail: 0.3 }), 0..0)])
        .end_time(1.0)
        .train_opts(Options::fixed(Method::Rk4, 10));
    let tape = Tape::<f64>::new();
    let x = tape.constant(Tensor::from_f64s(2, 2, &[0.1, 0.2, 0.3, 0.4]));
    let Err(err) = cnf.log_prob(&tape, &[], x, Mode::Train) else {
        panic!("the field's error did not end the pass");
    };
    let ode = err.downcast_ref::<OdeError>().expect("an OdeError inside");
    expect_dynamics_error(ode, 0.3);
    assert!(err.to_string().contains("boom"), "{err}");
    // The same field within its domain integrates −z: log p = log N(z(T)) − d·T.
    let ok = Cnf::<f64>::from_fields(vec![(Rc::new(FailingField { t_fail: 2.0 }), 0..0)])
        .end_time(1.0)
        .train_opts(Options::fixed(Method::Rk4, 10));
    let lp = ok.log_prob(&tape, &[], x, Mode::Train).unwrap();
    assert!(lp.log_prob.value().all_finite());
}
