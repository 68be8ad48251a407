//! OT-Flow on a 2-D toy density (Onken, Wu Fung, Li & Ruthotto 2021): a CNF whose field is
//! −∇Φ of a ResNet potential, trained with the loss α_L·L + α_C·C + α_R·R (transport cost,
//! negative log-likelihood, HJB residual), the exact gradient and exact trace of Φ computed
//! through the network's structure, and fixed-step RK4 with direct backpropagation.
//! An FFJORD model (the setup of `examples/ffjord_toy.rs`) is trained on the same data for
//! comparison of test NLL and inference time.
//!
//! ```sh
//! cargo run --release --example otflow_toy                      # 8gaussians, paper defaults
//! cargo run --release --example otflow_toy -- --data checkerboard --iters 3000
//! cargo run --release --example otflow_toy -- --adjoint backsolve --ffjord-iters 0
//! ```
//!
//! Prints progress lines (iteration, loss, L, C, R, time per iteration), the test NLL, L and R
//! with more RK4 steps, the inference times of both models, and writes `panels.png`
//! (data | OT-Flow samples | OT-Flow density | FFJORD samples | FFJORD density, with axes and
//! colour bars; the histograms share one count scale and the densities one density scale) and
//! the individual pictures to the output folder (created, and checked to be writable, before
//! training).

mod common;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use autodiff::{Element, Tape, Tensor};
use clap::{Parser, ValueEnum};
use flows::cnf::{Cnf, Mode};
use flows::nn::{Act, OdeNet};
use flows::optim::{Adam, Optimizer};
use flows::otflow::{OtFlow, OtMode, OtPotential};
use flows::plot::{self, Extent, Figure, Panel};
use flows::trace::{Probe, Trace};
use flows::{data, Params};
use ode::{Adjoint, Method, Options};
use rand::SeedableRng;
use rand_pcg::Pcg64;

use common::cli;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AdjointArg {
    /// Backpropagation through the RK4 steps (discretise-then-optimise), as the paper does.
    Direct,
    /// The adjoint ODE integrated backwards (optimise-then-discretise).
    Backsolve,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Dtype {
    F32,
    F64,
}

#[derive(Parser, Debug)]
#[command(about = "Train OT-Flow on a 2-D toy density and compare with FFJORD")]
struct Args {
    /// Toy dataset: 8gaussians, 2spirals, checkerboard, moons, pinwheel, swissroll, circles, rings.
    #[arg(long, default_value = "8gaussians", value_parser = cli::toy_name)]
    data: String,
    /// Training iterations of OT-Flow.
    #[arg(long, default_value_t = 500)]
    iters: usize,
    /// Batch size of OT-Flow.
    #[arg(long, default_value_t = 1024, value_parser = cli::positive_usize)]
    batch: usize,
    /// ResNet width m.
    #[arg(long, default_value_t = 32, value_parser = cli::positive_usize)]
    width: usize,
    /// ResNet layers M.
    #[arg(long, default_value_t = 2, value_parser = cli::positive_usize)]
    layers: usize,
    /// Weights α_L, α_C, α_R of transport cost, NLL and HJB residual.
    #[arg(long, default_value = "1,100,5", value_parser = cli::three_weights)]
    alpha: [f64; 3],
    /// RK4 steps in training.
    #[arg(long, default_value_t = 8, value_parser = cli::positive_usize)]
    steps: usize,
    /// RK4 steps at test time (NLL, sampling, density).
    #[arg(long, default_value_t = 32, value_parser = cli::positive_usize)]
    test_steps: usize,
    /// Gradient of the solve in training.
    #[arg(long, value_enum, default_value = "direct")]
    adjoint: AdjointArg,
    /// Adam learning rate of OT-Flow.
    #[arg(
        long,
        default_value_t = 5e-2,
        value_parser = cli::positive_f64,
        allow_negative_numbers = true
    )]
    lr: f64,
    /// Divide the learning rate by 10 after this fraction of the iterations.
    #[arg(long, default_value_t = 0.7, value_parser = cli::fraction, allow_negative_numbers = true)]
    decay_at: f64,
    /// FFJORD training iterations (0 skips the comparison).
    #[arg(long, default_value_t = 400)]
    ffjord_iters: usize,
    /// Element type.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// Seed of data and initialisation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print a progress line every this many iterations (FFJORD: every twice as many).
    #[arg(long, default_value_t = 100, value_parser = cli::positive_usize)]
    log_every: usize,
    /// Test points for NLL, L and R.
    #[arg(long, default_value_t = 5000, value_parser = cli::positive_usize)]
    test_size: usize,
    /// Points for the inference timings (sampling and log-density).
    #[arg(long, default_value_t = 5000, value_parser = cli::positive_usize)]
    infer_size: usize,
    /// Output folder.
    #[arg(long, default_value = "out/otflow_toy")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(match args.dtype {
        Dtype::F32 => run::<f32>(&args),
        Dtype::F64 => run::<f64>(&args),
    });
}

/// Mean of a column of log-densities, negated.
fn mean_nll<E: Element>(logp: &Tensor<E>) -> f64 {
    -logp.as_slice().iter().map(|v| v.to_f64()).sum::<f64>() / logp.len() as f64
}

/// Median wall time (ms) of `reps` runs of `f`.
fn time_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut v: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A density panel of `exp logp` on the grid.
fn density_panel<E: Element>(
    title: &str,
    logp: impl Fn(&Tensor<E>) -> Result<Tensor<E>, autodiff::Error>,
    ext: Extent,
    res: usize,
) -> Result<Panel, autodiff::Error> {
    let grid = plot::grid::<E>(ext, res);
    let lp = logp(&grid)?;
    let dens: Vec<f64> = lp.as_slice().iter().map(|v| v.to_f64().exp()).collect();
    Ok(Panel::density(title, &dens, ext, res))
}

fn run<E: Element>(args: &Args) -> Result<(), Box<dyn Error>> {
    cli::prepare_output_dir("--out", &args.out)?;
    let mut rng = Pcg64::seed_from_u64(args.seed);
    let alpha = args.alpha;

    // ---- OT-Flow
    let mut params = Params::<E>::new();
    let net = OtPotential::new(&mut params, "otflow", 2, args.width, args.layers, &mut rng);
    let adjoint = match args.adjoint {
        AdjointArg::Direct => Adjoint::Direct,
        AdjointArg::Backsolve => Adjoint::Backsolve,
    };
    let flow = OtFlow::new(net)
        .alpha(alpha)
        .train_opts(Options::fixed(Method::Rk4, args.steps).adjoint(adjoint))
        .eval_opts(Options::fixed(Method::Rk4, args.test_steps));
    println!(
        "otflow_toy: {} ({}), ResNet m = {} M = {}, {} parameters, batch {}, α = {:?}, RK4 {} steps ({:?}), test {} steps",
        args.data,
        E::NAME,
        args.width,
        args.layers,
        params.num_elements(),
        args.batch,
        alpha,
        args.steps,
        args.adjoint,
        args.test_steps
    );
    let mut opt = Adam::new(args.lr);
    let decay_it = (args.decay_at * args.iters as f64) as usize;
    let tape = Tape::<E>::new();
    let start = Instant::now();
    let mut window = [0.0f64; 5];
    for it in 1..=args.iters {
        if it == decay_it {
            opt = Adam::new(args.lr / 10.0);
        }
        let t0 = Instant::now();
        let x = data::toy::<E, _>(&args.data, args.batch, &mut rng)?;
        tape.clear();
        let p = params.vars(&tape);
        let out = flow.loss(&tape, &p, tape.constant(x), OtMode::Train)?;
        let grads = tape.grad(out.loss, &p)?;
        opt.step(&mut params, &grads);
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        for (w, v) in window.iter_mut().zip([
            out.loss.item().to_f64(),
            out.transport.item().to_f64(),
            out.nll.item().to_f64(),
            out.hjb.item().to_f64(),
            ms,
        ]) {
            *w += v;
        }
        if it % args.log_every == 0 || it == args.iters {
            let k = (it - 1) % args.log_every + 1;
            let [loss, l, c, r, ms] = window.map(|v| v / k as f64);
            println!(
                "iter {it:>5}  loss {loss:>9.3}  L {l:>7.4}  C {c:>7.4}  R {r:>7.4}  {ms:>6.1} ms/iter  ({:.0} s)",
                start.elapsed().as_secs_f64()
            );
            window = [0.0; 5];
        }
    }
    let ot_train_s = start.elapsed().as_secs_f64();
    let ot_ms_iter = ot_train_s * 1e3 / args.iters.max(1) as f64;
    // Saved before evaluation and the FFJORD comparison, so a later failure keeps them.
    let weights = args.out.join("otflow.safetensors");
    params.save(&weights)?;
    println!("wrote {}", weights.display());

    let test = data::toy::<E, _>(&args.data, args.test_size, &mut rng)?;
    let m = flow.evaluate(&params, &test)?;
    println!(
        "OT-Flow: training {ot_train_s:.1} s; test ({} points, RK4 {} steps): NLL {:.4} nats, L {:.4}, R {:.4}",
        args.test_size, args.test_steps, m.nll, m.transport, m.hjb
    );

    // ---- FFJORD, as in examples/ffjord_toy.rs (ConcatSquash 64-64-64 tanh, learnable T from
    // 0.5, Hutchinson's Gaussian estimator, RK4 10 steps with the backsolve adjoint, batch 512,
    // Adam 1e-3; evaluation with the exact trace and Dopri5 at 1e-5).
    let ffjord = if args.ffjord_iters > 0 {
        let mut fparams = Params::<E>::new();
        let fnet = OdeNet::concat_squash(
            &mut fparams,
            "odefunc",
            2,
            &[64, 64, 64],
            Act::Tanh,
            &mut rng,
        );
        let tol = E::from_f64(1e-5);
        let cnf = Cnf::new(fnet)
            .learnable_end_time(&mut fparams, "sqrt_end_time", E::from_f64(0.5))
            .trace(Trace::hutchinson(Probe::Gaussian))
            .train_opts(
                Options::fixed(Method::Rk4, 10)
                    .adjoint(Adjoint::Backsolve)
                    .seminorm(true),
            )
            .eval_opts(Options::dopri5(tol, tol))
            .seed(args.seed.wrapping_add(1));
        let mut fopt = Adam::new(1e-3);
        let start = Instant::now();
        let mut acc = 0.0;
        for it in 1..=args.ffjord_iters {
            let x = data::toy::<E, _>(&args.data, 512, &mut rng)?;
            tape.clear();
            let p = fparams.vars(&tape);
            let lp = cnf.log_prob(&tape, &p, tape.constant(x), Mode::Train)?;
            let loss = -lp.log_prob.mean();
            let grads = tape.grad(loss, &p)?;
            fopt.step(&mut fparams, &grads);
            acc += loss.item().to_f64();
            let every = args.log_every.saturating_mul(2);
            if it % every == 0 || it == args.ffjord_iters {
                let k = (it - 1) % every + 1;
                println!(
                    "ffjord iter {it:>5}  NLL {:>7.4}  ({:.0} s)",
                    acc / k as f64,
                    start.elapsed().as_secs_f64()
                );
                acc = 0.0;
            }
        }
        let train_s = start.elapsed().as_secs_f64();
        let nll = mean_nll(&cnf.log_prob_values(&fparams, &test)?);
        println!(
            "FFJORD: training {train_s:.1} s ({:.1} ms/iter); test NLL {nll:.4} nats (exact trace, Dopri5 1e-5)",
            train_s * 1e3 / args.ffjord_iters as f64
        );
        Some((cnf, fparams, nll, train_s * 1e3 / args.ffjord_iters as f64))
    } else {
        None
    };

    // ---- Inference: log-density of N points and sampling N points (median of 3 runs).
    let n = args.infer_size;
    let pts = data::toy::<E, _>(&args.data, n, &mut rng)?;
    let noise = Tensor::<E>::randn(n, 2, &mut rng);
    let ot_logp_ms = time_ms(3, || flow.log_prob_values(&params, &pts).unwrap());
    let ot_samp_ms = time_ms(3, || flow.transport_back(&params, noise.clone()).unwrap());
    println!();
    println!("inference on {n} points (median of 3)   log-density    sampling    test NLL   train ms/iter");
    println!(
        "OT-Flow (RK4 {:>2} steps, exact trace) {:>10.1} ms {:>8.1} ms {:>10.4} {:>12.1}",
        args.test_steps, ot_logp_ms, ot_samp_ms, m.nll, ot_ms_iter
    );
    if let Some((cnf, fparams, nll, ms_iter)) = &ffjord {
        let f_logp_ms = time_ms(3, || cnf.log_prob_values(fparams, &pts).unwrap());
        let f_samp_ms = time_ms(3, || cnf.transport_back(fparams, noise.clone()).unwrap());
        println!(
            "FFJORD  (Dopri5 1e-5, exact trace)   {f_logp_ms:>10.1} ms {f_samp_ms:>8.1} ms {nll:>10.4} {ms_iter:>12.1}"
        );
    }

    // ---- Pictures.
    let ext = Extent::square(4.0);
    let res = 200;
    let shown = data::toy::<E, _>(&args.data, 20_000, &mut rng)?;
    let data = Panel::histogram("data", &shown, ext, res);
    let (samples, _) = flow.sample(&params, 20_000, 2, &mut rng)?;
    let ot_samples = Panel::histogram("OT-Flow samples", &samples, ext, res);
    let ot_dens = density_panel(
        "OT-Flow density",
        |g| flow.log_prob_values(&params, g),
        ext,
        res,
    )?;
    let mut panels = vec![
        ("data.png", data),
        ("otflow_samples.png", ot_samples),
        ("otflow_density.png", ot_dens),
    ];
    if let Some((cnf, fparams, _, _)) = &ffjord {
        let (fs, _) = cnf.sample(fparams, 20_000, 2, &mut rng)?;
        let f_samples = Panel::histogram("FFJORD samples", &fs, ext, res);
        let f_dens = density_panel(
            "FFJORD density",
            |g| cnf.log_prob_values(fparams, g),
            ext,
            res,
        )?;
        panels.push(("ffjord_samples.png", f_samples));
        panels.push(("ffjord_density.png", f_dens));
    }
    // Histograms share one count scale and the two densities one density scale, so the
    // models compare value for value; the single pictures keep those scales.
    let mut figure = Figure::new();
    for (_, p) in &panels {
        figure.push(p.clone());
    }
    for ((name, p), scale) in panels.into_iter().zip(figure.scales()) {
        Figure::new()
            .panel(p.with_scale(scale))
            .save(args.out.join(name))?;
    }
    figure.save(args.out.join("panels.png"))?;
    println!(
        "wrote panels.png (data | OT-Flow samples | OT-Flow density{}) and the single pictures to {}",
        if ffjord.is_some() {
            " | FFJORD samples | FFJORD density"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(())
}
