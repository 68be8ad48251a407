//! OT-Flow in higher dimensions (Onken, Wu Fung, Li & Ruthotto 2021): the cost of one training
//! step with the exact trace of ∇²Φ through the ResNet's structure (O(d)) against the exact
//! trace by automatic differentiation and Hutchinson's estimator, on a Gaussian mixture in
//! d = 8, 16, 32 dimensions generated in-process; then a short training run with the
//! structured trace, whose test NLL is compared with the mixture's own.
//!
//! ```sh
//! cargo run --release --example otflow_highdim
//! cargo run --release --example otflow_highdim -- --dims 8,16,32,64 --batch 512 --train-iters 0
//! ```
//!
//! Trace variants (each a full training step: RK4 forward and direct backpropagation):
//! - `structured`: the paper's forward recursion for tr ∇²ₓΦ with tape operations;
//! - `autodiff d-JVP`: d forward-over-reverse products of the autodiff gradient (the fallback
//!   of a user-defined potential);
//! - `d-VJP of −∇Φ`: the exact divergence of the structured field by d vector-Jacobian products;
//! - `Hutchinson`: one Gaussian probe εᵀ∂(−∇Φ)/∂x ε per solve.

mod common;

use std::error::Error;
use std::time::Instant;

use autodiff::{Tape, Tensor};
use clap::Parser;
use flows::optim::{Adam, Optimizer};
use flows::otflow::{OtFlow, OtMode, OtPotential, OtTrace};
use flows::trace::Probe;
use flows::Params;
use ode::{Adjoint, Method, Options};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use common::cli;

#[derive(Parser, Debug)]
#[command(
    about = "OT-Flow: structured exact trace vs autodiff trace vs Hutchinson in d dimensions"
)]
struct Args {
    /// Dimensions to time, comma-separated (the training run uses the first).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "8,16,32",
        value_parser = cli::positive_usize
    )]
    dims: Vec<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 256, value_parser = cli::positive_usize)]
    batch: usize,
    /// ResNet width m.
    #[arg(long, default_value_t = 32, value_parser = cli::positive_usize)]
    width: usize,
    /// ResNet layers M.
    #[arg(long, default_value_t = 2, value_parser = cli::positive_usize)]
    layers: usize,
    /// RK4 steps per solve.
    #[arg(long, default_value_t = 8, value_parser = cli::positive_usize)]
    steps: usize,
    /// Timed training steps per variant (the median is reported, after one warm-up step).
    #[arg(long, default_value_t = 3, value_parser = cli::positive_usize)]
    reps: usize,
    /// Training iterations of the structured model on the smallest dimension (0 skips it).
    #[arg(long, default_value_t = 300)]
    train_iters: usize,
    /// Components of the Gaussian mixture.
    #[arg(long, default_value_t = 8, value_parser = cli::positive_usize)]
    components: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// An isotropic Gaussian mixture in `d` dimensions: equal weights, means drawn from N(0, 4 I)
/// once, component standard deviation `std`.
struct Mixture {
    means: Tensor<f64>,
    std: f64,
}

impl Mixture {
    fn new(d: usize, k: usize, std: f64, rng: &mut Pcg64) -> Self {
        let mut means = Tensor::randn(k, d, rng);
        means.scale(2.0);
        Mixture { means, std }
    }

    fn sample(&self, n: usize, rng: &mut Pcg64) -> Tensor<f32> {
        let (k, d) = self.means.shape();
        let noise = Tensor::<f64>::randn(n, d, rng);
        let comp: Vec<usize> = (0..n).map(|_| rng.random_range(0..k)).collect();
        Tensor::from_fn(n, d, |i, j| {
            (self.means.get(comp[i], j) + self.std * noise.get(i, j)) as f32
        })
    }

    /// Mean negative log-density of the rows of `x` under the mixture.
    fn nll(&self, x: &Tensor<f32>) -> f64 {
        let (k, d) = self.means.shape();
        let c = -0.5 * d as f64 * (2.0 * std::f64::consts::PI * self.std * self.std).ln()
            - (k as f64).ln();
        let mut total = 0.0;
        for i in 0..x.rows() {
            let terms: Vec<f64> = (0..k)
                .map(|m| {
                    let sq: f64 = (0..d)
                        .map(|j| (x.get(i, j) as f64 - self.means.get(m, j)).powi(2))
                        .sum();
                    c - sq / (2.0 * self.std * self.std)
                })
                .collect();
            let mx = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            total -= mx + terms.iter().map(|t| (t - mx).exp()).sum::<f64>().ln();
        }
        total / x.rows() as f64
    }
}

fn main() {
    let args = Args::parse();
    common::exit_on_error(run(&args));
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    // clap gives at least one value, each positive.
    let dims = &args.dims;
    let mut rng = Pcg64::seed_from_u64(args.seed);
    let variants = [
        ("structured (exact)", OtTrace::Exact),
        ("autodiff d-JVP (exact)", OtTrace::Autodiff),
        ("d-VJP of −∇Φ (exact)", OtTrace::DivergenceVjp),
        (
            "Hutchinson, 1 Gaussian probe",
            OtTrace::Hutchinson(Probe::Gaussian),
        ),
    ];
    println!(
        "otflow_highdim: Gaussian mixture ({} components), batch {}, ResNet m = {} M = {}, RK4 {} steps, direct backprop, f32",
        args.components, args.batch, args.width, args.layers, args.steps
    );
    println!("ms per training step (median of {}):", args.reps);
    print!("{:<30}", "trace \\ d");
    for d in dims {
        print!("{:>10}", d);
    }
    println!();
    let mut table = vec![vec![0.0; dims.len()]; variants.len()];
    for (col, &d) in dims.iter().enumerate() {
        let mix = Mixture::new(d, args.components, 0.5, &mut rng);
        let mut params = Params::<f32>::new();
        let net = OtPotential::new(&mut params, "otflow", d, args.width, args.layers, &mut rng);
        let x = mix.sample(args.batch, &mut rng);
        for (row, (_, trace)) in variants.iter().enumerate() {
            let flow = OtFlow::new(net.clone())
                .trace(*trace)
                .train_opts(Options::fixed(Method::Rk4, args.steps).adjoint(Adjoint::Direct));
            let tape = Tape::<f32>::new();
            let mut times = Vec::with_capacity(args.reps);
            for rep in 0..=args.reps {
                let t0 = Instant::now();
                tape.clear();
                let p = params.vars(&tape);
                let out = flow.loss(&tape, &p, tape.constant(x.clone()), OtMode::Train)?;
                let g = tape.grad(out.loss, &p)?;
                std::hint::black_box(g);
                if rep > 0 {
                    times.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
            times.sort_by(f64::total_cmp);
            table[row][col] = times[times.len() / 2];
        }
    }
    for (row, (name, _)) in variants.iter().enumerate() {
        print!("{name:<30}");
        for v in &table[row] {
            print!("{v:>10.1}");
        }
        println!();
    }
    print!("{:<30}", "autodiff / structured");
    for (ad, st) in table[1].iter().zip(&table[0]) {
        print!("{:>9.1}x", ad / st);
    }
    println!();

    if args.train_iters > 0 {
        let d = dims[0];
        let mix = Mixture::new(d, args.components, 0.5, &mut rng);
        let mut params = Params::<f32>::new();
        let net = OtPotential::new(&mut params, "otflow", d, args.width, args.layers, &mut rng);
        let flow = OtFlow::new(net)
            .train_opts(Options::fixed(Method::Rk4, args.steps).adjoint(Adjoint::Direct))
            .eval_opts(Options::fixed(Method::Rk4, 4 * args.steps));
        let mut opt = Adam::new(2e-2);
        let tape = Tape::<f32>::new();
        let start = Instant::now();
        println!();
        println!(
            "training the structured model for {} iterations on d = {d}:",
            args.train_iters
        );
        for it in 1..=args.train_iters {
            if it == args.train_iters * 7 / 10 {
                opt = Adam::new(2e-3);
            }
            let x = mix.sample(args.batch, &mut rng);
            tape.clear();
            let p = params.vars(&tape);
            let out = flow.loss(&tape, &p, tape.constant(x), OtMode::Train)?;
            let g = tape.grad(out.loss, &p)?;
            opt.step(&mut params, &g);
            if it % 100 == 0 || it == args.train_iters {
                println!(
                    "iter {it:>5}  loss {:>9.3}  L {:>7.3}  C {:>7.3}  R {:>7.3}  ({:.0} s)",
                    out.loss.item(),
                    out.transport.item(),
                    out.nll.item(),
                    out.hjb.item(),
                    start.elapsed().as_secs_f64()
                );
            }
        }
        let test = mix.sample(2000, &mut rng);
        let m = flow.evaluate(&params, &test)?;
        println!(
            "test (2000 points, RK4 {} steps): NLL {:.3} nats (the mixture itself: {:.3}), L {:.3}, R {:.3}",
            4 * args.steps,
            m.nll,
            mix.nll(&test),
            m.transport,
            m.hjb
        );
    }
    Ok(())
}
