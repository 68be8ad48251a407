//! Settings. A plain solve reads [`SolveOptions`] (method, stepping, tolerances, error
//! channels, recording); [`odeint`](crate::odeint()) also reads [`AdjointOptions`] (strategy,
//! seminorm, the adjoint's own solve options). [`Options`] is the builder users start from and
//! carries both.
//!
//! Files: `method` (the method and the stepping mode), `controller` (the step-size controller
//! as a value), `solve` and `adjoint` (the two halves).
//! Nothing here depends on the solvers, so the plain solve sits above its settings and below
//! `odeint`, with no way back.

mod adjoint;
mod controller;
mod method;
mod solve;

use std::ops::{Deref, DerefMut};

use autodiff::Element;

pub use adjoint::{Adjoint, AdjointOptions};
pub use controller::Controller;
pub use method::{Method, Scheme, Stepping};
pub use solve::{Norm, SolveOptions};

use crate::OdeError;

/// All settings of a solve and its derivatives, built with [`Options::dopri5`],
/// [`Options::fixed`], … and chained setters: the forward solve's [`SolveOptions`] and the
/// derivatives' [`AdjointOptions`].
///
/// An `Options` dereferences to its solve options, so it can be passed wherever solve options
/// are expected (`solve(&f, &z0, &p, &times, &opts)`) and their fields read directly
/// (`opts.method`).
///
/// ```
/// use ode::{Adjoint, Method, Options};
/// let opts = Options::<f64>::dopri5(1e-6, 1e-8).max_steps(10_000).error_channels(vec![true, false]);
/// let fixed = Options::<f64>::fixed(Method::Rk4, 20).adjoint(Adjoint::Direct);
/// assert_eq!(opts.max_steps, 10_000);
/// assert_eq!(fixed.adjoint.strategy, Adjoint::Direct);
/// ```
#[derive(Clone, Debug)]
pub struct Options<E> {
    /// The settings of the forward solve (and of a plain [`solve`](crate::solve)).
    pub solve: SolveOptions<E>,
    /// The settings of the derivatives of an [`odeint`](crate::odeint()) call.
    pub adjoint: AdjointOptions<E>,
}

impl<E> Deref for Options<E> {
    type Target = SolveOptions<E>;

    fn deref(&self) -> &SolveOptions<E> {
        &self.solve
    }
}

impl<E> DerefMut for Options<E> {
    fn deref_mut(&mut self) -> &mut SolveOptions<E> {
        &mut self.solve
    }
}

impl<E: Element> From<SolveOptions<E>> for Options<E> {
    /// The solve options with the default adjoint settings.
    fn from(solve: SolveOptions<E>) -> Self {
        Options {
            solve,
            adjoint: AdjointOptions::default(),
        }
    }
}

impl<E: Element> From<Options<E>> for SolveOptions<E> {
    /// The solve half of the options.
    fn from(opts: Options<E>) -> Self {
        opts.solve
    }
}

/// Setters of the solve half, delegated so that a chain of builder calls keeps its type.
macro_rules! solve_setters {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty);)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $arg: $ty) -> Self {
                self.solve = self.solve.$name($arg);
                self
            }
        )*
    };
}

/// Constructors of the solve half, with the default adjoint settings.
macro_rules! solve_constructors {
    ($($(#[$doc:meta])* $name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            $(#[$doc])*
            pub fn $name($($arg: $ty),*) -> Self {
                SolveOptions::$name($($arg),*).into()
            }
        )*
    };
}

impl<E: Element> Options<E> {
    solve_constructors! {
        /// Adaptive stepping with `method` and the defaults rtol = 1e-7, atol = 1e-9,
        /// max_steps = 100 000 (see [`SolveOptions::new`]).
        new(method: Method);
        /// Adaptive Dormand–Prince 5(4).
        dopri5(rtol: E, atol: E);
        /// Adaptive Tsitouras 5(4).
        tsit5(rtol: E, atol: E);
        /// Adaptive Bogacki–Shampine 3(2).
        bosh3(rtol: E, atol: E);
        /// Adaptive Dormand–Prince 8(5).
        dopri8(rtol: E, atol: E);
        /// `steps` equal steps between consecutive save times.
        fixed(method: Method, steps: usize);
        /// Steps of size at most `h` (see [`Stepping::StepSize`]).
        fixed_step(method: Method, h: E);
    }

    solve_setters! {
        /// Sets the method (keeping the other settings).
        method(method: Method);
        /// Sets the stepping mode.
        stepping(stepping: Stepping<E>);
        /// Sets the relative tolerance.
        rtol(rtol: E);
        /// Sets the absolute tolerance.
        atol(atol: E);
        /// Sets the first step size (its magnitude; the sign follows the direction of time).
        first_step(h: E);
        /// Sets the smallest allowed step magnitude.
        min_step(h: E);
        /// Sets the largest allowed step magnitude.
        max_step(h: E);
        /// Sets the largest number of attempted steps.
        max_steps(n: usize);
        /// Sets which state channels take part in error control (one flag per channel).
        error_channels(flags: Vec<bool>);
        /// Records the end time of every accepted step.
        record_steps(on: bool);
        /// Record the state at the end of every accepted step (and its time).
        record_step_states(on: bool);
        /// Sets the step-size controller of adaptive solves (see [`Controller`]).
        controller(controller: Controller);
        /// Sets how the errors of the controlled channels are combined (see [`Norm`]).
        norm(norm: Norm);
    }

    /// The strategy of [`odeint`](crate::odeint())'s VJP.
    pub fn adjoint(mut self, strategy: Adjoint) -> Self {
        self.adjoint.strategy = strategy;
        self
    }

    /// Seminorm error control of the adjoint's parameter-gradient channels.
    pub fn seminorm(mut self, on: bool) -> Self {
        self.adjoint.seminorm = on;
        self
    }

    /// Separate method, stepping and tolerances for the adjoint solves (only the solve half of
    /// an `Options` is used; its error channels are ignored).
    pub fn adjoint_solver(mut self, opts: impl Into<SolveOptions<E>>) -> Self {
        self.adjoint.solver = Some(Box::new(opts.into()));
        self
    }

    /// The settings the adjoint solves start from: the separate adjoint solve options or the
    /// forward ones, with this call's seminorm and no separate options of their own (the
    /// adjoint of an adjoint solves as the adjoint does).
    pub(crate) fn adjoint_solver_options(&self) -> Options<E> {
        Options {
            solve: self
                .adjoint
                .solver
                .as_deref()
                .unwrap_or(&self.solve)
                .clone(),
            adjoint: AdjointOptions {
                strategy: self.adjoint.strategy,
                seminorm: self.adjoint.seminorm,
                solver: None,
            },
        }
    }

    /// Checks the solve settings against a state of `channels` channels (see
    /// [`SolveOptions::validate`]).
    pub fn validate(&self, channels: usize) -> Result<(), OdeError> {
        self.solve.validate(channels)
    }
}
