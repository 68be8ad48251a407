//! A bouncing ball with terminal events: the impact times of a few bounces, the gradient of
//! the first impact time with respect to the initial height and velocity (against the closed
//! form, for each adjoint strategy), and gradient descent on the throw's speed so that the
//! ball lands at a chosen time (Chen, Amos & Nickel 2021 learn event functions this way).
//!
//! Run with `cargo run --release --example bouncing_ball`.

use std::error::Error;
use std::rc::Rc;

use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, event_fn, odeint_event, Adjoint, Dynamics, Event, Options};

const GRAVITY: f64 = 9.81;

fn main() -> Result<(), Box<dyn Error>> {
    // z = [x, v]: x' = v, v' = −g, with g as a parameter.
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(
        |tape: &Tape<f64>, _t, z: &[Var<'_, f64>], p: &[Var<'_, f64>]| {
            Ok(vec![tape.concat_cols(&[z[0].slice_cols(1, 2), -p[0]])])
        },
    ));
    let ground = Event::new(event_fn(|_tape, _t, z, _p| Ok(z[0].slice_cols(0, 1))));
    let (h, u) = (2.0f64, 1.5f64);

    // The first impact and its gradients, for every strategy.
    let s = (u * u + 2.0 * GRAVITY * h).sqrt();
    let exact = ((u + s) / GRAVITY, 1.0 / s, (1.0 + u / s) / GRAVITY);
    println!("first impact of a ball thrown up at {u} m/s from {h} m:");
    println!(
        "  closed form      t* = {:.12}  dt*/dh = {:.10}  dt*/du = {:.10}",
        exact.0, exact.1, exact.2
    );
    for strategy in [
        Adjoint::Backsolve,
        Adjoint::Checkpointed { checkpoints: 4 },
        Adjoint::Direct,
    ] {
        let opts = Options::tsit5(1e-10, 1e-10).adjoint(strategy);
        let tape = Tape::new();
        let z0 = tape.var(Tensor::from_f64s(1, 2, &[h, u]));
        let g = tape.scalar(GRAVITY);
        let hit = odeint_event(&tape, &f, &[z0], &[g], 0.0, 10.0, &ground, &opts)?;
        let grad = tape.grad(hit.t, &[z0])?;
        println!(
            "  {:<16} t* = {:.12}  dt*/dh = {:.10}  dt*/du = {:.10}  ({} root iterations, {} + {} evaluations)",
            format!("{strategy:?}").split(' ').next().unwrap_or(""),
            hit.t.item(),
            grad[0].get(0, 0),
            grad[0].get(0, 1),
            hit.iterations,
            hit.locate.nfe,
            hit.stats.forward().nfe + hit.stats.backward().nfe,
        );
    }

    // Bounces: restart from each impact with the velocity reversed and damped (a zero of the
    // condition at the start of a search is not an event, so the ball leaves the ground).
    let restitution = 0.8;
    let opts = Options::tsit5(1e-10, 1e-10);
    let (mut t, mut z) = (0.0, [h, u]);
    print!("bounces (restitution {restitution}) at t =");
    for _ in 0..5 {
        let tape = Tape::new();
        let z0 = tape.constant(Tensor::from_f64s(1, 2, &z));
        let g = tape.scalar(GRAVITY);
        let hit = odeint_event(&tape, &f, &[z0], &[g], t, t + 10.0, &ground, &opts)?;
        t = hit.t.item();
        let v = hit.state[0].value().get(0, 1);
        z = [0.0, -restitution * v];
        print!(" {t:.4}");
    }
    println!();

    // Learn the throw's speed so that the ball lands at t = 1.2 s: gradient descent on
    // (t* − 1.2)², with dt*/du from the event's implicit derivative.
    let target = 1.2;
    let mut speed = 0.0;
    let opts = Options::tsit5(1e-10, 1e-10).adjoint(Adjoint::Backsolve);
    for it in 0..6 {
        let tape = Tape::new();
        let z0 = tape.var(Tensor::from_f64s(1, 2, &[h, speed]));
        let g = tape.scalar(GRAVITY);
        let hit = odeint_event(&tape, &f, &[z0], &[g], 0.0, 10.0, &ground, &opts)?;
        let miss = hit.t - tape.scalar(target);
        let loss = (miss * miss).sum();
        let grad = tape.grad(loss, &[z0])?;
        println!(
            "  step {it}: u = {speed:.6} m/s, lands at {:.6} s",
            hit.t.item()
        );
        speed -= 20.0 * grad[0].get(0, 1);
    }
    // Closed form: h + u T − g T²/2 = 0.
    let want = (GRAVITY * target * target / 2.0 - h) / target;
    println!("  closed form: u = {want:.6} m/s");
    Ok(())
}
