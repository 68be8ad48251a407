//! Singly diagonally implicit methods with an explicit first stage (ESDIRK): the tableau type,
//! its validation, and the one view of a diagonally implicit method that the Newton stepper and
//! the `Direct` replay both run.

use super::order_conditions::first_violation;
use super::SdirkTableau;
use crate::OdeError;

/// A singly diagonally implicit Runge–Kutta method whose first stage is explicit (ESDIRK):
/// `c₀ = 0` and `a₀₀ = 0`, so the first stage is `f(t₀, y₀)`, and every later diagonal entry is
/// `γ`. The method is stiffly accurate (its last row of `a` is `b` and its last node is 1), so
/// `y₁` is the last stage value and `f(t₁, y₁)` the last stage derivative.
///
/// The embedded solution is `ŷ = y₀ + h Σ (b_i − b_err_i) k_i`; the error estimate
/// `h Σ b_err_i k_i` is filtered through `(I − hγJ)⁻¹` (Hairer & Wanner 1996, Section IV.8),
/// because the embedded formulas of Kværnø's pairs are A- but not L-stable and their raw
/// difference would not vanish on stiff components.
#[derive(Clone, Copy, Debug)]
pub struct EsdirkTableau {
    /// Short name ("kvaerno5").
    pub name: &'static str,
    /// Order of the method.
    pub order: usize,
    /// Order of the embedded solution: the error estimate behaves like `h^(error_order + 1)`.
    pub error_order: usize,
    /// The diagonal entry of the implicit stages.
    pub gamma: f64,
    /// Nodes (`c₀ = 0`, last node 1).
    pub c: &'static [f64],
    /// Lower-triangular coefficients including the diagonal: row 0 is `[0]`, row `i` has
    /// `i + 1` entries ending in `γ`.
    pub a: &'static [&'static [f64]],
    /// Weights (equal to the last row of `a`).
    pub b: &'static [f64],
    /// Error weights `b − b̂` (they sum to zero).
    pub b_err: &'static [f64],
    /// Where the numbers come from.
    pub citation: &'static str,
}

impl EsdirkTableau {
    /// Number of stages, the explicit first one included.
    pub fn stages(&self) -> usize {
        self.c.len()
    }

    /// The coefficient matrix as full rows (zeros above the diagonal).
    pub fn full_a(&self) -> Vec<Vec<f64>> {
        let s = self.stages();
        self.a
            .iter()
            .map(|r| {
                let mut row = r.to_vec();
                row.resize(s, 0.0);
                row
            })
            .collect()
    }

    /// The embedded weights `b̂ = b − b_err`.
    pub fn b_hat(&self) -> Vec<f64> {
        self.b.iter().zip(self.b_err).map(|(b, e)| b - e).collect()
    }

    /// Checks the tableau to absolute tolerance `tol`: shapes, an explicit first stage
    /// (`c₀ = 0`, `a₀₀ = 0`), constant diagonal `γ` after it, `Σ_j a_ij = c_i`, stiff accuracy,
    /// `Σ b = 1`, `Σ b_err = 0`, and the order conditions of every rooted tree up to `order`
    /// for `b` and up to `error_order` for `b̂`. Claimed orders above
    /// [`MAX_CHECKED_ORDER`](super::MAX_CHECKED_ORDER) are an error.
    pub fn validate(&self, tol: f64) -> Result<(), OdeError> {
        let n = self.name;
        let s = self.stages();
        let fail = |what: String| Err(OdeError::InvalidTableau(format!("{n}: {what}")));
        for (q, what) in [(self.order, "order"), (self.error_order, "error order")] {
            if q > super::MAX_CHECKED_ORDER {
                return fail(format!(
                    "claimed {what} {q} is above {}, the highest checkable order",
                    super::MAX_CHECKED_ORDER
                ));
            }
        }
        if s < 2 || self.a.len() != s || self.b.len() != s || self.b_err.len() != s {
            return fail(format!(
                "{s} nodes, {} rows of a, {} weights, {} error weights",
                self.a.len(),
                self.b.len(),
                self.b_err.len()
            ));
        }
        if self.c[0] != 0.0 || self.a[0] != [0.0] {
            return fail("the first stage is not explicit (c₀ = 0, a₀₀ = 0)".into());
        }
        for (i, row) in self.a.iter().enumerate() {
            if row.len() != i + 1 {
                return fail(format!(
                    "row {i} has {} entries, expected {}",
                    row.len(),
                    i + 1
                ));
            }
            if i > 0 && row[i] != self.gamma {
                return fail(format!(
                    "diagonal entry {i} is {} not γ = {}",
                    row[i], self.gamma
                ));
            }
            let sum: f64 = row.iter().sum();
            if (sum - self.c[i]).abs() > tol {
                return fail(format!("row {i}: Σa = {sum} but c = {}", self.c[i]));
            }
        }
        if self.c[s - 1] != 1.0 || self.a[s - 1] != self.b {
            return fail("not stiffly accurate".into());
        }
        let sb: f64 = self.b.iter().sum();
        if (sb - 1.0).abs() > tol {
            return fail(format!("Σb = {sb}"));
        }
        let se: f64 = self.b_err.iter().sum();
        if se.abs() > tol {
            return fail(format!("Σb_err = {se}"));
        }
        let a = self.full_a();
        if let Some((k, r)) = first_violation(&a, self.b, self.order, tol) {
            return fail(format!(
                "order {} conditions violated by {r:e} (trees of order {k})",
                self.order
            ));
        }
        if let Some((k, r)) = first_violation(&a, &self.b_hat(), self.error_order, tol) {
            return fail(format!(
                "embedded order {} conditions violated by {r:e} (trees of order {k})",
                self.error_order
            ));
        }
        Ok(())
    }
}

/// One view of a stiffly accurate diagonally implicit method, SDIRK or ESDIRK, for the code
/// that runs its stages (the Newton stepper and the `Direct` strategy's replay).
///
/// Stage `i` solves `Y_i = y₀ + h Σ_{j<i} a_ij k_j + hγ k_i` with `k_i = f(t₀ + c_i h, Y_i)`,
/// except that with `explicit_first` stage 0 is `k₀ = f(t₀, y₀)`; `y₁` is the last stage value.
/// The error estimate is `h (err_f0 f(t₀, y₀) + Σ b_err_i k_i)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dirk {
    /// Order of the method.
    pub(crate) order: usize,
    /// The error estimate behaves like `h^(error_order + 1)`.
    pub(crate) error_order: usize,
    /// The diagonal entry.
    pub(crate) gamma: f64,
    /// Nodes.
    pub(crate) c: &'static [f64],
    /// Rows including the diagonal.
    pub(crate) a: &'static [&'static [f64]],
    /// Whether stage 0 is `f(t₀, y₀)` rather than an implicit stage.
    pub(crate) explicit_first: bool,
    /// Weight of `f(t₀, y₀)` in the error estimate (0 for ESDIRK, whose stage 0 is `f₀`).
    pub(crate) err_f0: f64,
    /// Weights of the stages in the error estimate.
    pub(crate) b_err: &'static [f64],
}

impl Dirk {
    /// Number of stages (the explicit one included).
    pub(crate) fn stages(&self) -> usize {
        self.c.len()
    }

    /// Whether stage `i` is solved by Newton iterations.
    pub(crate) fn implicit_stage(&self, i: usize) -> bool {
        !(self.explicit_first && i == 0)
    }
}

impl From<&'static SdirkTableau> for Dirk {
    fn from(t: &'static SdirkTableau) -> Self {
        Dirk {
            order: t.order,
            error_order: t.error_order,
            gamma: t.gamma,
            c: t.c,
            a: t.a,
            explicit_first: false,
            err_f0: t.err_f0,
            b_err: t.b_err,
        }
    }
}

impl From<&'static EsdirkTableau> for Dirk {
    fn from(t: &'static EsdirkTableau) -> Self {
        Dirk {
            order: t.order,
            error_order: t.error_order,
            gamma: t.gamma,
            c: t.c,
            a: t.a,
            explicit_first: true,
            err_f0: 0.0,
            b_err: t.b_err,
        }
    }
}
