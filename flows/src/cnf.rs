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
//! step-size control (it does not feed back into the dynamics). All of this is the shared
//! [flow core](crate::flow); a `Cnf` adds the regularized likelihood on top of it.
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

use std::ops::Range;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use ode::Options;
use rand::Rng;

pub use crate::flow::{EndTime, FieldOutput, LogProb, Mode, RegTerm, VectorField};

use crate::flow::Flow;
use crate::nn::OdeNet;
use crate::params::Params;
use crate::regularizers::{Channel, Reg};
use crate::trace::Trace;

/// A continuous normalizing flow: one or more blocks, each an ODE of its own vector field, on
/// the shared [flow core](crate::flow::Flow).
///
/// Cloning copies the configuration and the probe generator's state, not the fields (they are
/// shared; their parameters live in the [`Params`] store anyway).
#[derive(Clone)]
pub struct Cnf<E: Element> {
    core: Flow<E>,
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
    ///
    /// # Panics
    ///
    /// Without any field.
    pub fn from_fields(fields: Vec<(Rc<dyn VectorField<E>>, Range<usize>)>) -> Self {
        Cnf {
            core: Flow::new("Cnf", fields),
        }
    }

    /// The flow core this CNF is configured on.
    pub fn core(&self) -> &Flow<E> {
        &self.core
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.core.num_blocks()
    }

    /// Fixed end time T.
    ///
    /// # Panics
    ///
    /// With [STEER](Cnf::steer) configured, unless `b < T`.
    pub fn end_time(self, t: E) -> Self {
        self.map(|c| c.end_time(t))
    }

    /// Learnable end time: registers `{name}` = √T in `params` (FFJORD's `sqrt_end_time`).
    ///
    /// # Panics
    ///
    /// With [STEER](Cnf::steer) configured, unless `b < t`.
    pub fn learnable_end_time(self, params: &mut Params<E>, name: &str, t: E) -> Self {
        self.map(|c| c.learnable_end_time(params, name, t))
    }

    /// Adds the integrated regularizer `reg` with weight `weight` (λ) to the training loss
    /// [`LogProb::loss`]; adding a term that is already configured replaces its weight (so
    /// [`Reg::L2`] and [`Reg::Kinetic`] are one channel). A zero weight still integrates and
    /// reports the term (to monitor it) without changing the loss.
    ///
    /// The terms are integrated in training and in [`Cnf::log_prob`] with [`Mode::Eval`]
    /// (where the Jacobian-Frobenius term is exact, as the trace is), not by
    /// [`Cnf::log_prob_values`] or sampling.
    pub fn regularize(self, reg: Reg, weight: E) -> Self {
        self.map(|c| c.regularize(reg, weight))
    }

    /// Sets the list of regularizers and weights (replacing any configured before).
    pub fn regularizers(self, terms: &[(Reg, E)]) -> Self {
        self.map(|c| c.regularizers(terms))
    }

    /// The configured built-in regularizers and their weights.
    pub fn regularizer_terms(&self) -> &[(Reg, E)] {
        self.core.regularizer_terms()
    }

    /// Adds a user-defined integrated [`Channel`] with weight `weight` (λ) in
    /// [`LogProb::loss`]. It is integrated like the built-in regularizers (one more `n × 1`
    /// state channel, left out of step-size control, with every trace, adjoint, STEER and
    /// stacked blocks) and reported in [`LogProb::reg`] after them, under its
    /// [`name`](Channel::name).
    pub fn channel(self, channel: Rc<dyn Channel<E>>, weight: E) -> Self {
        self.map(|c| c.channel(channel, weight))
    }

    /// STEER (Ghosh et al. 2020): in training ([`Mode::Train`]) every call of
    /// [`Cnf::log_prob`] integrates to `T + u` with `u ~ U(−b, b)` drawn from the flow's own
    /// generator (the one of the probes, see [`Cnf::seed`]); evaluation and sampling use `T`.
    /// With a learnable `T` the gradient reaches it through `T + u`.
    ///
    /// # Panics
    ///
    /// Unless `0 ≤ b < T` (for a learnable `T`, its initial value). A learnable `T` that later
    /// drifts to `T ≤ b` makes `log_prob` fail with a [`SteerError`](crate::regularizers::SteerError).
    pub fn steer(self, b: E) -> Self {
        self.map(|c| c.steer(b))
    }

    /// STEER's half-width `b`, if configured.
    pub fn steer_half_width(&self) -> Option<E> {
        self.core.steer_half_width()
    }

    /// Draws a training end time as [`Cnf::log_prob`] does in [`Mode::Train`] (advancing the
    /// flow's generator): `T + u`, `u ~ U(−b, b)` with STEER, `T` without. Fails with a
    /// [`SteerError`](crate::regularizers::SteerError) if a learnable `T` is no larger than `b`.
    pub fn draw_end_time(&self, params: &Params<E>) -> autodiff::Result<E> {
        self.core.draw_end_time(params)
    }

    /// The trace estimator used in training (evaluation always uses the exact trace, and a
    /// field's own divergence, [`VectorField::eval_with_divergence`], replaces both).
    pub fn trace(self, trace: Trace) -> Self {
        self.map(|c| c.trace(trace))
    }

    /// Solver, tolerances and adjoint for training.
    pub fn train_opts(self, opts: Options<E>) -> Self {
        self.map(|c| c.train_opts(opts))
    }

    /// Solver and tolerances for evaluation and sampling.
    pub fn eval_opts(self, opts: Options<E>) -> Self {
        self.map(|c| c.eval_opts(opts))
    }

    /// Seeds the generator of the Hutchinson probes and of STEER's end times.
    pub fn seed(self, seed: u64) -> Self {
        self.map(|c| c.seed(seed))
    }

    /// [`seed`](Self::seed) in place, through a shared reference.
    pub fn reseed(&self, seed: u64) {
        self.core.reseed(seed);
    }

    /// The current end time T (from the store when it is learnable).
    pub fn end_time_value(&self, params: &Params<E>) -> E {
        self.core.end_time_value(params)
    }

    /// log p(x) per row for data `x` (`n × d`), recorded on `tape` (`p` = `params.vars(tape)`),
    /// with the configured regularizers ([`Cnf::regularize`], [`Cnf::channel`]).
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
        self.core.log_prob(tape, p, x, mode)
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
        self.core.sample(params, n, d, rng)
    }

    /// Maps base points `z` (`n × d`) back to data space (the inverse flow), returning the data
    /// points and their log-densities.
    pub fn transport_back(
        &self,
        params: &Params<E>,
        z: Tensor<E>,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        self.core.transport_back(params, z)
    }

    /// Exact log-density on plain values (no gradients), e.g. for a density plot or test NLL.
    pub fn log_prob_values(
        &self,
        params: &Params<E>,
        x: &Tensor<E>,
    ) -> autodiff::Result<Tensor<E>> {
        self.core.log_prob_values(params, x)
    }

    /// Applies one of the core's builder steps.
    fn map(self, step: impl FnOnce(Flow<E>) -> Flow<E>) -> Self {
        Cnf {
            core: step(self.core),
        }
    }
}
