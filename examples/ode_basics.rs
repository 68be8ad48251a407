//! Standard ODE test problems solved with several methods at rtol = atol = 1e-6: the error
//! against the exact (or a tight-tolerance reference) solution, the number of function
//! evaluations and of accepted / rejected steps.
//!
//! Run with `cargo run --release --example ode_basics`.

mod common;

use std::error::Error;

use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, solve, Dynamics, Method, Options};

struct Problem {
    name: &'static str,
    f: Box<dyn Dynamics<f64>>,
    z0: Vec<Tensor<f64>>,
    params: Vec<Tensor<f64>>,
    t1: f64,
    /// Exact final state, or `None` to use a Dopri8 solve at 1e-12.
    exact: Option<Vec<f64>>,
}

fn problems() -> Vec<Problem> {
    let decay = dynamics::<f64, _>(|_tape, _t, z, _p| Ok(vec![-z[0]]));
    let oscillator = dynamics::<f64, _>(|tape: &Tape<f64>, _t, z: &[Var<'_, f64>], _p| {
        Ok(vec![tape.concat_cols(&[
            z[0].slice_cols(1, 2),
            -z[0].slice_cols(0, 1),
        ])])
    });
    let kepler = dynamics::<f64, _>(|tape: &Tape<f64>, _t, z: &[Var<'_, f64>], _p| {
        let q = z[0].slice_cols(0, 2);
        let acc = -(q / (q * q).sum().powf(1.5));
        Ok(vec![tape.concat_cols(&[z[0].slice_cols(2, 4), acc])])
    });
    let vdp = dynamics::<f64, _>(
        |tape: &Tape<f64>, _t, z: &[Var<'_, f64>], p: &[Var<'_, f64>]| {
            let (x, v) = (z[0].slice_cols(0, 1), z[0].slice_cols(1, 2));
            Ok(vec![tape.concat_cols(&[v, p[0] * (1.0 - x * x) * v - x])])
        },
    );
    let linear = dynamics::<f64, _>(|_tape, _t, z, p| Ok(vec![z[0].matmul(p[0])]));
    // Eigenvalues −1 and −1e4 in a basis rotated by 30°.
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let (l1, l2) = (-1.0, -1e4);
    let d = [
        c * c * l1 + s * s * l2,
        c * s * (l1 - l2),
        c * s * (l1 - l2),
        s * s * l1 + c * c * l2,
    ];
    let t_stiff = 2.0f64;
    let (u1, u2) = ((c + s) * (-t_stiff).exp(), (c - s) * (l2 * t_stiff).exp());
    let e = 0.5f64;
    let period = 2.0 * std::f64::consts::PI;
    let kepler0 = vec![1.0 - e, 0.0, 0.0, ((1.0 + e) / (1.0 - e)).sqrt()];
    vec![
        Problem {
            name: "decay",
            f: Box::new(decay),
            z0: vec![Tensor::from_f64s(1, 2, &[1.0, 2.0])],
            params: vec![],
            t1: 5.0,
            exact: Some(vec![(-5.0f64).exp(), 2.0 * (-5.0f64).exp()]),
        },
        Problem {
            name: "oscillator",
            f: Box::new(oscillator),
            z0: vec![Tensor::from_f64s(1, 2, &[1.0, 0.0])],
            params: vec![],
            t1: 10.0,
            exact: Some(vec![10f64.cos(), -10f64.sin()]),
        },
        Problem {
            name: "kepler e=0.5",
            f: Box::new(kepler),
            z0: vec![Tensor::from_f64s(1, 4, &kepler0)],
            params: vec![],
            t1: period,
            exact: Some(kepler0.clone()),
        },
        Problem {
            name: "van der pol μ=5",
            f: Box::new(vdp),
            z0: vec![Tensor::from_f64s(1, 2, &[2.0, 0.0])],
            params: vec![Tensor::scalar(5.0)],
            t1: 10.0,
            exact: None,
        },
        Problem {
            name: "stiff (−1, −1e4)",
            f: Box::new(linear),
            z0: vec![Tensor::from_f64s(1, 2, &[1.0, 1.0])],
            params: vec![Tensor::from_f64s(2, 2, &d)],
            t1: t_stiff,
            exact: Some(vec![c * u1 - s * u2, s * u1 + c * u2]),
        },
    ]
}

fn main() {
    common::exit_on_error(run());
}

fn run() -> Result<(), Box<dyn Error>> {
    let tol = 1e-6;
    let methods = [
        Method::Bosh3,
        Method::Dopri5,
        Method::Tsit5,
        Method::Dopri8,
        Method::ImplicitEuler,
        Method::Sdirk2,
    ];
    println!("rtol = atol = {tol:e}\n");
    println!(
        "{:<18} {:<15} {:>10} {:>8} {:>9} {:>9}",
        "problem", "method", "error", "nfe", "accepted", "rejected"
    );
    println!("{}", "-".repeat(74));
    for p in problems() {
        let exact = match &p.exact {
            Some(e) => e.clone(),
            None => {
                let r = solve(
                    p.f.as_ref(),
                    &p.z0,
                    &p.params,
                    &[0.0, p.t1],
                    &Options::dopri8(1e-12, 1e-12),
                )?;
                r.last()[0].as_slice().to_vec()
            }
        };
        for m in methods {
            let opts = Options::new(m).rtol(tol).atol(tol);
            let sol = solve(p.f.as_ref(), &p.z0, &p.params, &[0.0, p.t1], &opts)?;
            let err = sol.last()[0]
                .as_slice()
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            let s = sol.stats;
            println!(
                "{:<18} {:<15} {:>10.2e} {:>8} {:>9} {:>9}",
                p.name,
                m.name(),
                err,
                s.nfe,
                s.accepted,
                s.rejected
            );
        }
        println!();
    }
    Ok(())
}
