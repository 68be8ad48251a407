//! OT-Flow's potential as one more [`VectorField`]: `f = −∇ₓΦ` with its own exact divergence
//! `−tr ∇²ₓΦ`, and the transport cost and HJB residual as [`Channel`]s of the shared flow core.

use std::rc::Rc;

use autodiff::{Element, Var};

use super::potential::{autodiff_gradient_laplacian, Potential, PotentialGrad};
use crate::flow::{FieldOutput, Mode, VectorField};
use crate::regularizers::{Channel, RateInputs};
use crate::trace::Probe;

/// How OT-Flow's dynamics obtain tr ∇²ₓΦ in training (evaluation always uses
/// [`OtTrace::Exact`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtTrace {
    /// The potential's own [`Potential::gradient_laplacian`]: the structured O(d) recursion
    /// for [`OtPotential`](super::OtPotential), autodiff for a potential that does not
    /// override it.
    Exact,
    /// [`autodiff_gradient_laplacian`]: d forward-over-reverse products on the tape.
    Autodiff,
    /// The exact divergence of −∇ₓΦ (structured gradient) by d vector-Jacobian products
    /// ([`exact_divergence`](crate::trace::exact_divergence)): the flow core's exact trace.
    DivergenceVjp,
    /// Hutchinson's estimator of the divergence of −∇ₓΦ with one probe per solve
    /// ([`hutchinson_divergence`](crate::trace::hutchinson_divergence)): the flow core's
    /// Hutchinson trace.
    Hutchinson(Probe),
}

/// The vector field `f(x, t) = −∇ₓΦ(x, t)` of a [`Potential`].
///
/// Its [`eval_with_divergence`](VectorField::eval_with_divergence) supplies the exact
/// divergence `−tr ∇²ₓΦ` (for [`OtTrace::Exact`] and [`OtTrace::Autodiff`], and always in
/// evaluation), so the flow core's trace estimator is not used; for
/// [`OtTrace::DivergenceVjp`] and [`OtTrace::Hutchinson`] in training it leaves the
/// divergence to the core. Either way its one auxiliary quantity
/// ([`FieldOutput::aux`]) is `∂ₜΦ` (`n × 1`), which [`HjbResidual`] reads.
#[derive(Clone)]
pub struct PotentialField<E: Element> {
    potential: Rc<dyn Potential<E>>,
    trace: OtTrace,
}

impl<E: Element> PotentialField<E> {
    /// The field of `potential`, with `trace` choosing how the training divergence is found.
    pub fn new(potential: Rc<dyn Potential<E>>, trace: OtTrace) -> Self {
        PotentialField { potential, trace }
    }

    /// The potential.
    pub fn potential(&self) -> &Rc<dyn Potential<E>> {
        &self.potential
    }

    /// How the training divergence is found.
    pub fn trace(&self) -> OtTrace {
        self.trace
    }
}

/// The field's time `t` (`1 × 1`) as the potential's per-row time (`n × 1`).
fn rows<'t, E: Element>(t: Var<'t, E>, z: Var<'t, E>) -> Var<'t, E> {
    t.broadcast_to(z.shape().0, 1)
}

fn output<'t, E: Element>(g: PotentialGrad<'t, E>, lap: Option<Var<'t, E>>) -> FieldOutput<'t, E> {
    FieldOutput {
        f: -g.grad_x,
        divergence: lap.map(|l| -l),
        aux: vec![g.dt],
    }
}

impl<E: Element> VectorField<E> for PotentialField<E> {
    fn eval<'t>(
        &self,
        t: Var<'t, E>,
        z: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>> {
        Ok(-self.potential.gradient(rows(t, z), z, p)?.grad_x)
    }

    fn eval_with_divergence<'t>(
        &self,
        t: Var<'t, E>,
        z: Var<'t, E>,
        p: &[Var<'t, E>],
        mode: Mode,
    ) -> autodiff::Result<FieldOutput<'t, E>> {
        let tc = rows(t, z);
        let pot = &*self.potential;
        let trace = match mode {
            Mode::Train => self.trace,
            Mode::Eval => OtTrace::Exact,
        };
        Ok(match trace {
            OtTrace::Exact => {
                let (g, lap) = pot.gradient_laplacian(tc, z, p)?;
                output(g, Some(lap))
            }
            OtTrace::Autodiff => {
                let (g, lap) = autodiff_gradient_laplacian(pot, tc, z, p)?;
                output(g, Some(lap))
            }
            OtTrace::DivergenceVjp | OtTrace::Hutchinson(_) => {
                output(pot.gradient(tc, z, p)?, None)
            }
        })
    }
}

/// OT-Flow's transport cost `L = ∫₀ᵀ ½‖∇ₓΦ‖² dt` = `∫ ½‖f‖² dt` for `f = −∇ₓΦ`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TransportCost;

impl<E: Element> Channel<E> for TransportCost {
    fn name(&self) -> String {
        "transport".into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        Ok(x.f.row_sq_norm() * E::from_f64(0.5))
    }
}

/// OT-Flow's HJB residual `R = ∫₀ᵀ |−∂ₜΦ + ½‖∇ₓΦ‖²| dt`, reading `∂ₜΦ` from the field's
/// auxiliary quantities ([`PotentialField`] provides it as `aux[0]`).
///
/// # Panics
///
/// In [`rate`](Channel::rate), with a field that provides no auxiliary quantity.
#[derive(Clone, Copy, Debug, Default)]
pub struct HjbResidual;

impl<E: Element> Channel<E> for HjbResidual {
    fn name(&self) -> String {
        "hjb".into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        let dt = *x.aux.first().expect(
            "HjbResidual: the field provides no ∂ₜΦ (use it with a PotentialField, whose aux[0] it is)",
        );
        let kinetic = x.f.row_sq_norm() * E::from_f64(0.5);
        Ok((kinetic - dt).abs())
    }
}
