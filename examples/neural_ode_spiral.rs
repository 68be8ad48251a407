//! Learning the dynamics of a 2-D spiral with a neural ODE and the adjoint method
//! (the demonstration of Chen et al. 2018).
//!
//! The true system is dz/dt = z³ A with A = [[−0.1, 2], [−2, −0.1]] (row vectors, z³
//! elementwise), z(0) = (2, 0), observed at 1000 times on [0, 25]. The model is
//! dz/dt = MLP(z³) with one tanh hidden layer of 50 units; each iteration integrates a batch of
//! short segments (starts drawn from the trajectory) through one `odeint` node and
//! backpropagates the mean absolute error with the Backsolve adjoint.
//!
//! ```sh
//! cargo run --release --example neural_ode_spiral
//! ```
//!
//! Writes `spiral.png` (true trajectory | fitted trajectory, as histograms of the observed
//! and fitted states on one count scale) and `loss.png` (the batch loss per iteration and the
//! full-trajectory error at each progress line, log scale) to the output folder, which is
//! created and checked to be writable before training. Training runs in the shared loop
//! (`flows::train::Trainer`), with the full-trajectory error as its validation; `train.csv`
//! logs the batch loss, the NFE and that error.

mod common;

use std::error::Error;
use std::path::PathBuf;
use std::rc::Rc;

use autodiff::{Tape, Tensor};
use clap::Parser;
use flows::nn::{Act, Mlp};
use flows::optim::Adam;
use flows::plot::{read_csv_series, Extent, Figure, LinePlot, Panel, Series};
use flows::train::{Metrics, Step, Trainer};
use flows::Params;
use ode::{dynamics, odeint, solve, Adjoint, Dynamics, Options};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use common::cli;

#[derive(Parser, Debug)]
#[command(about = "Fit a neural ODE to a spiral trajectory with the adjoint method")]
struct Args {
    /// Training iterations (the default takes about 12 s).
    #[arg(long, default_value_t = 8000)]
    iters: usize,
    /// Segments per batch.
    #[arg(long, default_value_t = 20, value_parser = cli::positive_usize)]
    batch: usize,
    /// Observations per segment (from 2 to 999: a segment needs a start and an end, and must
    /// fit in the 1000 observations).
    #[arg(long, default_value_t = 10, value_parser = |s: &str| cli::usize_in(s, 2, N_OBS - 1))]
    batch_time: usize,
    /// Adam learning rate.
    #[arg(
        long,
        default_value_t = 1e-3,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    lr: f64,
    /// Relative and absolute tolerance of the Dopri5 solves (forward and adjoint).
    #[arg(
        long,
        default_value_t = 1e-6,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    tol: f64,
    /// Print the full-trajectory loss every this many iterations.
    #[arg(long, default_value_t = 500, value_parser = cli::positive_usize)]
    log_every: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/neural_ode_spiral")]
    out: PathBuf,
}

const N_OBS: usize = 1000;
const T_END: f64 = 25.0;

fn main() {
    let args = Args::parse();
    common::exit_on_error(run(&args));
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    cli::prepare_output_dir("--out", &args.out)?;
    let mut rng = Pcg64::seed_from_u64(args.seed);

    // The true trajectory, from a tight Dopri8 solve.
    let a = Tensor::from_f64s(2, 2, &[-0.1, 2.0, -2.0, -0.1]);
    let truth = dynamics::<f64, _>(|_tape, _t, z, p| Ok(vec![z[0].powi(3).matmul(p[0])]));
    let times: Vec<f64> = (0..N_OBS)
        .map(|i| T_END * i as f64 / (N_OBS - 1) as f64)
        .collect();
    let z0 = Tensor::from_f64s(1, 2, &[2.0, 0.0]);
    let obs = solve(
        &truth,
        std::slice::from_ref(&z0),
        &[a],
        &times,
        &Options::dopri8(1e-10, 1e-10),
    )?;
    let observed: Vec<[f64; 2]> = obs
        .states
        .iter()
        .map(|s| [s[0].get(0, 0), s[0].get(0, 1)])
        .collect();

    let mut params = Params::<f64>::new();
    let net = Mlp::new(&mut params, "net", &[2, 50, 2], Act::Tanh, &mut rng);
    let model: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(move |_tape, _t, z, p| {
        Ok(vec![net.forward(p, z[0].powi(3))])
    }));
    let opts = Options::dopri5(args.tol, args.tol)
        .adjoint(Adjoint::Backsolve)
        .seminorm(true);
    let mut opt = Adam::new(args.lr);
    let seg_times: Vec<f64> = times[..args.batch_time].to_vec();

    println!("neural ODE spiral: MLP 2-50-2 on z³, batch {} segments x {} observations, Dopri5 tol {:e}, backsolve adjoint", args.batch, args.batch_time, args.tol);
    // The shared loop; the full-trajectory error is its validation, every --log-every
    // iterations, and lands in train.csv with the batch loss and the NFE of every iteration.
    let tape = Tape::<f64>::new();
    let csv = args.out.join("train.csv");
    let report = Trainer::new(args.iters as u64)
        .log_every(args.log_every as u64)
        .csv(&csv)
        .validate_every(
            args.log_every as u64,
            |p: &Params<f64>| -> Result<f64, Box<dyn Error>> {
                let full = full_trajectory(p, &model, &z0, &times, &opts)?;
                Ok(full
                    .iter()
                    .zip(&observed)
                    .map(|(p, o)| (p[0] - o[0]).abs() + (p[1] - o[1]).abs())
                    .sum::<f64>()
                    / (2 * N_OBS) as f64)
            },
        )
        .run(
            &mut params,
            &mut opt,
            &mut rng,
            None,
            |params, rng, _it| -> Result<Step<f64>, Box<dyn Error>> {
                // A batch of segments: starting points drawn along the observed trajectory.
                let starts: Vec<usize> = (0..args.batch)
                    .map(|_| rng.random_range(0..N_OBS - args.batch_time))
                    .collect();
                let zb = Tensor::from_fn(args.batch, 2, |i, j| observed[starts[i]][j]);
                tape.clear();
                let p = params.vars(&tape);
                let sol = odeint(
                    &tape,
                    &model,
                    &[tape.constant(zb)],
                    &p,
                    seg_times.clone(),
                    &opts,
                )?;
                let mut loss = None;
                for (k, state) in sol.states.iter().enumerate() {
                    let target = tape.constant(Tensor::from_fn(args.batch, 2, |i, j| {
                        observed[starts[i] + k][j]
                    }));
                    let err = (state[0] - target).abs().mean();
                    loss = Some(match loss {
                        None => err,
                        Some(l) => l + err,
                    });
                }
                let loss = loss.expect("at least one time") * (1.0 / args.batch_time as f64);
                let grads = tape.grad(loss, &p)?;
                let metrics = Metrics::new()
                    .with("nfe_fwd", sol.stats.forward().nfe as f64)
                    .with("nfe_bwd", sol.stats.backward().nfe as f64);
                Ok(Step {
                    loss: loss.item(),
                    grads,
                    metrics,
                })
            },
        )?;
    println!(
        "trained {} iterations in {:.1} s",
        report.iterations, report.seconds
    );
    let batch_losses = report.losses;
    let full_errors = read_csv_series(&csv, "iter", &["val"])?.remove(0).points;

    let fitted = full_trajectory(&params, &model, &z0, &times, &opts)?;
    let ext = Extent::square(2.2);
    let to_tensor = |pts: &[[f64; 2]]| Tensor::from_fn(pts.len(), 2, |i, j| pts[i][j]);
    let res = 240;
    Figure::new()
        .panel(Panel::histogram("true", &to_tensor(&observed), ext, res))
        .panel(Panel::histogram("fitted", &to_tensor(&fitted), ext, res))
        .save(args.out.join("spiral.png"))?;
    let window = (args.iters / 40).max(1);
    LinePlot::new("neural_ode_spiral: training")
        .y_label("mean |error|")
        .log_y(true)
        .series(Series {
            name: format!("batch loss (mean of last {window})"),
            ..Series::from_values("", &batch_losses).moving_average(window)
        })
        .series(Series::new("full trajectory", full_errors))
        .save(args.out.join("loss.png"))?;
    println!(
        "wrote {} (true | fitted) and loss.png",
        args.out.join("spiral.png").display()
    );
    Ok(())
}

/// The model's trajectory from the true initial state at every observation time.
fn full_trajectory(
    params: &Params<f64>,
    model: &Rc<dyn Dynamics<f64>>,
    z0: &Tensor<f64>,
    times: &[f64],
    opts: &Options<f64>,
) -> Result<Vec<[f64; 2]>, Box<dyn Error>> {
    let theta: Vec<Tensor<f64>> = params.tensors().cloned().collect();
    let sol = solve(&**model, std::slice::from_ref(z0), &theta, times, opts)?;
    Ok(sol
        .states
        .iter()
        .map(|s| [s[0].get(0, 0), s[0].get(0, 1)])
        .collect())
}
