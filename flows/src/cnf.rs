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

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use ode::{odeint, Dynamics, OdeStats, Options, Times};
use rand::Rng;

use crate::nn::OdeNet;
use crate::params::Params;
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

/// The augmented CNF dynamics `[z, ℓ] ↦ [f, tr ∂f/∂z]` for one block, with the probes of one
/// solve captured so that the forward and the adjoint pass share them.
struct CnfDynamics<E: Element> {
    field: Rc<dyn VectorField<E>>,
    probes: Vec<Tensor<E>>,
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
        let f = self.field.eval(p, t, z);
        let (div, _) = divergence(f, z, &self.probes);
        vec![f, div]
    }
}

/// Which options a pass uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: the training solver options.
    Train,
    /// Evaluation: the evaluation solver options.
    Eval,
}

/// The log-density of a batch and what the solves cost.
pub struct LogProb<'t, E: Element> {
    /// log p(x) per row (`n × 1`).
    pub log_prob: Var<'t, E>,
    /// The base point z(T) (`n × d`).
    pub z: Var<'t, E>,
    /// Statistics of each block's solve (backward ones fill in after differentiation).
    pub stats: Vec<OdeStats>,
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
        }
    }

    /// Number of blocks.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Fixed end time T.
    pub fn end_time(mut self, t: E) -> Self {
        self.end_time = EndTime::Fixed(t);
        self
    }

    /// Learnable end time: registers `{name}` = √T in `params` (FFJORD's `sqrt_end_time`).
    pub fn learnable_end_time(mut self, params: &mut Params<E>, name: &str, t: E) -> Self {
        // Stored 0-D, as FFJORD's `sqrt_end_time`, so checkpoints convert by name.
        let idx = params.add_with_file_shape(name, Tensor::scalar(t.sqrt()), vec![]);
        self.end_time = EndTime::Learnable(idx);
        self
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

    /// Seeds the generator of the Hutchinson probes.
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

    /// log p(x) per row for data `x` (`n × d`), recorded on `tape` (`p` = `params.vars(tape)`).
    pub fn log_prob<'t>(
        &self,
        tape: &'t Tape<E>,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        mode: Mode,
    ) -> autodiff::Result<LogProb<'t, E>> {
        let (n, d) = x.shape();
        let (opts, trace) = match mode {
            Mode::Train => (&self.train_opts, self.trace),
            Mode::Eval => (&self.eval_opts, Trace::Exact),
        };
        let opts = opts.clone().error_channels(vec![true, false]);
        let t0 = tape.scalar(E::ZERO);
        let t1 = self.t_end(tape, p);
        let mut z = x;
        let mut delta: Option<Var<'t, E>> = None;
        let mut stats = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let probes = trace.draw(n, d, &mut *self.rng.borrow_mut());
            let dynamics: Rc<dyn Dynamics<E>> = Rc::new(CnfDynamics {
                field: block.field.clone(),
                probes,
            });
            let l0 = tape.zeros(n, 1);
            let sol = odeint(
                tape,
                &dynamics,
                &[z, l0],
                &p[block.range.clone()],
                Times::Vars(vec![t0, t1]),
                &opts,
            )?;
            z = sol.last()[0];
            let l = sol.last()[1];
            delta = Some(match delta {
                None => l,
                Some(a) => a + l,
            });
            stats.push(sol.stats);
        }
        let log_prob = z.log_normal() + delta.expect("at least one block");
        Ok(LogProb { log_prob, z, stats })
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
        Ok(self.log_prob(&tape, &p, xv, Mode::Eval)?.log_prob.value())
    }
}
