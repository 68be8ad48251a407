//! Density estimation on real tabular data: FFJORD (Grathwohl et al. 2019) or RNODE (Finlay
//! et al. 2020) on the UCI optical digits shipped with `flows` (1797 images of 8×8 pixels in
//! 0..=16, i.e. 64 dimensions), or on any CSV / `.npy` file.
//!
//! ```sh
//! cargo run --release --example tabular                          # digits, FFJORD
//! cargo run --release --example tabular -- --method rnode
//! cargo run --release --example tabular -- --csv my.csv --header --label-last
//! ```
//!
//! The rows are split 80/10/10 with a fixed seed. Integer data is dequantised (x + u,
//! u ~ U[0, 1), fresh noise every batch) and mapped through RealNVP's logit and a
//! standardisation fitted on the training split; other data is standardised. The map is saved
//! beside the weights (`preprocess.safetensors`), and every log-likelihood printed is in the
//! data's own space (for the digits a density on [0, 17)^64), in nats and bits per dimension.
//! Training runs in the shared loop (`flows::train::Trainer`), which keeps the weights of the
//! best validation NLL and logs every metric of every iteration (the data-space batch NLL
//! `nll_data` among them) to `train.csv`; the test NLL uses the exact trace at
//! a tight tolerance in `f64`. For image-shaped data (d a square) samples and test images are
//! written as image grids.

mod common;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use autodiff::{Element, Tape, Tensor};
use clap::{Parser, ValueEnum};
use flows::cnf::{Cnf, Mode};
use flows::nn::{Act, OdeNet};
use flows::optim::{clip_grad_norm, Adam};
use flows::regularizers::Reg;
use flows::tabular::{self, Nll, Preprocess};
use flows::trace::{Probe, Trace};
use flows::train::{Step, Trainer};
use flows::{data, Params};
use ode::{Adjoint, Method, Options};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use common::cli::{self, FlagError, Widths};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// FFJORD: Hutchinson trace, adaptive Dopri5, backsolve adjoint.
    Ffjord,
    /// RNODE: kinetic + Jacobian-Frobenius penalties, fixed-step RK4.
    Rnode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PreArg {
    /// Dequantise + logit for non-negative integer data, standardise otherwise.
    Auto,
    /// Dequantise + logit (the data must be non-negative integers).
    Logit,
    /// Standardise only.
    Standardize,
}

#[derive(Parser, Debug)]
#[command(about = "FFJORD / RNODE density estimation on the UCI digits or a CSV / .npy file")]
struct Args {
    /// A CSV file of numbers to train on instead of the shipped digits.
    #[arg(long, conflicts_with = "npy")]
    csv: Option<PathBuf>,
    /// A .npy file (2-D, f4 or f8) to train on instead of the shipped digits.
    #[arg(long)]
    npy: Option<PathBuf>,
    /// The CSV file has a header line.
    #[arg(long)]
    header: bool,
    /// Drop the last column of the file (a class label).
    #[arg(long)]
    label_last: bool,
    /// ffjord or rnode.
    #[arg(long, value_enum, default_value = "ffjord")]
    method: MethodArg,
    /// Preprocessing.
    #[arg(long, value_enum, default_value = "auto")]
    preprocess: PreArg,
    /// α of the logit transform logit(α + (1 − 2α)x/K).
    #[arg(long, default_value_t = 0.05, value_parser = alpha)]
    alpha: f64,
    /// Training iterations.
    #[arg(long, default_value_t = 1000, value_parser = cli::positive_usize)]
    iters: usize,
    /// Batch size.
    #[arg(long, default_value_t = 256, value_parser = cli::positive_usize)]
    batch: usize,
    /// Hidden widths of the ConcatSquash ODE net.
    #[arg(long, default_value = "256-256", value_parser = cli::hidden_widths)]
    dims: Widths,
    /// rtol = atol of the adaptive training solve (FFJORD).
    #[arg(long, default_value_t = 1e-4, value_parser = cli::positive_f64)]
    tol: f64,
    /// RK4 steps per solve (RNODE).
    #[arg(long, default_value_t = 8, value_parser = cli::positive_usize)]
    steps: usize,
    /// Weight λ of each RNODE penalty (kinetic, Jacobian Frobenius).
    #[arg(long, default_value_t = 0.01, value_parser = cli::non_negative_f64)]
    lambda: f64,
    /// End time T (learned by FFJORD from this value, fixed for RNODE).
    #[arg(long, default_value_t = 1.0, value_parser = cli::positive_f64)]
    end_time: f64,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = cli::positive_f64)]
    lr: f64,
    /// Validate every this many iterations (and at the end).
    #[arg(long, default_value_t = 100, value_parser = cli::positive_usize)]
    val_every: usize,
    /// rtol = atol of the validation solves (exact trace).
    #[arg(long, default_value_t = 1e-4, value_parser = cli::positive_f64)]
    val_tol: f64,
    /// rtol = atol of the final test solve (exact trace, f64).
    #[arg(long, default_value_t = 1e-6, value_parser = cli::positive_f64)]
    test_tol: f64,
    /// Fractions of the rows held out for validation and test.
    #[arg(long, default_value_t = 0.1, value_parser = cli::fraction)]
    valid_frac: f64,
    /// Fraction of rows held out for the test.
    #[arg(long, default_value_t = 0.1, value_parser = cli::fraction)]
    test_frac: f64,
    /// Seed of the split, initialisation, batches, noise and probes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a progress line every this many iterations.
    #[arg(long, default_value_t = 25, value_parser = cli::positive_usize)]
    log_every: usize,
    /// Output folder (created and checked before training).
    #[arg(long, default_value = "out/tabular")]
    out: PathBuf,
}

fn alpha(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(a) if a > 0.0 && a < 0.5 => Ok(a),
        _ => Err(format!("expected a number in (0, 0.5), got '{s}'")),
    }
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(run(&args));
}

/// The flow of `args` with its parameters (the same layout for any element type, so weights
/// trained in `f32` can be evaluated in `f64`).
fn model<E: Element>(args: &Args, d: usize) -> (Params<E>, Cnf<E>) {
    let mut rng = Pcg64::seed_from_u64(args.seed);
    let mut params = Params::<E>::new();
    let net = OdeNet::concat_squash(
        &mut params,
        "odefunc",
        d,
        &args.dims.0,
        Act::Softplus,
        &mut rng,
    );
    let t = E::from_f64(args.end_time);
    let cnf = Cnf::new(net)
        .seed(args.seed.wrapping_add(1))
        .trace(Trace::hutchinson(Probe::Gaussian));
    let cnf = match args.method {
        MethodArg::Ffjord => cnf
            .learnable_end_time(&mut params, "sqrt_end_time", t)
            .train_opts(
                Options::dopri5(E::from_f64(args.tol), E::from_f64(args.tol))
                    .adjoint(Adjoint::Backsolve)
                    .seminorm(true),
            ),
        MethodArg::Rnode => cnf
            .end_time(t)
            .train_opts(Options::fixed(Method::Rk4, args.steps))
            .regularize(Reg::Kinetic, E::from_f64(args.lambda))
            .regularize(Reg::JacobianFrobenius, E::from_f64(args.lambda)),
    };
    let v = E::from_f64(args.val_tol);
    (params, cnf.eval_opts(Options::dopri5(v, v)))
}

/// Log-densities in data space of `x` (already dequantised), in chunks.
fn data_log_probs<E: Element>(
    cnf: &Cnf<E>,
    params: &Params<E>,
    pre: &Preprocess,
    x: &Tensor<f64>,
) -> Result<Vec<f64>, Box<dyn Error>> {
    let (y, logdet) = pre.forward(&x.cast::<E>())?;
    let lp = cnf.log_prob_values(params, &y)?;
    Ok(lp
        .as_slice()
        .iter()
        .zip(&logdet)
        .map(|(l, j)| l.to_f64() + j)
        .collect())
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    cli::prepare_output_dir("--out", &args.out)?;
    if args.valid_frac <= 0.0 || args.test_frac <= 0.0 || args.valid_frac + args.test_frac >= 0.9 {
        return Err(FlagError {
            flag: "--valid-frac/--test-frac",
            message: format!(
                "need positive fractions leaving at least 10% for training, got {} and {}",
                args.valid_frac, args.test_frac
            ),
        }
        .into());
    }
    let (name, mut x) = match (&args.csv, &args.npy) {
        (Some(p), _) => (p.display().to_string(), data::load_csv(p, args.header)?),
        (_, Some(p)) => (p.display().to_string(), data::load_npy(p)?),
        _ => (
            "UCI digits (shipped)".to_string(),
            tabular::digits()?.pixels,
        ),
    };
    if args.label_last && (args.csv.is_some() || args.npy.is_some()) {
        if x.cols() < 2 {
            return Err(FlagError {
                flag: "--label-last",
                message: format!("{name} has {} column(s), nothing would remain", x.cols()),
            }
            .into());
        }
        let c = x.cols() - 1;
        x = Tensor::from_fn(x.rows(), c, |i, j| x.get(i, j));
    }
    let d = x.cols();
    let levels = tabular::integer_levels(&x);
    let logit = match (args.preprocess, levels) {
        (PreArg::Standardize, _) | (PreArg::Auto, None) => None,
        (_, Some(k)) => Some(k as f64),
        (PreArg::Logit, None) => {
            return Err(FlagError {
                flag: "--preprocess",
                message: format!("logit needs non-negative integer data; {name} is not"),
            }
            .into())
        }
    };
    let split = tabular::split(&x, args.valid_frac, args.test_frac, args.seed)?;
    let mut rng = Pcg64::seed_from_u64(args.seed.wrapping_add(2));
    // Dequantise integer data (train: fresh noise per batch; valid/test: one fixed draw).
    let deq = |t: &Tensor<f64>, rng: &mut Pcg64| {
        if logit.is_some() {
            tabular::dequantize(t, rng)
        } else {
            t.clone()
        }
    };
    let fit_on = deq(&split.train, &mut rng);
    let pre = match logit {
        Some(k) => Preprocess::fit_logit(&fit_on, k, args.alpha)?,
        None => Preprocess::fit_standardize(&fit_on)?,
    };
    pre.save(args.out.join("preprocess.safetensors"))?;
    let valid = deq(&split.valid, &mut rng);
    let test = deq(&split.test, &mut rng);

    let (mut params, cnf) = model::<f32>(args, d);
    let mut opt = Adam::new(args.lr);
    println!(
        "tabular: {name}, {} rows × {d} (train {}, valid {}, test {}), preprocessing {}",
        x.rows(),
        split.train.rows(),
        split.valid.rows(),
        split.test.rows(),
        match pre.logit() {
            Some(l) => format!(
                "dequantise + logit (K = {}, α = {}) + standardise",
                l.levels, l.alpha
            ),
            None => "standardise".into(),
        }
    );
    println!(
        "{:?}: ConcatSquash {d}-{}-{d} softplus, {} parameters, batch {}, {} iterations",
        args.method,
        args.dims,
        params.num_elements(),
        args.batch,
        args.iters
    );

    // The shared loop: validation in data space every --val-every iterations (and after the
    // last) keeps the best weights; every metric of every iteration goes to train.csv.
    let tape = Tape::<f32>::new();
    let start = Instant::now();
    let report = Trainer::new(args.iters as u64)
        .log_every(args.log_every as u64)
        .csv(args.out.join("train.csv"))
        .validate_every(
            args.val_every as u64,
            |p: &Params<f32>| -> Result<f64, Box<dyn Error>> {
                Ok(Nll::from_log_probs(&data_log_probs(&cnf, p, &pre, &valid)?, d).nats)
            },
        )
        .run(
            &mut params,
            &mut opt,
            &mut rng,
            None,
            |params, rng, _it| -> Result<Step<f32>, Box<dyn Error>> {
                let idx: Vec<usize> = (0..args.batch)
                    .map(|_| rng.random_range(0..split.train.rows()))
                    .collect();
                let xb = deq(&tabular::take_rows(&split.train, &idx), rng);
                let (yb, logdet) = pre.forward(&xb.cast::<f32>())?;
                tape.clear();
                let p = params.vars(&tape);
                let lp = cnf.log_prob(&tape, &p, tape.constant(yb), Mode::Train)?;
                let loss = lp.loss();
                // The NLL in the data's own space: the preprocessing's log-determinant added.
                let nll_data =
                    lp.nll().item().to_f64() - logdet.iter().sum::<f64>() / logdet.len() as f64;
                let mut grads = tape.grad(loss, &p)?;
                clip_grad_norm(&mut grads, 100.0);
                let mut metrics = common::metrics::flow_metrics(&lp);
                metrics.set("nll_data", nll_data);
                Ok(Step {
                    loss: loss.item().to_f64(),
                    grads,
                    metrics,
                })
            },
        )?;
    let best_run = report
        .best
        .expect("the trainer validates after the last iteration");
    let (best_val, best_it, best) = (best_run.value, best_run.iteration, best_run.params);
    let train_s = start.elapsed().as_secs_f64();
    best.save(args.out.join("weights.safetensors"))?;
    println!(
        "training took {train_s:.0} s ({:.0} ms/iter); best validation NLL {best_val:.2} nats at iteration {best_it}; wrote weights.safetensors and preprocess.safetensors",
        1e3 * train_s / args.iters as f64
    );

    // Test NLL in f64, exact trace, tight tolerance.
    let (_, cnf64) = model::<f64>(args, d);
    let cnf64 = cnf64.eval_opts(Options::dopri5(args.test_tol, args.test_tol));
    let best64 = best.cast::<f64>();
    let tt = Instant::now();
    let test_nll = Nll::from_log_probs(&data_log_probs(&cnf64, &best64, &pre, &test)?, d);
    println!(
        "test NLL {test_nll} over {} rows (exact trace, dopri5 rtol = atol = {:e}, {:.0} s); total {:.0} s",
        test.rows(),
        args.test_tol,
        tt.elapsed().as_secs_f64(),
        start.elapsed().as_secs_f64()
    );

    let side = (d as f64).sqrt().round() as usize;
    if side * side == d && side >= 2 {
        let hi = pre.logit().map_or(1.0, |l| l.levels);
        let (ys, _) = cnf64.sample(&best64, 64, d, &mut rng)?;
        let xs = pre.inverse(&ys)?;
        let shown = tabular::take_rows(
            &split.test,
            &(0..64.min(split.test.rows())).collect::<Vec<_>>(),
        );
        let lo_hi = match pre.logit() {
            Some(_) => (0.0, hi),
            None => {
                let s = shown.as_slice();
                (
                    s.iter().cloned().fold(f64::INFINITY, f64::min),
                    s.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                )
            }
        };
        tabular::image_grid(&xs, side, side, lo_hi.0, lo_hi.1, 8, 4, 2)?
            .save(args.out.join("samples.png"))?;
        tabular::image_grid(&shown, side, side, lo_hi.0, lo_hi.1, 8, 4, 2)?
            .save(args.out.join("test_images.png"))?;
        println!(
            "wrote samples.png and test_images.png to {}",
            args.out.display()
        );
    }
    Ok(())
}
