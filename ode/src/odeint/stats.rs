//! Evaluation and step counts and wall times of an `odeint` call, by phase (forward,
//! first-order derivative rules, nested derivatives).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
///
/// The wall times ([`forward_time`](Self::forward_time), …) are measured where the counts
/// are: a phase's clock runs while the op works in that phase, and stops while a deeper phase
/// runs inside it (the adjoint solve of a Hessian-vector product is nested time, not backward
/// time), so the phases never count the same instant twice and
/// [`total_time`](Self::total_time) is their sum. An evaluation of the dynamics outside the
/// op's own rules (a derivative of a recorded derivative) is timed on its own and counted as
/// nested, as its evaluation is.
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
    /// Wall time per phase, exclusive of the deeper phases run inside it.
    times: [Duration; 3],
    /// When the current phase's clock last (re)started; `None` when no phase is current.
    since: Option<Instant>,
}

impl StatsInner {
    /// Stops the current phase's clock at `now`, adding the time since it (re)started.
    fn stop_clock(&mut self, now: Instant) {
        if let (Some(phase), Some(since)) = (self.phase, self.since.take()) {
            self.times[phase] += now.saturating_duration_since(since);
        }
    }
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

    /// Wall time of the forward solve.
    pub fn forward_time(&self) -> Duration {
        self.0.borrow().times[FORWARD]
    }

    /// Wall time of the first-order derivative passes run so far (without the nested passes
    /// they contain).
    pub fn backward_time(&self) -> Duration {
        self.0.borrow().times[BACKWARD]
    }

    /// Wall time of the higher-order derivative passes run so far.
    pub fn nested_time(&self) -> Duration {
        self.0.borrow().times[NESTED]
    }

    /// Wall time of all phases together: `forward_time + backward_time + nested_time`.
    pub fn total_time(&self) -> Duration {
        self.0.borrow().times.iter().sum()
    }

    /// Adds the statistics of a solve to `phase` (capped at nested).
    pub(crate) fn add_solve(&self, phase: usize, s: Stats) {
        self.0.borrow_mut().solves[phase.min(NESTED)] += s;
    }

    /// Counts one evaluation of the user's dynamics in the current phase; returns whether
    /// no phase is current (then the caller times the evaluation itself).
    fn count_eval(&self) -> bool {
        let mut inner = self.0.borrow_mut();
        let phase = inner.phase.unwrap_or(NESTED).min(NESTED);
        inner.evals[phase] += 1;
        inner.phase.is_none()
    }

    /// Makes evaluations and wall time count towards `phase` until the guard is dropped.
    pub(crate) fn enter(&self, phase: usize) -> PhaseGuard {
        let mut inner = self.0.borrow_mut();
        let now = Instant::now();
        inner.stop_clock(now);
        let prev = inner.phase.replace(phase.min(NESTED));
        inner.since = Some(now);
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
        let mut inner = self.stats.0.borrow_mut();
        let now = Instant::now();
        inner.stop_clock(now);
        inner.phase = self.prev;
        // The enclosing phase's clock runs on from here.
        inner.since = self.prev.map(|_| now);
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
        if !self.stats.count_eval() {
            return self.f.eval(tape, t, z, params);
        }
        // Outside the op's rules: time this evaluation as nested work.
        let start = Instant::now();
        let out = self.f.eval(tape, t, z, params);
        self.stats.0.borrow_mut().times[NESTED] += start.elapsed();
        out
    }
}
