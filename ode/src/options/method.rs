//! The integration method and how steps are chosen.

use std::fmt;

use crate::tableau::{self, Dirk, EsdirkTableau, SdirkTableau, Tableau};

/// The integration method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Forward Euler, order 1 (fixed step only).
    Euler,
    /// Explicit midpoint, order 2 (fixed step only).
    Midpoint,
    /// Heun (explicit trapezoid), order 2 (fixed step only).
    Heun,
    /// Classical Runge–Kutta, order 4 (fixed step only).
    Rk4,
    /// Bogacki–Shampine 3(2).
    Bosh3,
    /// Dormand–Prince 5(4) with its fourth-order dense output.
    Dopri5,
    /// Tsitouras 5(4).
    Tsit5,
    /// Dormand–Prince 8(5) (the DOP853 tableau with its fifth-order error estimate).
    Dopri8,
    /// Implicit Euler, L-stable, order 1.
    ImplicitEuler,
    /// Alexander's L-stable two-stage SDIRK, order 2, with a first-order embedded estimate.
    Sdirk2,
    /// Kværnø's L-stable ESDIRK 3(2) (diffrax's `Kvaerno3`): four stages, the first explicit,
    /// three Newton solves per step; cubic Hermite dense output.
    Kvaerno3,
    /// Kværnø's L-stable ESDIRK 5(4) (diffrax's `Kvaerno5`): seven stages, the first explicit,
    /// six Newton solves per step. Its dense output is cubic Hermite, less accurate than the
    /// method, so adaptive steps end on every save time.
    Kvaerno5,
}

/// Which tableau a method runs.
#[derive(Clone, Copy, Debug)]
pub enum Scheme {
    /// An explicit Runge–Kutta method.
    Explicit(&'static Tableau),
    /// A singly diagonally implicit method solved by Newton iterations.
    Implicit(&'static SdirkTableau),
    /// A singly diagonally implicit method with an explicit first stage, solved by Newton
    /// iterations.
    Esdirk(&'static EsdirkTableau),
}

impl Method {
    /// Every method, explicit ones first.
    pub const ALL: [Method; 12] = [
        Method::Euler,
        Method::Midpoint,
        Method::Heun,
        Method::Rk4,
        Method::Bosh3,
        Method::Dopri5,
        Method::Tsit5,
        Method::Dopri8,
        Method::ImplicitEuler,
        Method::Sdirk2,
        Method::Kvaerno3,
        Method::Kvaerno5,
    ];

    /// The tableau this method runs.
    pub fn scheme(self) -> Scheme {
        match self {
            Method::Euler => Scheme::Explicit(&tableau::EULER),
            Method::Midpoint => Scheme::Explicit(&tableau::MIDPOINT),
            Method::Heun => Scheme::Explicit(&tableau::HEUN),
            Method::Rk4 => Scheme::Explicit(&tableau::RK4),
            Method::Bosh3 => Scheme::Explicit(&tableau::BOSH3),
            Method::Dopri5 => Scheme::Explicit(&tableau::DOPRI5),
            Method::Tsit5 => Scheme::Explicit(&tableau::TSIT5),
            Method::Dopri8 => Scheme::Explicit(&tableau::DOPRI8),
            Method::ImplicitEuler => Scheme::Implicit(&tableau::IMPLICIT_EULER),
            Method::Sdirk2 => Scheme::Implicit(&tableau::SDIRK2),
            Method::Kvaerno3 => Scheme::Esdirk(&tableau::KVAERNO3),
            Method::Kvaerno5 => Scheme::Esdirk(&tableau::KVAERNO5),
        }
    }

    /// The explicit tableau, or `None` for the implicit methods.
    pub fn tableau(self) -> Option<&'static Tableau> {
        match self.scheme() {
            Scheme::Explicit(t) => Some(t),
            Scheme::Implicit(_) | Scheme::Esdirk(_) => None,
        }
    }

    /// The diagonally implicit method this runs, or `None` for the explicit methods.
    pub(crate) fn dirk(self) -> Option<Dirk> {
        match self.scheme() {
            Scheme::Explicit(_) => None,
            Scheme::Implicit(t) => Some(t.into()),
            Scheme::Esdirk(t) => Some(t.into()),
        }
    }

    /// Order of the propagated solution.
    pub fn order(self) -> usize {
        match self.scheme() {
            Scheme::Explicit(t) => t.order,
            Scheme::Implicit(t) => t.order,
            Scheme::Esdirk(t) => t.order,
        }
    }

    /// Order `q` of the error estimate (it behaves like `h^(q+1)`), `None` if the method
    /// has none and can only take fixed steps.
    pub fn error_order(self) -> Option<usize> {
        match self.scheme() {
            Scheme::Explicit(t) => t.error_order,
            Scheme::Implicit(t) => Some(t.error_order),
            Scheme::Esdirk(t) => Some(t.error_order),
        }
    }

    /// `true` for the implicit (Newton-solved) methods.
    pub fn is_implicit(self) -> bool {
        matches!(self.scheme(), Scheme::Implicit(_) | Scheme::Esdirk(_))
    }

    /// Short name ("dopri5").
    pub fn name(self) -> &'static str {
        match self.scheme() {
            Scheme::Explicit(t) => t.name,
            Scheme::Implicit(t) => t.name,
            Scheme::Esdirk(t) => t.name,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How steps are chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Stepping<E> {
    /// Adaptive steps from the embedded error estimate and the step-size controller; save
    /// times in between steps come from dense output.
    Adaptive,
    /// Exactly `n` equal steps between consecutive save times (no interpolation).
    Steps(usize),
    /// Steps of size at most `h`: each interval between consecutive save times is divided
    /// into `⌈|Δt| / h⌉` equal steps, so every save time is hit exactly.
    StepSize(E),
}
