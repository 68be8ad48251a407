//! Wall time per phase in `OdeStats`: consistency and monotonicity only (no thresholds: the
//! machine's speed is not a property of the code).

use std::rc::Rc;
use std::time::Duration;

use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, odeint, Adjoint, Dynamics, OdeStats, Options};

fn field() -> Rc<dyn Dynamics<f64>> {
    Rc::new(dynamics(|_tape, _t, z, p| {
        Ok(vec![(z[0].matmul(p[0])).tanh()])
    }))
}

fn values() -> (Tensor<f64>, Tensor<f64>) {
    (
        Tensor::from_f64s(2, 2, &[1.0, 0.0, 0.5, -0.5]),
        Tensor::from_f64s(2, 2, &[0.1, -1.0, 1.0, 0.2]),
    )
}

fn consistent(s: &OdeStats) {
    assert_eq!(
        s.total_time(),
        s.forward_time() + s.backward_time() + s.nested_time()
    );
    // A phase that evaluated the dynamics spent time; one that never ran spent none.
    for (nfe, time) in [
        (s.forward().nfe, s.forward_time()),
        (s.backward().nfe, s.backward_time()),
        (s.nested().nfe, s.nested_time()),
    ] {
        if nfe > 0 {
            assert!(time > Duration::ZERO);
        }
    }
}

#[test]
fn first_order_times_fill_in_phase_by_phase() {
    for adj in [Adjoint::Backsolve, Adjoint::Checkpointed { checkpoints: 2 }] {
        let f = field();
        let (z, w) = values();
        let tape = Tape::new();
        let (z0, w) = (tape.var(z), tape.var(w));
        let opts = Options::dopri5(1e-7, 1e-7).adjoint(adj);
        let sol = odeint(&tape, &f, &[z0], &[w], [0.0, 0.5, 1.0], &opts).unwrap();
        let s = sol.stats.clone();
        consistent(&s);
        assert!(s.forward_time() > Duration::ZERO);
        assert_eq!(s.backward_time(), Duration::ZERO);
        assert_eq!(s.nested_time(), Duration::ZERO);
        let forward = s.forward_time();

        let loss = sol.last()[0].square().sum();
        let _ = tape.grad(loss, &[z0, w]).unwrap();
        consistent(&s);
        // The backward pass runs in its own phase: the forward clock stands still.
        assert_eq!(s.forward_time(), forward, "{adj:?}");
        assert!(s.backward_time() > Duration::ZERO, "{adj:?}");
        assert_eq!(s.nested_time(), Duration::ZERO, "{adj:?}");

        // A second gradient adds to the backward phase only.
        let back = s.backward_time();
        let nfe = s.backward().nfe;
        let _ = tape.grad(loss, &[w]).unwrap();
        consistent(&s);
        assert!(s.backward().nfe > nfe);
        assert!(s.backward_time() > back, "{adj:?}");
        assert_eq!(s.forward_time(), forward);
        assert_eq!(s.nested_time(), Duration::ZERO);
    }
}

#[test]
fn second_order_time_is_nested_and_not_counted_twice() {
    let f = field();
    let (z, w) = values();
    let tape = Tape::new();
    let (z0, w) = (tape.var(z), tape.var(w));
    let opts = Options::dopri5(1e-7, 1e-7).adjoint(Adjoint::Backsolve);
    let sol = odeint(&tape, &f, &[z0], &[w], [0.0, 1.0], &opts).unwrap();
    let s = sol.stats.clone();
    let loss = sol.last()[0].square().sum();
    let g = tape.grad_graph(loss, &[w]).unwrap();
    consistent(&s);
    let (forward, backward) = (s.forward_time(), s.backward_time());
    assert!(backward > Duration::ZERO);
    let nested_before = s.nested_time();
    // Differentiate the gradient again: the adjoint of the adjoint solve is nested work.
    let _ = tape.grad(g[0].sum(), &[z0, w]).unwrap();
    consistent(&s);
    assert!(s.nested().nfe > 0);
    assert!(s.nested_time() > nested_before);
    assert_eq!(s.forward_time(), forward);
    // The second gradient also pulls back through the original solve's outputs (the
    // adjoint started from them), which is first-order work: the backward clock can only
    // have run on.
    assert!(s.backward_time() >= backward);
}

#[test]
fn direct_times_are_consistent() {
    let f = field();
    let (z, w) = values();
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = vec![tape.var(z), tape.var(w)];
    let opts = Options::dopri5(1e-6, 1e-6).adjoint(Adjoint::Direct);
    let sol = odeint(&tape, &f, &v[..1], &v[1..], [0.0, 1.0], &opts).unwrap();
    consistent(&sol.stats);
    assert!(sol.stats.forward_time() > Duration::ZERO);
    let _ = tape.grad(sol.last()[0].sum(), &v).unwrap();
    consistent(&sol.stats);
}
