//! [`Trainer`]: the training loop the examples share.

mod state;

use std::path::{Path, PathBuf};
use std::time::Instant;

use autodiff::{Element, Tensor};
use rand_pcg::Pcg64;

use self::state::{load_state, save_state, trainer_path};
use super::csv_log::CsvLog;
use super::progress::{format_duration, ProgressMode, Reporter, Smoothed};
use super::{load_checkpoint, save_checkpoint, Ema};
use crate::optim::StatefulOptimizer;
use crate::{FlowError, Params};

/// Named scalar metrics of one iteration (NFE, end time, regularizer values, ...), in the
/// order they were added; they become columns of the CSV log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics(Vec<(String, f64)>);

impl Metrics {
    /// No metrics.
    pub fn new() -> Self {
        Metrics(Vec::new())
    }

    /// Adds (or replaces) `name`.
    pub fn with(mut self, name: impl Into<String>, value: f64) -> Self {
        self.set(name, value);
        self
    }

    /// Adds (or replaces) `name`.
    pub fn set(&mut self, name: impl Into<String>, value: f64) {
        let name = name.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|&(_, v)| v)
    }

    /// `(name, value)` in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> + '_ {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

/// What the user's step closure returns for one batch: the loss, its gradient with respect
/// to every entry of the store (in store order, as `tape.grad(loss, &p)` gives it) and the
/// metrics to log.
pub struct Step<E: Element> {
    /// The loss of the batch.
    pub loss: f64,
    /// `∂loss/∂θ` per store entry.
    pub grads: Vec<Tensor<E>>,
    /// Further metrics of the iteration.
    pub metrics: Metrics,
}

/// The best validation so far: its iteration, value and the weights that reached it (the
/// [`Ema`] average when the run keeps one, since that is what was validated).
#[derive(Clone, Debug, PartialEq)]
pub struct Best<E: Element> {
    /// Iteration of the validation.
    pub iteration: u64,
    /// Its value (lower is better).
    pub value: f64,
    /// The validated weights.
    pub params: Params<E>,
}

/// What a [`Trainer::run`] did.
#[derive(Clone, Debug)]
pub struct Report<E: Element> {
    /// The iteration the run started from (0, or the checkpoint's when resumed).
    pub start: u64,
    /// Iterations completed in total (including those before a resume).
    pub iterations: u64,
    /// Whether early stopping ended the run before its last iteration.
    pub stopped_early: bool,
    /// The best validation, when validation is on.
    pub best: Option<Best<E>>,
    /// The loss of every iteration this call ran.
    pub losses: Vec<f64>,
    /// Wall time of the run in seconds, including the time before a resume.
    pub seconds: f64,
}

type Validate<'v, E, Err> = Box<dyn FnMut(&Params<E>) -> Result<f64, Err> + 'v>;

/// The training loop: optimizer step, [`Ema`] update, progress with a smoothed time per
/// iteration and an ETA, periodic validation with early stopping and best-weights selection,
/// a CSV log of every metric, and checkpoints that resume bit for bit.
///
/// The work of one iteration is the user's closure `step(params, rng, iteration)`, which
/// computes the loss and gradient of one batch and draws everything random from `rng` (the
/// run's generator, saved in checkpoints). Keeping the batch's loss and gradient in one
/// closure is also what lets a data-parallel loop later split a batch across threads and sum
/// the gradients in a fixed order, without changing the rest.
///
/// The CSV log has the columns `iter`, `loss`, then the step's [`Metrics`] in the order of the
/// first iteration, then `val` (empty when not validated), `lr`, `time` (seconds since the run
/// started, across resumes) and `step_time` (seconds of this iteration's step, optimizer
/// update and EMA); read it back with
/// [`read_csv_series`](crate::plot::read_csv_series). On resume, the records after the
/// checkpoint's iteration are dropped, since those iterations run again.
///
/// ```
/// use flows::prelude::*;
/// use flows::train::{Metrics, ProgressMode, Step, Trainer};
///
/// # fn main() -> Result<(), flows::FlowError> {
/// // Fit w to minimise (w − 3)² with noisy gradients.
/// let mut params = Params::<f64>::new();
/// params.add("w", Tensor::scalar(0.0));
/// let mut opt = Adam::new(0.1);
/// let mut rng = Pcg64::seed_from_u64(0);
/// let report = Trainer::new(300)
///     .progress(ProgressMode::Off)
///     .validate_every(10, |p: &Params<f64>| Ok((p.tensor(0).item() - 3.0).abs()))
///     .patience(5)
///     .run(&mut params, &mut opt, &mut rng, None, |p, rng, _it| {
///         let w = p.tensor(0).item();
///         let noise: f64 = rng.random::<f64>() - 0.5;
///         Ok(Step {
///             loss: (w - 3.0).powi(2),
///             grads: vec![Tensor::scalar(2.0 * (w - 3.0) + 0.01 * noise)],
///             metrics: Metrics::new().with("w", w),
///         })
///     })?;
/// let best = report.best.unwrap();
/// assert!(best.value < 0.05, "{}", best.value);
/// # Ok(())
/// # }
/// ```
pub struct Trainer<'v, E: Element, Err> {
    iters: u64,
    log_every: u64,
    progress: ProgressMode,
    csv: Option<PathBuf>,
    checkpoint: Option<(PathBuf, u64)>,
    resume: bool,
    validate: Option<(u64, Validate<'v, E, Err>)>,
    patience: Option<u64>,
    min_delta: f64,
    smoothing: usize,
}

/// Early-stopping state: the best validation and the validations since it.
struct Watch<E: Element> {
    best: Option<Best<E>>,
    bad: u64,
    stopped: bool,
}

impl<'v, E: Element, Err: From<FlowError>> Trainer<'v, E, Err> {
    /// A loop of `iters` iterations, reporting every 50, no validation, log or checkpoints.
    pub fn new(iters: u64) -> Self {
        Trainer {
            iters,
            log_every: 50,
            progress: ProgressMode::Auto,
            csv: None,
            checkpoint: None,
            resume: false,
            validate: None,
            patience: None,
            min_delta: 0.0,
            smoothing: 20,
        }
    }

    /// Prints a plain progress line every `n` iterations (and after the last). Panics if 0.
    pub fn log_every(mut self, n: u64) -> Self {
        assert!(n > 0, "Trainer::log_every: the period must be positive");
        self.log_every = n;
        self
    }

    /// How progress is shown ([`ProgressMode::Auto`] by default).
    pub fn progress(mut self, mode: ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// Writes the CSV log to `path` (see the type's docs).
    pub fn csv(mut self, path: impl Into<PathBuf>) -> Self {
        self.csv = Some(path.into());
        self
    }

    /// Writes a checkpoint ([`save_checkpoint`]) to `path` every `every` iterations, after
    /// the last and when early stopping ends the run; the loop's own state (best weights,
    /// patience count, elapsed time) goes next to it, in `*.trainer.safetensors`. Panics if
    /// `every` is 0.
    pub fn checkpoint(mut self, path: impl Into<PathBuf>, every: u64) -> Self {
        assert!(
            every > 0,
            "Trainer::checkpoint: the period must be positive"
        );
        self.checkpoint = Some((path.into(), every));
        self
    }

    /// Resumes from the checkpoint when its file exists (otherwise starts afresh). The
    /// objects handed to [`run`](Self::run) must be built as the first run built them.
    pub fn resume(mut self, on: bool) -> Self {
        self.resume = on;
        self
    }

    /// Validates every `every` iterations and after the last with `f` (lower is better), on
    /// the [`Ema`] weights when the run keeps an average and on the parameters otherwise.
    /// Panics if `every` is 0.
    pub fn validate_every(
        mut self,
        every: u64,
        f: impl FnMut(&Params<E>) -> Result<f64, Err> + 'v,
    ) -> Self {
        assert!(
            every > 0,
            "Trainer::validate_every: the period must be positive"
        );
        self.validate = Some((every, Box::new(f)));
        self
    }

    /// Stops after `validations` validations in a row that do not improve on the best by
    /// more than the [`min_delta`](Self::min_delta). Panics if 0.
    pub fn patience(mut self, validations: u64) -> Self {
        assert!(validations > 0, "Trainer::patience: must be positive");
        self.patience = Some(validations);
        self
    }

    /// The improvement a validation must make to count as better (default 0).
    pub fn min_delta(mut self, delta: f64) -> Self {
        self.min_delta = delta;
        self
    }

    /// The span of the moving average of the time per iteration (default 20).
    pub fn smoothing(mut self, window: usize) -> Self {
        self.smoothing = window.max(1);
        self
    }

    /// Runs the loop (see the type's docs). Errors: the step's or validation's own, and
    /// [`FlowError`]s of the log and checkpoint files, of a resume that does not fit, and
    /// [`FlowError::Diverged`] when a loss is not finite.
    pub fn run<O, S>(
        mut self,
        params: &mut Params<E>,
        opt: &mut O,
        rng: &mut Pcg64,
        mut ema: Option<&mut Ema<E>>,
        mut step: S,
    ) -> Result<Report<E>, Err>
    where
        O: StatefulOptimizer<E> + ?Sized,
        S: FnMut(&Params<E>, &mut Pcg64, u64) -> Result<Step<E>, Err>,
    {
        let clock = Instant::now();
        let mut start = 0;
        let mut watch = Watch {
            best: None,
            bad: 0,
            stopped: false,
        };
        let mut seconds_before = 0.0;
        if let (true, Some((path, _))) = (self.resume, &self.checkpoint) {
            if path.exists() {
                start = load_checkpoint(path, params, opt, rng, ema.as_deref_mut())?;
                let (w, s) = load_state(&trainer_path(path), start, params)?;
                watch = w;
                seconds_before = s;
            }
        }
        let reporter = Reporter::new(self.progress, self.iters, start);
        if start > 0 {
            reporter.note(&format!("resumed at iteration {start}"));
        }
        let mut log: Option<CsvLog> = None;
        let mut smoothed = Smoothed::new(self.smoothing);
        let mut losses = Vec::new();
        let mut window: (f64, Vec<f64>, u64) = (0.0, Vec::new(), 0);
        let mut done = start;
        let first = start + 1;
        for it in first..=self.iters {
            if watch.stopped {
                break;
            }
            let t0 = Instant::now();
            let s = step(params, rng, it)?;
            if !s.loss.is_finite() {
                return Err(FlowError::Diverged {
                    iteration: it,
                    loss: s.loss,
                }
                .into());
            }
            opt.step(params, &s.grads);
            if let Some(e) = ema.as_deref_mut() {
                e.update(params);
            }
            let step_time = t0.elapsed().as_secs_f64();
            smoothed.push(step_time);
            losses.push(s.loss);
            done = it;

            let last = it == self.iters;
            let mut val = None;
            if let Some((every, f)) = self.validate.as_mut() {
                if it % *every == 0 || last {
                    let validated: &Params<E> = match ema.as_deref() {
                        Some(e) => e.params(),
                        None => params,
                    };
                    let v = f(validated)?;
                    val = Some(v);
                    let improved = watch
                        .best
                        .as_ref()
                        .is_none_or(|b| v < b.value - self.min_delta);
                    if improved {
                        watch.best = Some(Best {
                            iteration: it,
                            value: v,
                            params: validated.clone(),
                        });
                        watch.bad = 0;
                    } else {
                        watch.bad += 1;
                    }
                    let best = watch.best.as_ref().expect("set above");
                    reporter.note(&format!(
                        "validation at {it}: {v:.6} (best {:.6} at {})",
                        best.value, best.iteration
                    ));
                    if let Some(p) = self.patience {
                        if watch.bad >= p && !last {
                            watch.stopped = true;
                            reporter.note(&format!(
                                "early stopping at {it}: {p} validations without improvement"
                            ));
                        }
                    }
                }
            }

            let elapsed = seconds_before + clock.elapsed().as_secs_f64();
            if let Some(path) = &self.csv {
                let log = match &mut log {
                    Some(l) => l,
                    None => log.insert(open_log(path, &s.metrics, self.resume, start)?),
                };
                let mut row = vec![Some(s.loss)];
                for name in &log.columns()[2..log.columns().len() - 4] {
                    row.push(s.metrics.get(name));
                }
                if let Some((name, _)) = s
                    .metrics
                    .iter()
                    .find(|(n, _)| !log.columns().iter().any(|c| c == n))
                {
                    panic!(
                        "Trainer: metric `{name}` first appeared at iteration {it}; the CSV \
                         log's columns are fixed by the first iteration"
                    );
                }
                row.extend([val, Some(opt.lr()), Some(elapsed), Some(step_time)]);
                log.record(it, &row)?;
            }

            window.0 += s.loss;
            if window.1.len() != s.metrics.0.len() {
                window.1 = vec![0.0; s.metrics.0.len()];
            }
            for (acc, (_, v)) in window.1.iter_mut().zip(s.metrics.iter()) {
                *acc += v;
            }
            window.2 += 1;
            let print = it % self.log_every == 0 || last || watch.stopped;
            let k = window.2 as f64;
            let mut line = format!("loss {:.4}", window.0 / k);
            for (acc, (name, _)) in window.1.iter().zip(s.metrics.iter()) {
                line.push_str(&format!("  {name} {}", format_value(acc / k)));
            }
            let per = smoothed.get();
            line.push_str(&format!(
                "  {:.1} ms/it  ETA {}",
                per * 1e3,
                format_duration(per * (self.iters - it) as f64)
            ));
            reporter.update(it, self.iters, &line, print);
            if print {
                window = (0.0, Vec::new(), 0);
            }

            if let Some((path, every)) = &self.checkpoint {
                if it % every == 0 || last || watch.stopped {
                    save_state(&trainer_path(path), it, &watch, elapsed)?;
                    save_checkpoint(path, it, params, opt, rng, ema.as_deref())?;
                }
            }
        }
        reporter.finish();
        Ok(Report {
            start,
            iterations: done,
            stopped_early: watch.stopped,
            best: watch.best,
            losses,
            seconds: seconds_before + clock.elapsed().as_secs_f64(),
        })
    }
}

/// A metric for a progress line: integers (counts such as NFE) without decimals, large values
/// with one, the rest with four.
fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

fn open_log(path: &Path, m: &Metrics, resume: bool, start: u64) -> Result<CsvLog, FlowError> {
    let mut columns = vec!["iter".to_string(), "loss".to_string()];
    columns.extend(m.iter().map(|(n, _)| n.to_string()));
    for reserved in ["iter", "loss", "val", "lr", "time", "step_time"] {
        assert!(
            !m.iter().any(|(n, _)| n == reserved),
            "Trainer: metric name `{reserved}` is reserved for a column of the log"
        );
    }
    columns.extend(["val", "lr", "time", "step_time"].map(String::from));
    if resume && start > 0 {
        CsvLog::resume(path, columns, start)
    } else {
        CsvLog::create(path, columns)
    }
}
