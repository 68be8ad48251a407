//! Backward function evaluations with and without the seminorm (Kidger, Chen & Lyons 2021,
//! "Hey, that's not an ODE"), under both error norms, on a trained FFJORD model and on the
//! spiral neural ODE.
//!
//! The seminorm leaves the parameter-gradient channels `a_θ` of the adjoint `[z, a, a_θ]` out
//! of step-size control. Under `Norm::ChannelMax` (the default: the largest channel's RMS
//! error) that can only lower each step's error norm; under `Norm::Rms` (one RMS over all
//! entries) the many small `a_θ` errors had diluted the mean, and leaving them out can raise
//! it. Each row solves the same batch with the same probes: forward NFE, backward NFE without
//! and with the seminorm, and the relative error of the gradient against a Dopri5 solve at
//! 1e-11 (full norm).
//!
//! ```sh
//! cargo run --release --example seminorm
//! ```

mod common;

use std::error::Error;
use std::rc::Rc;
use std::time::Instant;

use clap::Parser;
use flows::prelude::*;
use ode::{solve, Norm};

use common::cli;

#[derive(Parser, Debug)]
#[command(about = "Backward NFE with and without the seminorm, per error norm")]
struct Args {
    /// Training iterations of the CNF (RK4 ×10, Hutchinson, Backsolve; f64).
    #[arg(long, default_value_t = 300)]
    iters: usize,
    /// Training batch of the CNF.
    #[arg(long, default_value_t = 256, value_parser = cli::positive_usize)]
    batch: usize,
    /// Points in the batch the CNF gradients are measured on.
    #[arg(long, default_value_t = 512, value_parser = cli::positive_usize)]
    eval_batch: usize,
    /// Training iterations of the spiral neural ODE (Dopri5 1e-6, seminorm).
    #[arg(long, default_value_t = 1500)]
    spiral_iters: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(run(&args));
}

/// One measured configuration: forward NFE, backward NFE, backward ms, the gradient.
struct Measured {
    fwd: usize,
    bwd: usize,
    bwd_ms: f64,
    grad: Vec<Tensor<f64>>,
}

/// `‖a − b‖ / ‖b‖` over all parameters.
fn rel_err(a: &[Tensor<f64>], b: &[Tensor<f64>]) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.as_slice().iter().zip(y.as_slice()) {
            num += (p - q) * (p - q);
            den += q * q;
        }
    }
    (num / den).sqrt()
}

/// Prints the rows of one model: per tolerance and norm, without and with the seminorm.
fn table(
    name: &str,
    tols: &[f64],
    mut measure: impl FnMut(&Options<f64>) -> Result<Measured, Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    let reference = measure(&Options::dopri5(1e-11, 1e-11))?.grad;
    for &tol in tols {
        for norm in [Norm::Rms, Norm::ChannelMax] {
            let base = Options::dopri5(tol, tol)
                .adjoint(Adjoint::Backsolve)
                .norm(norm);
            let full = measure(&base.clone().seminorm(false))?;
            let semi = measure(&base.seminorm(true))?;
            println!(
                "| {name} | {tol:.0e} | {} | {} | {} | {} | {:+.1}% | {:.1e} | {:.1e} | {:.1} / {:.1} |",
                match norm {
                    Norm::Rms => "one RMS",
                    Norm::ChannelMax => "per channel",
                },
                full.fwd,
                full.bwd,
                semi.bwd,
                100.0 * (semi.bwd as f64 / full.bwd as f64 - 1.0),
                rel_err(&full.grad, &reference),
                rel_err(&semi.grad, &reference),
                full.bwd_ms,
                semi.bwd_ms,
            );
        }
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let mut rng = Pcg64::seed_from_u64(args.seed);
    println!("| model | tol | norm | NFE fwd | NFE bwd, full | NFE bwd, seminorm | change | grad error, full | grad error, seminorm | bwd ms full / semi |");
    println!("|---|---|---|---|---|---|---|---|---|---|");

    // A small FFJORD model on 8gaussians, trained with fixed RK4 steps (fast), measured with
    // adaptive Dopri5 on one batch and one set of Hutchinson probes.
    let start = Instant::now();
    let mut params = Params::<f64>::new();
    let net = OdeNet::concat_squash(
        &mut params,
        "odefunc",
        2,
        &[64, 64, 64],
        Act::Tanh,
        &mut rng,
    );
    let cnf = Cnf::new(net)
        .end_time(0.5)
        .trace(Trace::hutchinson(Probe::Gaussian))
        .train_opts(Options::fixed(Method::Rk4, 10).adjoint(Adjoint::Backsolve))
        .seed(args.seed.wrapping_add(1));
    let mut opt = Adam::new(1e-3);
    let tape = Tape::<f64>::new();
    let mut last = f64::NAN;
    for _ in 0..args.iters {
        tape.clear();
        let p = params.vars(&tape);
        let x = tape.constant(data::eight_gaussians(args.batch, &mut rng));
        let loss = -cnf.log_prob(&tape, &p, x, Mode::Train)?.log_prob.mean();
        opt.step(&mut params, &tape.grad(loss, &p)?);
        last = loss.item();
    }
    eprintln!(
        "FFJORD 2-64-64-64-2: {} parameters, {} iterations, last batch NLL {last:.3} ({:.0} s)",
        params.num_elements(),
        args.iters,
        start.elapsed().as_secs_f64()
    );
    let x = data::eight_gaussians::<f64, _>(args.eval_batch, &mut rng);
    let cnf_name = format!("FFJORD 2-64-64-64-2, {} its", args.iters);
    table(&cnf_name, &[1e-5, 1e-7], |opts| {
        let c = cnf.clone().seed(7).train_opts(opts.clone());
        let tape = Tape::<f64>::new();
        let p = params.vars(&tape);
        let lp = c.log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)?;
        let loss = -lp.log_prob.mean();
        let grad = tape.grad(loss, &p)?;
        let s = &lp.stats[0];
        Ok(Measured {
            fwd: s.forward().nfe,
            bwd: s.backward().nfe,
            bwd_ms: s.backward_time().as_secs_f64() * 1e3,
            grad,
        })
    })?;

    // The spiral neural ODE of `neural_ode_spiral`: dz/dt = MLP(z³), trained briefly on
    // segments of the true trajectory, measured on 20 segments of 10 observations.
    let start = Instant::now();
    let (observed, seg_times) = spiral_data()?;
    let mut sp = Params::<f64>::new();
    let mlp = Mlp::new(&mut sp, "net", &[2, 50, 2], Act::Tanh, &mut rng);
    let model: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(move |_tape, _t, z, p| {
        Ok(vec![mlp.forward(p, z[0].powi(3))])
    }));
    let train = Options::dopri5(1e-6, 1e-6).seminorm(true);
    let mut opt = Adam::new(1e-3);
    let draw = |rng: &mut Pcg64| -> Vec<usize> {
        (0..20)
            .map(|_| rng.random_range(0..observed.len() - seg_times.len()))
            .collect()
    };
    let mut last = f64::NAN;
    for _ in 0..args.spiral_iters {
        let starts = draw(&mut rng);
        let tape = Tape::<f64>::new();
        let p = sp.vars(&tape);
        let loss = spiral_loss(&tape, &model, &p, &observed, &starts, &seg_times, &train)?.0;
        opt.step(&mut sp, &tape.grad(loss, &p)?);
        last = loss.item();
    }
    eprintln!(
        "spiral MLP 2-50-2: {} iterations, last batch loss {last:.4} ({:.0} s)",
        args.spiral_iters,
        start.elapsed().as_secs_f64()
    );
    let starts = draw(&mut rng);
    let name = format!("spiral MLP 2-50-2, {} its", args.spiral_iters);
    table(&name, &[1e-6, 1e-8], |opts| {
        let tape = Tape::<f64>::new();
        let p = sp.vars(&tape);
        let (loss, stats) = spiral_loss(&tape, &model, &p, &observed, &starts, &seg_times, opts)?;
        let grad = tape.grad(loss, &p)?;
        Ok(Measured {
            fwd: stats.forward().nfe,
            bwd: stats.backward().nfe,
            bwd_ms: stats.backward_time().as_secs_f64() * 1e3,
            grad,
        })
    })?;
    println!("\nCPU: {}", cpu_name());
    Ok(())
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

/// The observed spiral states and the times of one segment.
type SpiralData = (Vec<[f64; 2]>, Vec<f64>);

/// The spiral dz/dt = z³ A, A = [[−0.1, 2], [−2, −0.1]], from (2, 0), observed at 1000 times
/// on [0, 25] (Dopri8 at 1e-10), and the times of a 10-observation segment.
fn spiral_data() -> Result<SpiralData, Box<dyn Error>> {
    let a = Tensor::from_f64s(2, 2, &[-0.1, 2.0, -2.0, -0.1]);
    let truth = dynamics::<f64, _>(|_tape, _t, z, p| Ok(vec![z[0].powi(3).matmul(p[0])]));
    let times: Vec<f64> = (0..1000).map(|i| 25.0 * i as f64 / 999.0).collect();
    let z0 = Tensor::from_f64s(1, 2, &[2.0, 0.0]);
    let obs = solve(&truth, &[z0], &[a], &times, &Options::dopri8(1e-10, 1e-10))?;
    let observed = obs
        .states
        .iter()
        .map(|s| [s[0].get(0, 0), s[0].get(0, 1)])
        .collect();
    Ok((observed, times[..10].to_vec()))
}

/// Mean absolute error of the segments starting at `starts`, through one `odeint` node.
fn spiral_loss<'t>(
    tape: &'t Tape<f64>,
    model: &Rc<dyn Dynamics<f64>>,
    p: &[Var<'t, f64>],
    observed: &[[f64; 2]],
    starts: &[usize],
    seg_times: &[f64],
    opts: &Options<f64>,
) -> Result<(Var<'t, f64>, ode::OdeStats), Box<dyn Error>> {
    let n = starts.len();
    let zb = Tensor::from_fn(n, 2, |i, j| observed[starts[i]][j]);
    let sol = odeint(
        tape,
        model,
        &[tape.constant(zb)],
        p,
        seg_times.to_vec(),
        opts,
    )?;
    let mut loss = tape.scalar(0.0);
    for (k, state) in sol.states.iter().enumerate() {
        let target = tape.constant(Tensor::from_fn(n, 2, |i, j| observed[starts[i] + k][j]));
        loss = loss + (state[0] - target).abs().mean();
    }
    Ok((loss * (1.0 / seg_times.len() as f64), sol.stats))
}
