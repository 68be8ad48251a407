//! Command-line choices the examples share (solver, trace, adjoint, element type, layer,
//! nonlinearity) and the flags of the shared training loop, with their conversions into
//! library values.

use std::path::PathBuf;

use autodiff::Element;
use clap::{Args, ValueEnum};
use flows::nn::{Act, LayerKind};
use flows::trace::{Probe, Trace};
use flows::train::ProgressMode;
use ode::{Adjoint, Method, Options};

use super::cli;

/// An ODE solver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Solver {
    /// Classic Runge–Kutta 4, fixed steps (`--steps`).
    Rk4,
    /// Dormand–Prince 5(4), adaptive.
    Dopri5,
    /// Tsitouras 5(4), adaptive.
    Tsit5,
    /// Bogacki–Shampine 3(2), adaptive.
    Bosh3,
}

impl Solver {
    /// Options for this solver: `steps` fixed steps for RK4, tolerance `tol` otherwise.
    pub fn options<E: Element>(self, steps: usize, tol: f64) -> Options<E> {
        let tol = E::from_f64(tol);
        match self {
            Solver::Rk4 => Options::fixed(Method::Rk4, steps),
            Solver::Dopri5 => Options::dopri5(tol, tol),
            Solver::Tsit5 => Options::tsit5(tol, tol),
            Solver::Bosh3 => Options::bosh3(tol, tol),
        }
    }
}

/// A trace estimator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TraceArg {
    /// Hutchinson's estimator with Gaussian probes.
    Gaussian,
    /// Hutchinson's estimator with Rademacher probes.
    Rademacher,
    /// The exact trace (d vector-Jacobian products).
    Exact,
}

impl TraceArg {
    /// The library's trace.
    pub fn trace(self) -> Trace {
        match self {
            TraceArg::Gaussian => Trace::hutchinson(Probe::Gaussian),
            TraceArg::Rademacher => Trace::hutchinson(Probe::Rademacher),
            TraceArg::Exact => Trace::Exact,
        }
    }
}

/// An adjoint strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AdjointArg {
    /// Solve the adjoint backwards together with the state.
    Backsolve,
    /// Re-solve forward from 4 checkpoints.
    Checkpointed,
    /// Differentiate the solver's steps (discretise-then-optimise).
    Direct,
}

impl AdjointArg {
    /// The library's strategy.
    pub fn adjoint(self) -> Adjoint {
        match self {
            AdjointArg::Backsolve => Adjoint::Backsolve,
            AdjointArg::Checkpointed => Adjoint::Checkpointed { checkpoints: 4 },
            AdjointArg::Direct => Adjoint::Direct,
        }
    }
}

/// The element type an example runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    /// 32-bit floats.
    F32,
    /// 64-bit floats.
    F64,
}

/// Runs `f32` or `f64` code by `dtype` (the examples are generic over the element type).
#[macro_export]
macro_rules! dispatch_dtype {
    ($dtype:expr, $run:ident, $($arg:expr),*) => {
        match $dtype {
            $crate::common::args::Dtype::F32 => $run::<f32>($($arg),*),
            $crate::common::args::Dtype::F64 => $run::<f64>($($arg),*),
        }
    };
}

/// FFJORD's layer types that this library has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayerArg {
    /// `concatsquash`: FFJORD's default gated time conditioning.
    Concatsquash,
    /// `concat`: t appended to the input.
    Concat,
}

impl LayerArg {
    /// The library's layer kind.
    pub fn kind(self) -> LayerKind {
        match self {
            LayerArg::Concatsquash => LayerKind::ConcatSquash,
            LayerArg::Concat => LayerKind::Concat,
        }
    }
}

/// A nonlinearity (FFJORD's `--nonlinearity` choices).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActArg {
    /// tanh.
    Tanh,
    /// ReLU.
    Relu,
    /// softplus.
    Softplus,
    /// ELU.
    Elu,
    /// swish (x·σ(x)).
    Swish,
}

impl ActArg {
    /// The library's activation.
    pub fn act(self) -> Act {
        match self {
            ActArg::Tanh => Act::Tanh,
            ActArg::Relu => Act::Relu,
            ActArg::Softplus => Act::Softplus,
            ActArg::Elu => Act::Elu,
            ActArg::Swish => Act::Swish,
        }
    }
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    /// A bar on a terminal, plain lines otherwise.
    Auto,
    /// Always a bar.
    Bar,
    /// Always plain lines.
    Lines,
}

/// The flags of the shared training loop ([`flows::train::Trainer`]).
#[derive(Args, Debug, Clone)]
pub struct LoopArgs {
    /// Print a progress line every this many iterations.
    #[arg(long, default_value_t = 50, value_parser = cli::positive_usize)]
    pub log_every: usize,
    /// Validate every this many iterations (0: only after the last).
    #[arg(long, default_value_t = 0)]
    pub val_every: usize,
    /// Stop after this many validations without improvement (0: never).
    #[arg(long, default_value_t = 0)]
    pub patience: usize,
    /// Write a checkpoint every this many iterations (0: only at the end).
    #[arg(long, default_value_t = 0)]
    pub checkpoint_every: usize,
    /// Resume from the output folder's checkpoint when there is one.
    #[arg(long)]
    pub resume: bool,
    /// Progress display.
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: ProgressArg,
}

impl LoopArgs {
    /// Checks the combinations clap cannot: patience needs validation.
    pub fn validate(&self) -> Result<(), cli::FlagError> {
        if self.patience > 0 && self.val_every == 0 {
            return Err(cli::FlagError {
                flag: "--patience",
                message: "early stopping needs periodic validation: set --val-every too".into(),
            });
        }
        Ok(())
    }

    /// A trainer of `iters` iterations writing `train.csv` and `checkpoint.safetensors` to
    /// `out`, with validation by `val` when asked for.
    pub fn trainer<'v, E: Element, Err: From<flows::FlowError>>(
        &self,
        iters: usize,
        out: &std::path::Path,
        val: impl FnMut(&flows::Params<E>) -> Result<f64, Err> + 'v,
    ) -> flows::train::Trainer<'v, E, Err> {
        let iters = iters as u64;
        let every = if self.checkpoint_every == 0 {
            iters.max(1)
        } else {
            self.checkpoint_every as u64
        };
        let val_every = if self.val_every == 0 {
            iters.max(1)
        } else {
            self.val_every as u64
        };
        let mut t = flows::train::Trainer::new(iters)
            .log_every(self.log_every as u64)
            .progress(match self.progress {
                ProgressArg::Auto => ProgressMode::Auto,
                ProgressArg::Bar => ProgressMode::Bar,
                ProgressArg::Lines => ProgressMode::Lines,
            })
            .csv(out.join("train.csv"))
            .checkpoint(checkpoint_path(out), every)
            .resume(self.resume)
            .validate_every(val_every, val);
        if self.patience > 0 {
            t = t.patience(self.patience as u64);
        }
        t
    }
}

/// Where the examples keep their checkpoint.
pub fn checkpoint_path(out: &std::path::Path) -> PathBuf {
    out.join("checkpoint.safetensors")
}
