//! ODE solvers for neural ODEs and continuous normalizing flows, on the `autodiff` tape.
//!
//! # Tour
//!
//! - [`Dynamics`]: the right-hand side `f(t, z; θ)` written with tape operations; the state
//!   is a list of matrices ("channels", e.g. `[z, Δlogp]`) and the parameters are explicit.
//!   Closures implement it; [`dynamics`] fixes a closure's signature.
//! - [`tableau`]: methods are data. Butcher tableaux with a citation each (Euler, midpoint,
//!   Heun, RK4, Bogacki–Shampine 3(2), Dormand–Prince 5(4), Tsitouras 5(4), DOP853's 8(5)
//!   pair, implicit Euler, Alexander's SDIRK2 and Kværnø's ESDIRK 3(2) and 5(4)), validated
//!   down to the order conditions.
//! - [`solve`]: integration on plain values. One generic explicit Runge–Kutta stepper (FSAL
//!   exploited, stage buffers allocated once), a Newton stepper for the implicit methods
//!   (Jacobian products from the tape, dense LU or matrix-free GMRES), PI step-size control
//!   with Hairer's mixed rtol/atol norm and initial step, per-channel error control, dense
//!   output (every adaptive method's own continuous extension, so save times never force
//!   steps; [`solve_dense`] keeps it for [`Solution::evaluate`] at any time), fixed-step
//!   modes, and backwards integration.
//! - [`odeint`]: the solve as ONE differentiable node on a tape. Its VJP integrates the
//!   adjoint system (Chen et al. 2018) with the strategy [`Adjoint::Backsolve`],
//!   [`Adjoint::Checkpointed`] or [`Adjoint::Direct`]; its JVP integrates the
//!   forward-sensitivity system; both are `odeint` calls themselves, so derivatives of any
//!   order pass through a solve. Gradients reach `z0`, the parameters and the times.
//!   [`odeint_event`] stops a solve at a terminal [`Event`] `g(t, z; θ) = 0` located on the
//!   dense output, with the event time differentiable by the implicit function theorem.
//! - [`Options`]: the builder users start from, carrying [`SolveOptions`] (the [`Method`], its
//!   [`Stepping`], tolerances, step bounds, error channels, recording, the step-size
//!   [`Controller`]: all a plain solve reads) and [`AdjointOptions`] (the strategy, the seminorm and the adjoint's own solve
//!   options, which only `odeint`'s derivatives read).
//! - [`OdeError`]: typed failures (step size underflow, max steps, non-finite values,
//!   invalid times/options, Newton divergence).
//!
//! The layers depend downwards only: [`tableau`] → options → [`solve`] → the `odeint` types →
//! the strategies → [`odeint`].
//!
//! # Example
//!
//! ```
//! use autodiff::Tensor;
//! use ode::{dynamics, solve, Options};
//!
//! // dz/dt = -k z with the rate k as a parameter; z(1) = e^{-k}.
//! let f = dynamics::<f64, _>(|_tape, _t, z, p| Ok(vec![-(z[0] * p[0])]));
//! let z0 = [Tensor::from_f64s(1, 2, &[1.0, 2.0])];
//! let k = [Tensor::scalar(0.5)];
//! let sol = solve(&f, &z0, &k, &[0.0, 0.5, 1.0], &Options::dopri5(1e-8, 1e-10)).unwrap();
//! let z1 = &sol.states[2][0];
//! assert!((z1.get(0, 1) - 2.0 * (-0.5f64).exp()).abs() < 1e-7);
//! assert_eq!(sol.states[0][0], z0[0]);
//! println!("{} evaluations, {} steps", sol.stats.nfe, sol.stats.accepted);
//! ```
#![warn(missing_docs)]

mod dynamics;
mod error;
mod linalg;
mod odeint;
mod options;
mod solve;
pub mod tableau;

pub use dynamics::{dynamics, Dynamics};
pub use error::{DynamicsError, OdeError};
pub use odeint::{
    event_fn, odeint, odeint_event, Event, EventError, EventFn, EventSolution, OdeSolution,
    OdeStats, Times,
};
pub use options::{
    Adjoint, AdjointOptions, Controller, Method, Norm, Options, Scheme, SolveOptions, Stepping,
};
pub use solve::{
    solve, solve_dense, DenseError, DenseSolution, Solution, Stats, DENSE_JACOBIAN_MAX,
};
pub use tableau::{EsdirkTableau, SdirkTableau, Tableau};
