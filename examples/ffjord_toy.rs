//! FFJORD on a 2-D toy density (Grathwohl et al. 2019): a continuous normalizing flow trained
//! by maximum likelihood with Hutchinson's trace estimator and the adjoint method.
//!
//! ```sh
//! cargo run --release --example ffjord_toy                       # 8gaussians, defaults
//! cargo run --release --example ffjord_toy -- --data checkerboard --iters 2000 --solver dopri5
//! ```
//!
//! Prints a progress line (iteration, loss, forward/backward function evaluations, time per
//! iteration), the test negative log-likelihood in nats with the exact trace, and writes
//! `weights.safetensors` (right after training), `data.png`, `samples.png`, `density.png`,
//! `panels.png` (the three side by side, with axes and colour bars; data and samples on one
//! count scale) and `loss.png` (the training loss per iteration) to the output folder. Flags are checked before training starts, the output
//! folder included.

mod common;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use autodiff::{Element, Tape};
use clap::{Parser, ValueEnum};
use flows::cnf::{Cnf, Mode};
use flows::nn::{Act, OdeNet};
use flows::optim::{Adam, Optimizer};
use flows::plot::{self, Extent, Figure, LinePlot, Panel, Series};
use flows::trace::{Probe, Trace};
use flows::{data, Params};
use ode::{Adjoint, Method, Options};
use rand::SeedableRng;
use rand_pcg::Pcg64;

use common::cli::{self, Widths};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Solver {
    Rk4,
    Dopri5,
    Tsit5,
    Bosh3,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TraceArg {
    /// Hutchinson's estimator with Gaussian probes.
    Gaussian,
    /// Hutchinson's estimator with Rademacher probes.
    Rademacher,
    /// The exact trace (d vector-Jacobian products).
    Exact,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AdjointArg {
    Backsolve,
    Checkpointed,
    Direct,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dtype {
    F32,
    F64,
}

#[derive(Parser, Debug)]
#[command(about = "Train FFJORD on a 2-D toy density")]
struct Args {
    /// Toy dataset: 8gaussians, 2spirals, checkerboard, moons, pinwheel, swissroll, circles, rings.
    #[arg(long, default_value = "8gaussians", value_parser = cli::toy_name)]
    data: String,
    /// Training iterations (the default takes 1–2 minutes on 2 cores).
    #[arg(long, default_value_t = 1500)]
    iters: usize,
    /// Batch size.
    #[arg(long, default_value_t = 512, value_parser = cli::positive_usize)]
    batch: usize,
    /// Hidden widths of the ConcatSquash ODE net, e.g. 64-64-64.
    #[arg(long, default_value = "64-64-64", value_parser = cli::hidden_widths)]
    dims: Widths,
    /// ODE solver used in training.
    #[arg(long, value_enum, default_value = "rk4")]
    solver: Solver,
    /// Steps of a fixed-step solver per solve.
    #[arg(long, default_value_t = 10, value_parser = cli::positive_usize)]
    steps: usize,
    /// Relative and absolute tolerance of adaptive solvers.
    #[arg(
        long,
        default_value_t = 1e-5,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    tol: f64,
    /// Trace estimator in training (evaluation always uses the exact trace).
    #[arg(long, value_enum, default_value = "gaussian")]
    trace: TraceArg,
    /// Adjoint strategy.
    #[arg(long, value_enum, default_value = "backsolve")]
    adjoint: AdjointArg,
    /// End time T (learned, starting from this value).
    #[arg(
        long,
        default_value_t = 0.5,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    end_time: f64,
    /// Adam learning rate.
    #[arg(
        long,
        default_value_t = 1e-3,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    lr: f64,
    /// Element type.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Seed of data, initialisation and probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a progress line every this many iterations.
    #[arg(long, default_value_t = 50, value_parser = cli::positive_usize)]
    log_every: usize,
    /// Test points for the final negative log-likelihood.
    #[arg(long, default_value_t = 5000, value_parser = cli::positive_usize)]
    test_size: usize,
    /// Output folder for the pictures and the trained weights (created, and checked to be
    /// writable, before training).
    #[arg(long, default_value = "out/ffjord_toy")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(match args.dtype {
        Dtype::F32 => run::<f32>(&args),
        Dtype::F64 => run::<f64>(&args),
    });
}

fn run<E: Element>(args: &Args) -> Result<(), Box<dyn Error>> {
    cli::prepare_output_dir("--out", &args.out)?;
    let mut rng = Pcg64::seed_from_u64(args.seed);
    let mut params = Params::<E>::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &args.dims.0, Act::Tanh, &mut rng);
    let train_opts = match args.solver {
        Solver::Rk4 => Options::fixed(Method::Rk4, args.steps),
        Solver::Dopri5 => Options::dopri5(E::from_f64(args.tol), E::from_f64(args.tol)),
        Solver::Tsit5 => Options::tsit5(E::from_f64(args.tol), E::from_f64(args.tol)),
        Solver::Bosh3 => Options::bosh3(E::from_f64(args.tol), E::from_f64(args.tol)),
    }
    .adjoint(match args.adjoint {
        AdjointArg::Backsolve => Adjoint::Backsolve,
        AdjointArg::Checkpointed => Adjoint::Checkpointed { checkpoints: 4 },
        AdjointArg::Direct => Adjoint::Direct,
    })
    .seminorm(true);
    let trace = match args.trace {
        TraceArg::Gaussian => Trace::hutchinson(Probe::Gaussian),
        TraceArg::Rademacher => Trace::hutchinson(Probe::Rademacher),
        TraceArg::Exact => Trace::Exact,
    };
    let eval_tol = E::from_f64(1e-5);
    let cnf = Cnf::new(net)
        .learnable_end_time(&mut params, "sqrt_end_time", E::from_f64(args.end_time))
        .trace(trace)
        .train_opts(train_opts)
        .eval_opts(Options::dopri5(eval_tol, eval_tol))
        .seed(args.seed.wrapping_add(1));
    let mut opt = Adam::new(args.lr);
    println!(
        "ffjord_toy: {} ({}), ConcatSquash 2-{}-2 tanh, {} parameters, batch {}, {:?} solver, {:?} trace, {:?} adjoint",
        args.data,
        E::NAME,
        args.dims,
        params.num_elements(),
        args.batch,
        args.solver,
        args.trace,
        args.adjoint
    );

    let tape = Tape::<E>::new();
    let start = Instant::now();
    let mut window = (0.0, 0usize, 0usize, 0usize);
    let mut losses = Vec::with_capacity(args.iters);
    for it in 1..=args.iters {
        let t0 = Instant::now();
        let x = data::toy::<E, _>(&args.data, args.batch, &mut rng)?;
        tape.clear();
        let p = params.vars(&tape);
        let xv = tape.constant(x);
        let lp = cnf.log_prob(&tape, &p, xv, Mode::Train)?;
        let loss = -lp.log_prob.mean();
        let grads = tape.grad(loss, &p)?;
        opt.step(&mut params, &grads);
        let (fwd, bwd) = lp.stats.iter().fold((0, 0), |(f, b), s| {
            (f + s.forward().nfe, b + s.backward().nfe)
        });
        losses.push(loss.item().to_f64());
        window.0 += loss.item().to_f64();
        window.1 += fwd;
        window.2 += bwd;
        window.3 += 1;
        if it % args.log_every == 0 || it == args.iters {
            let k = window.3 as f64;
            println!(
                "iter {it:>5}  loss {:>8.4}  nfe fwd {:>5.1} bwd {:>5.1}  T {:.3}  {:>6.1} ms/iter  ({:.0} s)",
                window.0 / k,
                window.1 as f64 / k,
                window.2 as f64 / k,
                cnf.end_time_value(&params).to_f64(),
                t0.elapsed().as_secs_f64() * 1e3,
                start.elapsed().as_secs_f64()
            );
            window = (0.0, 0, 0, 0);
        }
    }
    let train_s = start.elapsed().as_secs_f64();
    // The weights first: they are the expensive result, and a later failure (evaluation,
    // pictures) must not lose them.
    let weights = args.out.join("weights.safetensors");
    params.save(&weights)?;
    println!("wrote {}", weights.display());

    // Test NLL with the exact trace and a tight adaptive solve.
    let test = data::toy::<E, _>(&args.data, args.test_size, &mut rng)?;
    let lp = cnf.log_prob_values(&params, &test)?;
    let nll = -lp.as_slice().iter().map(|v| v.to_f64()).sum::<f64>() / args.test_size as f64;
    println!(
        "training took {train_s:.1} s; test NLL {nll:.4} nats ({} points, exact trace)",
        args.test_size
    );

    let ext = Extent::square(4.0);
    let res = 200;
    let grid = plot::grid::<E>(ext, res);
    let logp = cnf.log_prob_values(&params, &grid)?;
    let dens: Vec<f64> = logp.as_slice().iter().map(|v| v.to_f64().exp()).collect();
    let cell = (ext.xmax - ext.xmin) * (ext.ymax - ext.ymin) / (res * res) as f64;
    println!(
        "density integrates to {:.4} over [-4, 4]²",
        dens.iter().sum::<f64>() * cell
    );
    let (samples, _) = cnf.sample(&params, 20_000, 2, &mut rng)?;
    let shown = data::toy::<E, _>(&args.data, 20_000, &mut rng)?;
    let panels = Figure::new()
        .panel(Panel::histogram("data", &shown, ext, res))
        .panel(Panel::histogram("samples", &samples, ext, res))
        .panel(Panel::density("density", &dens, ext, res));
    // The single pictures keep the scales of the panels, so they match them exactly.
    let scales = panels.scales();
    for (name, panel, scale) in [
        (
            "data.png",
            Panel::histogram("data", &shown, ext, res),
            scales[0],
        ),
        (
            "samples.png",
            Panel::histogram("samples", &samples, ext, res),
            scales[1],
        ),
        (
            "density.png",
            Panel::density("density", &dens, ext, res),
            scales[2],
        ),
    ] {
        Figure::new()
            .panel(panel.with_scale(scale))
            .save(args.out.join(name))?;
    }
    panels.save(args.out.join("panels.png"))?;
    let loss = Series::from_values("per iteration", &losses);
    let window = (args.iters / 30).max(1);
    LinePlot::new(format!("ffjord_toy: {} training loss", args.data))
        .y_label("loss (nats)")
        .series(loss.clone())
        .series(Series {
            name: format!("mean of last {window}"),
            ..loss.moving_average(window)
        })
        .save(args.out.join("loss.png"))?;
    println!(
        "wrote data.png, samples.png, density.png, panels.png and loss.png to {}",
        args.out.display()
    );
    Ok(())
}
