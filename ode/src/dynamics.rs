//! The right-hand side f(t, z; θ) of an ODE, written with tape operations.

use autodiff::{Element, Tape, Var};

/// The right-hand side `dz/dt = f(t, z; θ)` of an ODE, written with tape operations.
///
/// The state is a list of matrices ("channels", e.g. `[z, Δlogp]`) and the parameters are
/// explicit inputs, so a solver can differentiate `f` with respect to both. `t` is a `1 × 1`
/// variable. The result must have one matrix per state channel, each of that channel's shape
/// (the solvers check it and panic otherwise, naming the channel and both shapes).
///
/// The solvers record `t`, `z` and `params` with [`Tape::var`], so `eval` may itself
/// differentiate (exact traces, adjoint systems calling [`Tape::vjp`]); that is why it returns
/// an [`autodiff::Result`]: a failing `vjp`/`jvp` inside it (e.g. of a nested solve) propagates
/// with `?`. A solve whose dynamics fail stops with [`OdeError::Dynamics`](crate::OdeError::Dynamics).
///
/// The argument order `(tape, t, z, params)` is the one every evaluation in the workspace
/// uses (flows' vector fields and potentials take `(t, z, params)`, without the tape).
///
/// Closures with the right signature implement the trait; [`dynamics`] gives a closure stored
/// in a variable the higher-ranked signature it needs.
pub trait Dynamics<E: Element> {
    /// Evaluates `f(t, z; θ)` on `tape`.
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        z: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>>;
}

impl<E: Element, F> Dynamics<E> for F
where
    F: for<'t> Fn(
        &'t Tape<E>,
        Var<'t, E>,
        &[Var<'t, E>],
        &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>>,
{
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        z: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>> {
        self(tape, t, z, params)
    }
}

/// Gives a closure the higher-ranked signature of [`Dynamics`] (Rust does not infer `for<'t>`
/// signatures for closures stored in a variable):
///
/// ```
/// use ode::dynamics;
/// let decay = dynamics::<f64, _>(|_tape, _t, z, _p| Ok(vec![-z[0]]));
/// # let _ = decay;
/// ```
pub fn dynamics<E: Element, F>(f: F) -> F
where
    F: for<'t> Fn(
        &'t Tape<E>,
        Var<'t, E>,
        &[Var<'t, E>],
        &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>>,
{
    f
}

/// Panics unless `out` has one matrix per state channel with that channel's shape.
pub(crate) fn check_output(out: &[(usize, usize)], state: &[(usize, usize)]) {
    assert_eq!(
        out.len(),
        state.len(),
        "Dynamics::eval: returned {} channels for a state of {} channels (shapes {:?} vs state {:?})",
        out.len(),
        state.len(),
        out,
        state
    );
    for (k, (o, s)) in out.iter().zip(state).enumerate() {
        assert_eq!(o, s, "Dynamics::eval: output channel {k} has shape {o:?} but state channel {k} has shape {s:?}");
    }
}
