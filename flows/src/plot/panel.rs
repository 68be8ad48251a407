//! What one heat-map panel of a [`Figure`](super::Figure) shows: values on a grid, their
//! kind (density or counts), a title and optionally a fixed colour scale.

use autodiff::{Element, Tensor};

use super::raster::{grid_values, histogram_counts, Extent, Image};
use super::scale::{ColorScale, ScaleKind};

/// One heat map to place in a [`Figure`](super::Figure): values on the `res × res` [`grid`](super::grid) over
/// an extent, what kind of quantity they are, and a title.
#[derive(Clone, Debug)]
pub struct Panel {
    pub(super) title: String,
    pub(super) extent: Extent,
    pub(super) res: usize,
    pub(super) values: Vec<f64>,
    pub(super) kind: ScaleKind,
    pub(super) scale: Option<ColorScale>,
    pub(super) bar_label: String,
}

impl Panel {
    /// A density heat map: `values` in [`grid`](super::grid) order (`res²` of them, e.g.
    /// `exp` of a model's log-likelihood at the grid points), on a linear colour scale.
    /// Panics if `values.len()` is not `res²`.
    pub fn density(title: impl Into<String>, values: &[f64], extent: Extent, res: usize) -> Self {
        assert_eq!(
            values.len(),
            res * res,
            "Panel::density: {} values for a {res}x{res} grid",
            values.len()
        );
        Panel {
            title: title.into(),
            extent,
            res,
            values: values.to_vec(),
            kind: ScaleKind::Linear,
            scale: None,
            bar_label: "density".into(),
        }
    }

    /// A density heat map of `f(x, y)` evaluated at the pixel centres.
    pub fn density_fn(
        title: impl Into<String>,
        f: impl Fn(f64, f64) -> f64,
        extent: Extent,
        res: usize,
    ) -> Self {
        Panel::density(title, &grid_values(f, extent, res), extent, res)
    }

    /// A histogram of the first two columns of `points` (see
    /// [`histogram_counts`](super::histogram_counts)), coloured on the logarithmic count
    /// scale so that sparse tails stay visible. Histograms in one figure share a scale, so
    /// compare samples of the same size.
    pub fn histogram<E: Element>(
        title: impl Into<String>,
        points: &Tensor<E>,
        extent: Extent,
        res: usize,
    ) -> Self {
        Panel {
            title: title.into(),
            extent,
            res,
            values: histogram_counts(points, extent, res),
            kind: ScaleKind::LogCounts,
            scale: None,
            bar_label: "points per bin".into(),
        }
    }

    /// Draws this panel with `scale` instead of one the figure derives from the data: fixes
    /// the colours across separate figures (e.g. runs written by different programs).
    pub fn with_scale(mut self, scale: ColorScale) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Replaces the text above the colour bar (`density` or `points per bin` by default).
    pub fn bar_label(mut self, label: impl Into<String>) -> Self {
        self.bar_label = label.into();
        self
    }

    /// The title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The values in [`grid`](super::grid) order (counts for a histogram).
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The kind of scale the values are drawn on.
    pub fn kind(&self) -> ScaleKind {
        self.kind
    }

    /// The heat map alone, one pixel per grid cell, on `scale` (no axes or text).
    pub fn raster(&self, scale: &ColorScale) -> Image {
        super::raster::heat_map(&self.values, self.res, scale)
    }
}
