//! The vector-field extension point and the augmented dynamics every flow integrates.

use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use ode::Dynamics;

use super::Mode;
use crate::nn::OdeNet;
use crate::regularizers::{Channel, RateInputs};
use crate::trace::divergence;

/// What one evaluation of a [`VectorField`] returns: its value and, when the field knows them,
/// its exact divergence and auxiliary quantities that channels may read.
pub struct FieldOutput<'t, E: Element> {
    /// `f(t, z)` (`n × d`).
    pub f: Var<'t, E>,
    /// `tr(∂f/∂z)` per row (`n × 1`) computed by the field itself, or `None` to let the flow's
    /// configured trace estimator compute it.
    pub divergence: Option<Var<'t, E>>,
    /// Further per-row quantities of this evaluation, handed to the channels as
    /// [`RateInputs::aux`] (e.g. OT-Flow's `∂ₜΦ`, which the HJB residual needs and which is
    /// not a function of `f`). Their meaning is a contract between a field and its channels.
    pub aux: Vec<Var<'t, E>>,
}

impl<'t, E: Element> FieldOutput<'t, E> {
    /// A value without its own divergence or auxiliary quantities.
    pub fn new(f: Var<'t, E>) -> Self {
        FieldOutput {
            f,
            divergence: None,
            aux: Vec::new(),
        }
    }

    /// A value with its own exact divergence (`n × 1`).
    pub fn with_divergence(f: Var<'t, E>, divergence: Var<'t, E>) -> Self {
        FieldOutput {
            f,
            divergence: Some(divergence),
            aux: Vec::new(),
        }
    }
}

/// A time-dependent vector field `f(t, z)` on batches of points (`n × d`): the extension point
/// for a user's own dynamics. Every flow ([`Cnf`](crate::cnf::Cnf),
/// [`OtFlow`](crate::otflow::OtFlow)) is a list of blocks, each one such field.
///
/// Each block owns a contiguous range of the parameter store; the field receives exactly that
/// slice of variables, in store order (so the ODE solve and its adjoint carry only this
/// block's parameters). `t` is `1 × 1`.
///
/// The arguments come in the order of [`ode::Dynamics::eval`] (`t`, the state, the
/// parameters), and evaluation returns an [`autodiff::Result`] so that a field which
/// differentiates on the tape (`jvp`, `vjp`, a nested solve) propagates their errors with `?`.
pub trait VectorField<E: Element> {
    /// Evaluates `f(t, z)` with `p` the block's own parameters.
    fn eval<'t>(
        &self,
        t: Var<'t, E>,
        z: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>>;

    /// Evaluates the field for a pass of the flow in `mode`, optionally with its own exact
    /// divergence and auxiliary quantities ([`FieldOutput`]).
    ///
    /// The default returns [`eval`](VectorField::eval) alone, so the flow's trace estimator
    /// computes the divergence. A field that knows its divergence cheaply (a linear map, OT-Flow's
    /// potential) overrides this; the flow then uses that divergence instead of its estimator
    /// in every pass, and the channels see no trace products ([`RateInputs::products`] and
    /// [`RateInputs::probes`] are empty). `mode` lets a field supply it in evaluation only.
    /// Everything must be recorded with tape operations, so the adjoint can differentiate it.
    fn eval_with_divergence<'t>(
        &self,
        t: Var<'t, E>,
        z: Var<'t, E>,
        p: &[Var<'t, E>],
        mode: Mode,
    ) -> autodiff::Result<FieldOutput<'t, E>> {
        let _ = mode;
        Ok(FieldOutput::new(self.eval(t, z, p)?))
    }
}

/// An [`OdeNet`] addressing its parameters relative to its range (see [`OdeNet::relative`]).
impl<E: Element> VectorField<E> for OdeNet {
    fn eval<'t>(
        &self,
        t: Var<'t, E>,
        z: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>> {
        Ok(self.forward(p, t, z))
    }
}

/// The augmented dynamics `[z, ℓ, R₁, …] ↦ [f, tr ∂f/∂z, r₁, …]` of one block, with the probes
/// of one solve captured so that the forward and the adjoint pass share them.
pub(crate) struct FlowDynamics<E: Element> {
    pub(crate) field: Rc<dyn VectorField<E>>,
    pub(crate) probes: Vec<Tensor<E>>,
    pub(crate) channels: Vec<Rc<dyn Channel<E>>>,
    pub(crate) mode: Mode,
}

impl<E: Element> Dynamics<E> for FlowDynamics<E> {
    fn eval<'t>(
        &self,
        _tape: &'t Tape<E>,
        t: Var<'t, E>,
        s: &[Var<'t, E>],
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>> {
        let z = s[0];
        let out = self.field.eval_with_divergence(t, z, p, self.mode)?;
        let f = out.f;
        // A field's own divergence replaces the estimator, and with it its probes: the
        // products handed to the channels must belong to the divergence actually used.
        let (div, products, probes): (_, _, &[Tensor<E>]) = match out.divergence {
            Some(div) => (div, Vec::new(), &[]),
            None => {
                let (div, products) = divergence(f, z, &self.probes);
                (div, products, &self.probes)
            }
        };
        let mut rhs = Vec::with_capacity(2 + self.channels.len());
        rhs.push(f);
        rhs.push(div);
        if !self.channels.is_empty() {
            let inputs = RateInputs {
                t,
                z,
                f,
                divergence: div,
                products: &products,
                probes,
                aux: &out.aux,
            };
            for c in &self.channels {
                rhs.push(c.rate(&inputs)?);
            }
        }
        Ok(rhs)
    }
}
