//! Regularized dynamics for continuous normalizing flows: integrated penalties carried as extra
//! state channels of the CNF's augmented ODE, and STEER's random end time.
//!
//! # Integrated regularizers
//!
//! Each term is `R = ∫₀ᵀ r(z(t), t) dt` per sample, integrated by the same solve as the state
//! and the log-density: the augmented state of one block is `[z, ℓ, R₁, …, R_K]` with
//! `dR_k/dt = r_k`, `R_k(0) = 0` (each `n × 1`), and the `R_k` channels are left out of the
//! step-size control like `ℓ` (nothing feeds back from them). Because they are outputs of the
//! one `odeint` node, the gradient of `Σ λ_k mean(R_k)` reaches the parameters (and a learnable
//! end time) through the adjoint like the log-likelihood does.
//!
//! | [`Reg`] | rate `r(z, t)` | source |
//! |---|---|---|
//! | [`Reg::Kinetic`] (alias [`Reg::L2`]) | `‖f‖²` | Finlay et al. 2020 (RNODE); FFJORD's L2 |
//! | [`Reg::JacobianFrobenius`] | `‖εᵀ ∂f/∂z‖²` (Hutchinson), `‖∂f/∂z‖²_F` (exact trace) | Finlay et al. 2020 |
//! | [`Reg::L1`] | `‖f‖₁` | Grathwohl et al. 2019 (FFJORD) |
//! | [`Reg::DirectionalDerivative`] | `‖(∂f/∂z) f + ∂f/∂t‖²` | Grathwohl et al. 2019 (FFJORD) |
//!
//! Every term is one implementation of the public [`Channel`] trait: its rate is computed from
//! the [`RateInputs`] of one evaluation (the time, the state, the field's value, the
//! divergence and the trace's vector-Jacobian products), and [`Reg`] names the built-in ones.
//! A user's own channel ([`Cnf::channel`](crate::cnf::Cnf::channel)) is integrated exactly like
//! them: with every trace estimator and adjoint, STEER, stacked blocks and evaluation, and left
//! out of step-size control.
//!
//! The Jacobian-Frobenius term reuses the trace estimator's work: with Hutchinson's estimator the
//! products `εᵀ∂f/∂z` that [`divergence`] returns are squared and summed (averaged over the
//! probes; `E‖εᵀJ‖² = ‖J‖²_F` for `Cov(ε) = I`), so the probe of the trace and of this term are
//! the same (as in RNODE). With the exact trace, the `d` vector-Jacobian products `e_jᵀ∂f/∂z`
//! computed for the trace are the rows of the Jacobian, so the exact Frobenius norm comes at no
//! extra cost and without estimator noise; that is the choice made here.
//!
//! The directional derivative is the acceleration of a trajectory, `d f(z(t), t)/dt`, computed
//! as one forward-mode product of `f` along `(ż, ṫ) = (f, 1)` with [`Tape::jvp`] inside the
//! dynamics (recorded on the tape, so the adjoint can differentiate it). FFJORD's reference code
//! uses the vector-Jacobian product `fᵀ∂f/∂z` under that name instead; the two agree when the
//! Jacobian is symmetric and the field is autonomous.
//!
//! # STEER
//!
//! Ghosh et al. 2020 (STEER): during training the end time of the solve is drawn at every call
//! as `T̃ ~ U(T − b, T + b)`, `0 ≤ b < T`; evaluation and sampling use `T`. With a learnable `T`
//! the drawn time is `T + u`, `u ~ U(−b, b)`, so the gradient still reaches `T`. If a learnable
//! `T` drifts to `T ≤ b`, the call fails with [`SteerError`] rather than integrating to a
//! non-positive time.
//!
//! [`Tape::jvp`]: autodiff::Tape::jvp

use std::fmt;
use std::rc::Rc;

use autodiff::{Element, Tensor, Var};

use crate::trace::divergence;

/// An integrated regularizer of a CNF's dynamics (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reg {
    /// Kinetic energy `∫ ‖f‖² dt` (Finlay et al. 2020); FFJORD's L2 penalty is the same.
    Kinetic,
    /// Jacobian Frobenius norm `∫ ‖εᵀ ∂f/∂z‖² dt` with the Hutchinson probe of the trace, or
    /// `∫ ‖∂f/∂z‖²_F dt` exactly when the trace is exact (Finlay et al. 2020).
    JacobianFrobenius,
    /// `∫ ‖f‖₁ dt` (Grathwohl et al. 2019).
    L1,
    /// `∫ ‖(∂f/∂z) f + ∂f/∂t‖² dt`, the squared acceleration along the trajectory (Grathwohl
    /// et al. 2019).
    DirectionalDerivative,
}

impl Reg {
    /// FFJORD's L2 penalty `∫ ‖f‖² dt`: the kinetic energy.
    pub const L2: Reg = Reg::Kinetic;

    /// All terms, in the order of the table in the module docs.
    pub const ALL: [Reg; 4] = [
        Reg::Kinetic,
        Reg::JacobianFrobenius,
        Reg::L1,
        Reg::DirectionalDerivative,
    ];

    /// A short name ("kinetic", "jacobian_frobenius", "l1", "directional").
    pub fn name(self) -> &'static str {
        match self {
            Reg::Kinetic => "kinetic",
            Reg::JacobianFrobenius => "jacobian_frobenius",
            Reg::L1 => "l1",
            Reg::DirectionalDerivative => "directional",
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A learnable end time `T` no larger than STEER's half-width `b`: the interval
/// `[T − b, T + b]` would reach non-positive times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteerError {
    /// The current end time `T`.
    pub end_time: f64,
    /// STEER's half-width `b`.
    pub half_width: f64,
}

impl fmt::Display for SteerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "STEER needs b < T, but the end time is T = {} and the half-width b = {}: the \
             learnable end time drifted below b (use a smaller b or a larger initial T)",
            self.end_time, self.half_width
        )
    }
}

impl std::error::Error for SteerError {}

/// What the rate of a [`Channel`] can read at one evaluation of the dynamics, all recorded on
/// the evaluating tape (so a rate written with tape ops can be differentiated again, as the
/// adjoint needs).
pub struct RateInputs<'a, 't, E: Element> {
    /// The time (`1 × 1`), an independent input of the dynamics.
    pub t: Var<'t, E>,
    /// The state (`n × d`), an independent input of the dynamics.
    pub z: Var<'t, E>,
    /// The field's value `f(t, z)` (`n × d`).
    pub f: Var<'t, E>,
    /// The divergence `tr(∂f/∂z)` per row (`n × 1`): exact, or Hutchinson's estimate.
    pub divergence: Var<'t, E>,
    /// The vector-Jacobian products the trace computed: the Jacobian rows `e_jᵀ∂f/∂z` for the
    /// exact trace, `εᵀ∂f/∂z` for each of the [`probes`](RateInputs::probes) otherwise; empty
    /// when the field supplies its own divergence
    /// ([`VectorField::eval_with_divergence`](crate::flow::VectorField::eval_with_divergence)).
    pub products: &'a [Var<'t, E>],
    /// Hutchinson's probes of this solve (empty with the exact trace, and when the field
    /// supplies its own divergence).
    pub probes: &'a [Tensor<E>],
    /// The field's auxiliary quantities of this evaluation
    /// ([`FieldOutput::aux`](crate::flow::FieldOutput::aux); empty for most fields), e.g.
    /// `∂ₜΦ` for OT-Flow's potential field, which its HJB residual reads.
    pub aux: &'a [Var<'t, E>],
}

/// An integrated channel of a CNF's augmented state: `R = ∫₀ᵀ r(t, z) dt` per sample, with the
/// rate `r` computed from the [`RateInputs`] of each evaluation. The built-in regularizers
/// ([`Reg`]) are implementations; a user's own is added with
/// [`Cnf::channel`](crate::cnf::Cnf::channel) and gets everything they get.
///
/// ```
/// use autodiff::{Element, Var};
/// use flows::regularizers::{Channel, RateInputs};
///
/// /// ∫ ‖f‖⁴ dt.
/// struct Quartic;
/// impl<E: Element> Channel<E> for Quartic {
///     fn name(&self) -> String {
///         "quartic".into()
///     }
///     fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
///         Ok(x.f.square().sum_axis(1).square())
///     }
/// }
/// ```
pub trait Channel<E: Element> {
    /// A short name, reported with the term ([`RegTerm`](crate::cnf::RegTerm)).
    fn name(&self) -> String;

    /// The rate `r(t, z)` per sample (`n × 1`), written with tape operations. A rate that
    /// differentiates on the tape ([`Tape::jvp`](autodiff::Tape::jvp), as
    /// [`DirectionalDerivative`] does) propagates the transform's error with `?`.
    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>>;
}

/// Kinetic energy `‖f‖²` (Finlay et al. 2020); FFJORD's L2.
#[derive(Clone, Copy, Debug, Default)]
pub struct Kinetic;

impl<E: Element> Channel<E> for Kinetic {
    fn name(&self) -> String {
        Reg::Kinetic.name().into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        Ok(x.f.square().sum_axis(1))
    }
}

/// `‖f‖₁` (Grathwohl et al. 2019).
#[derive(Clone, Copy, Debug, Default)]
pub struct L1;

impl<E: Element> Channel<E> for L1 {
    fn name(&self) -> String {
        Reg::L1.name().into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        Ok(x.f.abs().sum_axis(1))
    }
}

/// `‖J‖²_F` from the trace's products: the sum over the Jacobian's rows (exact trace), or the
/// mean of `‖εᵀJ‖²` over the probes (Hutchinson; `E‖εᵀJ‖² = ‖J‖²_F`) (Finlay et al. 2020).
#[derive(Clone, Copy, Debug, Default)]
pub struct JacobianFrobenius;

impl<E: Element> Channel<E> for JacobianFrobenius {
    fn name(&self) -> String {
        Reg::JacobianFrobenius.name().into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        let n = x.f.shape().0;
        let sum = x
            .products
            .iter()
            .map(|v| v.square().sum_axis(1))
            .reduce(|a, b| a + b)
            .unwrap_or_else(|| x.f.tape().zeros(n, 1));
        Ok(if x.probes.is_empty() {
            sum
        } else {
            sum.mul_scalar(E::ONE / E::from_usize(x.probes.len()))
        })
    }
}

/// `‖(∂f/∂z) f + ∂f/∂t‖²`, the squared acceleration along the trajectory (Grathwohl et al.
/// 2019), by one forward-mode product of `f` along `(ż, ṫ) = (f, 1)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct DirectionalDerivative;

impl<E: Element> Channel<E> for DirectionalDerivative {
    fn name(&self) -> String {
        Reg::DirectionalDerivative.name().into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        let tape = x.f.tape();
        let one = tape.scalar(E::ONE);
        let acc = tape.jvp(&[x.f], &[x.z, x.t], &[x.f, one])?[0];
        Ok(acc.square().sum_axis(1))
    }
}

impl Reg {
    /// The built-in [`Channel`] this name stands for.
    pub fn channel<E: Element>(self) -> Rc<dyn Channel<E>> {
        match self {
            Reg::Kinetic => Rc::new(Kinetic),
            Reg::JacobianFrobenius => Rc::new(JacobianFrobenius),
            Reg::L1 => Rc::new(L1),
            Reg::DirectionalDerivative => Rc::new(DirectionalDerivative),
        }
    }
}

/// Evaluates a field `f = field(t, z)` at `t` (`1 × 1`) and `z` (`n × d`) and returns `f`,
/// its divergence `tr(∂f/∂z)` per row (as [`divergence`]: exact when `probes` is empty,
/// Hutchinson's estimate otherwise) and the rate of each channel (each `n × 1`, in order): the
/// right-hand side of the augmented CNF state `[z, ℓ, R₁, …]`.
///
/// Everything is recorded on the tape, so the rates can be differentiated again (the adjoint
/// of the augmented dynamics needs their products with `∂/∂z` and `∂/∂θ`). An error of the
/// field or of a rate is returned as is.
#[allow(clippy::type_complexity)]
pub fn rates<'t, E: Element>(
    channels: &[Rc<dyn Channel<E>>],
    t: Var<'t, E>,
    z: Var<'t, E>,
    probes: &[Tensor<E>],
    field: impl FnOnce(Var<'t, E>, Var<'t, E>) -> autodiff::Result<Var<'t, E>>,
) -> autodiff::Result<(Var<'t, E>, Var<'t, E>, Vec<Var<'t, E>>)> {
    let f = field(t, z)?;
    let (div, products) = divergence(f, z, probes);
    let inputs = RateInputs {
        t,
        z,
        f,
        divergence: div,
        products: &products,
        probes,
        aux: &[],
    };
    let out = channels
        .iter()
        .map(|c| c.rate(&inputs))
        .collect::<autodiff::Result<_>>()?;
    Ok((f, div, out))
}
