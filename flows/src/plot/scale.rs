//! Colour scales (value → colour, shared between panels) and tick values with their labels.
//!
//! A [`ColorScale`] is a value, not a by-product of one picture: two panels drawn with the
//! same scale give the same colour to the same value, which is what makes them comparable.

use super::raster::viridis;

/// How values are placed on a [`ColorScale`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScaleKind {
    /// `v ↦ v / max`: densities, where equal steps of colour are equal steps of density.
    Linear,
    /// `v ↦ ln(1 + v) / ln(1 + max)`: counts per histogram bin, so that bins with a single
    /// point stay visible next to bins with hundreds.
    LogCounts,
}

/// A map from values in `[0, max]` to [`viridis`] colours, and the ticks of its colour bar.
///
/// Values below 0, non-finite values and everything when `max` is not positive map to the
/// bottom colour; values above `max` are clamped to the top colour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ColorScale {
    kind: ScaleKind,
    max: f64,
}

impl ColorScale {
    /// The linear scale `[0, max]`.
    pub fn linear(max: f64) -> Self {
        ColorScale {
            kind: ScaleKind::Linear,
            max: clean(max),
        }
    }

    /// The logarithmic count scale `ln(1 + v) / ln(1 + max)` (see [`ScaleKind::LogCounts`]).
    pub fn log_counts(max: f64) -> Self {
        ColorScale {
            kind: ScaleKind::LogCounts,
            max: clean(max),
        }
    }

    /// The scale of `kind` reaching the largest of `values` (non-finite values ignored).
    pub fn fitting(kind: ScaleKind, values: impl IntoIterator<Item = f64>) -> Self {
        let max = values.into_iter().map(clean).fold(0.0, f64::max);
        ColorScale { kind, max }
    }

    /// How values are placed.
    pub fn kind(&self) -> ScaleKind {
        self.kind
    }

    /// The value drawn with the top colour.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// The position of `v` on the scale, in `[0, 1]` (0 = bottom colour).
    pub fn unit(&self, v: f64) -> f64 {
        let v = clean(v);
        if self.max <= 0.0 {
            return 0.0;
        }
        let u = match self.kind {
            // Written as a product with the reciprocal, as the heat maps always were, so the
            // colours of existing pictures do not move by a rounding step.
            ScaleKind::Linear => v * (1.0 / self.max),
            ScaleKind::LogCounts => (1.0 + v).ln() / (1.0 + self.max).ln(),
        };
        u.clamp(0.0, 1.0)
    }

    /// The colour of `v`.
    pub fn color(&self, v: f64) -> [u8; 3] {
        viridis(self.unit(v))
    }

    /// The values to label on this scale's colour bar, increasing, all within `[0, max]`.
    ///
    /// Linear scales get round values ([`nice_ticks`]); count scales get 0 and the powers of
    /// ten up to `max`, or 1-2-5 steps when fewer than three powers of ten fit.
    pub fn ticks(&self) -> Vec<f64> {
        if self.max <= 0.0 {
            return vec![0.0];
        }
        match self.kind {
            ScaleKind::Linear => nice_ticks(0.0, self.max, 5),
            ScaleKind::LogCounts => {
                let decades: Vec<f64> = (0..)
                    .map(|k| 10f64.powi(k))
                    .take_while(|&v| v <= self.max)
                    .collect();
                let steps = if decades.len() >= 3 {
                    decades
                } else {
                    (0..)
                        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
                        .take_while(|&v| v <= self.max)
                        .collect()
                };
                std::iter::once(0.0).chain(steps).collect()
            }
        }
    }
}

/// Non-finite and negative values count as 0 (a density cannot be negative; NaN from a
/// diverged model must not poison the scale).
fn clean(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 {
        v
    } else {
        0.0
    }
}

/// The tick spacing for `[lo, hi]` with about `target` ticks: 1, 2, 2.5 or 5 times a power of
/// ten, the smallest such step that gives at most `target` ticks.
pub fn nice_step(lo: f64, hi: f64, target: usize) -> f64 {
    let span = (hi - lo).abs();
    if !span.is_finite() || span == 0.0 {
        return 1.0;
    }
    let rough = span / target.max(2).saturating_sub(1) as f64;
    let mag = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= rough * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag)
}

/// Round tick values inside `[lo, hi]` (inclusive, with a relative tolerance so that e.g. the
/// end of `[−4, 4]` is a tick), spaced by [`nice_step`]. Each value is an exact multiple of
/// the step as printed (`0.1 · 3` comes out as `0.3`, not `0.30000000000000004`).
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    if !(lo.is_finite() && hi.is_finite()) {
        return vec![];
    }
    if lo == hi {
        return vec![lo];
    }
    let step = nice_step(lo, hi, target);
    let eps = 1e-9 * (hi - lo);
    let first = ((lo - eps) / step).ceil() as i64;
    let last = ((hi + eps) / step).floor() as i64;
    let decimals = tick_decimals(step);
    (first..=last)
        .map(|k| {
            let v = k as f64 * step;
            // Round to the printed precision so the value and its label agree exactly.
            let p = 10f64.powi(decimals as i32);
            let v = (v * p).round() / p;
            if v == 0.0 {
                0.0 // no "−0"
            } else {
                v
            }
        })
        .collect()
}

/// How many decimals a label needs to tell ticks `step` apart (0 for whole steps, 1 for 0.5,
/// 2 for 0.25 or 0.05, ...).
pub fn tick_decimals(step: f64) -> usize {
    if !(step.is_finite() && step > 0.0) {
        return 0;
    }
    (0..12)
        .find(|&d| {
            let scaled = step * 10f64.powi(d);
            (scaled - scaled.round()).abs() < 1e-6 * scaled.max(1.0)
        })
        .unwrap_or(12) as usize
}

/// A tick label: `v` with `decimals` decimals, a true minus sign (U+2212, as typeset plots
/// use) and no `−0`. Very large or very small magnitudes (|v| ≥ 10⁵, or more than four
/// decimals) are written as `m·10^k`, e.g. `2e−5`.
pub fn format_tick(v: f64, decimals: usize) -> String {
    let s = if v != 0.0 && (v.abs() >= 1e5 || decimals > 4) {
        let s = format!("{v:e}");
        // Trim "2.5000e-5" style mantissas to what is needed.
        match s.split_once('e') {
            Some((m, e)) => {
                let m = m.trim_end_matches('0').trim_end_matches('.');
                format!("{m}e{e}")
            }
            None => s,
        }
    } else {
        let s = format!("{v:.decimals$}");
        if s.trim_start_matches('-')
            .chars()
            .all(|c| c == '0' || c == '.')
        {
            s.trim_start_matches('-').to_string()
        } else {
            s
        }
    };
    s.replace('-', "\u{2212}")
}

/// Labels for `ticks`, all with the decimals their spacing needs (so `0, 0.5, 1` reads
/// `0.0, 0.5, 1.0` and a column of labels lines up).
pub fn tick_labels(ticks: &[f64]) -> Vec<String> {
    let decimals = ticks
        .windows(2)
        .map(|w| tick_decimals((w[1] - w[0]).abs()))
        .max()
        .unwrap_or_else(|| ticks.first().map_or(0, |&v| tick_decimals(v.abs())));
    ticks.iter().map(|&v| format_tick(v, decimals)).collect()
}

/// `[min, max]` of `values` widened by `pad` of its span on each side (in log10 on a log
/// axis); a single value gets a unit-wide range around it, no values give `[0, 1]`.
pub(crate) fn padded_range(values: impl Iterator<Item = f64>, pad: f64, log: bool) -> (f64, f64) {
    let t = |v: f64| if log { v.log10() } else { v };
    let back = |v: f64| if log { 10f64.powf(v) } else { v };
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(t(v)), hi.max(t(v)))
    });
    if lo > hi {
        return if log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if lo == hi {
        return (back(lo - 0.5), back(hi + 0.5));
    }
    let d = pad * (hi - lo);
    (back(lo - d), back(hi + d))
}

/// Ticks of a log axis over `[lo, hi]`: the powers of ten inside; with fewer than two of
/// them, 1-2-5 multiples; with fewer than two of those, round values as on a linear axis.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let k0 = lo.log10().floor() as i32;
    let k1 = hi.log10().ceil() as i32;
    let within = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
    let decades: Vec<f64> = (k0..=k1).map(|k| 10f64.powi(k)).filter(within).collect();
    if decades.len() >= 2 {
        return decades;
    }
    let steps: Vec<f64> = (k0..=k1)
        .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
        .filter(within)
        .collect();
    if steps.len() >= 2 {
        return steps;
    }
    nice_ticks(lo, hi, 4)
}
