//! User-defined operations with their own derivative rules.

use crate::{Element, Result, Tensor, Var};

/// An operation recorded as one node on the tape, with hand-written derivative rules.
///
/// This is how an ODE solve becomes a single differentiable op: `forward` runs the solver on
/// plain values, `vjp` integrates the adjoint system and `jvp` the forward-sensitivity system.
/// Both rules receive the tape and must build their results with tape operations (or further
/// custom ops), which is what lets derivatives of any order pass through the op.
///
/// Register one with [`Tape::custom`](crate::Tape::custom).
pub trait CustomOp<E: Element> {
    /// A short name used in error messages and panics.
    fn name(&self) -> &str;

    /// Computes the outputs from the input values.
    fn forward(&self, inputs: &[&Tensor<E>]) -> Result<Vec<Tensor<E>>>;

    /// Given cotangents for the outputs (`None` = zero), returns cotangents for the inputs
    /// (`None` = zero; `needs[i]` is false for inputs whose cotangent is not wanted).
    fn vjp<'t>(
        &self,
        inputs: &[Var<'t, E>],
        outputs: &[Var<'t, E>],
        cotangents: &[Option<Var<'t, E>>],
        needs: &[bool],
    ) -> Result<Vec<Option<Var<'t, E>>>>;

    /// Given tangents for the inputs (`None` = zero), returns tangents for the outputs.
    fn jvp<'t>(
        &self,
        inputs: &[Var<'t, E>],
        outputs: &[Var<'t, E>],
        tangents: &[Option<Var<'t, E>>],
    ) -> Result<Vec<Option<Var<'t, E>>>>;
}
