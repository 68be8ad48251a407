//! Invertible preprocessing of tabular data, fitted on the training split and saved with the
//! model, with the log-Jacobian that carries a density back to the data's own space.
//!
//! Two maps, applied per column `j`:
//!
//! - **standardise**: `y = (x − μ_j) / σ_j`, `log |dy/dx| = −log σ_j`;
//! - **logit** (RealNVP, Dinh et al. 2017; FFJORD, Grathwohl et al. 2019) for data on
//!   `[0, K)` (integers with `K` levels after uniform dequantisation, [`dequantize`]):
//!   `s = α + (1 − 2α)·x/K`, `l = log s − log(1 − s)`, then standardised,
//!   `y = (l − μ_j)/σ_j`, so
//!   `log |dy/dx| = log((1 − 2α)/K) − log s − log(1 − s) − log σ_j`.
//!
//! The density of the data is `log p_x(x) = log p_y(T(x)) + Σ_j log |dy_j/dx_j|`
//! ([`Preprocess::forward`] returns the sum per row).

use std::path::Path;

use autodiff::{Element, Tensor};
use rand::Rng;

use super::TabularError;
use crate::Params;

/// The logit step of a [`Preprocess`]: data on `[0, levels)` mapped through
/// `logit(α + (1 − 2α)·x/levels)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Logit {
    /// `K`: the number of levels (the data's range is `[0, K)`; 17 for pixels `0..=16`
    /// dequantised to `[0, 17)`).
    pub levels: f64,
    /// `α ∈ (0, ½)`: keeps the logit finite at the ends of the range (1e-6 in FFJORD, 0.05
    /// in RealNVP).
    pub alpha: f64,
}

/// A fitted, invertible preprocessing map `T`: an optional [`Logit`] followed by
/// standardisation with per-column `mean` and `std`.
///
/// Per column `j`, standardisation alone is `y = (x − μ_j)/σ_j` with `log |dy/dx| = −log σ_j`;
/// with the logit step (RealNVP, Dinh et al. 2017; FFJORD, Grathwohl et al. 2019) for data on
/// `[0, K)`, `s = α + (1 − 2α)·x/K`, `y = (log s − log(1 − s) − μ_j)/σ_j` and
/// `log |dy/dx| = log((1 − 2α)/K) − log s − log(1 − s) − log σ_j`. A model of `y` carries
/// over to the data as `log p_x(x) = log p_y(T(x)) + Σ_j log |dy_j/dx_j|`; [`forward`](Self::forward)
/// returns that sum per row.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    logit: Option<Logit>,
    mean: Vec<f64>,
    std: Vec<f64>,
}

/// Column means and standard deviations of an iterator of rows (population std); a column
/// whose std is below `1e-12` (constant in the training split) gets std 1, so it is only
/// shifted.
fn moments(rows: usize, cols: usize, value: impl Fn(usize, usize) -> f64) -> (Vec<f64>, Vec<f64>) {
    let n = rows as f64;
    let mean: Vec<f64> = (0..cols)
        .map(|j| (0..rows).map(|i| value(i, j)).sum::<f64>() / n)
        .collect();
    let std = (0..cols)
        .map(|j| {
            let v = (0..rows)
                .map(|i| (value(i, j) - mean[j]).powi(2))
                .sum::<f64>()
                / n;
            let s = v.sqrt();
            if s < 1e-12 {
                1.0
            } else {
                s
            }
        })
        .collect();
    (mean, std)
}

/// `x + u` with `u ~ U[0, 1)` drawn independently per entry: uniform dequantisation of
/// integer data (Theis et al. 2016), which turns a probability mass function on the integers
/// into a density on the unit cells whose log-likelihood bounds the discrete one from below.
pub fn dequantize<R: Rng + ?Sized>(x: &Tensor<f64>, rng: &mut R) -> Tensor<f64> {
    Tensor::from_fn(x.rows(), x.cols(), |i, j| x.get(i, j) + rng.random::<f64>())
}

/// `Some(K)` if every entry of `x` is a non-negative integer, with `K = max + 1` the number of
/// levels (`0..K`); `None` for any other data (or an empty tensor).
pub fn integer_levels(x: &Tensor<f64>) -> Option<usize> {
    let s = x.as_slice();
    if s.is_empty()
        || !s
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0 && v.fract() == 0.0)
    {
        return None;
    }
    let max = s.iter().cloned().fold(0.0, f64::max);
    (max < 1e9).then(|| max as usize + 1)
}

impl Logit {
    /// `s(x) = α + (1 − 2α)·x/K`, checked to lie in `(0, 1)`.
    fn squash(&self, x: f64) -> f64 {
        self.alpha + (1.0 - 2.0 * self.alpha) * x / self.levels
    }
}

impl Preprocess {
    /// Standardisation fitted on `train` (`n × d`, n ≥ 2).
    ///
    /// Errors: [`TabularError::TooFewRows`], [`TabularError::NonFinite`].
    pub fn fit_standardize(train: &Tensor<f64>) -> Result<Self, TabularError> {
        check_fit_input(train)?;
        let (mean, std) = moments(train.rows(), train.cols(), |i, j| train.get(i, j));
        Ok(Preprocess {
            logit: None,
            mean,
            std,
        })
    }

    /// The logit transform for data on `[0, levels]` followed by standardisation of the logits,
    /// both fitted on `train` (already in the data space, e.g. [`dequantize`]d integers).
    ///
    /// Errors: [`TabularError::BadConfig`] unless `levels > 0` and `0 < alpha < ½`,
    /// [`TabularError::TooFewRows`], [`TabularError::NonFinite`],
    /// [`TabularError::OutOfRange`] for a value outside `[0, levels]`.
    pub fn fit_logit(train: &Tensor<f64>, levels: f64, alpha: f64) -> Result<Self, TabularError> {
        if !(levels.is_finite() && levels > 0.0) {
            return Err(TabularError::BadConfig(format!(
                "the number of levels must be a finite number > 0, got {levels}"
            )));
        }
        if !(alpha > 0.0 && alpha < 0.5) {
            return Err(TabularError::BadConfig(format!(
                "the logit's alpha must lie in (0, 0.5), got {alpha}"
            )));
        }
        check_fit_input(train)?;
        let logit = Logit { levels, alpha };
        let l = logits(&logit, train)?;
        let (mean, std) = moments(train.rows(), train.cols(), |i, j| l[i * train.cols() + j]);
        Ok(Preprocess {
            logit: Some(logit),
            mean,
            std,
        })
    }

    /// The number of columns the map was fitted on.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// The logit step, if any.
    pub fn logit(&self) -> Option<Logit> {
        self.logit
    }

    /// The per-column means subtracted (of the logits when there is a logit step).
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// The per-column standard deviations divided by.
    pub fn std(&self) -> &[f64] {
        &self.std
    }

    fn check_cols(&self, cols: usize) -> Result<(), TabularError> {
        if cols == self.dim() {
            Ok(())
        } else {
            Err(TabularError::ColumnMismatch {
                expected: self.dim(),
                found: cols,
            })
        }
    }

    /// `y = T(x)` for data `x` (`n × d`) and `log |det ∂y/∂x|` per row (computed in `f64`).
    ///
    /// Errors: [`TabularError::ColumnMismatch`], [`TabularError::NonFinite`],
    /// [`TabularError::OutOfRange`] for a value outside `[0, K]` with a logit step.
    pub fn forward<E: Element>(
        &self,
        x: &Tensor<E>,
    ) -> Result<(Tensor<E>, Vec<f64>), TabularError> {
        let (n, d) = x.shape();
        self.check_cols(d)?;
        let x = x.cast::<f64>();
        check_finite(&x)?;
        let mut y = Vec::with_capacity(n * d);
        let mut logdet = vec![-self.std.iter().map(|s| s.ln()).sum::<f64>(); n];
        match &self.logit {
            None => {
                for i in 0..n {
                    for (j, &v) in x.row(i).iter().enumerate() {
                        y.push(E::from_f64((v - self.mean[j]) / self.std[j]));
                    }
                }
            }
            Some(lg) => {
                let l = logits(lg, &x)?;
                let scale = ((1.0 - 2.0 * lg.alpha) / lg.levels).ln();
                for (i, ld) in logdet.iter_mut().enumerate() {
                    for j in 0..d {
                        let s = lg.squash(x.get(i, j));
                        *ld += scale - s.ln() - (-s).ln_1p();
                        y.push(E::from_f64((l[i * d + j] - self.mean[j]) / self.std[j]));
                    }
                }
            }
        }
        Ok((Tensor::from_vec(n, d, y), logdet))
    }

    /// `x = T⁻¹(y)`. With a logit step the result lies in `(−αK/(1−2α), K(1−α)/(1−2α))`,
    /// the image of the whole real line, which reaches slightly beyond `[0, K]`: clamp when
    /// drawing.
    ///
    /// Errors: [`TabularError::ColumnMismatch`].
    pub fn inverse<E: Element>(&self, y: &Tensor<E>) -> Result<Tensor<E>, TabularError> {
        let (n, d) = y.shape();
        self.check_cols(d)?;
        Ok(Tensor::from_fn(n, d, |i, j| {
            let l = y.get(i, j).to_f64() * self.std[j] + self.mean[j];
            let x = match &self.logit {
                None => l,
                Some(lg) => {
                    let s = 1.0 / (1.0 + (-l).exp());
                    (s - lg.alpha) * lg.levels / (1.0 - 2.0 * lg.alpha)
                }
            };
            E::from_f64(x)
        }))
    }

    /// The map as named tensors: `preprocess.mean` and `preprocess.std` (`1 × d`) and
    /// `preprocess.logit` (`1 × 2`: levels K and α, or `[0, 0]` without a logit step).
    pub fn to_params(&self) -> Params<f64> {
        let d = self.dim();
        let mut p = Params::new();
        p.add("preprocess.mean", Tensor::from_vec(1, d, self.mean.clone()));
        p.add("preprocess.std", Tensor::from_vec(1, d, self.std.clone()));
        let lg = self.logit.map_or([0.0, 0.0], |l| [l.levels, l.alpha]);
        p.add("preprocess.logit", Tensor::from_vec(1, 2, lg.to_vec()));
        p
    }

    /// The map stored by [`to_params`](Self::to_params).
    ///
    /// Errors: [`TabularError::File`] wrapping [`crate::FlowError::MissingParam`] or
    /// [`crate::FlowError::ShapeMismatch`], or [`TabularError::BadConfig`] for invalid
    /// values (a std that is not positive, a logit with K ≤ 0 or α outside `(0, ½)`).
    pub fn from_params(p: &Params<f64>) -> Result<Self, TabularError> {
        let get = |name: &str| {
            p.get(name)
                .ok_or_else(|| crate::FlowError::MissingParam { name: name.into() })
        };
        let mean = get("preprocess.mean")?;
        let std = get("preprocess.std")?;
        let lg = get("preprocess.logit")?;
        let d = mean.len();
        for (name, t, want) in [
            ("preprocess.mean", mean, (1, d)),
            ("preprocess.std", std, (1, d)),
            ("preprocess.logit", lg, (1, 2)),
        ] {
            if t.shape() != want {
                return Err(crate::FlowError::ShapeMismatch {
                    name: name.into(),
                    expected: vec![want.0, want.1],
                    found: vec![t.rows(), t.cols()],
                }
                .into());
            }
        }
        if !std.as_slice().iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(TabularError::BadConfig(
                "preprocess.std holds a value that is not a finite number > 0".into(),
            ));
        }
        let (levels, alpha) = (lg.get(0, 0), lg.get(0, 1));
        let logit = if levels == 0.0 && alpha == 0.0 {
            None
        } else if levels > 0.0 && alpha > 0.0 && alpha < 0.5 {
            Some(Logit { levels, alpha })
        } else {
            return Err(TabularError::BadConfig(format!(
                "preprocess.logit = [{levels}, {alpha}] is not [K > 0, 0 < α < 0.5] or [0, 0]"
            )));
        };
        Ok(Preprocess {
            logit,
            mean: mean.as_slice().to_vec(),
            std: std.as_slice().to_vec(),
        })
    }

    /// Saves the map as a safetensors file of [`to_params`](Self::to_params) (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TabularError> {
        Ok(self.to_params().save(path)?)
    }

    /// Loads a map saved by [`save`](Self::save).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, TabularError> {
        Self::from_params(&Params::load(path)?)
    }
}

fn check_fit_input(train: &Tensor<f64>) -> Result<(), TabularError> {
    if train.rows() < 2 || train.cols() == 0 {
        return Err(TabularError::TooFewRows {
            rows: train.rows(),
            needed: 2,
        });
    }
    check_finite(train)
}

fn check_finite(x: &Tensor<f64>) -> Result<(), TabularError> {
    match x.as_slice().iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(k) => Err(TabularError::NonFinite {
            row: k / x.cols(),
            col: k % x.cols(),
        }),
    }
}

/// The logits `log s − log(1 − s)` of every entry (row-major), checking `x ∈ [0, K]`.
fn logits(lg: &Logit, x: &Tensor<f64>) -> Result<Vec<f64>, TabularError> {
    let d = x.cols();
    x.as_slice()
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            if !(0.0..=lg.levels).contains(&v) {
                return Err(TabularError::OutOfRange {
                    row: k / d,
                    col: k % d,
                    value: v,
                    levels: lg.levels,
                });
            }
            let s = lg.squash(v);
            Ok(s.ln() - (-s).ln_1p())
        })
        .collect()
}
