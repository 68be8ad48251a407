//! The settings of a solve's derivatives: the adjoint strategy, the seminorm, and separate
//! solve options for the adjoint and sensitivity solves.

use autodiff::Element;

use super::solve::SolveOptions;
use crate::OdeError;

/// How the VJP (reverse-mode derivative) of a solve is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Adjoint {
    /// Chen et al. 2018, Algorithm 1: the augmented state `[z, a, ∂L/∂θ]` integrated backwards
    /// from each save time to the previous one, `z` reset to its stored forward value at every
    /// save time. Memory does not grow with the number of steps, and the VJP is itself an
    /// `odeint` call, so it can be differentiated again.
    #[default]
    Backsolve,
    /// Checkpoints stored on the forward pass (`checkpoints` per save interval, evenly spaced in
    /// time). The backward pass re-solves each segment forward from its checkpoint and
    /// integrates `[a, ∂L/∂θ]` backwards against a cubic Hermite interpolant of that re-solve,
    /// so `z` is never reconstructed backwards: stable for dynamics that are not reversible in
    /// practice. A segment of more than a few steps is first split the same way, recursively
    /// (Griewank 1992's recursive checkpointing), so memory holds `checkpoints` states per
    /// level and a short trajectory, not the whole solve. Gives first derivatives only (a
    /// request for a differentiable VJP is an error; use `Backsolve` or `Direct` for higher
    /// order).
    /// With `Stepping::Steps(n)`, each checkpoint segment takes `⌈n / checkpoints⌉` steps.
    Checkpointed {
        /// Checkpoints per save interval (at least 1).
        checkpoints: usize,
    },
    /// Discretise-then-optimise: the solver's accepted steps are replayed with tape operations,
    /// so the gradient is the exact derivative of the discrete solution (step sizes held
    /// fixed). Memory grows with the number of steps; the reference the others are checked
    /// against.
    Direct,
}

/// How [`odeint`](crate::odeint())'s derivative rules solve: the strategy of the VJP, the
/// seminorm, and separate solve options for the adjoint and sensitivity solves.
///
/// A plain [`solve`](crate::solve) ignores all of it; [`Options`](crate::Options) carries it
/// next to the [`SolveOptions`] of the forward solve.
#[derive(Clone, Debug, Default)]
pub struct AdjointOptions<E> {
    /// How [`odeint`](crate::odeint())'s VJP is computed.
    pub strategy: Adjoint,
    /// Leave the parameter-gradient channels `a_θ` of the adjoint out of its error control
    /// (Kidger, Chen & Lyons 2021, "Hey, that's not an ODE"): nothing feeds back from them
    /// into `z` or `a`, so their local errors do not compound and need not restrict the step.
    ///
    /// With the default [`Norm::ChannelMax`](crate::Norm::ChannelMax) (the largest channel's
    /// RMS error) the norm of every step with `a_θ` left out is the full norm restricted to
    /// `z` and `a`, never larger: each step the full norm accepts is accepted, and the state
    /// and adjoint keep their accuracy. Under [`Norm::Rms`](crate::Norm::Rms) leaving the many
    /// small `a_θ` errors out of one joint mean can raise the norm and cost steps.
    pub seminorm: bool,
    /// Separate solve options for the adjoint solves; `None` reuses the forward solve's.
    /// Their error channels are ignored: the adjoint system's channels are controlled as its
    /// strategy and the seminorm say.
    pub solver: Option<Box<SolveOptions<E>>>,
}

impl<E: Element> AdjointOptions<E> {
    /// Checks the settings that do not depend on the solve (a checkpointed strategy needs at
    /// least one checkpoint per interval).
    pub fn validate(&self) -> Result<(), OdeError> {
        if let Adjoint::Checkpointed { checkpoints: 0 } = self.strategy {
            return Err(OdeError::InvalidOptions(
                "Checkpointed adjoint needs at least one checkpoint per interval".into(),
            ));
        }
        Ok(())
    }
}
