//! The flow core shared by [`Cnf`](crate::cnf::Cnf) and [`OtFlow`](crate::otflow::OtFlow):
//! blocks of [`VectorField`]s, the end time and its learnability, STEER, the training and
//! evaluation solve options, the trace estimator and its probes, the integrated channels,
//! sampling, the inverse map and the log-density of plain values.
//!
//! Data `x` flows forward to the base distribution: `dz/dt = f(z, t; θ)`, `z(0) = x`,
//! `z(T) ~ N(0, I)`, and with `dℓ/dt = tr(∂f/∂z)`, `ℓ(0) = 0`,
//! **log p(x) = log N(z(T); 0, I) + ℓ(T)**. Each block solves the augmented state
//! `[z, ℓ, R₁, …, R_K]` as ONE `odeint` node (so solver, tolerances and adjoint are options);
//! only `z` enters step-size control, since nothing feeds back from `ℓ` or the channels.
//!
//! A flow type is a thin layer on [`Flow`]: the CNF reports its log-density and penalties,
//! OT-Flow adds its two channels ([`TransportCost`](crate::otflow::TransportCost),
//! [`HjbResidual`](crate::otflow::HjbResidual)) to a potential's field and weighs them in its
//! own loss. A user's own field gets the same: every trace estimator and adjoint, STEER, a
//! learnable end time, stacked blocks, channels, sampling and plain-value evaluation.

mod field;
mod output;

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use ode::{odeint, Dynamics, Options, Times};
use rand::Rng;

pub use field::{FieldOutput, VectorField};
pub use output::{LogProb, RegTerm};

use crate::params::Params;
use crate::regularizers::{Channel, Reg, SteerError};
use crate::trace::{Probe, Trace};
use field::FlowDynamics;

/// Which options a pass uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: the training solver options and trace estimator, and STEER's random end time.
    Train,
    /// Evaluation: the evaluation solver options, the exact trace and the fixed end time.
    Eval,
}

/// The end time T of the flow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EndTime<E> {
    /// A fixed T.
    Fixed(E),
    /// T = s² for the store entry `s` at this index (FFJORD's `sqrt_end_time`), learned through
    /// the solve's time gradient.
    Learnable(usize),
}

/// One block of a flow: a field and the store range of its parameters.
#[derive(Clone)]
struct Block<E: Element> {
    field: Rc<dyn VectorField<E>>,
    range: Range<usize>,
}

/// An integrated channel of a solve: which built-in it is (if one), the channel, its weight.
type Term<E> = (Option<Reg>, Rc<dyn Channel<E>>, E);

/// The flow core: one or more blocks, each an ODE of its own vector field, integrated from 0
/// to T in sequence (see the [module docs](self)).
///
/// Defaults: T = 1, Hutchinson's Gaussian estimator for training, Dopri5 at
/// rtol = atol = 1e-5 for training and evaluation, no channels, no STEER, seed 0.
///
/// Cloning copies the configuration and the probe generator's state, not the fields (they are
/// shared; their parameters live in the [`Params`] store anyway).
#[derive(Clone)]
pub struct Flow<E: Element> {
    /// The flow type's name, for the messages of panics and errors ("Cnf", "OtFlow").
    name: &'static str,
    blocks: Vec<Block<E>>,
    end_time: EndTime<E>,
    /// The end time set at construction (the initial value when learnable), for checking
    /// STEER's `b < T` when the flow is configured.
    initial_end_time: E,
    trace: Trace,
    train_opts: Options<E>,
    eval_opts: Options<E>,
    rng: RefCell<rand_pcg::Pcg64>,
    regs: Vec<(Reg, E)>,
    /// Users' channels and their weights, integrated after the built-in ones.
    channels: Vec<(Rc<dyn Channel<E>>, E)>,
    steer: Option<E>,
}

impl<E: Element> Flow<E> {
    /// A flow of fields, each with the store range of its parameters; `name` is the flow
    /// type's name in panic and error messages.
    ///
    /// # Panics
    ///
    /// Without any field.
    pub fn new(name: &'static str, fields: Vec<(Rc<dyn VectorField<E>>, Range<usize>)>) -> Self {
        assert!(!fields.is_empty(), "{name}: no blocks");
        let blocks = fields
            .into_iter()
            .map(|(field, range)| Block { field, range })
            .collect();
        let tol = E::from_f64(1e-5);
        Flow {
            name,
            blocks,
            end_time: EndTime::Fixed(E::ONE),
            initial_end_time: E::ONE,
            trace: Trace::hutchinson(Probe::Gaussian),
            train_opts: Options::dopri5(tol, tol),
            eval_opts: Options::dopri5(tol, tol),
            rng: RefCell::new(<rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(0)),
            regs: Vec::new(),
            channels: Vec::new(),
            steer: None,
        }
    }

    /// The same flow with new fields for its blocks, keeping every other setting (OT-Flow's
    /// trace choice lives in its field).
    pub(crate) fn replace_fields(
        mut self,
        fields: Vec<(Rc<dyn VectorField<E>>, Range<usize>)>,
    ) -> Self {
        assert!(!fields.is_empty(), "{}: no blocks", self.name);
        self.blocks = fields
            .into_iter()
            .map(|(field, range)| Block { field, range })
            .collect();
        self
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The store range of each block's parameters, in block order.
    pub fn param_ranges(&self) -> Vec<Range<usize>> {
        self.blocks.iter().map(|b| b.range.clone()).collect()
    }

    /// Fixed end time T.
    ///
    /// # Panics
    ///
    /// With [STEER](Flow::steer) configured, unless `b < T`.
    pub fn end_time(mut self, t: E) -> Self {
        self.end_time = EndTime::Fixed(t);
        self.initial_end_time = t;
        self.check_steer();
        self
    }

    /// Learnable end time: registers `{name}` = √T in `params` (FFJORD's `sqrt_end_time`).
    ///
    /// # Panics
    ///
    /// With [STEER](Flow::steer) configured, unless `b < t`.
    pub fn learnable_end_time(mut self, params: &mut Params<E>, name: &str, t: E) -> Self {
        // Stored 0-D, as FFJORD's `sqrt_end_time`, so checkpoints convert by name.
        let idx = params.add_with_file_shape(name, Tensor::scalar(t.sqrt()), vec![]);
        self.end_time = EndTime::Learnable(idx);
        self.initial_end_time = t;
        self.check_steer();
        self
    }

    /// How the end time is set.
    pub fn end_time_kind(&self) -> EndTime<E> {
        self.end_time
    }

    /// Adds the built-in regularizer `reg` with weight `weight`; a term that is already
    /// configured gets the new weight (so [`Reg::L2`] and [`Reg::Kinetic`] are one channel).
    pub fn regularize(mut self, reg: Reg, weight: E) -> Self {
        match self.regs.iter_mut().find(|(r, _)| *r == reg) {
            Some(slot) => slot.1 = weight,
            None => self.regs.push((reg, weight)),
        }
        self
    }

    /// Sets the list of built-in regularizers and weights (replacing any configured before).
    pub fn regularizers(mut self, terms: &[(Reg, E)]) -> Self {
        self.regs.clear();
        for &(reg, w) in terms {
            self = self.regularize(reg, w);
        }
        self
    }

    /// The configured built-in regularizers and their weights.
    pub fn regularizer_terms(&self) -> &[(Reg, E)] {
        &self.regs
    }

    /// Adds an integrated [`Channel`] with weight `weight`, integrated after the built-in
    /// regularizers.
    pub fn channel(mut self, channel: Rc<dyn Channel<E>>, weight: E) -> Self {
        self.channels.push((channel, weight));
        self
    }

    /// Every integrated channel with its weight, built-in ones first, in the order of
    /// [`LogProb::reg`].
    fn all_channels(&self) -> Vec<Term<E>> {
        self.regs
            .iter()
            .map(|&(r, w)| (Some(r), r.channel(), w))
            .chain(self.channels.iter().map(|(c, w)| (None, c.clone(), *w)))
            .collect()
    }

    /// STEER (Ghosh et al. 2020): in training every pass integrates to `T + u` with
    /// `u ~ U(−b, b)` drawn from the flow's own generator (see [`Flow::seed`]); evaluation and
    /// sampling use `T`. With a learnable `T` the gradient reaches it through `T + u`.
    ///
    /// # Panics
    ///
    /// Unless `0 ≤ b < T` (for a learnable `T`, its initial value). A learnable `T` that later
    /// drifts to `T ≤ b` makes a training pass fail with a [`SteerError`].
    pub fn steer(mut self, b: E) -> Self {
        self.steer = Some(b);
        self.check_steer();
        self
    }

    /// STEER's half-width `b`, if configured.
    pub fn steer_half_width(&self) -> Option<E> {
        self.steer
    }

    fn check_steer(&self) {
        if let Some(b) = self.steer {
            let (bf, tf) = (b.to_f64(), self.initial_end_time.to_f64());
            assert!(
                bf.is_finite() && bf >= 0.0 && bf < tf,
                "{}::steer: the half-width b must satisfy 0 ≤ b < T, got b = {bf} with T = {tf}",
                self.name
            );
        }
    }

    /// Draws a training end time as a training pass does (advancing the flow's generator):
    /// `T + u`, `u ~ U(−b, b)` with STEER, `T` without. Fails with a [`SteerError`] if a
    /// learnable `T` is no larger than `b`.
    pub fn draw_end_time(&self, params: &Params<E>) -> autodiff::Result<E> {
        let t = self.end_time_value(params);
        Ok(t + self.draw_steer_offset(t)?)
    }

    /// STEER's offset `u ~ U(−b, b)` for the current end time `t` (zero without STEER).
    fn draw_steer_offset(&self, t: E) -> autodiff::Result<E> {
        let Some(b) = self.steer else {
            return Ok(E::ZERO);
        };
        // Also refuses a NaN end time.
        if t.partial_cmp(&b) != Some(std::cmp::Ordering::Greater) {
            return Err(autodiff::Error::new(
                format!("{} (STEER)", self.name),
                SteerError {
                    end_time: t.to_f64(),
                    half_width: b.to_f64(),
                },
            ));
        }
        let r: f64 = self.rng.borrow_mut().random();
        Ok(b * E::from_f64(2.0 * r - 1.0))
    }

    /// The trace estimator used in training (evaluation always uses the exact trace; a field's
    /// own divergence, see [`VectorField::eval_with_divergence`], takes precedence over both).
    pub fn trace(mut self, trace: Trace) -> Self {
        self.trace = trace;
        self
    }

    /// The training trace estimator.
    pub fn trace_estimator(&self) -> Trace {
        self.trace
    }

    /// Solver, tolerances and adjoint for training.
    pub fn train_opts(mut self, opts: Options<E>) -> Self {
        self.train_opts = opts;
        self
    }

    /// Solver and tolerances for evaluation and sampling.
    pub fn eval_opts(mut self, opts: Options<E>) -> Self {
        self.eval_opts = opts;
        self
    }

    /// Seeds the generator of the Hutchinson probes and of STEER's end times.
    pub fn seed(self, seed: u64) -> Self {
        self.reseed(seed);
        self
    }

    /// [`seed`](Self::seed) in place, through a shared reference (a training step that
    /// draws the seed from the run's generator borrows the flow only immutably).
    pub fn reseed(&self, seed: u64) {
        *self.rng.borrow_mut() = <rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(seed);
    }

    /// The current end time T (from the store when it is learnable).
    pub fn end_time_value(&self, params: &Params<E>) -> E {
        match self.end_time {
            EndTime::Fixed(t) => t,
            EndTime::Learnable(i) => {
                let s = params.tensor(i).item();
                s * s
            }
        }
    }

    fn t_end<'t>(&self, tape: &'t Tape<E>, p: &[Var<'t, E>]) -> Var<'t, E> {
        match self.end_time {
            EndTime::Fixed(t) => tape.scalar(t),
            EndTime::Learnable(i) => p[i].square(),
        }
    }

    /// The solve options of a pass with `k` channels: only `z` is under error control.
    fn options(&self, mode: Mode, k: usize) -> Options<E> {
        let opts = match mode {
            Mode::Train => &self.train_opts,
            Mode::Eval => &self.eval_opts,
        };
        let mut flags = vec![false; 2 + k];
        flags[0] = true;
        opts.clone().error_channels(flags)
    }

    fn dynamics(
        block: &Block<E>,
        probes: Vec<Tensor<E>>,
        channels: Vec<Rc<dyn Channel<E>>>,
        mode: Mode,
    ) -> Rc<dyn Dynamics<E>> {
        Rc::new(FlowDynamics {
            field: block.field.clone(),
            probes,
            channels,
            mode,
        })
    }

    /// log p(x) per row for data `x` (`n × d`), recorded on `tape` (`p` = `params.vars(tape)`),
    /// with the configured channels.
    ///
    /// [`Mode::Train`] uses the training options and trace estimator and, with
    /// [STEER](Flow::steer), a random end time; [`Mode::Eval`] the evaluation options, the
    /// exact trace and the fixed `T`. The generator draws, in order, STEER's offset and then
    /// each block's probes.
    pub fn log_prob<'t>(
        &self,
        tape: &'t Tape<E>,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        mode: Mode,
    ) -> autodiff::Result<LogProb<'t, E>> {
        self.log_prob_with(tape, p, x, mode, true)
    }

    fn log_prob_with<'t>(
        &self,
        tape: &'t Tape<E>,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        mode: Mode,
        with_channels: bool,
    ) -> autodiff::Result<LogProb<'t, E>> {
        let (n, d) = x.shape();
        let trace = match mode {
            Mode::Train => self.trace,
            Mode::Eval => Trace::Exact,
        };
        let terms = if with_channels {
            self.all_channels()
        } else {
            Vec::new()
        };
        let channels: Vec<Rc<dyn Channel<E>>> = terms.iter().map(|(_, c, _)| c.clone()).collect();
        let opts = self.options(mode, channels.len());
        let t0 = tape.scalar(E::ZERO);
        let mut t1 = self.t_end(tape, p);
        if mode == Mode::Train && self.steer.is_some() {
            let u = self.draw_steer_offset(t1.item())?;
            t1 = t1.add_scalar(u);
        }
        let mut z = x;
        let mut delta: Option<Var<'t, E>> = None;
        let mut acc: Vec<Option<Var<'t, E>>> = vec![None; channels.len()];
        let mut stats = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let probes = trace.draw(n, d, &mut *self.rng.borrow_mut());
            let dynamics = Self::dynamics(block, probes, channels.clone(), mode);
            let init: Vec<Var<'t, E>> = std::iter::once(z)
                .chain((0..1 + channels.len()).map(|_| tape.zeros(n, 1)))
                .collect();
            let sol = odeint(
                tape,
                &dynamics,
                &init,
                &p[block.range.clone()],
                Times::Vars(vec![t0, t1]),
                &opts,
            )?;
            let end = sol.last();
            z = end[0];
            delta = Some(delta.map_or(end[1], |a| a + end[1]));
            for (a, r) in acc.iter_mut().zip(&end[2..]) {
                *a = Some(a.map_or(*r, |a| a + *r));
            }
            stats.push(sol.stats);
        }
        let log_prob = z.log_normal() + delta.expect("at least one block");
        let reg = terms
            .into_iter()
            .zip(acc)
            .map(|((reg, channel, weight), per_sample)| {
                let per_sample = per_sample.expect("at least one block");
                RegTerm {
                    reg,
                    name: channel.name(),
                    weight,
                    per_sample,
                    value: per_sample.mean(),
                }
            })
            .collect();
        Ok(LogProb {
            log_prob,
            z,
            stats,
            reg,
            end_time: t1,
        })
    }

    /// Draws `n` samples by integrating base noise backwards from T to 0 through the blocks in
    /// reverse order, with their log-densities (exact trace): returns `(x, log p(x))`.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        params: &Params<E>,
        n: usize,
        d: usize,
        rng: &mut R,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        self.transport_back(params, Tensor::randn(n, d, rng))
    }

    /// Maps base points `z` (`n × d`, at t = T) back to data space (t = 0) through the blocks
    /// in reverse order (the inverse flow), with the evaluation options and the exact trace,
    /// returning the data points and their log-densities.
    pub fn transport_back(
        &self,
        params: &Params<E>,
        z: Tensor<E>,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        let tape = Tape::new();
        let p = tape.no_grad(|| params.vars(&tape));
        let (n, _) = z.shape();
        let t1 = self.end_time_value(params);
        let opts = self.options(Mode::Eval, 0);
        let zt = tape.constant(z);
        let mut cur = zt;
        let mut delta: Option<Var<'_, E>> = None;
        for block in self.blocks.iter().rev() {
            let dynamics = Self::dynamics(block, Vec::new(), Vec::new(), Mode::Eval);
            let sol = odeint(
                &tape,
                &dynamics,
                &[cur, tape.zeros(n, 1)],
                &p[block.range.clone()],
                [t1, E::ZERO],
                &opts,
            )?;
            let end = sol.last();
            cur = end[0];
            // Integrating back from T, ℓ(0) = −∫₀ᵀ tr: log p(x) = log N(z_T) − ℓ(0).
            delta = Some(delta.map_or(end[1], |a| a + end[1]));
        }
        let logp = zt.log_normal() - delta.expect("at least one block");
        Ok((cur.value(), logp.value()))
    }

    /// Exact log-density on plain values (no gradients, no channels), e.g. for a density plot
    /// or a test NLL.
    pub fn log_prob_values(
        &self,
        params: &Params<E>,
        x: &Tensor<E>,
    ) -> autodiff::Result<Tensor<E>> {
        let tape = Tape::new();
        let p = tape.no_grad(|| params.vars(&tape));
        let xv = tape.constant(x.clone());
        Ok(self
            .log_prob_with(&tape, &p, xv, Mode::Eval, false)?
            .log_prob
            .value())
    }
}
