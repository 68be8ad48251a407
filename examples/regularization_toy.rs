//! Regularized neural ODEs on a 2-D toy density: the FFJORD model of `ffjord_toy` trained with
//! an adaptive solver four ways — plain, RNODE (kinetic energy + Jacobian Frobenius norm,
//! Finlay et al. 2020), STEER (random end time, Ghosh et al. 2020) and both — to compare the
//! number of function evaluations (NFE) the solver needs against the test likelihood.
//!
//! ```sh
//! cargo run --release --example regularization_toy                 # 8gaussians, defaults
//! cargo run --release --example regularization_toy -- --iters 1000 --data checkerboard
//! cargo run --release --example regularization_toy -- --runs plain,rnode --lambda-k 0.05
//! ```
//!
//! Every run starts from the same initial weights and sees the same batches: ConcatSquash
//! 2-64-64-64-2 tanh, batch 512, Adam 1e-3, learnable end time T (from 0.5), Hutchinson's
//! Gaussian trace estimator, dopri5 at rtol = atol = 1e-5 with the backsolve adjoint and the
//! seminorm, the log-density and regularizer channels left out of step-size control. RNODE adds
//! `λ_K ∫‖f‖² + λ_J ∫‖εᵀ∂f/∂z‖²` to the loss (λ = 0.01 each by default); STEER integrates each
//! training batch to `T + u`, `u ~ U(−b, b)` (b = 0.25 = T₀/2 by default).
//!
//! Prints a table of the test NLL (nats, exact trace, dopri5 1e-5), the forward and backward
//! NFE of a training step averaged over the last `--avg-last` iterations, the NFE of the test
//! evaluation, the time per iteration, the learned T, and the kinetic energy and Jacobian
//! Frobenius norm of the learned dynamics on the test points (exact). Writes
//! `{run}_density.png`, `{run}_samples.png`, `panels.png` (data, then each run's density, the
//! densities on one colour scale so they compare value for value) and `curves_nll.png` /
//! `curves_nfe.png` (each run's training NLL and forward NFE per iteration, smoothed) to the
//! output folder, with `{run}_train.csv`: the shared training loop's log of every metric of
//! every iteration, from which the curves and the averages are read back.
//!
//! The default of 800 iterations keeps the four runs within about 4–5 minutes on the
//! two-core machine this was written on: an adaptive step costs ~30 ms at initialisation and
//! ~90 ms after 1000 iterations of the plain run, whose NFE grows as it trains (1000 plain
//! iterations took 74 s). The densities are recognisable but not converged; longer runs
//! (`--iters 3000`) show the effect of the regularizers on the NFE better.
//!
//! Flags are checked before the first run starts, the output folder included.

mod common;

use std::error::Error;
use std::path::PathBuf;

use autodiff::{Element, Tape, Tensor};
use clap::{Parser, ValueEnum};
use flows::cnf::{Cnf, Mode};
use flows::nn::{Act, OdeNet};
use flows::optim::Adam;
use flows::plot::{self, read_csv_series, Extent, Figure, LinePlot, Panel, Series};
use flows::regularizers::Reg;
use flows::trace::{Probe, Trace};
use flows::train::{Step, Trainer};
use flows::{data, Params};
use ode::{Adjoint, Options};
use rand::SeedableRng;
use rand_pcg::Pcg64;

use common::cli::{self, FlagError, Widths};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Run {
    /// No regularization.
    Plain,
    /// Kinetic energy and Jacobian Frobenius norm (Finlay et al. 2020).
    Rnode,
    /// Random end time (Ghosh et al. 2020).
    Steer,
    /// RNODE and STEER together.
    Both,
}

impl Run {
    fn name(self) -> &'static str {
        match self {
            Run::Plain => "plain",
            Run::Rnode => "rnode",
            Run::Steer => "steer",
            Run::Both => "rnode+steer",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Run::Both => "both",
            r => r.name(),
        }
    }

    fn rnode(self) -> bool {
        matches!(self, Run::Rnode | Run::Both)
    }

    fn steer(self) -> bool {
        matches!(self, Run::Steer | Run::Both)
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dtype {
    F32,
    F64,
}

#[derive(Parser, Debug)]
#[command(about = "Train FFJORD on a 2-D toy plain, with RNODE, with STEER and with both")]
struct Args {
    /// Toy dataset: 8gaussians, 2spirals, checkerboard, moons, pinwheel, swissroll, circles, rings.
    #[arg(long, default_value = "8gaussians", value_parser = cli::toy_name)]
    data: String,
    /// Training iterations per run.
    #[arg(long, default_value_t = 800)]
    iters: usize,
    /// Which runs, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "plain,rnode,steer,both"
    )]
    runs: Vec<Run>,
    /// Batch size.
    #[arg(long, default_value_t = 512, value_parser = cli::positive_usize)]
    batch: usize,
    /// Hidden widths of the ConcatSquash ODE net, e.g. 64-64-64.
    #[arg(long, default_value = "64-64-64", value_parser = cli::hidden_widths)]
    dims: Widths,
    /// rtol = atol of the training solver (dopri5).
    #[arg(
        long,
        default_value_t = 1e-5,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    tol: f64,
    /// Initial (learnable) end time T.
    #[arg(
        long,
        default_value_t = 0.5,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    end_time: f64,
    /// Weight λ_K of the kinetic energy ∫‖f‖² (RNODE runs).
    #[arg(
        long,
        default_value_t = 0.01,
        value_parser = cli::non_negative_f64,
        allow_negative_numbers = true
    )]
    lambda_k: f64,
    /// Weight λ_J of the Jacobian Frobenius norm ∫‖εᵀ∂f/∂z‖² (RNODE runs).
    #[arg(
        long,
        default_value_t = 0.01,
        value_parser = cli::non_negative_f64,
        allow_negative_numbers = true
    )]
    lambda_j: f64,
    /// STEER's half-width b: T is drawn from U(T − b, T + b) (STEER runs; needs b < T).
    #[arg(
        long,
        default_value_t = 0.25,
        value_parser = cli::non_negative_f64,
        allow_negative_numbers = true
    )]
    steer_b: f64,
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
    /// Seed of data, initialisation, probes and end times (the same for every run).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a progress line every this many iterations.
    #[arg(long, default_value_t = 50, value_parser = cli::positive_usize)]
    log_every: usize,
    /// NFE and time per iteration are averaged over this many last iterations.
    #[arg(long, default_value_t = 50, value_parser = cli::positive_usize)]
    avg_last: usize,
    /// Test points for the NLL and the regularizers of the learned dynamics.
    #[arg(long, default_value_t = 5000, value_parser = cli::positive_usize)]
    test_size: usize,
    /// Output folder for the pictures (created, and checked to be writable, before training).
    #[arg(long, default_value = "out/regularization_toy")]
    out: PathBuf,
}

/// What one run measured.
struct Row {
    run: Run,
    nll: f64,
    nfe_fwd: f64,
    nfe_bwd: f64,
    nfe_test: usize,
    ms: f64,
    end_time: f64,
    kinetic: f64,
    frobenius: f64,
    train_s: f64,
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(match args.dtype {
        Dtype::F32 => run_all::<f32>(&args),
        Dtype::F64 => run_all::<f64>(&args),
    });
}

/// The checks that involve more than one flag (each flag alone is checked by clap).
fn check_flags(args: &Args) -> Result<(), FlagError> {
    // Cnf::steer panics unless b < T; say so before any run instead of in the third one.
    if args.runs.iter().any(|r| r.steer()) && args.steer_b >= args.end_time {
        return Err(FlagError {
            flag: "--steer-b",
            message: format!(
                "STEER needs a half-width smaller than --end-time ({}), got {}",
                args.end_time, args.steer_b
            ),
        });
    }
    Ok(())
}

fn run_all<E: Element>(args: &Args) -> Result<(), Box<dyn Error>> {
    check_flags(args)?;
    cli::prepare_output_dir("--out", &args.out)?;
    let hidden = &args.dims.0;
    println!(
        "regularization_toy: {} ({}), ConcatSquash 2-{}-2 tanh, batch {}, {} iterations per run, \
         dopri5 tol {:e} (backsolve, seminorm), λ_K = {}, λ_J = {}, STEER b = {}",
        args.data,
        E::NAME,
        args.dims,
        args.batch,
        args.iters,
        args.tol,
        args.lambda_k,
        args.lambda_j,
        args.steer_b
    );
    let ext = Extent::square(4.0);
    let res = 200;
    let mut rng = Pcg64::seed_from_u64(args.seed.wrapping_add(1000));
    let test = data::toy::<E, _>(&args.data, args.test_size, &mut rng)?;
    let shown = data::toy::<E, _>(&args.data, 20_000, &mut rng)?;
    let mut panels = Figure::new().panel(Panel::histogram("data", &shown, ext, res));
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    for &run in &args.runs {
        let (row, dens, curve) = train::<E>(args, hidden, run, &test, ext, res)?;
        rows.push(row);
        panels.push(dens);
        curves.push((run, curve));
    }
    // All densities on one scale (the default for panels of one kind): a run whose density
    // is more spread out looks fainter, as it is.
    panels.save(args.out.join("panels.png"))?;
    // Per-iteration values of an adaptive solve and a stochastic loss are noisy: smoothed.
    let window = (args.iters / 20).max(1);
    let mut nll_plot = LinePlot::new(format!("training NLL (mean of last {window} iterations)"))
        .y_label("NLL (nats)");
    let mut nfe_plot = LinePlot::new(format!(
        "forward NFE per training step (mean of last {window})"
    ))
    .y_label("NFE");
    for (run, c) in &curves {
        nll_plot.push(Series::from_values(run.name(), &c.nll).moving_average(window));
        nfe_plot.push(Series::from_values(run.name(), &c.nfe_fwd).moving_average(window));
    }
    nll_plot.save(args.out.join("curves_nll.png"))?;
    nfe_plot.save(args.out.join("curves_nfe.png"))?;

    println!();
    println!(
        "{:<12} {:>9} {:>8} {:>8} {:>8} {:>9} {:>6} {:>9} {:>9} {:>8}",
        "run",
        "test NLL",
        "NFE fwd",
        "NFE bwd",
        "NFE test",
        "ms/iter",
        "T",
        "R_K test",
        "R_J test",
        "train s"
    );
    for r in &rows {
        println!(
            "{:<12} {:>9.4} {:>8.1} {:>8.1} {:>8} {:>9.1} {:>6.3} {:>9.4} {:>9.4} {:>8.1}",
            r.run.name(),
            r.nll,
            r.nfe_fwd,
            r.nfe_bwd,
            r.nfe_test,
            r.ms,
            r.end_time,
            r.kinetic,
            r.frobenius,
            r.train_s
        );
    }
    println!(
        "(NFE fwd/bwd and ms/iter: means over the last {} training iterations; NFE test: one \
         exact-trace dopri5 evaluation of the {} test points; R_K = ∫‖f‖², R_J = ∫‖∂f/∂z‖²_F, \
         test means)",
        args.avg_last.min(args.iters),
        args.test_size
    );
    println!(
        "wrote {{run}}_density.png, {{run}}_samples.png, panels.png (data, then {}), \
         curves_nll.png and curves_nfe.png to {}",
        rows.iter()
            .map(|r| r.run.name())
            .collect::<Vec<_>>()
            .join(", "),
        args.out.display()
    );
    Ok(())
}

fn train<E: Element>(
    args: &Args,
    hidden: &[usize],
    run: Run,
    test: &Tensor<E>,
    ext: Extent,
    res: usize,
) -> Result<(Row, Panel, Curves), Box<dyn Error>> {
    // The same initial weights, batches, probes and STEER draws for every run.
    let mut rng = Pcg64::seed_from_u64(args.seed);
    let mut params = Params::<E>::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 2, hidden, Act::Tanh, &mut rng);
    let tol = E::from_f64(args.tol);
    let eval_tol = E::from_f64(1e-5);
    let mut cnf = Cnf::new(net)
        .learnable_end_time(&mut params, "sqrt_end_time", E::from_f64(args.end_time))
        .trace(Trace::hutchinson(Probe::Gaussian))
        .train_opts(
            Options::dopri5(tol, tol)
                .adjoint(Adjoint::Backsolve)
                .seminorm(true),
        )
        .eval_opts(Options::dopri5(eval_tol, eval_tol))
        .seed(args.seed.wrapping_add(1));
    if run.rnode() {
        cnf = cnf
            .regularize(Reg::Kinetic, E::from_f64(args.lambda_k))
            .regularize(Reg::JacobianFrobenius, E::from_f64(args.lambda_j));
    }
    if run.steer() {
        cnf = cnf.steer(E::from_f64(args.steer_b));
    }
    let mut opt = Adam::new(args.lr);
    println!("\n== {} ==", run.name());

    // The shared loop writes every metric of every iteration to the run's CSV log; the
    // curves and the averages over the last iterations are read back from it.
    let tape = Tape::<E>::new();
    let csv = args.out.join(format!("{}_train.csv", run.file()));
    let report = Trainer::new(args.iters as u64)
        .log_every(args.log_every as u64)
        .csv(&csv)
        .run(
            &mut params,
            &mut opt,
            &mut rng,
            None,
            |params, rng, _it| -> Result<Step<E>, Box<dyn Error>> {
                let x = data::toy::<E, _>(&args.data, args.batch, rng)?;
                tape.clear();
                let p = params.vars(&tape);
                let lp = cnf.log_prob(&tape, &p, tape.constant(x), Mode::Train)?;
                let loss = lp.loss();
                let grads = tape.grad(loss, &p)?;
                Ok(Step {
                    loss: loss.item().to_f64(),
                    grads,
                    metrics: common::metrics::flow_metrics(&lp),
                })
            },
        )?;
    let train_s = report.seconds;
    let log = read_csv_series(&csv, "iter", &["nll", "nfe_fwd", "nfe_bwd", "step_time"])?;
    let column = |k: usize| -> Vec<f64> { log[k].points.iter().map(|p| p.1).collect() };
    let tail_mean = |k: usize| {
        let v = column(k);
        let n = args.avg_last.min(v.len()).max(1);
        v[v.len() - n..].iter().sum::<f64>() / n as f64
    };
    let curve = Curves {
        nll: column(0),
        nfe_fwd: column(1),
    };

    // Test NLL with the exact trace and the evaluation solver; the same call integrates the
    // (exact) kinetic energy and Jacobian Frobenius norm of the learned dynamics.
    let measure = cnf
        .clone()
        .regularizers(&[(Reg::Kinetic, E::ZERO), (Reg::JacobianFrobenius, E::ZERO)]);
    let tape = Tape::<E>::new();
    let p = tape.no_grad(|| params.vars(&tape));
    let lp = measure.log_prob(&tape, &p, tape.constant(test.clone()), Mode::Eval)?;
    let nll = lp.nll().item().to_f64();
    let nfe_test = lp.stats.iter().map(|s| s.forward().nfe).sum();
    let term = |r: Reg| lp.term(r).map_or(f64::NAN, |t| t.value.item().to_f64());
    let row = Row {
        run,
        nll,
        nfe_fwd: tail_mean(1),
        nfe_bwd: tail_mean(2),
        nfe_test,
        ms: tail_mean(3) * 1e3,
        end_time: cnf.end_time_value(&params).to_f64(),
        kinetic: term(Reg::Kinetic),
        frobenius: term(Reg::JacobianFrobenius),
        train_s,
    };
    println!(
        "{}: test NLL {nll:.4} nats, {train_s:.1} s of training",
        run.name()
    );

    let grid = plot::grid::<E>(ext, res);
    let logp = cnf.log_prob_values(&params, &grid)?;
    let dens: Vec<f64> = logp.as_slice().iter().map(|v| v.to_f64().exp()).collect();
    let dens_panel = Panel::density(run.name(), &dens, ext, res);
    let (samples, _) = cnf.sample(&params, 20_000, 2, &mut rng)?;
    // The single pictures carry their own scales: they are looked at one at a time.
    Figure::new()
        .panel(dens_panel.clone())
        .save(args.out.join(format!("{}_density.png", run.file())))?;
    Figure::new()
        .panel(Panel::histogram(
            format!("{} samples", run.name()),
            &samples,
            ext,
            res,
        ))
        .save(args.out.join(format!("{}_samples.png", run.file())))?;
    Ok((row, dens_panel, curve))
}

/// What a run logged at every training iteration.
#[derive(Default)]
struct Curves {
    /// The batch NLL (without the regularizers).
    nll: Vec<f64>,
    /// Function evaluations of the forward solve.
    nfe_fwd: Vec<f64>,
}
