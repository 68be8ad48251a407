//! Stiff problems: Robertson's chemical kinetics, Van der Pol with μ = 1000 and a linear system
//! with eigenvalues −1 and −10⁴, solved with Kværnø's L-stable ESDIRK pairs 3(2) and 5(4)
//! next to Alexander's SDIRK2 and the explicit Dopri5. Prints, per problem and method, the
//! error against a tight-tolerance reference (the exact solution for the linear system),
//! function evaluations, accepted/rejected steps, Jacobians (each one LU factorisation),
//! linear solves (LU back-substitutions) and Newton iterations, as a Markdown table.
//!
//! Run with `cargo run --release --example stiff`.

mod common;

use std::error::Error;

use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, solve, Dynamics, Method, OdeError, Options};

struct Problem {
    name: &'static str,
    f: Box<dyn Dynamics<f64>>,
    z0: Vec<f64>,
    t1: f64,
    rtol: f64,
    atol: f64,
    /// Exact final state, or `None` for a Kvaerno5 solve at rtol 1e-12.
    exact: Option<Vec<f64>>,
    /// Step budget of the explicit method (it needs ~|λ_max| t₁ / 3 steps).
    explicit_steps: usize,
}

fn problems() -> Vec<Problem> {
    // Robertson (1966): y₁' = −0.04 y₁ + 10⁴ y₂ y₃, y₃' = 3·10⁷ y₂², y₂' = −y₁' − y₃'.
    let robertson = dynamics::<f64, _>(|tape: &Tape<f64>, _t, z: &[Var<'_, f64>], _p| {
        let (y1, y2, y3) = (
            z[0].slice_cols(0, 1),
            z[0].slice_cols(1, 2),
            z[0].slice_cols(2, 3),
        );
        let r1 = y1 * 0.04;
        let r2 = y2 * y3 * 1e4;
        let r3 = y2.square() * 3e7;
        Ok(vec![tape.concat_cols(&[r2 - r1, r1 - r2 - r3, r3])])
    });
    // Van der Pol, x'' = μ (1 − x²) x' − x with μ = 1000 (period ≈ (3 − 2 ln 2) μ ≈ 1614).
    let vdp = dynamics::<f64, _>(|tape: &Tape<f64>, _t, z: &[Var<'_, f64>], _p| {
        let (x, v) = (z[0].slice_cols(0, 1), z[0].slice_cols(1, 2));
        Ok(vec![tape.concat_cols(&[
            v,
            x.square().rsub_scalar(1.0) * v * 1000.0 - x,
        ])])
    });
    // z' = A z with eigenvalues −1 and −10⁴ in a basis rotated by 30°.
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let (l1, l2) = (-1.0, -1e4);
    let a = [
        c * c * l1 + s * s * l2,
        c * s * (l1 - l2),
        c * s * (l1 - l2),
        s * s * l1 + c * c * l2,
    ];
    let linear = dynamics::<f64, _>(move |tape: &Tape<f64>, _t, z: &[Var<'_, f64>], _p| {
        let at = tape.constant(Tensor::from_f64s(2, 2, &[a[0], a[2], a[1], a[3]]));
        Ok(vec![z[0].matmul(at)])
    });
    let t_lin = 10.0f64;
    // z0 = (1, 1): coordinates u = (c + s, c − s) in the eigenbasis (c, s), (−s, c).
    let (u1, u2) = ((c + s) * (l1 * t_lin).exp(), (c - s) * (l2 * t_lin).exp());
    vec![
        Problem {
            name: "Robertson, t ∈ [0, 40]",
            f: Box::new(robertson),
            z0: vec![1.0, 0.0, 0.0],
            t1: 40.0,
            rtol: 1e-6,
            atol: 1e-10,
            exact: None,
            explicit_steps: 2_000_000,
        },
        Problem {
            name: "Van der Pol μ = 1000, t ∈ [0, 3000]",
            f: Box::new(vdp),
            z0: vec![2.0, 0.0],
            t1: 3000.0,
            rtol: 1e-6,
            atol: 1e-8,
            exact: None,
            explicit_steps: 2_000_000,
        },
        Problem {
            name: "linear, λ = −1, −10⁴, t ∈ [0, 10]",
            f: Box::new(linear),
            z0: vec![1.0, 1.0],
            t1: t_lin,
            rtol: 1e-6,
            atol: 1e-8,
            exact: Some(vec![c * u1 - s * u2, s * u1 + c * u2]),
            explicit_steps: 2_000_000,
        },
    ]
}

fn main() {
    common::exit_on_error(run());
}

fn run() -> Result<(), Box<dyn Error>> {
    let methods = [
        Method::Dopri5,
        Method::Sdirk2,
        Method::Kvaerno3,
        Method::Kvaerno5,
    ];
    println!(
        "| problem | method | error | NFE | steps (rejected) | Jacobians = LU | linear solves \
         | Newton iterations |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for p in problems() {
        let z0 = vec![Tensor::from_f64s(1, p.z0.len(), &p.z0)];
        let exact = match &p.exact {
            Some(e) => e.clone(),
            None => {
                let opts = Options::new(Method::Kvaerno5)
                    .rtol(1e-12)
                    .atol(p.atol * 1e-4);
                let r = solve(p.f.as_ref(), &z0, &[], &[0.0, p.t1], &opts)?;
                r.last()[0].as_slice().to_vec()
            }
        };
        for m in methods {
            let mut opts = Options::new(m).rtol(p.rtol).atol(p.atol);
            if !m.is_implicit() {
                opts = opts.max_steps(p.explicit_steps);
            }
            let sol = match solve(p.f.as_ref(), &z0, &[], &[0.0, p.t1], &opts) {
                Ok(s) => s,
                Err(OdeError::MaxSteps { t, steps }) => {
                    println!(
                        "| {} | {m} | gave up: {steps} steps reached t = {t:.3} | | | | | |",
                        p.name
                    );
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            // Error in units of the tolerance, componentwise, against the reference.
            let err = sol.last()[0]
                .as_slice()
                .iter()
                .zip(&exact)
                .map(|(a, b)| (a - b).abs() / (p.atol + p.rtol * b.abs()))
                .fold(0.0, f64::max);
            let st = sol.stats;
            println!(
                "| {} | {m} | {err:.2} × tol | {} | {} ({}) | {} | {} | {} |",
                p.name,
                st.nfe,
                st.accepted,
                st.rejected,
                st.njac,
                st.linear_solves,
                st.newton_iters
            );
        }
    }
    Ok(())
}
