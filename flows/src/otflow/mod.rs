//! OT-Flow (Onken, Wu Fung, Li & Ruthotto 2021, "OT-Flow: Fast and Accurate Continuous
//! Normalizing Flows via Optimal Transport", AAAI): a continuous normalizing flow whose vector
//! field is the negative gradient of a scalar potential Φ(x, t), trained with the transport
//! cost and the residual of the Hamilton–Jacobi–Bellman equation as extra terms.
//!
//! # The model
//!
//! With s = (x, t) ∈ R^{d+1} (one row per sample),
//!
//! - Φ(s) = wᵀN(s) + ½ sᵀ(AᵀA)s + cᵀs + c₀, A ∈ R^{r×(d+1)}, r = min(10, d+1);
//! - N is a ResNet of M layers of width m: u₀ = σ(K₀s + b₀), uᵢ = uᵢ₋₁ + h σ(Kᵢuᵢ₋₁ + bᵢ),
//!   h = 1/(M−1), N(s) = u_{M−1}, with σ(x) = log(eˣ + e⁻ˣ) (so σ' = tanh, σ'' = 1 − tanh²).
//!
//! Data x sits at t = 0 and the standard normal at t = T. The state `[x, ℓ, L, R]` follows
//!
//! - dx/dt = −∇ₓΦ, dℓ/dt = −tr ∇²ₓΦ (so log p(x) = log N(z(T)) + ℓ(T)),
//! - dL/dt = ½‖∇ₓΦ‖² (transport cost), dR/dt = |−∂ₜΦ + ½‖∇ₓΦ‖²| (HJB residual; the
//!   HJB equation of the potential is −∂ₜΦ + ½‖∇ₓΦ‖² = 0),
//!
//! and the loss is α_L·L + α_C·C + α_R·R (batch means) with C = −log N(z(T)) − ℓ(T), the
//! negative log-likelihood of the data.
//!
//! The potential is one more vector field of the shared [flow core](crate::flow):
//! [`PotentialField`] is `−∇ₓΦ` with its own exact divergence, and the transport cost and HJB
//! residual are the [`Channel`](crate::regularizers::Channel)s [`TransportCost`] and
//! [`HjbResidual`]. [`OtFlow`] configures a core with them and weighs the terms in its loss;
//! the same pieces work in a [`Cnf`](crate::cnf::Cnf) (e.g. a stack of potentials).
//!
//! # Exact gradient and trace at O(d) cost
//!
//! [`OtPotential`] computes ∇Φ (all d+1 components) by the backward recursion through the
//! ResNet written out with tape operations, and tr ∇²ₓΦ by the forward recursion of the
//! paper: with gᵢ = ∂Φ/∂uᵢ (g_{M−1} = w, gᵢ₋₁ = gᵢ + h Kᵢᵀ(σ'(zᵢ) ⊙ gᵢ)),
//! the Hessian of a composition of affine maps and elementwise nonlinearities is a sum over
//! the nonlinearities of (adjoint at the output) · σ'' · (Jacobian of the pre-activation)ᵀ(…),
//! so
//!
//! tr ∇²ₓΦ = (σ''(z₀) ⊙ g₀)ᵀ((K₀ᴱ)² 1) + h Σᵢ₌₁^{M−1} (σ''(zᵢ) ⊙ gᵢ)ᵀ((KᵢJᵢ₋₁)² 1) + tr((AᵀA)ᴱ),
//!
//! where K₀ᴱ is the first d columns of K₀, J₀ = diag(σ'(z₀))K₀ᴱ and Jᵢ = Jᵢ₋₁ + h
//! diag(σ'(zᵢ))KᵢJᵢ₋₁ (the Jacobians ∂uᵢ/∂x, m × d per sample) and the squares are
//! elementwise. Everything is tape operations, so both are differentiable in the weights and
//! in x (training backpropagates through them). The [`Potential`] trait's default methods
//! give the same quantities by automatic differentiation (one VJP for ∇Φ, d forward-over-
//! reverse products for the Laplacian), the reference in tests and the path for user-defined
//! potentials.
//!
//! ```
//! use autodiff::{Tape, Tensor};
//! use flows::otflow::{autodiff_gradient_laplacian, OtPotential, Potential};
//! use flows::Params;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let mut params = Params::<f64>::new();
//! let net = OtPotential::new(&mut params, "otflow", 3, 8, 2, &mut rng);
//! let tape = Tape::new();
//! let p = params.vars(&tape);
//! let x = tape.var(Tensor::randn(5, 3, &mut rng));
//! let t = tape.full(5, 1, 0.3);
//! let (g, lap) = net.gradient_laplacian(t, x, &p)?;          // structured, O(d)
//! let (g_ad, lap_ad) = autodiff_gradient_laplacian(&net, t, x, &p)?; // by autodiff
//! assert!(g.grad_x.value().max_abs_diff(&g_ad.grad_x.value()) < 1e-12);
//! assert!(lap.value().max_abs_diff(&lap_ad.value()) < 1e-12);
//! # Ok::<(), autodiff::Error>(())
//! ```

mod field;
mod potential;

use std::ops::Range;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use ode::{Adjoint, Method, OdeStats, Options};
use rand::Rng;

pub use crate::flow::Mode;
pub use field::{HjbResidual, OtTrace, PotentialField, TransportCost};
pub use potential::{
    autodiff_gradient, autodiff_gradient_laplacian, OtPotential, Potential, PotentialGrad,
};

use crate::flow::{Flow, VectorField};
use crate::params::Params;
use crate::trace::Trace;

/// Which solver options a pass uses: the flow core's [`Mode`] (`Train`: training options and
/// trace; `Eval`: evaluation options, exact trace).
pub type OtMode = Mode;

/// The OT-Flow objective of a batch, recorded on the tape.
pub struct OtLoss<'t, E: Element> {
    /// α_L·L + α_C·C + α_R·R (`1 × 1`).
    pub loss: Var<'t, E>,
    /// L: mean transport cost ∫₀ᵀ ½‖∇ₓΦ‖² dt (`1 × 1`).
    pub transport: Var<'t, E>,
    /// C: mean negative log-likelihood −log N(z(T)) − ℓ(T) (`1 × 1`).
    pub nll: Var<'t, E>,
    /// R: mean HJB residual ∫₀ᵀ |−∂ₜΦ + ½‖∇ₓΦ‖²| dt (`1 × 1`).
    pub hjb: Var<'t, E>,
    /// log p(x) per row (`n × 1`).
    pub log_prob: Var<'t, E>,
    /// z(T) (`n × d`).
    pub z: Var<'t, E>,
    /// Statistics of the solve.
    pub stats: OdeStats,
    /// The end time integrated to (`1 × 1`; drawn by STEER in training, if configured).
    pub end_time: Var<'t, E>,
}

/// The OT-Flow objective's parts as numbers (see [`OtFlow::evaluate`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OtMetrics {
    /// α_L·L + α_C·C + α_R·R.
    pub loss: f64,
    /// Transport cost L.
    pub transport: f64,
    /// Negative log-likelihood C (nats per sample).
    pub nll: f64,
    /// HJB residual R.
    pub hjb: f64,
}

/// An OT-Flow: a potential's field and its two channels on the shared [flow core](Flow), and
/// the weights α = (α_L, α_C, α_R) of the loss.
///
/// Defaults: α = (1, 100, 5) (the paper's toy setting), T = 1, exact trace, training with 8
/// fixed RK4 steps and direct backpropagation through them
/// (`Options::fixed(Method::Rk4, 8).adjoint(Adjoint::Direct)`, as the paper does), evaluation
/// with 32 RK4 steps. The ℓ, L and R channels are always left out of error control (they do
/// not feed back), which matters for adaptive solvers and the adjoint.
#[derive(Clone)]
pub struct OtFlow<E: Element> {
    core: Flow<E>,
    potential: Rc<dyn Potential<E>>,
    range: Range<usize>,
    alpha: [f64; 3],
}

impl<E: Element> OtFlow<E> {
    /// The flow of an [`OtPotential`].
    pub fn new(net: OtPotential) -> Self {
        let range = net.param_range();
        Self::from_potential(Rc::new(net), range)
    }

    /// The flow of any potential whose parameters are `range` of the store (it receives
    /// exactly that slice of the variables; `0..0` for a potential without parameters).
    pub fn from_potential(potential: Rc<dyn Potential<E>>, range: Range<usize>) -> Self {
        let core = Flow::new(
            "OtFlow",
            vec![Self::field(&potential, OtTrace::Exact, &range)],
        )
        .trace(Trace::Exact)
        .train_opts(Options::fixed(Method::Rk4, 8).adjoint(Adjoint::Direct))
        .eval_opts(Options::fixed(Method::Rk4, 32).adjoint(Adjoint::Backsolve))
        // Weighed by α in `loss`, not by the core's weights.
        .channel(Rc::new(TransportCost), E::ONE)
        .channel(Rc::new(HjbResidual), E::ONE);
        OtFlow {
            core,
            potential,
            range,
            alpha: [1.0, 100.0, 5.0],
        }
    }

    fn field(
        potential: &Rc<dyn Potential<E>>,
        trace: OtTrace,
        range: &Range<usize>,
    ) -> (Rc<dyn VectorField<E>>, Range<usize>) {
        let field = PotentialField::new(potential.clone(), trace);
        (Rc::new(field), range.clone())
    }

    /// The flow core this OT-Flow is configured on.
    pub fn core(&self) -> &Flow<E> {
        &self.core
    }

    /// The weights (α_L, α_C, α_R) of transport cost, negative log-likelihood and HJB residual.
    pub fn alpha(mut self, alpha: [f64; 3]) -> Self {
        self.alpha = alpha;
        self
    }

    /// The end time T.
    ///
    /// # Panics
    ///
    /// With [STEER](OtFlow::steer) configured, unless `b < T`.
    pub fn end_time(self, t: E) -> Self {
        self.map(|c| c.end_time(t))
    }

    /// Learnable end time: registers `{name}` = √T in `params`, learned through the solve's
    /// time gradient.
    ///
    /// # Panics
    ///
    /// With [STEER](OtFlow::steer) configured, unless `b < t`.
    pub fn learnable_end_time(self, params: &mut Params<E>, name: &str, t: E) -> Self {
        self.map(|c| c.learnable_end_time(params, name, t))
    }

    /// STEER: training passes integrate to `T + u`, `u ~ U(−b, b)` (see [`Flow::steer`]).
    ///
    /// # Panics
    ///
    /// Unless `0 ≤ b < T`.
    pub fn steer(self, b: E) -> Self {
        self.map(|c| c.steer(b))
    }

    /// How the training dynamics compute the Laplacian (evaluation always uses
    /// [`OtTrace::Exact`]).
    pub fn trace(self, trace: OtTrace) -> Self {
        let estimator = match trace {
            OtTrace::Hutchinson(probe) => Trace::hutchinson(probe),
            // The field supplies its own divergence, or the core's d VJPs find it.
            OtTrace::Exact | OtTrace::Autodiff | OtTrace::DivergenceVjp => Trace::Exact,
        };
        let field = Self::field(&self.potential, trace, &self.range);
        self.map(|c| c.replace_fields(vec![field]).trace(estimator))
    }

    /// Solver and adjoint for training.
    pub fn train_opts(self, opts: Options<E>) -> Self {
        self.map(|c| c.train_opts(opts))
    }

    /// Solver for evaluation and sampling.
    pub fn eval_opts(self, opts: Options<E>) -> Self {
        self.map(|c| c.eval_opts(opts))
    }

    /// Seeds the generator of Hutchinson probes (and of STEER's end times).
    pub fn seed(self, seed: u64) -> Self {
        self.map(|c| c.seed(seed))
    }

    /// [`seed`](Self::seed) in place, through a shared reference.
    pub fn reseed(&self, seed: u64) {
        self.core.reseed(seed);
    }

    /// The potential.
    pub fn potential(&self) -> &Rc<dyn Potential<E>> {
        &self.potential
    }

    /// The store range of the potential's parameters.
    pub fn param_range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// The weights α.
    pub fn alpha_values(&self) -> [f64; 3] {
        self.alpha
    }

    /// The current end time T (from the store when it is learnable).
    pub fn end_time_value(&self, params: &Params<E>) -> E {
        self.core.end_time_value(params)
    }

    /// The OT-Flow loss of data `x` (`n × d`), recorded on `tape`: solves `[x, ℓ, L, R]` from
    /// `[x, 0, 0, 0]` at t = 0 to T (`p` = every parameter variable of the store).
    pub fn loss<'t>(
        &self,
        tape: &'t Tape<E>,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        mode: OtMode,
    ) -> autodiff::Result<OtLoss<'t, E>> {
        let mut lp = self.core.log_prob(tape, p, x, mode)?;
        // The core integrates exactly the two channels configured in `from_potential`.
        let (transport, hjb) = (lp.reg[0].value, lp.reg[1].value);
        let nll = lp.nll();
        let [al, ac, ar] = self.alpha.map(E::from_f64);
        let loss = transport * al + nll * ac + hjb * ar;
        Ok(OtLoss {
            loss,
            transport,
            nll,
            hjb,
            log_prob: lp.log_prob,
            z: lp.z,
            stats: lp.stats.pop().expect("one block"),
            end_time: lp.end_time,
        })
    }

    /// L, C, R and the loss of data `x` with the evaluation solver and the exact trace, as
    /// numbers.
    pub fn evaluate(&self, params: &Params<E>, x: &Tensor<E>) -> autodiff::Result<OtMetrics> {
        let tape = Tape::new();
        let p = tape.no_grad(|| params.vars(&tape));
        let xv = tape.constant(x.clone());
        let out = self.loss(&tape, &p, xv, Mode::Eval)?;
        Ok(OtMetrics {
            loss: out.loss.item().to_f64(),
            transport: out.transport.item().to_f64(),
            nll: out.nll.item().to_f64(),
            hjb: out.hjb.item().to_f64(),
        })
    }

    /// log p(x) per row (`n × 1`) on plain values: the `[x, ℓ]` system from 0 to T with the
    /// evaluation solver and the exact trace.
    pub fn log_prob_values(
        &self,
        params: &Params<E>,
        x: &Tensor<E>,
    ) -> autodiff::Result<Tensor<E>> {
        self.core.log_prob_values(params, x)
    }

    /// Draws `n` samples in `d` dimensions: z ~ N(0, I) integrated backwards from T to 0.
    /// Returns `(x, log p(x))`.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        params: &Params<E>,
        n: usize,
        d: usize,
        rng: &mut R,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        self.core.sample(params, n, d, rng)
    }

    /// Maps base points `z` (`n × d`, at t = T) back to data space (t = 0) with dx/dt = −∇ₓΦ,
    /// returning the points and their log-densities log p(x) = log N(z) − ℓ(0), where ℓ
    /// starts at 0 at T (so ℓ(0) = −∫₀ᵀ dℓ/dt).
    pub fn transport_back(
        &self,
        params: &Params<E>,
        z: Tensor<E>,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        self.core.transport_back(params, z)
    }

    /// Applies one of the core's builder steps.
    fn map(self, step: impl FnOnce(Flow<E>) -> Flow<E>) -> Self {
        OtFlow {
            core: step(self.core),
            ..self
        }
    }
}
