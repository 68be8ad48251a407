//! Timing of fixed configurations: one thread, median over repeated training steps.
//!
//! ```sh
//! cargo run --release --example bench -- --config ffjord_rk4 --dtype f32 --iters 20
//! cargo run --release --example bench -- --config all --json
//! ```
//!
//! Every configuration follows the issue that defines the benchmark: d = 2, 8gaussians drawn as
//! FFJORD does, batch 512, Adam lr 1e-3, seed 0. Time = one full training step (forward
//! solve, backward, optimizer update), data drawing excluded; 2 warm-up steps, then the median
//! (and minimum) over `--iters` steps.
//!
//! The output starts with the CPU model and the kernel path in use (`avx512`, `avx2` or
//! `baseline`; `FLOWTAPE_KERNELS` lowers it), since the timings mean little without them.
//!
//! - `mlp`: the ODE net's building block alone — an MLP 2→64→64→64→2 (tanh) forward plus the
//!   VJP with respect to its input (what one Hutchinson estimate costs); reports GFLOP/s.
//! - `ffjord_rk4`: ConcatSquash 2→64→64→64→2 (tanh), T = 0.5, RK4 with `--steps` (10) steps,
//!   Hutchinson (Gaussian, one probe), Backsolve adjoint, loss = mean NLL.
//! - `ffjord_exact_rk4`: the same with the exact trace.
//! - `ffjord_dopri5`: Dopri5 at rtol = atol = 1e-5, forward and adjoint.
//! - `rnode_rk4`: `ffjord_rk4` plus kinetic-energy and Jacobian-Frobenius channels, λ = 0.01
//!   each (Finlay et al. 2020).
//! - `otflow_rk4`: OT-Flow's potential (m = 32, M = 2, r = min(10, d + 1)), RK4 with `--steps`
//!   steps on [0, 1], α = (1, 1, 5), direct backpropagation through the steps.

mod common;

use std::time::Instant;

use autodiff::{Element, Tape, Tensor, Var};
use clap::{Parser, ValueEnum};
use flows::cnf::{Cnf, Mode};
use flows::nn::{Act, OdeNet};
use flows::optim::{Adam, Optimizer};
use flows::otflow::{OtFlow, OtMode, OtPotential};
use flows::regularizers::Reg;
use flows::trace::{Probe, Trace};
use flows::{data, Params};
use ode::{Adjoint, Method, OdeStats, Options};
use rand::SeedableRng;
use rand_pcg::Pcg64;

use common::cli;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Config {
    Mlp,
    #[value(name = "ffjord_rk4")]
    FfjordRk4,
    #[value(name = "ffjord_exact_rk4")]
    FfjordExactRk4,
    #[value(name = "ffjord_dopri5")]
    FfjordDopri5,
    #[value(name = "rnode_rk4")]
    RnodeRk4,
    #[value(name = "otflow_rk4")]
    OtflowRk4,
    All,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Mlp => "mlp",
            Config::FfjordRk4 => "ffjord_rk4",
            Config::FfjordExactRk4 => "ffjord_exact_rk4",
            Config::FfjordDopri5 => "ffjord_dopri5",
            Config::RnodeRk4 => "rnode_rk4",
            Config::OtflowRk4 => "otflow_rk4",
            Config::All => "all",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Dtype {
    F32,
    F64,
    Both,
}

#[derive(Parser, Debug)]
#[command(about = "flowtape benchmarks")]
struct Args {
    /// Which configuration to time.
    #[arg(long, value_enum, default_value = "all")]
    config: Config,
    /// Element type.
    #[arg(long, value_enum, default_value = "both")]
    dtype: Dtype,
    /// Threads (the kernels are single-threaded; only 1 is supported).
    #[arg(long, default_value_t = 1, value_parser = one_thread)]
    threads: usize,
    /// Timed repetitions (after 2 warm-up runs).
    #[arg(long, default_value_t = 20, value_parser = cli::positive_usize)]
    iters: usize,
    /// Batch size.
    #[arg(long, default_value_t = 512, value_parser = cli::positive_usize)]
    batch: usize,
    /// Steps of the fixed-step solvers.
    #[arg(long, default_value_t = 10, value_parser = cli::positive_usize)]
    steps: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// `--threads`: only 1 until the data-parallel training step exists; rejected at parsing
/// (with the flag named) rather than by a panic.
fn one_thread(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(1) => Ok(1),
        _ => Err(format!(
            "only 1 is supported (the kernels are single-threaded), got '{s}'"
        )),
    }
}

/// What one configuration measured.
struct Report {
    config: &'static str,
    dtype: &'static str,
    median_s: f64,
    min_s: f64,
    /// Mean CPU time of the thread per step (None where the OS does not report it).
    cpu_s: Option<f64>,
    nfe: usize,
    last_loss: f64,
    extra: String,
}

/// Median and minimum wall-clock time of `f` over `iters` calls after 2 warm-ups, and the mean
/// CPU time of this thread per call: on a machine shared with other jobs the wall clock also
/// counts the time the thread waited for a core, the CPU time does not. (The kernel updates
/// the thread's run time at scheduler ticks, so it is read once around the whole loop rather
/// than per call.)
fn time(iters: usize, mut f: impl FnMut()) -> (f64, f64, Option<f64>) {
    for _ in 0..2 {
        f();
    }
    let n = iters.max(1);
    let mut ts = Vec::with_capacity(n);
    let c0 = thread_cpu_s();
    for _ in 0..n {
        let t0 = Instant::now();
        f();
        ts.push(t0.elapsed().as_secs_f64());
    }
    let cpu_s = c0.zip(thread_cpu_s()).map(|(a, b)| (b - a) / n as f64);
    ts.sort_by(|a, b| a.partial_cmp(b).expect("finite times"));
    (ts[n / 2], ts[0], cpu_s)
}

/// CPU time this thread has run, in seconds, from Linux's `/proc/thread-self/schedstat`
/// (nanoseconds on the CPU, first field); `None` elsewhere.
fn thread_cpu_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// Peak resident set size of this process in MB (Linux), 0 if unknown.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// PyTorch's default Linear init: U(±1/√fan_in) for weights and biases.
fn layers<E: Element>(sizes: &[usize], rng: &mut Pcg64) -> Vec<(Tensor<E>, Tensor<E>)> {
    sizes
        .windows(2)
        .map(|w| {
            let bound = E::from_f64(1.0 / (w[0] as f64).sqrt());
            (
                Tensor::rand_uniform(w[0], w[1], -bound, bound, rng),
                Tensor::rand_uniform(1, w[1], -bound, bound, rng),
            )
        })
        .collect()
}

fn mlp<'t, E: Element>(x: Var<'t, E>, ps: &[(Var<'t, E>, Var<'t, E>)]) -> Var<'t, E> {
    let mut h = x;
    for (i, (w, b)) in ps.iter().enumerate() {
        h = h.matmul(*w) + *b;
        if i + 1 < ps.len() {
            h = h.tanh();
        }
    }
    h
}

fn bench_mlp<E: Element>(args: &Args) -> Report {
    let mut rng = Pcg64::seed_from_u64(0);
    let sizes = [2, 64, 64, 64, 2];
    let params = layers::<E>(&sizes, &mut rng);
    let x0 = Tensor::<E>::randn(args.batch, 2, &mut rng);
    let probe = Tensor::<E>::randn(args.batch, 2, &mut rng);
    let tape = Tape::<E>::new();
    let mut checksum = 0.0;
    let (median_s, min_s, cpu_s) = time(args.iters * 10, || {
        tape.clear();
        let x = tape.var_from(&x0);
        let ps: Vec<_> = params
            .iter()
            .map(|(w, b)| (tape.constant_from(w), tape.constant_from(b)))
            .collect();
        let y = mlp(x, &ps);
        let e = tape.constant_from(&probe);
        let g = tape.vjp(&[y], &[e], &[x]).expect("vjp");
        checksum = g[0].with_value(|v| v.sum()).to_f64();
    });
    let flops: usize = sizes
        .windows(2)
        .map(|w| 2 * args.batch * w[0] * w[1])
        .sum::<usize>()
        * 2;
    Report {
        config: "mlp",
        dtype: E::NAME,
        median_s,
        min_s,
        cpu_s,
        nfe: 1,
        last_loss: checksum,
        extra: format!("{:.1} GFLOP/s", flops as f64 / median_s / 1e9),
    }
}

fn bench_ffjord<E: Element>(args: &Args, config: Config) -> Report {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut params = Params::<E>::new();
    let net = OdeNet::concat_squash(
        &mut params,
        "odefunc",
        2,
        &[64, 64, 64],
        Act::Tanh,
        &mut rng,
    );
    let tol = E::from_f64(1e-5);
    let (opts, trace) = match config {
        Config::FfjordRk4 | Config::RnodeRk4 => (
            Options::fixed(Method::Rk4, args.steps),
            Trace::hutchinson(Probe::Gaussian),
        ),
        Config::FfjordExactRk4 => (Options::fixed(Method::Rk4, args.steps), Trace::Exact),
        Config::FfjordDopri5 => (
            Options::dopri5(tol, tol),
            Trace::hutchinson(Probe::Gaussian),
        ),
        _ => unreachable!("not an ffjord config"),
    };
    let mut cnf = Cnf::new(net)
        .end_time(E::from_f64(0.5))
        .trace(trace)
        .train_opts(opts.adjoint(Adjoint::Backsolve))
        .seed(1);
    if config == Config::RnodeRk4 {
        let lambda = E::from_f64(0.01);
        cnf = cnf
            .regularize(Reg::Kinetic, lambda)
            .regularize(Reg::JacobianFrobenius, lambda);
    }
    time_training(args, config.name(), &mut params, &mut rng, |tape, p, x| {
        let lp = cnf
            .log_prob(tape, p, x, Mode::Train)
            .expect("forward solve");
        (lp.loss(), lp.stats)
    })
}

/// Times one full training step (loss, backward, Adam update) on pre-drawn 8gaussians batches.
/// `loss` returns the loss and the statistics of the step's solves (read after the backward
/// pass, so they include its function evaluations).
fn time_training<E: Element, F>(
    args: &Args,
    config: &'static str,
    params: &mut Params<E>,
    rng: &mut Pcg64,
    mut loss: F,
) -> Report
where
    F: for<'t> FnMut(&'t Tape<E>, &[Var<'t, E>], Var<'t, E>) -> (Var<'t, E>, Vec<OdeStats>),
{
    let mut opt = Adam::new(1e-3);
    let tape = Tape::<E>::new();
    let batches: Vec<Tensor<E>> = (0..args.iters + 2)
        .map(|_| data::eight_gaussians(args.batch, rng))
        .collect();
    let mut k = 0;
    let mut nfe = 0;
    let mut last_loss = 0.0;
    let (median_s, min_s, cpu_s) = time(args.iters, || {
        tape.clear();
        let p = params.vars(&tape);
        let x = tape.constant_from(&batches[k % batches.len()]);
        k += 1;
        let (l, stats) = loss(&tape, &p, x);
        let grads = tape.grad(l, &p).expect("backward solve");
        opt.step(params, &grads);
        nfe = stats
            .iter()
            .map(|s| s.forward().nfe + s.backward().nfe)
            .sum();
        last_loss = l.item().to_f64();
    });
    Report {
        config,
        dtype: E::NAME,
        median_s,
        min_s,
        cpu_s,
        nfe,
        last_loss,
        extra: String::new(),
    }
}

fn bench_otflow<E: Element>(args: &Args) -> Report {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut params = Params::<E>::new();
    let pot = OtPotential::new(&mut params, "otflow", 2, 32, 2, &mut rng);
    let flow = OtFlow::new(pot)
        .alpha([1.0, 1.0, 5.0])
        .end_time(E::ONE)
        .train_opts(Options::fixed(Method::Rk4, args.steps).adjoint(Adjoint::Direct));
    time_training(args, "otflow_rk4", &mut params, &mut rng, |tape, p, x| {
        let out = flow.loss(tape, p, x, OtMode::Train).expect("forward solve");
        (out.loss, vec![out.stats])
    })
}

fn run<E: Element>(args: &Args, config: Config) -> Report {
    match config {
        Config::Mlp => bench_mlp::<E>(args),
        Config::OtflowRk4 => bench_otflow::<E>(args),
        _ => bench_ffjord::<E>(args, config),
    }
}

fn main() {
    let args = Args::parse();
    let dtypes: &[Dtype] = match args.dtype {
        Dtype::Both => &[Dtype::F32, Dtype::F64],
        Dtype::F32 => &[Dtype::F32],
        Dtype::F64 => &[Dtype::F64],
    };
    let configs: Vec<Config> = match args.config {
        Config::All => vec![
            Config::Mlp,
            Config::FfjordRk4,
            Config::FfjordExactRk4,
            Config::RnodeRk4,
            Config::FfjordDopri5,
            Config::OtflowRk4,
        ],
        c => vec![c],
    };
    let (cpu, path) = (
        autodiff::kernels::cpu_name(),
        autodiff::kernels::active_path(),
    );
    if args.json {
        println!(
            "{{\"cpu\": \"{}\", \"kernels\": \"{path}\", \"threads\": {}}}",
            cpu.replace('\\', "\\\\").replace('"', "\\\""),
            args.threads
        );
    } else {
        println!("cpu: {cpu}\nkernels: {path}\nthreads: {}\n", args.threads);
        println!(
            "{:<18} {:>5} {:>6} {:>10} {:>10} {:>10} {:>6} {:>10} {:>9}",
            "config",
            "dtype",
            "batch",
            "median ms",
            "min ms",
            "cpu ms",
            "nfe",
            "last loss",
            "peak MB"
        );
    }
    for &c in &configs {
        for &d in dtypes {
            let r = match d {
                Dtype::F32 => run::<f32>(&args, c),
                _ => run::<f64>(&args, c),
            };
            let rss = peak_rss_mb();
            if args.json {
                println!(
                    "{{\"config\": \"{}\", \"dtype\": \"{}\", \"threads\": {}, \"batch\": {}, \"steps\": {}, \"median_step_s\": {:.6e}, \"min_step_s\": {:.6e}, \"cpu_step_s\": {}, \"nfe\": {}, \"last_loss\": {:.6}, \"peak_rss_mb\": {:.1}}}",
                    r.config, r.dtype, args.threads, args.batch, args.steps, r.median_s, r.min_s, r.cpu_s.map_or("null".to_string(), |c| format!("{c:.6e}")), r.nfe, r.last_loss, rss
                );
            } else {
                println!(
                    "{:<18} {:>5} {:>6} {:>10.3} {:>10.3} {:>10} {:>6} {:>10.4} {:>9.1}  {}",
                    r.config,
                    r.dtype,
                    args.batch,
                    r.median_s * 1e3,
                    r.min_s * 1e3,
                    r.cpu_s
                        .map_or("-".to_string(), |c| format!("{:.3}", c * 1e3)),
                    r.nfe,
                    r.last_loss,
                    rss,
                    r.extra
                );
            }
        }
    }
}
