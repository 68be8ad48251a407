//! Timing of fixed configurations, one thread, median over repeated runs.
//!
//! ```sh
//! cargo run --release --example bench -- --config mlp --dtype f32 --iters 200
//! cargo run --release --example bench -- --config all --json
//! ```
//!
//! Configurations:
//! - `mlp`: an MLP 2→64→64→64→2 with tanh at batch `--batch` (512): forward plus the VJP with
//!   respect to the input (the work one Hutchinson trace estimate does), reporting GFLOP/s of
//!   the matrix products.

use std::time::Instant;

use autodiff::{Element, Tape, Tensor, Var};
use clap::{Parser, ValueEnum};
use rand::SeedableRng;
use rand_pcg::Pcg64;

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Config {
    Mlp,
    All,
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
    /// Timed repetitions (after 2 warm-up runs).
    #[arg(long, default_value_t = 100)]
    iters: usize,
    /// Batch size.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

struct Timing {
    median_s: f64,
    min_s: f64,
}

fn time(iters: usize, mut f: impl FnMut()) -> Timing {
    for _ in 0..2 {
        f();
    }
    let mut ts: Vec<f64> = (0..iters.max(1))
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    ts.sort_by(|a, b| a.partial_cmp(b).expect("finite times"));
    Timing {
        median_s: ts[ts.len() / 2],
        min_s: ts[0],
    }
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

fn bench_mlp<E: Element>(args: &Args) {
    let mut rng = Pcg64::seed_from_u64(0);
    let sizes = [2, 64, 64, 64, 2];
    let params = layers::<E>(&sizes, &mut rng);
    let x0 = Tensor::<E>::randn(args.batch, 2, &mut rng);
    let probe = Tensor::<E>::randn(args.batch, 2, &mut rng);
    let tape = Tape::<E>::new();
    let mut checksum = 0.0;
    let t = time(args.iters, || {
        tape.clear();
        let x = tape.var(x0.clone());
        let ps: Vec<_> = params
            .iter()
            .map(|(w, b)| (tape.constant(w.clone()), tape.constant(b.clone())))
            .collect();
        let y = mlp(x, &ps);
        let e = tape.constant(probe.clone());
        let g = tape.vjp(&[y], &[e], &[x]).expect("vjp");
        checksum = g[0].with_value(|v| v.sum()).to_f64();
    });
    let flops: usize = sizes
        .windows(2)
        .map(|w| 2 * args.batch * w[0] * w[1])
        .sum::<usize>()
        * 2;
    let gflops = flops as f64 / t.median_s / 1e9;
    if args.json {
        println!(
            "{{\"config\": \"mlp\", \"dtype\": \"{}\", \"threads\": 1, \"batch\": {}, \"median_step_s\": {:.6e}, \"min_step_s\": {:.6e}, \"gflops\": {:.2}}}",
            E::NAME,
            args.batch,
            t.median_s,
            t.min_s,
            gflops
        );
    } else {
        println!(
            "mlp 2-64-64-64-2 fwd+input-vjp  {:>4}  batch {:>5}  median {:>8.3} ms  min {:>8.3} ms  {:>6.2} GFLOP/s  (checksum {checksum:.4})",
            E::NAME,
            args.batch,
            t.median_s * 1e3,
            t.min_s * 1e3,
            gflops
        );
    }
}

fn main() {
    let args = Args::parse();
    let dtypes: &[Dtype] = match args.dtype {
        Dtype::Both => &[Dtype::F32, Dtype::F64],
        Dtype::F32 => &[Dtype::F32],
        Dtype::F64 => &[Dtype::F64],
    };
    for &d in dtypes {
        if matches!(args.config, Config::Mlp | Config::All) {
            match d {
                Dtype::F32 => bench_mlp::<f32>(&args),
                _ => bench_mlp::<f64>(&args),
            }
        }
    }
}
