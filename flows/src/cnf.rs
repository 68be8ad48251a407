//! Continuous normalizing flows with the instantaneous change of variables (Chen et al. 2018;
//! FFJORD, Grathwohl et al. 2019).
//!
//! Data `x` flows forward to the base distribution: `dz/dt = f(z, t; θ)`, `z(0) = x`,
//! `z(T) ~ N(0, I)`, and with `dℓ/dt = tr(∂f/∂z)`, `ℓ(0) = 0`:
//!
//! **log p(x) = log N(z(T); 0, I) + ℓ(T)**.
//!
//! The augmented state `[z, ℓ]` is solved by ONE `odeint` node per block, so the adjoint
//! strategy, tolerances and solver are options, and the log-density channel is left out of
//! step-size control (it does not feed back into the dynamics).
//!
//! # Regularized dynamics (RNODE, FFJORD, STEER)
//!
//! [`Cnf::regularize`] adds an integrated penalty ([`Reg`]) as one more `n × 1` channel of the
//! same solve, `[z, ℓ, R₁, …, R_K]`, also left out of step-size control; [`LogProb`] returns
//! each term (per sample and as the batch mean) with its weight, and [`LogProb::loss`] is the
//! training loss `−mean log p(x) + Σ_k λ_k R_k`. [`Cnf::steer`] draws the end time of every
//! training call from `U(T − b, T + b)` (Ghosh et al. 2020). See [`crate::regularizers`].
//!
//! ```
//! use autodiff::Tape;
//! use flows::cnf::{Cnf, Mode};
//! use flows::nn::{Act, OdeNet};
//! use flows::regularizers::Reg;
//! use flows::{data, Params};
//! use ode::{Method, Options};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let mut params = Params::<f64>::new();
//! let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[8], Act::Tanh, &mut rng);
//! let cnf = Cnf::new(net)
//!     .end_time(1.0)
//!     .train_opts(Options::fixed(Method::Rk4, 4))
//!     .regularize(Reg::Kinetic, 0.01) // RNODE (Finlay et al. 2020)
//!     .regularize(Reg::JacobianFrobenius, 0.01)
//!     .steer(0.5); // STEER (Ghosh et al. 2020): T ~ U(0.5, 1.5) in training
//! let tape = Tape::new();
//! let p = params.vars(&tape);
//! let x = tape.constant(data::eight_gaussians(16, &mut rng));
//! let lp = cnf.log_prob(&tape, &p, x, Mode::Train).unwrap();
//! let loss = lp.loss(); // NLL + 0.01 R_K + 0.01 R_J
//! assert_eq!(lp.reg.len(), 2);
//! assert!((0.5..=1.5).contains(&lp.end_time.item()));
//! let grads = tape.grad(loss, &p).unwrap();
//! # assert_eq!(grads.len(), p.len());
//! ```

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use ode::{odeint, Dynamics, OdeStats, Options, Times};
use rand::Rng;

use crate::nn::OdeNet;
use crate::params::Params;
use crate::regularizers::{rates, Channel, Reg, SteerError};
use crate::trace::{divergence, Trace};

/// A time-dependent vector field `f(t, z)` on batches of points (`n × d`).
///
/// Each block of a [`Cnf`] owns a contiguous range of the parameter store; the field receives
/// exactly that slice of variables, in store order (so the ODE solve and its adjoint carry
/// only this block's parameters).
pub trait VectorField<E: Element> {
    /// Evaluates `f(t, z)` with `p` the block's own parameters.
    fn eval<'t>(&self, p: &[Var<'t, E>], t: Var<'t, E>, z: Var<'t, E>) -> Var<'t, E>;
}

/// An [`OdeNet`] addressing its parameters relative to its range (see [`OdeNet::relative`]).
impl<E: Element> VectorField<E> for OdeNet {
    fn eval<'t>(&self, p: &[Var<'t, E>], t: Var<'t, E>, z: Var<'t, E>) -> Var<'t, E> {
        self.forward(p, t, z)
    }
}

/// One block of a flow: a field and the store range of its parameters.
#[derive(Clone)]
struct Block<E: Element> {
    field: Rc<dyn VectorField<E>>,
    range: Range<usize>,
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

/// The augmented CNF dynamics `[z, ℓ, R₁, …] ↦ [f, tr ∂f/∂z, r₁, …]` for one block, with the
/// probes of one solve captured so that the forward and the adjoint pass share them.
struct CnfDynamics<E: Element> {
    field: Rc<dyn VectorField<E>>,
    probes: Vec<Tensor<E>>,
    regs: Vec<Rc<dyn Channel<E>>>,
}

impl<E: Element> Dynamics<E> for CnfDynamics<E> {
    fn eval<'t>(
        &self,
        _tape: &'t Tape<E>,
        t: Var<'t, E>,
        s: &[Var<'t, E>],
        p: &[Var<'t, E>],
    ) -> Vec<Var<'t, E>> {
        let z = s[0];
        if self.regs.is_empty() {
            let f = self.field.eval(p, t, z);
            let (div, _) = divergence(f, z, &self.probes);
            return vec![f, div];
        }
        let (f, div, rs) = rates(&self.regs, t, z, &self.probes, |t, z| {
            self.field.eval(p, t, z)
        });
        let mut out = Vec::with_capacity(2 + rs.len());
        out.push(f);
        out.push(div);
        out.extend(rs);
        out
    }
}

/// An integrated channel of a solve: which built-in it is (if one), the channel, its weight.
type Term<E> = (Option<Reg>, Rc<dyn Channel<E>>, E);

/// Which options a pass uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: the training solver options.
    Train,
    /// Evaluation: the evaluation solver options.
    Eval,
}

/// One integrated regularizer of a [`LogProb`].
#[derive(Clone, Debug)]
pub struct RegTerm<'t, E: Element> {
    /// Which built-in term (`None` for a user's [`Channel`]).
    pub reg: Option<Reg>,
    /// The channel's name ([`Channel::name`]).
    pub name: String,
    /// Its weight λ in [`LogProb::loss`].
    pub weight: E,
    /// `∫₀ᵀ r(z(t), t) dt` per sample (`n × 1`), summed over the blocks.
    pub per_sample: Var<'t, E>,
    /// The batch mean of `per_sample` (`1 × 1`): the value `R` entering the loss.
    pub value: Var<'t, E>,
}

/// The log-density of a batch, the regularizers and what the solves cost.
pub struct LogProb<'t, E: Element> {
    /// log p(x) per row (`n × 1`).
    pub log_prob: Var<'t, E>,
    /// The base point z(T) (`n × d`).
    pub z: Var<'t, E>,
    /// Statistics of each block's solve (backward ones fill in after differentiation).
    pub stats: Vec<OdeStats>,
    /// The configured regularizers ([`Cnf::regularize`]), in the order they were added.
    pub reg: Vec<RegTerm<'t, E>>,
    /// The end time the blocks were integrated to (`1 × 1`): drawn by STEER in training, `T`
    /// otherwise. Gradients reach a learnable `T` through it.
    pub end_time: Var<'t, E>,
}

impl<'t, E: Element> LogProb<'t, E> {
    /// The negative log-likelihood `−mean log p(x)` (`1 × 1`).
    pub fn nll(&self) -> Var<'t, E> {
        -self.log_prob.mean()
    }

    /// `Σ_k λ_k R_k` over the regularizers, `None` without any.
    pub fn reg_loss(&self) -> Option<Var<'t, E>> {
        self.reg
            .iter()
            .map(|r| r.value.mul_scalar(r.weight))
            .reduce(|a, b| a + b)
    }

    /// The training loss `−mean log p(x) + Σ_k λ_k R_k` (`1 × 1`).
    pub fn loss(&self) -> Var<'t, E> {
        match self.reg_loss() {
            Some(r) => self.nll() + r,
            None => self.nll(),
        }
    }

    /// The term of regularizer `reg`, if it is configured.
    pub fn term(&self, reg: Reg) -> Option<&RegTerm<'t, E>> {
        self.reg.iter().find(|r| r.reg == Some(reg))
    }

    /// The term whose channel is called `name` (built-in or the user's own).
    pub fn term_named(&self, name: &str) -> Option<&RegTerm<'t, E>> {
        self.reg.iter().find(|r| r.name == name)
    }
}

/// A continuous normalizing flow: one or more blocks, each an ODE of its own vector field.
///
/// Cloning copies the configuration and the probe generator's state, not the fields (they are
/// shared; their parameters live in the [`Params`] store anyway).
#[derive(Clone)]
pub struct Cnf<E: Element> {
    blocks: Vec<Block<E>>,
    end_time: EndTime<E>,
    trace: Trace,
    train_opts: Options<E>,
    eval_opts: Options<E>,
    rng: RefCell<rand_pcg::Pcg64>,
    regs: Vec<(Reg, E)>,
    /// Users' channels and their weights, integrated after the built-in ones.
    channels: Vec<(Rc<dyn Channel<E>>, E)>,
    steer: Option<E>,
    /// The end time set at construction (the initial value when learnable), for checking
    /// STEER's `b < T` when the flow is configured.
    initial_end_time: E,
}

impl<E: Element> Cnf<E> {
    /// A one-block flow with T = 1, Hutchinson's Gaussian estimator for training, Dopri5 at
    /// rtol = atol = 1e-5 for training and evaluation.
    pub fn new(net: OdeNet) -> Self {
        Self::stack(vec![net])
    }

    /// A flow of several ODE-net blocks applied in sequence (each block runs from 0 to T).
    pub fn stack(nets: Vec<OdeNet>) -> Self {
        Self::from_fields(
            nets.into_iter()
                .map(|n| {
                    let range = n.param_range();
                    (Rc::new(n.relative()) as Rc<dyn VectorField<E>>, range)
                })
                .collect(),
        )
    }

    /// A flow of user-defined fields, each with the store range of its parameters.
    pub fn from_fields(fields: Vec<(Rc<dyn VectorField<E>>, Range<usize>)>) -> Self {
        assert!(!fields.is_empty(), "Cnf: no blocks");
        let blocks = fields
            .into_iter()
            .map(|(field, range)| Block { field, range })
            .collect();
        let tol = E::from_f64(1e-5);
        Cnf {
            blocks,
            end_time: EndTime::Fixed(E::ONE),
            trace: Trace::hutchinson(crate::trace::Probe::Gaussian),
            train_opts: Options::dopri5(tol, tol),
            eval_opts: Options::dopri5(tol, tol),
            rng: RefCell::new(<rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(0)),
            regs: Vec::new(),
            channels: Vec::new(),
            steer: None,
            initial_end_time: E::ONE,
        }
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Fixed end time T.
    ///
    /// # Panics
    ///
    /// With [STEER](Cnf::steer) configured, unless `b < T`.
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
    /// With [STEER](Cnf::steer) configured, unless `b < t`.
    pub fn learnable_end_time(mut self, params: &mut Params<E>, name: &str, t: E) -> Self {
        // Stored 0-D, as FFJORD's `sqrt_end_time`, so checkpoints convert by name.
        let idx = params.add_with_file_shape(name, Tensor::scalar(t.sqrt()), vec![]);
        self.end_time = EndTime::Learnable(idx);
        self.initial_end_time = t;
        self.check_steer();
        self
    }

    /// Adds the integrated regularizer `reg` with weight `weight` (λ) to the training loss
    /// [`LogProb::loss`]; adding a term that is already configured replaces its weight (so
    /// [`Reg::L2`] and [`Reg::Kinetic`] are one channel). A zero weight still integrates and
    /// reports the term (to monitor it) without changing the loss.
    ///
    /// The terms are integrated in training and in [`Cnf::log_prob`] with [`Mode::Eval`]
    /// (where the Jacobian-Frobenius term is exact, as the trace is), not by
    /// [`Cnf::log_prob_values`] or sampling.
    pub fn regularize(mut self, reg: Reg, weight: E) -> Self {
        match self.regs.iter_mut().find(|(r, _)| *r == reg) {
            Some(slot) => slot.1 = weight,
            None => self.regs.push((reg, weight)),
        }
        self
    }

    /// Sets the list of regularizers and weights (replacing any configured before).
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

    /// Adds a user-defined integrated [`Channel`] with weight `weight` (λ) in
    /// [`LogProb::loss`]. It is integrated like the built-in regularizers (one more `n × 1`
    /// state channel, left out of step-size control, with every trace, adjoint, STEER and
    /// stacked blocks) and reported in [`LogProb::reg`] after them, under its
    /// [`name`](Channel::name).
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

    /// STEER (Ghosh et al. 2020): in training ([`Mode::Train`]) every call of
    /// [`Cnf::log_prob`] integrates to `T + u` with `u ~ U(−b, b)` drawn from the flow's own
    /// generator (the one of the probes, see [`Cnf::seed`]); evaluation and sampling use `T`.
    /// With a learnable `T` the gradient reaches it through `T + u`.
    ///
    /// # Panics
    ///
    /// Unless `0 ≤ b < T` (for a learnable `T`, its initial value). A learnable `T` that later
    /// drifts to `T ≤ b` makes `log_prob` fail with a [`SteerError`].
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
                "Cnf::steer: the half-width b must satisfy 0 ≤ b < T, got b = {bf} with T = {tf}"
            );
        }
    }

    /// Draws a training end time as [`Cnf::log_prob`] does in [`Mode::Train`] (advancing the
    /// flow's generator): `T + u`, `u ~ U(−b, b)` with STEER, `T` without. Fails with a
    /// [`SteerError`] if a learnable `T` is no larger than `b`.
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
                "Cnf::log_prob (STEER)",
                SteerError {
                    end_time: t.to_f64(),
                    half_width: b.to_f64(),
                },
            ));
        }
        let r: f64 = self.rng.borrow_mut().random();
        Ok(b * E::from_f64(2.0 * r - 1.0))
    }

    /// The trace estimator used in training (evaluation always uses the exact trace).
    pub fn trace(mut self, trace: Trace) -> Self {
        self.trace = trace;
        self
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
        *self.rng.borrow_mut() = <rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(seed);
        self
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

    /// log p(x) per row for data `x` (`n × d`), recorded on `tape` (`p` = `params.vars(tape)`),
    /// with the configured regularizers ([`Cnf::regularize`]).
    ///
    /// [`Mode::Train`] uses the training options and trace estimator and, with
    /// [STEER](Cnf::steer), a random end time; [`Mode::Eval`] the evaluation options, the exact
    /// trace and the fixed `T`. The generator draws, in order, STEER's offset and then each
    /// block's probes.
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
        with_regs: bool,
    ) -> autodiff::Result<LogProb<'t, E>> {
        let (n, d) = x.shape();
        let (opts, trace) = match mode {
            Mode::Train => (&self.train_opts, self.trace),
            Mode::Eval => (&self.eval_opts, Trace::Exact),
        };
        let terms = if with_regs {
            self.all_channels()
        } else {
            Vec::new()
        };
        let regs: Vec<Rc<dyn Channel<E>>> = terms.iter().map(|(_, c, _)| c.clone()).collect();
        let mut flags = vec![true, false];
        flags.resize(2 + regs.len(), false);
        let opts = opts.clone().error_channels(flags);
        let t0 = tape.scalar(E::ZERO);
        let mut t1 = self.t_end(tape, p);
        if mode == Mode::Train && self.steer.is_some() {
            let u = self.draw_steer_offset(t1.item())?;
            t1 = t1.add_scalar(u);
        }
        let mut z = x;
        let mut delta: Option<Var<'t, E>> = None;
        let mut acc: Vec<Option<Var<'t, E>>> = vec![None; regs.len()];
        let mut stats = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let probes = trace.draw(n, d, &mut *self.rng.borrow_mut());
            let dynamics: Rc<dyn Dynamics<E>> = Rc::new(CnfDynamics {
                field: block.field.clone(),
                probes,
                regs: regs.clone(),
            });
            let mut init = vec![z, tape.zeros(n, 1)];
            init.extend((0..regs.len()).map(|_| tape.zeros(n, 1)));
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
            let l = end[1];
            delta = Some(match delta {
                None => l,
                Some(a) => a + l,
            });
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
        let z = Tensor::randn(n, d, rng);
        self.transport_back(params, z)
    }

    /// Maps base points `z` (`n × d`) back to data space (the inverse flow), returning the data
    /// points and their log-densities.
    pub fn transport_back(
        &self,
        params: &Params<E>,
        z: Tensor<E>,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        let tape = Tape::new();
        let p = tape.no_grad(|| params.vars(&tape));
        let (n, _) = z.shape();
        let t1v = self.end_time_value(params);
        let opts = self.eval_opts.clone().error_channels(vec![true, false]);
        let zt = tape.constant(z);
        let mut cur = zt;
        let mut delta: Option<Var<'_, E>> = None;
        for block in self.blocks.iter().rev() {
            let dynamics: Rc<dyn Dynamics<E>> = Rc::new(CnfDynamics {
                field: block.field.clone(),
                probes: Vec::new(),
                regs: Vec::new(),
            });
            let l = tape.zeros(n, 1);
            let sol = odeint(
                &tape,
                &dynamics,
                &[cur, l],
                &p[block.range.clone()],
                [t1v, E::ZERO],
                &opts,
            )?;
            cur = sol.last()[0];
            // Integrating back from T, ℓ(0) = −∫₀ᵀ tr: log p(x) = log N(z_T) − ℓ(0).
            let l = sol.last()[1];
            delta = Some(match delta {
                None => l,
                Some(a) => a + l,
            });
        }
        let logp = zt.log_normal() - delta.expect("at least one block");
        Ok((cur.value(), logp.value()))
    }

    /// Exact log-density on plain values (no gradients), e.g. for a density plot or test NLL.
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
