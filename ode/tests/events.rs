//! Terminal events: the bouncing ball's first impact time and its gradients against the closed
//! form for every adjoint strategy, gradients against finite differences where the condition
//! depends on t and θ, and the typed failures (no root, the root finder's iteration cap).

use std::rc::Rc;

use autodiff::{Tape, Tensor, Var};
use ode::{
    dynamics, event_fn, odeint_event, Adjoint, Dynamics, Event, EventError, Method, OdeError,
    Options,
};

/// A ball under gravity: z = [x, v] (one 1×2 channel), x' = v, v' = −g with g = p[0].
fn ball() -> Rc<dyn Dynamics<f64>> {
    Rc::new(dynamics(
        |tape: &Tape<f64>, _t, z: &[Var<'_, f64>], p: &[Var<'_, f64>]| {
            Ok(vec![tape.concat_cols(&[z[0].slice_cols(1, 2), -p[0]])])
        },
    ))
}

/// The ground: x = 0.
fn ground() -> Event<f64> {
    Event::new(event_fn(|_tape, _t, z, _p| Ok(z[0].slice_cols(0, 1))))
}

const STRATEGIES: [Adjoint; 3] = [
    Adjoint::Backsolve,
    Adjoint::Direct,
    Adjoint::Checkpointed { checkpoints: 3 },
];

#[test]
fn bouncing_ball_impact_time_and_gradients_match_the_closed_form() {
    // Thrown up at u from height h: x(t) = h + u t − g t²/2 = 0 at t* = (u + s)/g with
    // s = √(u² + 2gh), so dt*/dh = 1/s, dt*/du = (1 + u/s)/g, dt*/dg = h/(g s) − t*/g; at
    // impact v* = u − g t* = −s (dv*/dh = −g/s, dv*/du = −u/s), and x* = 0 whatever the inputs.
    let f = ball();
    let (h, u, g) = (2.0f64, 1.5f64, 9.81f64);
    let s = (u * u + 2.0 * g * h).sqrt();
    let t_star = (u + s) / g;
    let want_t = [1.0 / s, (1.0 + u / s) / g, h / (g * s) - t_star / g];
    for method in [Method::Dopri5, Method::Tsit5, Method::Dopri8] {
        for strategy in STRATEGIES {
            let opts = Options::new(method)
                .rtol(1e-10)
                .atol(1e-10)
                .adjoint(strategy);
            let tape = Tape::new();
            let z0 = tape.var(Tensor::from_f64s(1, 2, &[h, u]));
            let gv = tape.var(Tensor::scalar(g));
            let hit = odeint_event(&tape, &f, &[z0], &[gv], 0.0, 10.0, &ground(), &opts).unwrap();
            let what = format!("{method} {strategy:?}");
            assert!(
                (hit.t.item() - t_star).abs() < 1e-12,
                "{what}: t* = {}",
                hit.t.item()
            );
            let zs = hit.state[0].value();
            assert!(
                zs.get(0, 0).abs() < 1e-10 && (zs.get(0, 1) + s).abs() < 1e-9,
                "{what}: {zs:?}"
            );

            let gt = tape.grad(hit.t, &[z0, gv]).unwrap();
            let got_t = [gt[0].get(0, 0), gt[0].get(0, 1), gt[1].item()];
            for (k, (a, b)) in got_t.iter().zip(&want_t).enumerate() {
                assert!((a - b).abs() < 1e-8, "{what}: dt*/dinput {k}: {a} vs {b}");
            }
            let x = hit.state[0].slice_cols(0, 1).sum();
            let gx = tape.grad(x, &[z0, gv]).unwrap();
            assert!(
                gx[0].max_abs() < 1e-8 && gx[1].max_abs() < 1e-8,
                "{what}: dx*/d· ≠ 0"
            );
            let v = hit.state[0].slice_cols(1, 2).sum();
            let gvel = tape.grad(v, &[z0]).unwrap();
            assert!((gvel[0].get(0, 0) + g / s).abs() < 1e-8, "{what}: dv*/dh");
            assert!((gvel[0].get(0, 1) + u / s).abs() < 1e-8, "{what}: dv*/du");
            assert!(hit.iterations > 0 && hit.locate.accepted > 0);
        }
    }
}

/// Linear drag and a moving, parametrised floor: x' = v, v' = −g − k v, event
/// x − (floor + 0.3 t) = 0 with θ = (g, k, floor), so the condition depends on t and θ.
fn dragged() -> (Rc<dyn Dynamics<f64>>, Event<f64>) {
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(
        |tape: &Tape<f64>, _t, z: &[Var<'_, f64>], p: &[Var<'_, f64>]| {
            let v = z[0].slice_cols(1, 2);
            Ok(vec![tape.concat_cols(&[v, -p[0] - p[1] * v])])
        },
    ));
    let floor = Event::new(event_fn(
        |_tape, t, z: &[Var<'_, f64>], p: &[Var<'_, f64>]| {
            Ok(z[0].slice_cols(0, 1) - p[2] - t * 0.3)
        },
    ));
    (f, floor)
}

/// The event time and the event state's velocity for inputs `[h, u, g, k, floor]`, with
/// their gradients.
fn dragged_event(x: &[f64; 5], strategy: Adjoint) -> (f64, f64, Vec<f64>, Vec<f64>) {
    let (f, floor) = dragged();
    let opts = Options::dopri5(1e-12, 1e-12).adjoint(strategy);
    let tape = Tape::new();
    let z0 = tape.var(Tensor::from_f64s(1, 2, &x[..2]));
    let p: Vec<Var<'_, f64>> = x[2..]
        .iter()
        .map(|&v| tape.var(Tensor::scalar(v)))
        .collect();
    let hit = odeint_event(&tape, &f, &[z0], &p, 0.0, 20.0, &floor, &opts).unwrap();
    let mut wrt = vec![z0];
    wrt.extend(&p);
    let flat = |gs: Vec<Tensor<f64>>| -> Vec<f64> {
        gs.iter().flat_map(|t| t.as_slice().to_vec()).collect()
    };
    let v = hit.state[0].slice_cols(1, 2).sum();
    let gt = flat(tape.grad(hit.t, &wrt).unwrap());
    let gv = flat(tape.grad(v, &wrt).unwrap());
    (hit.t.item(), v.item(), gt, gv)
}

#[test]
fn event_gradients_match_finite_differences_when_the_condition_depends_on_t_and_theta() {
    let x0 = [3.0, 2.0, 9.81, 0.4, -0.5];
    for strategy in [Adjoint::Backsolve, Adjoint::Direct] {
        let (t, _, gt, gv) = dragged_event(&x0, strategy);
        assert!(t > 0.5 && t < 5.0);
        for i in 0..5 {
            let eps = 1e-5;
            let (mut xp, mut xm) = (x0, x0);
            xp[i] += eps;
            xm[i] -= eps;
            let (tp, vp, _, _) = dragged_event(&xp, strategy);
            let (tm, vm, _, _) = dragged_event(&xm, strategy);
            let (fd_t, fd_v) = ((tp - tm) / (2.0 * eps), (vp - vm) / (2.0 * eps));
            eprintln!(
                "{strategy:?} input {i}: dt* {} vs fd {fd_t}, dv* {} vs fd {fd_v}",
                gt[i], gv[i]
            );
            assert!(
                (gt[i] - fd_t).abs() < 1e-6 * (1.0 + fd_t.abs()),
                "{strategy:?} dt*/dx{i}"
            );
            assert!(
                (gv[i] - fd_v).abs() < 1e-6 * (1.0 + fd_v.abs()),
                "{strategy:?} dv*/dx{i}"
            );
        }
    }
}

#[test]
fn no_root_is_a_typed_error() {
    let f = ball();
    let opts = Options::dopri5(1e-8, 1e-8);
    let tape = Tape::new();
    let z0 = tape.var(Tensor::from_f64s(1, 2, &[2.0, 0.0]));
    let g = tape.var(Tensor::scalar(9.81));
    // The ball has not landed by t = 0.5 (it lands at 0.639).
    let err = odeint_event(&tape, &f, &[z0], &[g], 0.0, 0.5, &ground(), &opts).unwrap_err();
    match err.downcast_ref::<EventError>() {
        Some(EventError::NoEvent { t0, t1, g }) => {
            assert_eq!((*t0, *t1), (0.0, 0.5));
            assert!(g.0 == 2.0 && g.1 > 0.0);
        }
        other => panic!("expected NoEvent, got {other:?} ({err})"),
    }
    assert!(err.to_string().contains("no event"), "{err}");
    // Invalid times and options are the solvers' typed errors, before any work.
    let err = odeint_event(&tape, &f, &[z0], &[g], 1.0, 1.0, &ground(), &opts).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<OdeError>(),
        Some(OdeError::InvalidTimes(_))
    ));
    let err = odeint_event(
        &tape,
        &f,
        &[z0],
        &[g],
        0.0,
        2.0,
        &ground().xtol(-1.0),
        &opts,
    )
    .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<OdeError>(),
        Some(OdeError::InvalidOptions(_))
    ));
    let fixed = Options::fixed(Method::Rk4, 10);
    let err = odeint_event(&tape, &f, &[z0], &[g], 0.0, 2.0, &ground(), &fixed).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<OdeError>(),
        Some(OdeError::InvalidOptions(_))
    ));
}

#[test]
fn the_root_finder_stops_at_its_iteration_cap() {
    let (f, floor) = dragged();
    let opts = Options::dopri5(1e-10, 1e-10);
    let tape = Tape::new();
    let z0 = tape.var(Tensor::from_f64s(1, 2, &[3.0, 2.0]));
    let p: Vec<Var<'_, f64>> = [9.81, 0.4, -0.5].iter().map(|&v| tape.scalar(v)).collect();
    for cap in [0, 1, 2] {
        let err = odeint_event(
            &tape,
            &f,
            &[z0],
            &p,
            0.0,
            20.0,
            &floor.clone().max_iter(cap),
            &opts,
        )
        .unwrap_err();
        match err.downcast_ref::<EventError>() {
            Some(EventError::RootNotConverged {
                bracket,
                iterations,
            }) => {
                assert_eq!(*iterations, cap);
                assert!(bracket.0 < bracket.1);
            }
            other => panic!("cap {cap}: expected RootNotConverged, got {other:?}"),
        }
    }
    // With the default cap it converges in a few iterations.
    let hit = odeint_event(&tape, &f, &[z0], &p, 0.0, 20.0, &floor, &opts).unwrap();
    eprintln!("{} iterations", hit.iterations);
    assert!(hit.iterations <= 10, "{} iterations", hit.iterations);
}

#[test]
fn events_work_in_single_precision() {
    let f: Rc<dyn Dynamics<f32>> = Rc::new(dynamics(
        |tape: &Tape<f32>, _t, z: &[Var<'_, f32>], p: &[Var<'_, f32>]| {
            Ok(vec![tape.concat_cols(&[z[0].slice_cols(1, 2), -p[0]])])
        },
    ));
    let ground = Event::new(event_fn(|_tape, _t, z: &[Var<'_, f32>], _p| {
        Ok(z[0].slice_cols(0, 1))
    }));
    let (h, u, g) = (2.0f64, 1.5f64, 9.81f64);
    let s = (u * u + 2.0 * g * h).sqrt();
    for strategy in [Adjoint::Backsolve, Adjoint::Direct] {
        let tape = Tape::<f32>::new();
        let z0 = tape.var(Tensor::from_f64s(1, 2, &[h, u]));
        let gv = tape.var(Tensor::scalar(g as f32));
        let opts = Options::tsit5(1e-5f32, 1e-5).adjoint(strategy);
        let hit = odeint_event(&tape, &f, &[z0], &[gv], 0.0, 10.0, &ground, &opts).unwrap();
        let t = f64::from(hit.t.item());
        assert!((t - (u + s) / g).abs() < 1e-5, "{strategy:?}: t* = {t}");
        let gr = tape.grad(hit.t, &[z0]).unwrap();
        let (dh, du) = (f64::from(gr[0].get(0, 0)), f64::from(gr[0].get(0, 1)));
        assert!((dh - 1.0 / s).abs() < 1e-4 && (du - (1.0 + u / s) / g).abs() < 1e-4);
    }
}

/// A condition that returns an error ends the search with that error (not a panic, and never a
/// wrong event returned as `Ok`), whether it fails at `t0`, while the steps are scanned, or only
/// near the root.
#[test]
fn a_failing_condition_returns_its_own_error() {
    let f = ball();
    let opts = Options::dopri5(1e-8, 1e-8);
    // Fails once the ball is below `below` (at t0 for below = 3, during the scan for 1, and
    // only inside the bracketing step for 1e-3).
    for below in [3.0, 1.0, 1e-3] {
        let event = Event::new(event_fn(move |_tape, _t, z: &[Var<'_, f64>], _p| {
            let x = z[0].slice_cols(0, 1);
            if x.item() < below {
                return Err(autodiff::Error::new("test condition", "refused"));
            }
            Ok(x)
        }));
        let tape = Tape::new();
        let z0 = tape.var(Tensor::from_f64s(1, 2, &[2.0, 1.5]));
        let g = tape.var(Tensor::scalar(9.81));
        let err = odeint_event(&tape, &f, &[z0], &[g], 0.0, 10.0, &event, &opts)
            .err()
            .unwrap_or_else(|| panic!("below {below}: a failing condition gave Ok"));
        assert_eq!(err.op, "test condition", "below {below}: {err}");
    }
}
