//! Evaluation and step counts of an `odeint` call, by phase (forward, first-order derivative
//! rules, nested derivatives).

use std::cell::RefCell;
use std::rc::Rc;

use autodiff::{Element, Tape, Var};

use crate::{Dynamics, Stats};

/// Function evaluations and steps of one `odeint` call, by phase: its forward solve, the
/// first-order derivative rules (adjoint VJPs and sensitivity JVPs), and everything nested
/// deeper (derivatives of those derivatives), filled in as they happen.
///
/// `nfe` counts every evaluation of the dynamics given to `odeint`, wherever it happens: in
/// the solves, in the time-gradient and sensitivity terms evaluated at the save times, and in
/// the re-evaluations that make a derivative differentiable again. The step counters sum the
/// solves of each phase.
#[derive(Clone, Debug, Default)]
pub struct OdeStats(Rc<RefCell<StatsInner>>);

#[derive(Debug, Default)]
struct StatsInner {
    /// Summed solver statistics per phase (forward, backward, nested).
    solves: [Stats; 3],
    /// Evaluations of the user's dynamics per phase.
    evals: [usize; 3],
    /// The phase that evaluations count towards now; `None` outside the op's own rules, where
    /// only a derivative of a recorded derivative can evaluate the dynamics (nested).
    phase: Option<usize>,
}

/// Phase indices of [`OdeStats`].
pub(crate) const FORWARD: usize = 0;
pub(crate) const BACKWARD: usize = 1;
const NESTED: usize = 2;

impl OdeStats {
    fn phase_stats(&self, phase: usize) -> Stats {
        let inner = self.0.borrow();
        let mut s = inner.solves[phase];
        s.nfe = inner.evals[phase];
        s
    }

    /// Statistics of the forward solve.
    pub fn forward(&self) -> Stats {
        self.phase_stats(FORWARD)
    }

    /// Statistics of the first-order derivative passes run so far (adjoint VJPs and
    /// sensitivity JVPs of this solve).
    pub fn backward(&self) -> Stats {
        self.phase_stats(BACKWARD)
    }

    /// Statistics of higher-order derivative passes: the derivatives of the adjoint and
    /// sensitivity solves (Hessian-vector products, gradients of gradients).
    pub fn nested(&self) -> Stats {
        self.phase_stats(NESTED)
    }

    /// All phases together.
    pub fn total(&self) -> Stats {
        let mut s = self.forward();
        s += self.backward();
        s += self.nested();
        s.nfe = self.0.borrow().evals.iter().sum();
        s
    }

    /// Adds the statistics of a solve to `phase` (capped at nested).
    pub(crate) fn add_solve(&self, phase: usize, s: Stats) {
        self.0.borrow_mut().solves[phase.min(NESTED)] += s;
    }

    /// Counts one evaluation of the user's dynamics in the current phase.
    fn count_eval(&self) {
        let mut inner = self.0.borrow_mut();
        let phase = inner.phase.unwrap_or(NESTED).min(NESTED);
        inner.evals[phase] += 1;
    }

    /// Makes evaluations count towards `phase` until the guard is dropped.
    pub(crate) fn enter(&self, phase: usize) -> PhaseGuard {
        let prev = self.0.borrow_mut().phase.replace(phase.min(NESTED));
        PhaseGuard {
            stats: self.clone(),
            prev,
        }
    }
}

/// Restores the previous phase of an [`OdeStats`] when dropped.
pub(crate) struct PhaseGuard {
    stats: OdeStats,
    prev: Option<usize>,
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        self.stats.0.borrow_mut().phase = self.prev;
    }
}

/// The user's dynamics with every evaluation counted in an [`OdeStats`].
pub(crate) struct Counted<E: Element> {
    pub(crate) f: Rc<dyn Dynamics<E>>,
    pub(crate) stats: OdeStats,
}

impl<E: Element> Dynamics<E> for Counted<E> {
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        z: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>> {
        self.stats.count_eval();
        self.f.eval(tape, t, z, params)
    }
}
