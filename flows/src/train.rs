//! The research workflow around a training loop: checkpoints that resume a run exactly, an
//! exponential moving average of the weights to evaluate with, and [`Trainer`], the loop the
//! examples share (progress with an ETA, validation with early stopping, a CSV log of every
//! metric, checkpoints every so often and `--resume`).
//!
//! # Checkpoints
//!
//! [`save_checkpoint`] writes one safetensors file holding everything a run needs to continue
//! as if it had never stopped: the parameters, the optimizer's state (Adam's moments and step
//! count, SGD's momentum buffers, the learning rate; see [`OptimizerState`]), the state of the
//! run's [`Pcg64`] generator, the iteration and, optionally, an [`Ema`] of the weights.
//! [`load_checkpoint`] restores them into objects built the same way as the first run's and
//! returns the iteration. Resuming equals not stopping, bit for bit, provided every random
//! draw of the loop comes from that generator and the objects are configured the same way
//! (the tests check this for a CNF trained with Hutchinson's estimator and STEER).
//!
//! A [`Cnf`](crate::cnf::Cnf) draws its probes and STEER's end times from a generator of its
//! own, which a checkpoint does not see; reseed it from the run's generator at every step
//! (`cnf = cnf.seed(rng.random())`, as below) so that those draws are resumed too.
//!
//! The file is written atomically ([`crate::io::write_atomic`]): a save that fails part-way
//! leaves the previous checkpoint intact. Tensors are stored under prefixed names —
//! `params/{name}`, `optim/{buffer}/{name}` (PyTorch's buffer names, e.g.
//! `optim/exp_avg/odefunc.layers.0._layer.weight`) and `ema/{name}` — in the parameters' file
//! shapes, and the counters and the generator in the safetensors metadata (keys
//! `flowtape.*`), so other tools can read a checkpoint too.
//!
//! ```
//! use flows::prelude::*;
//! use flows::train::{load_checkpoint, save_checkpoint, Ema};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::env::temp_dir().join(format!("flows_train_doc_{}.safetensors", std::process::id()));
//! // Everything a run is made of, built the same way by the first run and by a resumed one.
//! let setup = || {
//!     let mut rng = Pcg64::seed_from_u64(0);
//!     let mut params = Params::<f64>::new();
//!     let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[8], Act::Tanh, &mut rng);
//!     let cnf = Cnf::new(net).train_opts(Options::fixed(Method::Rk4, 4));
//!     let ema = Ema::new(&params, 0.99);
//!     (rng, params, cnf, Adam::new(1e-2), ema)
//! };
//! let (mut rng, mut params, mut cnf, mut opt, mut ema) = setup();
//! for it in 0..6u64 {
//!     if it == 3 {
//!         save_checkpoint(&path, it, &params, &opt, &rng, Some(&ema))?;
//!     }
//!     cnf = cnf.seed(rng.random()); // the probes come from the run's generator
//!     let tape = Tape::new();
//!     let p = params.vars(&tape);
//!     let x = tape.constant(data::eight_gaussians(16, &mut rng));
//!     let loss = -cnf.log_prob(&tape, &p, x, Mode::Train)?.log_prob.mean();
//!     opt.step(&mut params, &tape.grad(loss, &p)?);
//!     ema.update(&params);
//! }
//!
//! // A fresh process: build the same objects, restore, and run the remaining iterations.
//! let (mut rng2, mut params2, mut cnf2, mut opt2, mut ema2) = setup();
//! let start = load_checkpoint(&path, &mut params2, &mut opt2, &mut rng2, Some(&mut ema2))?;
//! assert_eq!(start, 3);
//! for _ in start..6 {
//!     cnf2 = cnf2.seed(rng2.random());
//!     let tape = Tape::new();
//!     let p = params2.vars(&tape);
//!     let x = tape.constant(data::eight_gaussians(16, &mut rng2));
//!     let loss = -cnf2.log_prob(&tape, &p, x, Mode::Train)?.log_prob.mean();
//!     opt2.step(&mut params2, &tape.grad(loss, &p)?);
//!     ema2.update(&params2);
//! }
//! assert_eq!(params2, params);
//! assert_eq!(ema2.params(), ema.params());
//! # std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```

mod csv_log;
mod progress;
mod trainer;

pub use progress::ProgressMode;
pub use trainer::{Best, Metrics, Report, Step, Trainer};

use std::collections::{HashMap, HashSet};
use std::path::Path;

use autodiff::{Element, Tensor};
use rand_pcg::Pcg64;
use safetensors::tensor::SafeTensors;

use crate::optim::{OptimizerState, StatefulOptimizer};
use crate::params::compatible;
use crate::{FlowError, Params};

/// Metadata key marking a checkpoint; its value is the format version, [`CHECKPOINT_VERSION`].
pub const CHECKPOINT_KEY: &str = "flowtape.checkpoint";
/// The checkpoint format version this library writes and reads.
pub const CHECKPOINT_VERSION: &str = "1";

const ITERATION_KEY: &str = "flowtape.iteration";
const OPT_KIND_KEY: &str = "flowtape.optimizer";
const OPT_STEPS_KEY: &str = "flowtape.optimizer.steps";
const OPT_LR_KEY: &str = "flowtape.optimizer.lr";
/// The optimizer's buffer names joined by `\n` (absent when it has none yet), so that the
/// loader looks tensors up by name instead of parsing names that may contain any character.
const OPT_BUFFERS_KEY: &str = "flowtape.optimizer.buffers";
/// The generator as `{"state": …, "increment": …}` (rand_pcg's serde representation).
const RNG_KEY: &str = "flowtape.rng.pcg64";
const EMA_DECAY_KEY: &str = "flowtape.ema.decay";
const EMA_UPDATES_KEY: &str = "flowtape.ema.updates";

const PARAMS_PREFIX: &str = "params/";
const EMA_PREFIX: &str = "ema/";

fn optim_name(buffer: &str, param: &str) -> String {
    format!("optim/{buffer}/{param}")
}

/// An exponential moving average of the parameters, `θ̄ ← d·θ̄ + (1 − d)·θ` after every
/// step, to evaluate with (FFJORD reports its test results with such an average; it smooths
/// the noise of the last steps of stochastic training).
///
/// The average is a [`Params`] store with the names and order of the one it follows, so the
/// layers that index into `params.vars(&tape)` index into `ema.params().vars(&tape)` as well.
///
/// ```
/// use autodiff::Tensor;
/// use flows::train::Ema;
/// use flows::Params;
///
/// let mut params = Params::<f64>::new();
/// params.add("w", Tensor::scalar(0.0));
/// let mut ema = Ema::new(&params, 0.5);
/// params.set("w", Tensor::scalar(1.0)).unwrap();
/// ema.update(&params);
/// ema.update(&params);
/// assert_eq!(ema.params().tensor(0).item(), 0.75); // 0.5² · 0 + (1 − 0.5²) · 1
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Ema<E: Element> {
    decay: f64,
    updates: u64,
    avg: Params<E>,
}

impl<E: Element> Ema<E> {
    /// An average that starts at the current `params`, with decay `d` in `[0, 1]` (typical:
    /// 0.99–0.9999; `d = 0` follows the parameters, `d = 1` keeps the initial values). Panics
    /// on a decay outside `[0, 1]`.
    pub fn new(params: &Params<E>, decay: f64) -> Self {
        assert!(
            (0.0..=1.0).contains(&decay),
            "Ema::new: the decay must be in [0, 1], got {decay}"
        );
        Ema {
            decay,
            updates: 0,
            avg: params.clone(),
        }
    }

    /// Moves the average towards `params`: `θ̄ ← θ̄ + (1 − d)(θ − θ̄)` for every entry (the
    /// same update as `θ̄ ← d·θ̄ + (1 − d)·θ`, written as PyTorch's and FFJORD's EMA do). Panics
    /// if `params` does not have the names and shapes of the store the average was made from.
    pub fn update(&mut self, params: &Params<E>) {
        self.assert_layout(params, "Ema::update");
        let w = E::from_f64(1.0 - self.decay);
        for (a, (_, t)) in self.avg.tensors_mut().zip(params.iter()) {
            for (a, &t) in a.as_mut_slice().iter_mut().zip(t.as_slice()) {
                *a += w * (t - *a);
            }
        }
        self.updates += 1;
    }

    /// The averaged parameters.
    pub fn params(&self) -> &Params<E> {
        &self.avg
    }

    /// Copies the averaged values into `params` (to evaluate or save the averaged model with
    /// code that expects the training store). Panics on a layout mismatch.
    pub fn copy_to(&self, params: &mut Params<E>) {
        self.assert_layout(params, "Ema::copy_to");
        params.copy_from(&self.avg);
    }

    /// The decay `d`.
    pub fn decay(&self) -> f64 {
        self.decay
    }

    /// Number of [`update`](Self::update)s so far.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    fn assert_layout(&self, params: &Params<E>, op: &str) {
        assert_eq!(
            params.len(),
            self.avg.len(),
            "{op}: {} parameters for an average of {}",
            params.len(),
            self.avg.len()
        );
        for ((n, t), (m, a)) in params.iter().zip(self.avg.iter()) {
            assert!(
                n == m && t.shape() == a.shape(),
                "{op}: parameter `{n}` ({:?}) does not match the average's `{m}` ({:?})",
                t.shape(),
                a.shape()
            );
        }
    }
}

/// Writes a checkpoint of a run to `path` (atomically; see the [module docs](self)):
/// `params`, the state of `opt`, `rng`, `iteration` (by convention the number of iterations
/// completed, i.e. the first one to run after resuming) and `ema` if given.
///
/// Errors: [`FlowError::Io`] naming `path` if the file cannot be written (a previous file at
/// `path` is left intact). Panics if the optimizer's buffers or the average do not fit
/// `params` (a programming error: they belong to another store), or if a buffer name
/// contains a newline.
pub fn save_checkpoint<E: Element, O: StatefulOptimizer<E> + ?Sized>(
    path: impl AsRef<Path>,
    iteration: u64,
    params: &Params<E>,
    opt: &O,
    rng: &Pcg64,
    ema: Option<&Ema<E>>,
) -> Result<(), FlowError> {
    let path = path.as_ref();
    let state = opt.state();
    let mut all = Params::<E>::new();
    for (i, (name, t)) in params.iter().enumerate() {
        let shape = params.file_shape(i).to_vec();
        all.add_with_file_shape(format!("{PARAMS_PREFIX}{name}"), t.clone(), shape);
    }
    for (buffer, tensors) in &state.buffers {
        assert!(
            !buffer.contains('\n'),
            "save_checkpoint: optimizer buffer name {buffer:?} contains a newline"
        );
        params.assert_matches(tensors, &format!("save_checkpoint (buffer `{buffer}`)"));
        for (i, t) in tensors.iter().enumerate() {
            let shape = params.file_shape(i).to_vec();
            all.add_with_file_shape(optim_name(buffer, params.name(i)), t.clone(), shape);
        }
    }
    let mut meta = HashMap::new();
    meta.insert(CHECKPOINT_KEY.to_string(), CHECKPOINT_VERSION.to_string());
    meta.insert(ITERATION_KEY.to_string(), iteration.to_string());
    meta.insert(OPT_KIND_KEY.to_string(), state.kind.clone());
    meta.insert(OPT_STEPS_KEY.to_string(), state.steps.to_string());
    // `{:?}` prints the shortest decimal that parses back to the same f64.
    meta.insert(OPT_LR_KEY.to_string(), format!("{:?}", state.lr));
    if !state.buffers.is_empty() {
        let names: Vec<&str> = state.buffers.iter().map(|(n, _)| n.as_str()).collect();
        meta.insert(OPT_BUFFERS_KEY.to_string(), names.join("\n"));
    }
    let rng_json = serde_json::to_string(rng).map_err(|e| FlowError::BadFile {
        path: path.to_path_buf(),
        reason: format!("cannot serialize the generator: {e}"),
    })?;
    meta.insert(RNG_KEY.to_string(), rng_json);
    if let Some(ema) = ema {
        ema.assert_layout(params, "save_checkpoint (Ema)");
        for (i, (name, t)) in ema.params().iter().enumerate() {
            let shape = params.file_shape(i).to_vec();
            all.add_with_file_shape(format!("{EMA_PREFIX}{name}"), t.clone(), shape);
        }
        meta.insert(EMA_DECAY_KEY.to_string(), format!("{:?}", ema.decay));
        meta.insert(EMA_UPDATES_KEY.to_string(), ema.updates.to_string());
    }
    let bytes = all.to_safetensors_with(meta)?;
    crate::io::write_atomic(path, &bytes)
}

/// Restores a checkpoint written by [`save_checkpoint`] into `params`, `opt`, `rng` and (if
/// given) `ema`, and returns the saved iteration.
///
/// The objects must be built as the saving run built them: the same parameter names and
/// shapes, the same kind of optimizer in the same configuration (for SGD, with or without
/// momentum). The optimizer's learning rate is restored too (set another one afterwards to
/// change it). Tensors are converted to `E` as [`Params::load_into`] does, so an `f32`
/// checkpoint can be resumed in `f64` (then no longer bit for bit). A checkpoint with an
/// average restored with `ema = None` skips the average; the average's decay is
/// configuration and stays the one `ema` was built with.
///
/// Errors — all checked before anything is changed, so on error every object is left as it
/// was: [`FlowError::Io`] if the file cannot be read; [`FlowError::BadFile`] if it is not a
/// safetensors file or not a checkpoint of this format (e.g. plain weights from
/// [`Params::save`]: load those with [`Params::load_into`]); and
/// [`FlowError::CheckpointMismatch`] naming the file and the tensor or part that does not
/// fit — a parameter or buffer missing, of another shape, or not in the store; another kind
/// of optimizer or inconsistent buffers; an average asked for but not saved.
pub fn load_checkpoint<E: Element, O: StatefulOptimizer<E> + ?Sized>(
    path: impl AsRef<Path>,
    params: &mut Params<E>,
    opt: &mut O,
    rng: &mut Pcg64,
    ema: Option<&mut Ema<E>>,
) -> Result<u64, FlowError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
    let file = Params::<E>::from_safetensors(&bytes, path)?;
    let meta = Meta::read(&bytes, path)?;
    let mut taken = Taker {
        file: &file,
        path,
        used: HashSet::new(),
    };

    let iteration: u64 = meta.parse(ITERATION_KEY)?;
    let new_params = taken.like(params, |name| format!("{PARAMS_PREFIX}{name}"))?;

    let buffer_names: Vec<String> = match meta.get(OPT_BUFFERS_KEY) {
        Some(list) => list.split('\n').map(str::to_string).collect(),
        None => Vec::new(),
    };
    let mut buffers = Vec::with_capacity(buffer_names.len());
    for b in buffer_names {
        let tensors = taken.like(params, |name| optim_name(&b, name))?;
        buffers.push((b, tensors));
    }
    let state = OptimizerState {
        kind: meta.require(OPT_KIND_KEY)?.to_string(),
        steps: meta.parse(OPT_STEPS_KEY)?,
        lr: meta.parse(OPT_LR_KEY)?,
        buffers,
    };

    let new_rng: Pcg64 =
        serde_json::from_str(meta.require(RNG_KEY)?).map_err(|e| FlowError::BadFile {
            path: path.to_path_buf(),
            reason: format!("metadata `{RNG_KEY}` is not a Pcg64 state: {e}"),
        })?;

    let new_ema = match &ema {
        Some(ema) => {
            if meta.get(EMA_DECAY_KEY).is_none() {
                return Err(FlowError::CheckpointMismatch {
                    path: path.to_path_buf(),
                    item: "ema".into(),
                    expected: "averaged weights (an Ema was passed to restore)".into(),
                    found: "none (saved without an Ema)".into(),
                });
            }
            ema.assert_layout(params, "load_checkpoint (Ema)");
            let updates: u64 = meta.parse(EMA_UPDATES_KEY)?;
            let avg = taken.like(params, |name| format!("{EMA_PREFIX}{name}"))?;
            Some((updates, avg))
        }
        None => None,
    };

    // Whatever the file holds beyond what was restored is a store that does not fit (an
    // extra parameter, a buffer for it, ...); an average not asked for is skipped.
    let skip_ema = ema.is_none();
    let restored = |n: &str| taken.used.contains(n) || (skip_ema && n.starts_with(EMA_PREFIX));
    if let Some(extra) = file.names().find(|n| !restored(n)) {
        return Err(FlowError::CheckpointMismatch {
            path: path.to_path_buf(),
            item: extra.to_string(),
            expected: "only tensors of the store's parameters".into(),
            found: "a tensor for which the store has no parameter".into(),
        });
    }

    // The optimizer is the one fallible mutation, and it leaves itself unchanged on error;
    // everything after it cannot fail.
    opt.load_state(state)
        .map_err(|m| FlowError::CheckpointMismatch {
            path: path.to_path_buf(),
            item: if m.item == "optimizer" {
                m.item
            } else {
                format!("optim/{}", m.item)
            },
            expected: m.expected,
            found: m.found,
        })?;
    for (t, new) in params.tensors_mut().zip(new_params) {
        *t = new;
    }
    *rng = new_rng;
    if let (Some(ema), Some((updates, avg))) = (ema, new_ema) {
        for (t, new) in ema.avg.tensors_mut().zip(avg) {
            *t = new;
        }
        ema.updates = updates;
    }
    Ok(iteration)
}

/// The checkpoint's safetensors metadata.
struct Meta<'p> {
    map: HashMap<String, String>,
    path: &'p Path,
}

impl<'p> Meta<'p> {
    fn read(bytes: &[u8], path: &'p Path) -> Result<Self, FlowError> {
        let bad = |reason: String| FlowError::BadFile {
            path: path.to_path_buf(),
            reason,
        };
        let (_, m) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let map = m.metadata().clone().unwrap_or_default();
        match map.get(CHECKPOINT_KEY).map(String::as_str) {
            Some(CHECKPOINT_VERSION) => Ok(Meta { map, path }),
            Some(v) => Err(bad(format!(
                "checkpoint format version {v} is not supported (this library reads \
                 {CHECKPOINT_VERSION})"
            ))),
            None => Err(bad(format!(
                "not a flowtape checkpoint (no `{CHECKPOINT_KEY}` metadata; plain weights \
                 load with Params::load_into)"
            ))),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    fn require(&self, key: &str) -> Result<&str, FlowError> {
        self.get(key).ok_or_else(|| FlowError::BadFile {
            path: self.path.to_path_buf(),
            reason: format!("checkpoint metadata `{key}` is missing"),
        })
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T, FlowError>
    where
        T::Err: std::fmt::Display,
    {
        let s = self.require(key)?;
        s.parse().map_err(|e| FlowError::BadFile {
            path: self.path.to_path_buf(),
            reason: format!("checkpoint metadata `{key}` = {s:?}: {e}"),
        })
    }
}

/// Takes tensors out of the checkpoint's store by name, checked against the store being
/// restored, and remembers which were taken.
struct Taker<'a, E: Element> {
    file: &'a Params<E>,
    path: &'a Path,
    used: HashSet<String>,
}

impl<E: Element> Taker<'_, E> {
    /// One tensor per entry of `like`, the file's `name_of(entry name)`, with the entry's
    /// shape (accepted in the shapes [`Params::load_into`] accepts).
    fn like(
        &mut self,
        like: &Params<E>,
        name_of: impl Fn(&str) -> String,
    ) -> Result<Vec<Tensor<E>>, FlowError> {
        let mut out = Vec::with_capacity(like.len());
        for (i, (name, t)) in like.iter().enumerate() {
            let key = name_of(name);
            let own = like.file_shape(i);
            let mismatch = |found: String| FlowError::CheckpointMismatch {
                path: self.path.to_path_buf(),
                item: key.clone(),
                expected: format!("a tensor of shape {own:?}"),
                found,
            };
            let Some(j) = self.file.index_of(&key) else {
                return Err(mismatch("none".into()));
            };
            let found = self.file.file_shape(j);
            let (r, c) = t.shape();
            // `compatible` also admits `[rows, cols]` for a 1-D entry and the reverse; the
            // file's tensor was read as a matrix of the right size in every such case.
            if !compatible(found, own, r, c) || self.file.tensor(j).shape() != (r, c) {
                return Err(mismatch(format!("shape {found:?}")));
            }
            out.push(self.file.tensor(j).clone());
            self.used.insert(key);
        }
        Ok(out)
    }
}
