//! The coordinate axis our charts hand to plotters: a linear map of `[lo, hi]` onto pixels
//! with the same cell convention as the heat maps, and exactly the ticks we chose.
//!
//! plotters' own float axis maps `hi` onto the last pixel (a `n − 1`-pixel span) and picks its
//! own ticks; ours maps a value to the pixel whose cell contains it, as
//! [`Extent::pixel_of`](super::Extent::pixel_of) does, so a tick mark at `x = 0` sits on the
//! heat map's column for `x = 0`, and the layouts can tell tests where every tick lands.

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

/// The pixel (of `n`) covering the fraction `t ∈ [0, 1]` of a span; `t = 1` is the last.
pub(crate) fn cell(t: f64, n: usize) -> usize {
    ((t.clamp(0.0, 1.0) * n as f64) as usize).min(n.saturating_sub(1))
}

/// `[lo, hi]` with its tick values.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub ticks: Vec<f64>,
}

impl Ranged for Axis {
    // Labels come from our own formatters; the default (Debug) one is never shown.
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let n = (limit.1 - limit.0).unsigned_abs() as usize + 1;
        let t = (value - self.lo) / (self.hi - self.lo);
        if limit.0 <= limit.1 {
            limit.0 + cell(t, n) as i32
        } else {
            // A vertical axis runs from the bottom pixel (limit.0) up to the top (limit.1);
            // counting rows down from the top, as images do, keeps the cell convention.
            limit.1 + cell(1.0 - t, n) as i32
        }
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Only labelled ticks: no unlabelled minor grid.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}
