//! Butcher tableaux as data, and their validation (row sums, weights, order conditions).
//!
//! Explicit methods are [`Tableau`]s run by one generic stepper; the implicit methods are
//! [`SdirkTableau`]s and [`EsdirkTableau`]s (explicit first stage) run by the Newton stepper.
//! Every constant cites its source; [`Tableau::validate`], [`SdirkTableau::validate`] and
//! [`EsdirkTableau::validate`] check the numbers, including the
//! order conditions of every rooted tree up to the claimed order (Butcher 1963; Hairer,
//! Nørsett & Wanner 1993, Section II.2), for claims up to [`MAX_CHECKED_ORDER`].
//!
//! Files: `explicit` holds Euler to Tsitouras 5(4), `dop853` the 12-stage DOP853 pair,
//! `implicit` the SDIRK methods, `esdirk` the ESDIRK type and `kvaerno` Kværnø's pairs;
//! `validate` checks a tableau's numbers against the rooted trees that `order_conditions`
//! walks.

mod dop853;
mod esdirk;
mod explicit;
mod implicit;
mod kvaerno;
mod order_conditions;
mod validate;

pub use dop853::DOPRI8;
pub(crate) use esdirk::Dirk;
pub use esdirk::EsdirkTableau;
pub use explicit::{BOSH3, DOPRI5, EULER, HEUN, MIDPOINT, RK4, TSIT5};
pub use implicit::{IMPLICIT_EULER, SDIRK2};
pub use kvaerno::{KVAERNO3, KVAERNO5};
pub use order_conditions::{order_residual, tree_counts, MAX_CHECKED_ORDER};

/// The terms `(j, w_j)` that enter a stage combination `Σ_j w_j k_j` with the weights `w` (a
/// row of `a`, the weights `b`, error or dense-output weights): those with a nonzero weight.
///
/// The explicit stepper combines plain values and the `Direct` strategy replays the same
/// steps with tape variables; the arithmetic is type-specific, but both take their terms from
/// here, so the replay cannot combine other stages than the step it replays.
pub(crate) fn terms(w: &[f64]) -> impl Iterator<Item = (usize, f64)> + '_ {
    w.iter().copied().enumerate().filter(|&(_, wj)| wj != 0.0)
}

/// An explicit Runge–Kutta method with an optional embedded pair and continuous extension.
///
/// Stage `i` is `k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)` and the step is
/// `y₁ = y₀ + h Σ b_i k_i`. The fields are public so that a step can be replayed with tape
/// operations (discretise-then-optimise).
#[derive(Clone, Copy, Debug)]
pub struct Tableau {
    /// Short name ("dopri5").
    pub name: &'static str,
    /// Order of the propagated solution `b`.
    pub order: usize,
    /// Order of the embedded solution `b̂ = b − b_err`, if there is one: the error estimate
    /// behaves like `h^(error_order + 1)`.
    pub error_order: Option<usize>,
    /// Nodes `c_i` (`c_0 = 0`).
    pub c: &'static [f64],
    /// Strictly lower-triangular coefficients, row-major per stage: row `i` has `i` entries
    /// `a_i0 … a_i(i−1)` (row 0 is empty).
    pub a: &'static [&'static [f64]],
    /// Weights of the propagated solution.
    pub b: &'static [f64],
    /// Error weights `b − b̂` of the embedded pair; `None` for fixed-step-only methods.
    pub b_err: Option<&'static [f64]>,
    /// First-same-as-last: the last stage is evaluated at `(t + h, y₁)` (its row of `a` equals
    /// `b` and its node is 1), so it is the next step's first stage. Checked by
    /// [`validate`](Tableau::validate) against [`fsal_from_numbers`](Tableau::fsal_from_numbers).
    pub fsal: bool,
    /// Continuous extension: row `i` holds the coefficients of `b_i(θ) = Σ_m d_im θ^(m+1)`,
    /// so `y(t₀ + θh) = y₀ + h Σ b_i(θ) k_i` (plus the [`dense_stages`](Tableau::dense_stages)'
    /// terms) with `b_i(1) = b_i`. `None`: cubic Hermite.
    pub dense: Option<&'static [&'static [f64]]>,
    /// Stages that only the continuous extension evaluates, after a step is accepted and only
    /// when a point inside it is asked for (DOP853's seventh-order dense output needs four:
    /// `f(t + h, y₁)` and three more). Empty for most methods.
    pub dense_stages: &'static [DenseStage],
    /// Where the numbers come from.
    pub citation: &'static str,
}

/// A stage evaluated only for a continuous extension: `k = f(t + c h, y₀ + h Σ_j a_j k_j)`
/// over the step's stages and the dense stages before it, entering the interpolant with the
/// weight `b(θ) = Σ_m d_m θ^(m+1)` (`b(1) = 0`: the step's end is `y₁` itself).
#[derive(Clone, Copy, Debug)]
pub struct DenseStage {
    /// Node.
    pub c: f64,
    /// Coefficients over all earlier stages (the step's `s`, then the dense stages before).
    pub a: &'static [f64],
    /// Coefficients `d_m` of the weight polynomial.
    pub b: &'static [f64],
}

/// A singly diagonally implicit Runge–Kutta method (all diagonal entries `γ`), stiffly
/// accurate (its last row of `a` is `b`, so `f(t₁, y₁)` is the last stage).
///
/// The error estimate is `h (err_f0 f(t₀, y₀) + Σ b_err_i k_i)`, filtered through
/// `(I − hγJ)⁻¹` so that it stays bounded on stiff components (Hairer & Wanner 1996,
/// Section IV.8).
#[derive(Clone, Copy, Debug)]
pub struct SdirkTableau {
    /// Short name ("sdirk2").
    pub name: &'static str,
    /// Order of the method.
    pub order: usize,
    /// The error estimate behaves like `h^(error_order + 1)`: the companion formula it
    /// compares with has order `error_order` at least.
    pub error_order: usize,
    /// The diagonal entry.
    pub gamma: f64,
    /// Nodes.
    pub c: &'static [f64],
    /// Lower-triangular coefficients including the diagonal: row `i` has `i + 1` entries.
    pub a: &'static [&'static [f64]],
    /// Weights (equal to the last row of `a`).
    pub b: &'static [f64],
    /// Weight of `f(t₀, y₀)` in the error estimate.
    pub err_f0: f64,
    /// Weights of the stages in the error estimate (with `err_f0` they sum to zero).
    pub b_err: &'static [f64],
    /// Where the numbers come from.
    pub citation: &'static str,
}

impl Tableau {
    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.c.len()
    }

    /// FSAL as the numbers say: the last row of `a` equals `b` (and `b_s = 0`) and the last
    /// node is 1.
    pub fn fsal_from_numbers(&self) -> bool {
        let s = self.stages();
        s >= 2
            && self.c[s - 1] == 1.0
            && self.b[s - 1] == 0.0
            && self.a[s - 1].iter().zip(self.b).all(|(x, y)| x == y)
    }

    /// The coefficient matrix as full rows (zeros above the diagonal).
    pub fn full_a(&self) -> Vec<Vec<f64>> {
        self.a.iter().map(|r| r.to_vec()).collect()
    }

    /// Number of stages of the continuous extension: the step's own plus its
    /// [`dense_stages`](Tableau::dense_stages) (0 without a continuous extension).
    pub fn dense_stage_count(&self) -> usize {
        if self.dense.is_some() {
            self.stages() + self.dense_stages.len()
        } else {
            0
        }
    }

    /// Highest power of `θ` in the continuous extension (0 without one).
    pub fn dense_degree(&self) -> usize {
        let own = self.dense.into_iter().flatten().map(|r| r.len());
        let extra = self.dense_stages.iter().map(|d| d.b.len());
        own.chain(extra).max().unwrap_or(0)
    }

    /// Writes the weights `b_i(θ)` of the continuous extension for all
    /// [`dense_stage_count`](Tableau::dense_stage_count) stages into `out` (Horner's rule).
    ///
    /// # Panics
    ///
    /// If the tableau has no continuous extension or `out` has the wrong length.
    pub fn dense_weights_into(&self, theta: f64, out: &mut [f64]) {
        let d = self
            .dense
            .unwrap_or_else(|| panic!("dense_weights: {} has no continuous extension", self.name));
        assert_eq!(
            out.len(),
            self.dense_stage_count(),
            "dense_weights: {} needs {} weights, got a buffer of {}",
            self.name,
            self.dense_stage_count(),
            out.len()
        );
        let rows = d
            .iter()
            .copied()
            .chain(self.dense_stages.iter().map(|s| s.b));
        for (w, row) in out.iter_mut().zip(rows) {
            let mut p = 0.0;
            for &coef in row.iter().rev() {
                p = (p + coef) * theta;
            }
            *w = p;
        }
    }

    /// The weights `b_i(θ)` of the continuous extension (see
    /// [`dense_weights_into`](Tableau::dense_weights_into)).
    pub fn dense_weights(&self, theta: f64) -> Vec<f64> {
        let mut w = vec![0.0; self.dense_stage_count()];
        self.dense_weights_into(theta, &mut w);
        w
    }

    /// The coefficient matrix of the step's stages followed by the dense stages, as full
    /// square rows (zeros above the diagonal).
    pub fn dense_full_a(&self) -> Vec<Vec<f64>> {
        let n = self.stages() + self.dense_stages.len();
        let rows = self
            .a
            .iter()
            .copied()
            .chain(self.dense_stages.iter().map(|d| d.a));
        rows.map(|r| {
            let mut full = r.to_vec();
            full.resize(n, 0.0);
            full
        })
        .collect()
    }

    /// Largest residual of the order conditions up to `order` of the continuous extension at
    /// `θ` (NaN if any is NaN): `|Σ_i b_i(θ) Φ_i(t) − θ^ρ(t)/γ(t)|` over the rooted trees `t` of
    /// order `ρ(t) ≤ order`, scaled by `θ^−ρ(t)`.
    ///
    /// The interpolant at `θ` is the Runge–Kutta method with coefficients `a/θ` and weights
    /// `b(θ)/θ` taking a step of `θh` (Hairer, Nørsett & Wanner 1993, Section II.6), so this is
    /// [`order_residual`] of that method.
    ///
    /// # Panics
    ///
    /// Without a continuous extension, for `θ` outside `(0, 1]`, or above
    /// [`MAX_CHECKED_ORDER`].
    pub fn dense_order_residual(&self, theta: f64, order: usize) -> f64 {
        assert!(
            theta > 0.0 && theta <= 1.0,
            "dense_order_residual: θ = {theta} is outside (0, 1]"
        );
        let a: Vec<Vec<f64>> = self
            .dense_full_a()
            .into_iter()
            .map(|r| r.into_iter().map(|x| x / theta).collect())
            .collect();
        let b: Vec<f64> = self
            .dense_weights(theta)
            .iter()
            .map(|w| w / theta)
            .collect();
        order_residual(&a, &b, order)
    }

    /// The embedded weights `b̂ = b − b_err`, if any.
    pub fn b_hat(&self) -> Option<Vec<f64>> {
        self.b_err
            .map(|e| self.b.iter().zip(e).map(|(b, e)| b - e).collect())
    }
}

impl SdirkTableau {
    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.c.len()
    }
}
