//! The augmented systems behind `odeint`'s derivative rules, and the settings they are solved
//! with.

use std::rc::Rc;

use autodiff::{Element, Tape, Var};

use crate::options::{Adjoint, SolveOptions};
use crate::{Dynamics, Options};

/// The adjoint system of Chen et al. 2018 (Algorithm 1), state `[z, a, a_θ]`:
/// `dz/dt = f`, `da/dt = −aᵀ ∂f/∂z`, `da_θ/dt = −aᵀ ∂f/∂θ`. The products come from one VJP of
/// `f` recorded on the evaluating tape, so this system can itself be differentiated.
pub(crate) struct AdjointDynamics<E: Element> {
    pub(crate) f: Rc<dyn Dynamics<E>>,
    pub(crate) n_state: usize,
    /// Whether the `a_θ` channels are carried (only when some parameter needs a gradient).
    pub(crate) with_params: bool,
}

impl<E: Element> Dynamics<E> for AdjointDynamics<E> {
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        s: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>> {
        let c = self.n_state;
        let (z, a) = (&s[..c], &s[c..2 * c]);
        let fz = self.f.eval(tape, t, z, params)?;
        let mut wrt = z.to_vec();
        if self.with_params {
            wrt.extend(params);
        }
        let vj = tape.vjp(&fz, a, &wrt)?;
        let mut out = fz;
        out.extend(vj.into_iter().map(|v| -v));
        Ok(out)
    }
}

/// The forward-sensitivity system, state `[z, ż]`, parameters `[θ, θ̇]`:
/// `dz/dt = f`, `dż/dt = ∂f/∂z ż + ∂f/∂θ θ̇` (one JVP of `f` recorded on the evaluating tape).
pub(crate) struct SensitivityDynamics<E: Element> {
    pub(crate) f: Rc<dyn Dynamics<E>>,
    pub(crate) n_state: usize,
    pub(crate) n_params: usize,
    /// Whether parameter tangents `θ̇` follow the parameters.
    pub(crate) with_params: bool,
}

impl<E: Element> Dynamics<E> for SensitivityDynamics<E> {
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        s: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>> {
        let (c, p) = (self.n_state, self.n_params);
        let (z, zd) = (&s[..c], &s[c..2 * c]);
        let theta = &params[..p];
        let fz = self.f.eval(tape, t, z, theta)?;
        let mut wrt = z.to_vec();
        let mut dirs = zd.to_vec();
        if self.with_params {
            wrt.extend(theta);
            dirs.extend(&params[p..2 * p]);
        }
        let jv = tape.jvp(&fz, &wrt, &dirs)?;
        let mut out = fz;
        out.extend(jv);
        Ok(out)
    }
}

/// Options of the adjoint solve: the forward options (or the separate adjoint ones), error
/// control on `z` as the user set it and on `a`, and on `a_θ` unless the seminorm is on
/// (Kidger, Chen & Lyons 2021: the parameter-gradient channels do not feed back into the
/// dynamics, so their error need not restrict the step). Its own VJP is `Backsolve`.
pub(crate) fn adjoint_options<E: Element>(
    opts: &Options<E>,
    n_state: usize,
    n_params: usize,
) -> Options<E> {
    let mut o = opts.adjoint_solver_options();
    let mut flags = channel_flags(&opts.solve, n_state);
    flags.extend(std::iter::repeat_n(true, n_state));
    flags.extend(std::iter::repeat_n(!opts.adjoint.seminorm, n_params));
    o.solve.error_channels = Some(flags);
    o.adjoint.strategy = Adjoint::Backsolve;
    o
}

/// Options of the sensitivity solve: `z` channels as the user set them, tangents controlled.
pub(crate) fn sensitivity_options<E: Element>(opts: &Options<E>, n_state: usize) -> Options<E> {
    let mut flags = channel_flags(&opts.solve, n_state);
    flags.extend(std::iter::repeat_n(true, n_state));
    let mut o = opts.clone();
    o.solve.error_channels = Some(flags);
    o.adjoint.strategy = Adjoint::Backsolve;
    o
}

/// The user's error-control flags for the state channels (all on when unset).
pub(crate) fn channel_flags<E: Element>(opts: &SolveOptions<E>, n_state: usize) -> Vec<bool> {
    opts.error_channels
        .clone()
        .unwrap_or_else(|| vec![true; n_state])
}
