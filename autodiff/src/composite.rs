//! Composite operations: built from primitives, so they carry no derivative code of their own.

use crate::{Element, Var};

impl<'t, E: Element> Var<'t, E> {
    /// Mean of all elements (`1 × 1`).
    pub fn mean(self) -> Var<'t, E> {
        let (r, c) = self.shape();
        self.sum() * (E::ONE / E::from_usize(r * c))
    }

    /// Mean along an axis (`0`: over rows → `1 × c`; `1`: over columns → `r × 1`).
    pub fn mean_axis(self, axis: usize) -> Var<'t, E> {
        let (r, c) = self.shape();
        let n = if axis == 0 { r } else { c };
        self.sum_axis(axis) * (E::ONE / E::from_usize(n))
    }

    /// x².
    pub fn square(self) -> Var<'t, E> {
        self.powi(2)
    }

    /// Row-wise log Σⱼ exp(xᵢⱼ) (`r × 1`), shifted by the row maximum so it cannot overflow.
    pub fn logsumexp(self) -> Var<'t, E> {
        let r = self.shape().0;
        let m = self.with_value(|v| {
            let mut m = crate::Tensor::full(r, 1, E::ZERO);
            for i in 0..r {
                let row = v.row(i);
                let mx = row
                    .iter()
                    .copied()
                    .fold(row.first().copied().unwrap_or(E::ZERO), E::max);
                m.set(i, 0, if mx.is_finite() { mx } else { E::ZERO });
            }
            m
        });
        // The shift is a constant: the value of logsumexp does not depend on it.
        let m = self.tape.constant(m);
        (self - m).exp().sum_axis(1).log() + m
    }

    /// Row-wise log-density of the standard normal N(0, I): −½‖xᵢ‖² − (d/2) ln 2π (`r × 1`).
    pub fn log_normal(self) -> Var<'t, E> {
        let d = self.shape().1;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        self.square().sum_axis(1) * E::from_f64(-0.5) - E::from_f64(d as f64 * half_log_2pi)
    }

    /// ln cosh x, computed stably as |x| + softplus(−2|x|) − ln 2. Its derivative is tanh x.
    /// (OT-Flow's activation log(eˣ + e⁻ˣ) is this plus the constant ln 2.)
    pub fn log_cosh(self) -> Var<'t, E> {
        let a = self.abs();
        a + (a * E::from_f64(-2.0)).softplus() - E::from_f64(std::f64::consts::LN_2)
    }

    /// Swish / SiLU: x σ(x).
    pub fn swish(self) -> Var<'t, E> {
        self * self.sigmoid()
    }

    /// ELU with α = 1: x for x > 0, eˣ − 1 otherwise (written as relu(x) + e^{−relu(−x)} − 1,
    /// which never evaluates eˣ for large positive x).
    pub fn elu(self) -> Var<'t, E> {
        self.relu() + (-(-self).relu()).exp() - E::ONE
    }

    /// Squared Frobenius norm per row: Σⱼ xᵢⱼ² (`r × 1`).
    pub fn row_sq_norm(self) -> Var<'t, E> {
        self.square().sum_axis(1)
    }
}
