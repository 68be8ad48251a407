//! Work–precision of the two step-size controllers, PI (the default, Hairer's coefficients)
//! and integral (torchdiffeq's and diffrax's default), in both views:
//!
//! - at equal tolerance: function evaluations and the error achieved at rtol = atol = 1e-6;
//! - at equal error: the evaluations each controller needs to reach a target error, read off
//!   a sweep of tolerances (1e-2 … 1e-12 in half decades) by log–log interpolation.
//!
//! Problems: the README's decay, harmonic oscillator, Kepler (e = 0.5, one period) and Van
//! der Pol (μ = 5) with Dopri5 and Tsit5; and a CNF (FFJORD 2-64-64-64-2 on 8gaussians, f64)
//! trained with each controller at Dopri5 1e-5 (Backsolve, seminorm), then the exact-trace
//! log-density solve of the model trained with PI swept the same way with both controllers.
//!
//! ```sh
//! cargo run --release --example work_precision
//! ```

mod common;

use std::error::Error;
use std::time::Instant;

use clap::Parser;
use flows::prelude::*;
use ode::{solve, Controller, Stats};

use common::cli;

#[derive(Parser, Debug)]
#[command(about = "Work-precision of the PI and integral step-size controllers")]
struct Args {
    /// Training iterations of the CNF, per controller.
    #[arg(long, default_value_t = 200)]
    iters: usize,
    /// Training batch of the CNF.
    #[arg(long, default_value_t = 256, value_parser = cli::positive_usize)]
    batch: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(run(&args));
}

/// One problem of the README table: dynamics, initial state, parameters, end time and the
/// exact final state (or a Dopri8 solve at 1e-12).
struct Problem {
    name: &'static str,
    f: Box<dyn Dynamics<f64>>,
    z0: Vec<Tensor<f64>>,
    params: Vec<Tensor<f64>>,
    t1: f64,
    exact: Vec<f64>,
}

fn problems() -> Result<Vec<Problem>, Box<dyn Error>> {
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
    let e = 0.5f64;
    let kepler0 = vec![1.0 - e, 0.0, 0.0, ((1.0 + e) / (1.0 - e)).sqrt()];
    let vdp0 = vec![Tensor::from_f64s(1, 2, &[2.0, 0.0])];
    let mu = vec![Tensor::scalar(5.0)];
    let vdp_ref = solve(
        &vdp,
        &vdp0,
        &mu,
        &[0.0, 10.0],
        &Options::dopri8(1e-12, 1e-12),
    )?;
    let vdp_exact = vdp_ref.last()[0].as_slice().to_vec();
    Ok(vec![
        Problem {
            name: "decay",
            f: Box::new(decay),
            z0: vec![Tensor::from_f64s(1, 2, &[1.0, 2.0])],
            params: vec![],
            t1: 5.0,
            exact: vec![(-5.0f64).exp(), 2.0 * (-5.0f64).exp()],
        },
        Problem {
            name: "harmonic oscillator",
            f: Box::new(oscillator),
            z0: vec![Tensor::from_f64s(1, 2, &[1.0, 0.0])],
            params: vec![],
            t1: 10.0,
            exact: vec![10f64.cos(), -10f64.sin()],
        },
        Problem {
            name: "Kepler, e = 0.5",
            f: Box::new(kepler),
            z0: vec![Tensor::from_f64s(1, 4, &kepler0)],
            params: vec![],
            t1: 2.0 * std::f64::consts::PI,
            exact: kepler0.clone(),
        },
        Problem {
            name: "Van der Pol, μ = 5",
            f: Box::new(vdp),
            z0: vdp0,
            params: mu,
            t1: 10.0,
            exact: vdp_exact,
        },
    ])
}

/// One point of a sweep: tolerance, NFE, achieved error, mean scaled error of the steps.
#[derive(Clone, Copy)]
struct Point {
    tol: f64,
    nfe: usize,
    err: f64,
    mean_err: f64,
    accepted: usize,
    rejected: usize,
}

/// The tolerances of a sweep: 10^-lo … 10^-hi in half decades, loose first.
fn tolerances(lo: f64, hi: f64) -> Vec<f64> {
    let n = ((hi - lo) * 2.0).round() as usize;
    (0..=n)
        .map(|i| 10f64.powf(-(lo + i as f64 / 2.0)))
        .collect()
}

/// The NFE at which a sweep reaches error `target`, interpolated linearly in log NFE against
/// log error between the two tolerances (loose to tight) whose errors bracket it first.
fn nfe_at(points: &[Point], target: f64) -> Option<f64> {
    points.windows(2).find_map(|w| {
        let (a, b) = (w[0], w[1]);
        if a.err >= target && b.err <= target && a.err > b.err {
            let s = (a.err.ln() - target.ln()) / (a.err.ln() - b.err.ln());
            Some(((a.nfe as f64).ln() * (1.0 - s) + (b.nfe as f64).ln() * s).exp())
        } else {
            None
        }
    })
}

fn controllers() -> [(&'static str, Controller); 2] {
    [
        ("PI", Controller::pi()),
        ("integral", Controller::integral()),
    ]
}

/// Geometric mean of ratios.
fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

fn fmt_nfe(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.0}"))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let tol_eq = 1e-6;
    let targets = [1e-5, 1e-8];
    let sweep = tolerances(2.0, 12.0);
    // Rows of the two tables, and the ratios integral / PI for the summary.
    let mut eq_tol = Vec::new();
    let mut eq_err = Vec::new();
    let (mut nfe_ratio, mut err_ratio, mut eq_err_ratio) = (Vec::new(), Vec::new(), Vec::new());
    for p in problems()? {
        for method in [Method::Dopri5, Method::Tsit5] {
            let mut runs: Vec<Vec<Point>> = Vec::new();
            for (_, c) in controllers() {
                let mut pts = Vec::new();
                for &tol in &sweep {
                    let o = Options::new(method).rtol(tol).atol(tol).controller(c);
                    let sol = solve(p.f.as_ref(), &p.z0, &p.params, &[0.0, p.t1], &o)?;
                    let err = sol.last()[0]
                        .as_slice()
                        .iter()
                        .zip(&p.exact)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    pts.push(point(tol, &sol.stats, err));
                }
                runs.push(pts);
            }
            let at = |r: &[Point]| {
                *r.iter()
                    .find(|q| (q.tol / tol_eq - 1.0).abs() < 1e-9)
                    .expect("in the sweep")
            };
            let (a, b) = (at(&runs[0]), at(&runs[1]));
            nfe_ratio.push(b.nfe as f64 / a.nfe as f64);
            err_ratio.push(b.err / a.err);
            eq_tol.push(format!(
                "| {} | {} | {} | {} | {:.1e} | {:.1e} | {:.2} | {:.2} |",
                p.name, method, a.nfe, b.nfe, a.err, b.err, a.mean_err, b.mean_err
            ));
            let mut cells = Vec::new();
            for &t in &targets {
                let (x, y) = (nfe_at(&runs[0], t), nfe_at(&runs[1], t));
                if let (Some(x), Some(y)) = (x, y) {
                    eq_err_ratio.push(y / x);
                }
                cells.push(format!(
                    "{} | {} | {}",
                    fmt_nfe(x),
                    fmt_nfe(y),
                    match (x, y) {
                        (Some(x), Some(y)) => format!("{:+.0}%", 100.0 * (y / x - 1.0)),
                        _ => "–".into(),
                    }
                ));
            }
            eq_err.push(format!(
                "| {} | {} | {} |",
                p.name,
                method,
                cells.join(" | ")
            ));
        }
    }

    // The CNF: one training run per controller from the same initialisation and data.
    let mut train_rows = Vec::new();
    let mut cnf_runs: Vec<Vec<Point>> = Vec::new();
    let cnf_sweep = tolerances(2.0, 10.0);
    let mut trained = None;
    for (name, c) in controllers() {
        let mut rng = Pcg64::seed_from_u64(args.seed);
        let mut params = Params::<f64>::new();
        let net = OdeNet::concat_squash(
            &mut params,
            "odefunc",
            2,
            &[64, 64, 64],
            Act::Tanh,
            &mut rng,
        );
        let train = Options::dopri5(1e-5, 1e-5)
            .controller(c)
            .adjoint(Adjoint::Backsolve)
            .seminorm(true);
        let cnf = Cnf::new(net)
            .end_time(0.5)
            .trace(Trace::hutchinson(Probe::Gaussian))
            .train_opts(train)
            .seed(args.seed.wrapping_add(1));
        let mut opt = Adam::new(1e-3);
        let (mut fwd, mut bwd) = (0usize, 0usize);
        let start = Instant::now();
        let tape = Tape::<f64>::new();
        for _ in 0..args.iters {
            tape.clear();
            let p = params.vars(&tape);
            let x = tape.constant(data::eight_gaussians(args.batch, &mut rng));
            let lp = cnf.log_prob(&tape, &p, x, Mode::Train)?;
            let loss = -lp.log_prob.mean();
            opt.step(&mut params, &tape.grad(loss, &p)?);
            fwd += lp.stats[0].forward().nfe;
            bwd += lp.stats[0].backward().nfe;
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / args.iters as f64;
        // Test NLL of each trained model with the same tight evaluation solve.
        let mut test_rng = Pcg64::seed_from_u64(args.seed.wrapping_add(99));
        let test = data::eight_gaussians::<f64, _>(2000, &mut test_rng);
        let reference = cnf
            .clone()
            .eval_opts(Options::dopri5(1e-11, 1e-11).controller(Controller::pi()));
        let ref_lp = reference.log_prob_values(&params, &test)?;
        let nll = -ref_lp.as_slice().iter().sum::<f64>() / 2000.0;
        let k = args.iters as f64;
        train_rows.push(format!(
            "| {name} | {:.1} | {:.1} | {nll:.3} | {ms:.0} |",
            fwd as f64 / k,
            bwd as f64 / k
        ));
        if trained.is_none() {
            trained = Some((cnf, params, test, ref_lp));
        }
    }
    // The log-density solve (exact trace) of the model trained with PI, swept over
    // tolerances with each controller.
    let (cnf, params, test, ref_lp) = trained.expect("trained with PI");
    for (_, c) in controllers() {
        let probe = Tensor::from_fn(512, 2, |i, j| test.get(i, j));
        let ref_probe = Tensor::from_fn(512, 1, |i, _| ref_lp.get(i, 0));
        let mut pts = Vec::new();
        for &tol in &cnf_sweep {
            let m = cnf
                .clone()
                .eval_opts(Options::dopri5(tol, tol).controller(c));
            let tape = Tape::<f64>::new();
            let p = params.vars(&tape);
            let lp = m.log_prob(&tape, &p, tape.constant(probe.clone()), Mode::Eval)?;
            let err = lp
                .log_prob
                .value()
                .as_slice()
                .iter()
                .zip(ref_probe.as_slice())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            pts.push(point(tol, &lp.stats[0].forward(), err));
        }
        cnf_runs.push(pts);
    }
    let cnf_targets = [1e-4, 1e-6];
    let at = |r: &[Point]| {
        *r.iter()
            .find(|q| (q.tol / 1e-5 - 1.0).abs() < 1e-9)
            .expect("in the sweep")
    };
    let (a, b) = (at(&cnf_runs[0]), at(&cnf_runs[1]));
    eq_tol.push(format!(
        "| CNF log-density (trained with PI) | dopri5, 1e-5 | {} | {} | {:.1e} | {:.1e} | {:.2} | {:.2} |",
        a.nfe, b.nfe, a.err, b.err, a.mean_err, b.mean_err
    ));
    let mut cells = Vec::new();
    for &t in &cnf_targets {
        let (x, y) = (nfe_at(&cnf_runs[0], t), nfe_at(&cnf_runs[1], t));
        cells.push(format!(
            "{} | {} | {}",
            fmt_nfe(x),
            fmt_nfe(y),
            match (x, y) {
                (Some(x), Some(y)) => format!("{:+.0}%", 100.0 * (y / x - 1.0)),
                _ => "–".into(),
            }
        ));
    }
    eq_err.push(format!(
        "| CNF log-density (trained with PI), errors {:.0e} and {:.0e} | dopri5 | {} |",
        cnf_targets[0],
        cnf_targets[1],
        cells.join(" | ")
    ));

    println!("Equal tolerance (rtol = atol = {tol_eq:.0e}; the CNF at 1e-5): NFE, max error of the final state (CNF: of log p on 512 test points), mean scaled error of the accepted steps\n");
    println!("| problem | method | NFE PI | NFE integral | error PI | error integral | mean err PI | mean err integral |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &eq_tol {
        println!("{r}");
    }
    println!(
        "\nEqual error: NFE to reach a max error of {:.0e} and {:.0e} (interpolated in the tolerance sweep)\n",
        targets[0], targets[1]
    );
    println!("| problem | method | PI {:.0e} | integral {:.0e} | change | PI {:.0e} | integral {:.0e} | change |", targets[0], targets[0], targets[1], targets[1]);
    println!("|---|---|---|---|---|---|---|---|");
    for r in &eq_err {
        println!("{r}");
    }
    println!(
        "\nREADME problems, integral / PI (geometric means): NFE at equal tolerance {:.2}, error at equal tolerance {:.1}, NFE at equal error {:.2}",
        geomean(&nfe_ratio),
        geomean(&err_ratio),
        geomean(&eq_err_ratio)
    );
    println!(
        "\nCNF training, {} iterations per controller (FFJORD 2-64-64-64-2, 8gaussians, batch {}, f64, Dopri5 1e-5, Backsolve + seminorm, Hutchinson):\n",
        args.iters, args.batch
    );
    println!("| controller | NFE fwd / iter | NFE bwd / iter | test NLL | ms / iter |");
    println!("|---|---|---|---|---|");
    for r in &train_rows {
        println!("{r}");
    }
    println!("\nThe CNF log-density sweep (tolerance: NFE, accepted + rejected steps and max error, PI / integral):\n");
    for (a, b) in cnf_runs[0].iter().zip(&cnf_runs[1]) {
        println!(
            "  {:.0e}: NFE {} / {}, steps {}+{} / {}+{}, error {:.1e} / {:.1e}",
            a.tol, a.nfe, b.nfe, a.accepted, a.rejected, b.accepted, b.rejected, a.err, b.err
        );
    }
    println!("\nCPU: {}", cpu_name());
    Ok(())
}

fn point(tol: f64, s: &Stats, err: f64) -> Point {
    Point {
        tol,
        nfe: s.nfe,
        err,
        mean_err: s.mean_error(),
        accepted: s.accepted,
        rejected: s.rejected,
    }
}

/// The CPU's model name from `/proc/cpuinfo` ("unknown" elsewhere).
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
