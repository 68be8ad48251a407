//! FFJORD on a 2-D toy density (Grathwohl et al. 2019): a continuous normalizing flow trained
//! by maximum likelihood with Hutchinson's trace estimator and the adjoint method, with the
//! choices of FFJORD's `train_toy.py` as flags.
//!
//! ```sh
//! cargo run --release --example ffjord_toy                       # 8gaussians, defaults
//! cargo run --release --example ffjord_toy -- --data checkerboard --iters 2000 --solver dopri5
//! cargo run --release --example ffjord_toy -- --num-blocks 2 --nonlinearity softplus \
//!     --l2int 0.01 --jfrobint 0.01 --train-t false --test-solver tsit5 --test-tol 1e-6
//! ```
//!
//! Flags mirror `train_toy.py`: `--layer-type` (concatsquash, concat), `--nonlinearity`,
//! `--dims`, `--num-blocks`, `--end-time` (`--time-length`), `--train-t true|false`, `--solver`,
//! `--tol`, `--steps`, `--test-solver`, `--test-tol`, `--trace` (FFJORD's `--divergence_fn`
//! and `--rademacher`), `--lr`, `--weight-decay`, and the regularizer weights `--l1int`,
//! `--l2int` (kinetic energy), `--dl2int` (directional derivative) and `--jfrobint`. Every
//! flag is checked before training starts, the output folder included.
//!
//! Training runs in the shared loop ([`flows::train::Trainer`]): progress with an ETA, a CSV
//! log of every metric (`train.csv`), optional validation with early stopping
//! (`--val-every`, `--patience`), checkpoints and `--resume`. Writes `weights.safetensors`
//! right after training, then `data.png`, `samples.png`, `density.png`, `panels.png` (the
//! three side by side with axes and colour bars; data and samples on one count scale) and
//! `loss.png` (the training curve, read back from `train.csv`).

mod common;

use std::error::Error;
use std::path::PathBuf;

use autodiff::{Element, Tape};
use clap::Parser;
use flows::cnf::{Cnf, Mode};
use flows::nn::OdeNet;
use flows::optim::Adam;
use flows::plot::Extent;
use flows::regularizers::Reg;
use flows::train::{Ema, Step};
use flows::{data, Params};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use common::args::{ActArg, AdjointArg, Dtype, LayerArg, LoopArgs, Solver, TraceArg};
use common::cli::{self, Widths};

#[derive(Parser, Debug)]
#[command(about = "Train FFJORD on a 2-D toy density")]
struct Args {
    /// Toy dataset: 8gaussians, 2spirals, checkerboard, moons, pinwheel, swissroll, circles, rings.
    #[arg(long, default_value = "8gaussians", value_parser = cli::toy_name)]
    data: String,
    /// Training iterations (the default takes 1–2 minutes on 2 cores).
    #[arg(long, default_value_t = 1500, value_parser = cli::positive_usize)]
    iters: usize,
    /// Batch size.
    #[arg(long, default_value_t = 512, value_parser = cli::positive_usize)]
    batch: usize,
    /// Time-conditioned layer of the ODE net.
    #[arg(long, value_enum, default_value = "concatsquash")]
    layer_type: LayerArg,
    /// Nonlinearity between the layers.
    #[arg(long, value_enum, default_value = "tanh")]
    nonlinearity: ActArg,
    /// Hidden widths of each block's ODE net, e.g. 64-64-64.
    #[arg(long, default_value = "64-64-64", value_parser = cli::hidden_widths)]
    dims: Widths,
    /// Number of stacked CNF blocks.
    #[arg(long, default_value_t = 1, value_parser = |s: &str| cli::usize_in(s, 1, 16))]
    num_blocks: usize,
    /// End time T of each block (the initial value when it is learned); FFJORD's
    /// `--time_length` (accepted as `--time-length` too).
    #[arg(
        long,
        alias = "time-length",
        default_value_t = 0.5,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    end_time: f64,
    /// Learn the end time T (FFJORD's `--train_T`): `true` or `false`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    train_t: bool,
    /// ODE solver used in training.
    #[arg(long, value_enum, default_value = "rk4")]
    solver: Solver,
    /// Steps of a fixed-step training solver per solve.
    #[arg(long, default_value_t = 10, value_parser = cli::positive_usize)]
    steps: usize,
    /// Relative and absolute tolerance of an adaptive training solver.
    #[arg(long, default_value_t = 1e-5, value_parser = cli::positive_f64, allow_negative_numbers = true)]
    tol: f64,
    /// ODE solver for evaluation (test NLL, density, sampling).
    #[arg(long, value_enum, default_value = "dopri5")]
    test_solver: Solver,
    /// Tolerance of an adaptive test solver (steps: `--steps`).
    #[arg(long, default_value_t = 1e-5, value_parser = cli::positive_f64, allow_negative_numbers = true)]
    test_tol: f64,
    /// Trace estimator in training (evaluation always uses the exact trace).
    #[arg(long, value_enum, default_value = "gaussian")]
    trace: TraceArg,
    /// Adjoint strategy.
    #[arg(long, value_enum, default_value = "backsolve")]
    adjoint: AdjointArg,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = cli::positive_f64, allow_negative_numbers = true)]
    lr: f64,
    /// Adam's (coupled) weight decay, as `torch.optim.Adam(weight_decay=…)`.
    #[arg(long, default_value_t = 0.0, value_parser = cli::non_negative_f64, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Weight of ∫‖f‖₁ dt.
    #[arg(long, default_value_t = 0.0, value_parser = cli::non_negative_f64, allow_negative_numbers = true)]
    l1int: f64,
    /// Weight of ∫‖f‖² dt (kinetic energy, RNODE).
    #[arg(long, default_value_t = 0.0, value_parser = cli::non_negative_f64, allow_negative_numbers = true)]
    l2int: f64,
    /// Weight of ∫‖(∂f/∂z) f + ∂f/∂t‖² dt (directional derivative).
    #[arg(long, default_value_t = 0.0, value_parser = cli::non_negative_f64, allow_negative_numbers = true)]
    dl2int: f64,
    /// Weight of ∫‖∂f/∂z‖²_F dt (Jacobian Frobenius norm, RNODE).
    #[arg(long, default_value_t = 0.0, value_parser = cli::non_negative_f64, allow_negative_numbers = true)]
    jfrobint: f64,
    /// Decay of the moving average of the weights used for validation and evaluation (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = cli::fraction)]
    ema: f64,
    /// Validation points (drawn once from the toy).
    #[arg(long, default_value_t = 2000, value_parser = cli::positive_usize)]
    val_size: usize,
    /// Element type.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Seed of data, initialisation and probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Test points for the final negative log-likelihood.
    #[arg(long, default_value_t = 5000, value_parser = cli::positive_usize)]
    test_size: usize,
    /// Output folder for the pictures, the log, the checkpoint and the trained weights
    /// (created, and checked to be writable, before training).
    #[arg(long, default_value = "out/ffjord_toy")]
    out: PathBuf,
    #[command(flatten)]
    train: LoopArgs,
}

impl Args {
    /// The checks clap cannot make, before any work.
    fn validate(&self) -> Result<(), cli::FlagError> {
        self.train.validate()?;
        if self.ema >= 1.0 {
            return Err(cli::FlagError {
                flag: "--ema",
                message: format!("the decay must be below 1 (got {})", self.ema),
            });
        }
        if self.steps > 100_000 {
            return Err(cli::FlagError {
                flag: "--steps",
                message: format!("{} steps per solve would not finish", self.steps),
            });
        }
        cli::prepare_output_dir("--out", &self.out)
    }

    fn regularizers(&self) -> [(Reg, f64); 4] {
        [
            (Reg::L1, self.l1int),
            (Reg::Kinetic, self.l2int),
            (Reg::DirectionalDerivative, self.dl2int),
            (Reg::JacobianFrobenius, self.jfrobint),
        ]
    }
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(
        args.validate()
            .map_err(Into::into)
            .and_then(|()| dispatch_dtype!(args.dtype, run, &args)),
    );
}

fn run<E: Element>(args: &Args) -> Result<(), Box<dyn Error>> {
    let mut rng = Pcg64::seed_from_u64(args.seed);
    let mut params = Params::<E>::new();
    let nets: Vec<OdeNet> = (0..args.num_blocks)
        .map(|b| {
            // FFJORD's module path for a single block; one prefix per block otherwise.
            let prefix = if args.num_blocks == 1 {
                "odefunc".to_string()
            } else {
                format!("chain.{b}.odefunc")
            };
            OdeNet::new(
                &mut params,
                &prefix,
                2,
                &args.dims.0,
                args.layer_type.kind(),
                args.nonlinearity.act(),
                &mut rng,
            )
        })
        .collect();
    let train_opts = args
        .solver
        .options::<E>(args.steps, args.tol)
        .adjoint(args.adjoint.adjoint())
        .seminorm(true);
    let t0 = E::from_f64(args.end_time);
    let mut cnf = Cnf::stack(nets);
    cnf = if args.train_t {
        cnf.learnable_end_time(&mut params, "sqrt_end_time", t0)
    } else {
        cnf.end_time(t0)
    };
    for (reg, w) in args.regularizers() {
        if w > 0.0 {
            cnf = cnf.regularize(reg, E::from_f64(w));
        }
    }
    let cnf = cnf
        .trace(args.trace.trace())
        .train_opts(train_opts)
        .eval_opts(args.test_solver.options(args.steps, args.test_tol))
        .seed(args.seed.wrapping_add(1));
    let mut opt = Adam::new(args.lr).weight_decay(args.weight_decay);
    let mut ema = (args.ema > 0.0).then(|| Ema::new(&params, args.ema));
    let regs: Vec<String> = args
        .regularizers()
        .iter()
        .filter(|(_, w)| *w > 0.0)
        .map(|(r, w)| format!("{r} {w}"))
        .collect();
    println!(
        "ffjord_toy: {} ({}), {} x {:?} 2-{}-2 {:?}, {} parameters, batch {}, {:?} solver, {:?} trace, {:?} adjoint, T {} ({}), regularizers [{}]",
        args.data,
        E::NAME,
        args.num_blocks,
        args.layer_type,
        args.dims,
        args.nonlinearity,
        params.num_elements(),
        args.batch,
        args.solver,
        args.trace,
        args.adjoint,
        args.end_time,
        if args.train_t { "learned" } else { "fixed" },
        regs.join(", ")
    );

    let val_data = data::toy::<E, _>(
        &args.data,
        args.val_size,
        &mut Pcg64::seed_from_u64(args.seed ^ 0x5EED),
    )?;
    let tape = Tape::<E>::new();
    let report = args
        .train
        .trainer(
            args.iters,
            &args.out,
            |p: &Params<E>| -> Result<f64, Box<dyn Error>> {
                let lp = cnf.log_prob_values(p, &val_data)?;
                Ok(-lp.as_slice().iter().map(|v| v.to_f64()).sum::<f64>() / args.val_size as f64)
            },
        )
        .run(
            &mut params,
            &mut opt,
            &mut rng,
            ema.as_mut(),
            |params, rng, _it| {
                // The probes and STEER's draws come from the run's generator, so a resumed run
                // continues bit for bit.
                cnf.reseed(rng.random());
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
    println!(
        "training: {} iterations in {:.1} s{}",
        report.iterations,
        report.seconds,
        if report.stopped_early {
            " (stopped early)"
        } else {
            ""
        }
    );
    // Evaluate with the validated weights: the best ones when validating periodically,
    // the moving average when there is one.
    let eval: Params<E> = match (&report.best, &ema) {
        (Some(b), _) if args.train.val_every > 0 => {
            println!(
                "best validation NLL {:.4} at iteration {}",
                b.value, b.iteration
            );
            b.params.clone()
        }
        (_, Some(e)) => e.params().clone(),
        _ => params.clone(),
    };
    // The weights first: they are the expensive result, and a later failure (evaluation,
    // pictures) must not lose them.
    let weights = args.out.join("weights.safetensors");
    eval.save(&weights)?;
    println!("wrote {}", weights.display());

    let test = data::toy::<E, _>(&args.data, args.test_size, &mut rng)?;
    let lp = cnf.log_prob_values(&eval, &test)?;
    let nll = -lp.as_slice().iter().map(|v| v.to_f64()).sum::<f64>() / args.test_size as f64;
    println!(
        "test NLL {nll:.4} nats ({} points, exact trace, {:?} solver), T = {:.3}",
        args.test_size,
        args.test_solver,
        cnf.end_time_value(&eval).to_f64()
    );

    let ext = Extent::square(4.0);
    let res = 200;
    let (grid, cell) = common::pictures::density_grid::<E>(ext, res);
    let logp = cnf.log_prob_values(&eval, &grid)?;
    let dens: Vec<f64> = logp.as_slice().iter().map(|v| v.to_f64().exp()).collect();
    println!(
        "density integrates to {:.4} over [-4, 4]²",
        dens.iter().sum::<f64>() * cell
    );
    let (samples, _) = cnf.sample(&eval, 20_000, 2, &mut rng)?;
    let shown = data::toy::<E, _>(&args.data, 20_000, &mut rng)?;
    let mut files =
        common::pictures::write_panels(&args.out, "", &shown, &samples, &dens, ext, res)?;
    files.push(common::pictures::write_training_curve(
        &args.out.join("train.csv"),
        &args.out,
        &format!("ffjord_toy: {} training loss", args.data),
    )?);
    println!(
        "wrote {} and train.csv to {}",
        files.join(", "),
        args.out.display()
    );
    Ok(())
}
