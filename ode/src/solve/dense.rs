//! The dense solution of an adaptive solve: one interpolating polynomial per accepted step,
//! evaluable at any time of the solved interval afterwards (diffrax's `SaveAt(dense=True)`
//! and `Solution.evaluate`).

use std::fmt;

use autodiff::{Element, Tensor};

/// Why [`DenseSolution::evaluate`] (or [`Solution::evaluate`](super::Solution::evaluate))
/// gave no value.
#[derive(Clone, Debug, PartialEq)]
pub enum DenseError {
    /// `t` lies outside the solved interval (or is not finite).
    OutOfRange {
        /// The requested time.
        t: f64,
        /// Start of the solved interval.
        t0: f64,
        /// End of the solved interval.
        t1: f64,
    },
    /// The solve did not record a dense solution (use [`solve_dense`](crate::solve_dense)).
    NotRecorded,
}

impl fmt::Display for DenseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenseError::OutOfRange { t, t0, t1 } => write!(
                f,
                "t = {t:e} is outside the solved interval [{t0:e}, {t1:e}] of the dense solution"
            ),
            DenseError::NotRecorded => write!(
                f,
                "the solve recorded no dense solution; call solve_dense instead of solve"
            ),
        }
    }
}

impl std::error::Error for DenseError {}

/// A continuous solution: on every accepted step `[t_i, t_(i+1)]` the method's own
/// interpolant, stored as a polynomial in `θ = (t − t_i)/(t_(i+1) − t_i)` (Dormand–Prince's
/// and Tsitouras' fourth-order extensions, DOP853's seventh-order one, cubic Hermite for the
/// others), so it is as accurate between the steps as the method is at them.
///
/// Memory: `degree + 1` copies of the state per step.
#[derive(Clone, Debug)]
pub struct DenseSolution<E: Element> {
    /// Step ends `t_0 … t_n` (increasing or decreasing).
    ts: Vec<E>,
    /// `coefs[i][m][c]`: the coefficient of `θ^m` of channel `c` on step `i`.
    coefs: Vec<Vec<Vec<Tensor<E>>>>,
}

impl<E: Element> DenseSolution<E> {
    pub(super) fn new(t0: E) -> Self {
        DenseSolution {
            ts: vec![t0],
            coefs: Vec::new(),
        }
    }

    /// Appends the step ending at `t1` with the interpolant's coefficients in powers of `θ`.
    pub(super) fn push(&mut self, t1: E, coefs: Vec<Vec<Tensor<E>>>) {
        self.ts.push(t1);
        self.coefs.push(coefs);
    }

    /// Start of the solved interval.
    pub fn t0(&self) -> E {
        self.ts[0]
    }

    /// End of the solved interval (the last accepted step's end).
    pub fn t1(&self) -> E {
        *self.ts.last().expect("at least t0")
    }

    /// The ends of the accepted steps, starting with `t0`.
    pub fn step_times(&self) -> &[E] {
        &self.ts
    }

    /// Number of accepted steps.
    pub fn steps(&self) -> usize {
        self.coefs.len()
    }

    /// The state at `t`: the interpolant of the step that contains `t` (at a step end, the
    /// earlier step's, which agrees with the later one's to rounding).
    ///
    /// Errors: [`DenseError::OutOfRange`] if `t` is not finite or outside `[t0, t1]` (in the
    /// direction of integration), and for a solution without steps (`times` of length 1).
    pub fn evaluate(&self, t: E) -> Result<Vec<Tensor<E>>, DenseError> {
        let (i, theta) = self.locate(t)?;
        if self.coefs.is_empty() {
            return Err(self.out_of_range(t));
        }
        Ok(self.evaluate_step(i, theta))
    }

    /// The interpolant of step `i` at `θ ∈ [0, 1]` (Horner's rule in `θ`).
    ///
    /// # Panics
    ///
    /// If `i` is not a step index.
    pub fn evaluate_step(&self, i: usize, theta: f64) -> Vec<Tensor<E>> {
        assert!(
            i < self.coefs.len(),
            "DenseSolution::evaluate_step: step {i} of {}",
            self.coefs.len()
        );
        let c = &self.coefs[i];
        let th = E::from_f64(theta);
        let mut out: Vec<Tensor<E>> = c.last().expect("degree ≥ 0").clone();
        for cm in c.iter().rev().skip(1) {
            for (o, x) in out.iter_mut().zip(cm) {
                o.scale(th);
                o.axpy(E::ONE, x);
            }
        }
        out
    }

    /// The step containing `t` and the position `θ` in it.
    fn locate(&self, t: E) -> Result<(usize, f64), DenseError> {
        let (t0, t1) = (self.t0().to_f64(), self.t1().to_f64());
        let tf = t.to_f64();
        let dir = if t1 >= t0 { 1.0 } else { -1.0 };
        let inside = tf.is_finite() && (tf - t0) * dir >= 0.0 && (t1 - tf) * dir >= 0.0;
        if !inside {
            return Err(self.out_of_range(t));
        }
        if self.coefs.is_empty() {
            return Ok((0, 0.0));
        }
        // The first step whose end is at or beyond t.
        let n = self.coefs.len();
        let pos = self.ts[1..].partition_point(|s| (s.to_f64() - tf) * dir < 0.0);
        let i = pos.min(n - 1);
        let (a, b) = (self.ts[i].to_f64(), self.ts[i + 1].to_f64());
        let theta = ((tf - a) / (b - a)).clamp(0.0, 1.0);
        Ok((i, theta))
    }

    fn out_of_range(&self, t: E) -> DenseError {
        DenseError::OutOfRange {
            t: t.to_f64(),
            t0: self.t0().to_f64(),
            t1: self.t1().to_f64(),
        }
    }
}

/// What the adaptive driver fills while it steps with dense output: the dense solution, and
/// an optional check after every accepted step (given the solution so far and the step's end
/// state) that ends the solve early when it returns `true` (terminal events).
pub(crate) struct Recorder<'a, E: Element> {
    pub(crate) sol: DenseSolution<E>,
    pub(crate) stop: Option<StopFn<'a, E>>,
    /// Whether `stop` ended the solve.
    pub(crate) stopped: bool,
}

/// The early-stopping check of a [`Recorder`].
pub(crate) type StopFn<'a, E> = &'a mut dyn FnMut(&DenseSolution<E>, &[Tensor<E>]) -> bool;
