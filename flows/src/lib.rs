//! Continuous normalizing flows on the [`autodiff`] tape: layers, parameters, optimizers,
//! toy data and pictures.
//!
//! # Tour
//!
//! - [`Params`] ([`params`]): an ordered store of named tensors with PyTorch `state_dict`
//!   names and layout, saved and loaded as safetensors so weights move between this library
//!   and PyTorch/JAX.
//! - [`nn`]: [`Linear`](nn::Linear), FFJORD's time-conditioned
//!   [`ConcatSquash`](nn::ConcatSquash) and [`ConcatLinear`](nn::ConcatLinear), activations
//!   [`Act`](nn::Act), the vector field [`OdeNet`](nn::OdeNet) `f(t, z)` and a plain
//!   [`Mlp`](nn::Mlp). Layers keep indices into a `Params` store and are applied to the list
//!   [`Params::vars`] puts on a tape.
//! - [`optim`]: [`Adam`](optim::Adam), [`AdamW`](optim::AdamW), [`Sgd`](optim::Sgd) behind
//!   the [`Optimizer`](optim::Optimizer) trait, [`clip_grad_norm`](optim::clip_grad_norm) and
//!   learning-rate [`Schedule`](optim::Schedule)s.
//! - [`data`]: the 2-D toys of the FFJORD paper (`8gaussians`, `2spirals`, `checkerboard`, …)
//!   and CSV / `.npy` loaders for tabular data.
//! - [`plot`]: density heat maps, sample histograms and panels side by side, as PNG.
//! - [`train`]: checkpoints that resume a run bit for bit (parameters, optimizer state, the
//!   generator and the iteration in one safetensors file) and an exponential moving average
//!   of the weights ([`Ema`](train::Ema)) to evaluate with.
//! - [`FlowError`]: the error of everything that depends on files or data. Programming errors
//!   (shape mismatches in a forward pass, a gradient list that does not fit the store) panic
//!   with a message naming the operation and the shapes.
//!
//! # One dependency
//!
//! `flows` re-exports the crates its API is made of — [`autodiff`], [`ode`], [`rand`],
//! [`rand_pcg`] and [`rand_distr`] — and [`prelude`] gathers what a training loop needs, so a
//! crate that depends on `flows` alone uses exactly the versions `flows` was built with. (A
//! separate `rand` of another major version has its own `Rng` trait, which the functions
//! here do not accept.)
//!
//! # Example
//!
//! One gradient step on the vector field of a CNF (the solve and the divergence come from the
//! `ode` crate and the CNF module): evaluate `f(t, z)` for a batch of 8-Gaussians samples,
//! differentiate a loss with respect to every parameter and update with Adam.
//!
//! ```
//! use autodiff::Tape;
//! use flows::nn::{Act, OdeNet};
//! use flows::optim::{clip_grad_norm, Adam, Optimizer};
//! use flows::{data, Params};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let mut params = Params::<f32>::new();
//! let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[64, 64, 64], Act::Tanh, &mut rng);
//! assert_eq!(params.index_of("odefunc.layers.0._layer.weight"), Some(0));
//!
//! let mut opt = Adam::new(1e-3);
//! let x = data::eight_gaussians::<f32, _>(128, &mut rng);
//!
//! let tape = Tape::new();
//! let p = params.vars(&tape);
//! let dz = net.forward(&p, tape.scalar(0.5), tape.constant(x));
//! let loss = dz.square().mean(); // kinetic energy ½‖f‖² up to a factor
//! let mut grads = tape.grad(loss, &p).unwrap();
//! clip_grad_norm(&mut grads, 10.0);
//! opt.step(&mut params, &grads);
//! assert_eq!(opt.steps(), 1);
//! ```

#![warn(missing_docs)]

use std::fmt;
use std::path::{Path, PathBuf};

pub mod cnf;
pub mod data;
pub mod flow;
pub mod io;
pub mod nn;
pub mod optim;
pub mod otflow;
pub mod params;
pub mod plot;
pub mod prelude;
pub mod regularizers;
pub mod tabular;
pub mod trace;
pub mod train;

pub use params::Params;

// The crates the public API is built from, so that users name the same versions (see the
// crate docs' "One dependency").
pub use autodiff;
pub use ode;
pub use rand;
pub use rand_distr;
pub use rand_pcg;

/// Every ```` ```rust ```` block of the repository's README.md, run as a doctest so the README's
/// code cannot rot: it must compile without warnings (an unused import or variable fails the
/// test) and run.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
#[doc(test(attr(deny(warnings))))]
pub struct ReadmeDoctests;

/// Errors of operations that depend on files, data or configuration.
#[derive(Debug)]
#[non_exhaustive]
pub enum FlowError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file's contents are corrupt or unsupported.
    BadFile {
        /// The file (`<memory>` for in-memory buffers).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A value in a text file is not a number.
    Parse {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// Column (field) number (1-based).
        column: usize,
        /// The offending text.
        text: String,
    },
    /// A parameter of the store is absent from the weights being loaded.
    MissingParam {
        /// The parameter's name.
        name: String,
    },
    /// The weights being loaded hold a tensor the store does not have (strict loading).
    UnexpectedParam {
        /// The tensor's name.
        name: String,
    },
    /// A tensor being loaded or set has the wrong shape.
    ShapeMismatch {
        /// The parameter's name.
        name: String,
        /// The shape the store expects: its file shape (PyTorch layout) when loading a file,
        /// `[rows, cols]` when setting an in-memory tensor ([`Params::set`]).
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A dataset name that is not known (see [`data::TOY_NAMES`]).
    UnknownDataset {
        /// The name asked for.
        name: String,
    },
    /// No parameter of this name is in the store ([`Params::set`]).
    UnknownParam {
        /// The name asked for.
        name: String,
    },
    /// A training loss was not finite ([`train::Trainer`]): the run diverged.
    Diverged {
        /// The iteration (1-based) whose loss it was.
        iteration: u64,
        /// The loss.
        loss: f64,
    },
    /// A checkpoint does not fit the objects it is restored into ([`train::load_checkpoint`]).
    CheckpointMismatch {
        /// The checkpoint file.
        path: PathBuf,
        /// What disagrees: a tensor of the file (`params/…`, `optim/exp_avg/…`, `ema/…`) or a
        /// part of the state (`optimizer`, `ema`).
        item: String,
        /// What the objects being restored need.
        expected: String,
        /// What the checkpoint holds.
        found: String,
    },
}

impl FlowError {
    /// An [`FlowError::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        FlowError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for FlowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            FlowError::BadFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            FlowError::Parse {
                path,
                line,
                column,
                text,
            } => write!(
                f,
                "{}: line {line}, column {column}: `{text}` is not a number",
                path.display()
            ),
            FlowError::MissingParam { name } => {
                write!(f, "parameter `{name}` is missing from the weights")
            }
            FlowError::UnexpectedParam { name } => {
                write!(f, "the weights hold `{name}`, which is not a parameter")
            }
            FlowError::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "parameter `{name}`: expected shape {expected:?}, found {found:?}"
            ),
            FlowError::UnknownDataset { name } => write!(
                f,
                "unknown dataset `{name}` (known: {})",
                data::TOY_NAMES.join(", ")
            ),
            FlowError::UnknownParam { name } => {
                write!(f, "no parameter named `{name}` in the store")
            }
            FlowError::Diverged { iteration, loss } => write!(
                f,
                "training diverged: the loss of iteration {iteration} is {loss} (lower the \
                 learning rate or tighten the solver)"
            ),
            FlowError::CheckpointMismatch {
                path,
                item,
                expected,
                found,
            } => write!(
                f,
                "{}: checkpoint `{item}`: expected {expected}, found {found}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for FlowError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FlowError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FlowError;

    #[test]
    fn flow_error_is_send_sync_and_names_things() {
        fn assert_traits<T: std::error::Error + Send + Sync + 'static>() {}
        assert_traits::<FlowError>();
        let e = FlowError::ShapeMismatch {
            name: "a.weight".into(),
            expected: vec![3, 2],
            found: vec![2, 3],
        };
        let s = e.to_string();
        assert!(s.contains("a.weight") && s.contains("[3, 2]") && s.contains("[2, 3]"));
    }
}
