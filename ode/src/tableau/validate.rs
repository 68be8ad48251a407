//! Validation of a tableau's numbers: shapes, row sums, weights, FSAL, dense output, and the
//! order conditions its claimed orders imply.

use super::order_conditions::{first_violation, MAX_CHECKED_ORDER};
use super::{SdirkTableau, Tableau};
use crate::OdeError;

/// Refuses a claimed order that is too high to check (see [`MAX_CHECKED_ORDER`]).
fn check_claim(order: usize, name: &str, what: &str) -> Result<(), OdeError> {
    check(order <= MAX_CHECKED_ORDER, name, || {
        format!(
            "claimed {what} {order} is above {MAX_CHECKED_ORDER}, the highest order whose \
             conditions can be checked (see tableau::MAX_CHECKED_ORDER)"
        )
    })
}

/// Checks the order conditions of `b` up to `order`, naming the first order that fails.
fn check_order(
    a: &[Vec<f64>],
    b: &[f64],
    order: usize,
    tol: f64,
    name: &str,
    what: &str,
) -> Result<(), OdeError> {
    match first_violation(a, b, order, tol) {
        None => Ok(()),
        Some((k, r)) => check(false, name, || {
            format!("{what} {order} conditions violated by {r:e} (trees of order {k})")
        }),
    }
}

fn check(ok: bool, name: &str, what: impl FnOnce() -> String) -> Result<(), OdeError> {
    if ok {
        Ok(())
    } else {
        Err(OdeError::InvalidTableau(format!("{name}: {}", what())))
    }
}

impl Tableau {
    /// Checks the tableau to absolute tolerance `tol`: shapes, `Σ_j a_ij = c_i`, `Σ b = 1`,
    /// `Σ b_err = 0`, the FSAL flag, the dense output (`b_i(1) = b_i`), and the order
    /// conditions of all rooted trees up to `order` for `b` and up to `error_order` for `b̂`.
    ///
    /// A claimed `order` or `error_order` above [`MAX_CHECKED_ORDER`] is an error, found before
    /// any work. The order conditions are checked one order at a time and the first order that
    /// fails is reported, so an overstated claim fails as fast as the true order allows.
    pub fn validate(&self, tol: f64) -> Result<(), OdeError> {
        let n = self.name;
        let s = self.stages();
        check_claim(self.order, n, "order")?;
        if let Some(q) = self.error_order {
            check_claim(q, n, "error order")?;
        }
        check(self.a.len() == s && self.b.len() == s, n, || {
            format!(
                "{s} nodes but {} rows of a and {} weights",
                self.a.len(),
                self.b.len()
            )
        })?;
        for (i, row) in self.a.iter().enumerate() {
            check(row.len() == i, n, || {
                format!("row {i} of a has {} entries, expected {i}", row.len())
            })?;
            let sum: f64 = row.iter().sum();
            check((sum - self.c[i]).abs() <= tol, n, || {
                format!("row {i}: Σa = {sum} but c = {}", self.c[i])
            })?;
        }
        let sb: f64 = self.b.iter().sum();
        check((sb - 1.0).abs() <= tol, n, || format!("Σb = {sb}"))?;
        if let Some(e) = self.b_err {
            check(e.len() == s, n, || {
                format!("{} error weights for {s} stages", e.len())
            })?;
            let se: f64 = e.iter().sum();
            check(se.abs() <= tol, n, || format!("Σb_err = {se}"))?;
            check(self.error_order.is_some(), n, || {
                "error weights without an error order".into()
            })?;
        }
        check(self.fsal == self.fsal_from_numbers(), n, || {
            format!(
                "fsal flag {} but the numbers say {}",
                self.fsal,
                self.fsal_from_numbers()
            )
        })?;
        if let Some(d) = self.dense {
            check(d.len() == s, n, || {
                format!("{} dense rows for {s} stages", d.len())
            })?;
            for (i, row) in d.iter().enumerate() {
                let at1: f64 = row.iter().sum();
                check((at1 - self.b[i]).abs() <= tol, n, || {
                    format!("dense b_{i}(1) = {at1} but b_{i} = {}", self.b[i])
                })?;
            }
        }
        let a = self.full_a();
        check_order(&a, self.b, self.order, tol, n, "order")?;
        if let (Some(bh), Some(q)) = (self.b_hat(), self.error_order) {
            check_order(&a, &bh, q, tol, n, "embedded order")?;
        }
        Ok(())
    }
}

impl SdirkTableau {
    /// Checks the tableau to absolute tolerance `tol`: shapes, constant diagonal `γ`,
    /// `Σ_j a_ij = c_i`, stiff accuracy (last row = `b`, last node 1), zero-sum error
    /// weights, and the order conditions up to `order` (and those of the companion formula up
    /// to `error_order`). Claimed orders above [`MAX_CHECKED_ORDER`] are an error.
    pub fn validate(&self, tol: f64) -> Result<(), OdeError> {
        let n = self.name;
        let s = self.stages();
        check_claim(self.order, n, "order")?;
        check_claim(self.error_order, n, "error order")?;
        check(
            self.a.len() == s && self.b.len() == s && self.b_err.len() == s,
            n,
            || "inconsistent lengths".into(),
        )?;
        for (i, row) in self.a.iter().enumerate() {
            check(row.len() == i + 1, n, || {
                format!("row {i} has {} entries, expected {}", row.len(), i + 1)
            })?;
            check(row[i] == self.gamma, n, || {
                format!("diagonal entry {i} is {} not γ = {}", row[i], self.gamma)
            })?;
            let sum: f64 = row.iter().sum();
            check((sum - self.c[i]).abs() <= tol, n, || {
                format!("row {i}: Σa = {sum} but c = {}", self.c[i])
            })?;
        }
        check(self.c[s - 1] == 1.0 && self.a[s - 1] == self.b, n, || {
            "not stiffly accurate".into()
        })?;
        let sb: f64 = self.b.iter().sum();
        check((sb - 1.0).abs() <= tol, n, || format!("Σb = {sb}"))?;
        let se: f64 = self.err_f0 + self.b_err.iter().sum::<f64>();
        check(se.abs() <= tol, n, || format!("error weights sum to {se}"))?;
        let a: Vec<Vec<f64>> = self.a.iter().map(|r| r.to_vec()).collect();
        check_order(&a, self.b, self.order, tol, n, "order")?;
        // The companion formula ŷ = y₀ + h (−err_f0 f₀ + Σ (b_i − b_err_i) k_i), as a tableau
        // with f₀ as an extra explicit first stage, must have order `error_order` at least.
        let mut aug = vec![vec![0.0]];
        aug.extend(self.a.iter().map(|r| {
            std::iter::once(0.0)
                .chain(r.iter().copied())
                .collect::<Vec<f64>>()
        }));
        let mut bh = vec![-self.err_f0];
        bh.extend(self.b.iter().zip(self.b_err).map(|(b, e)| b - e));
        match first_violation(&aug, &bh, self.error_order, tol) {
            None => Ok(()),
            Some((k, r)) => check(false, n, || {
                format!(
                    "error estimate is not O(h^{}) (companion residual {r:e} at order {k})",
                    self.error_order + 1
                )
            }),
        }
    }
}
