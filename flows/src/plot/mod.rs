//! Pictures of 2-D densities, samples and training curves, written as PNG.
//!
//! - [`Figure`]: heat-map [`Panel`]s in a row (densities, sample histograms), each with axes
//!   in data coordinates, tick labels and a title, and colour bars stating the scale. Panels
//!   of one kind share a colour scale unless told otherwise, so panels side by side can be
//!   compared value for value.
//! - [`LinePlot`]: training curves (loss against iteration and the like) from [`Series`] or a
//!   CSV log ([`read_csv_series`]), with axes, a legend and optional log scale.
//! - The raw pictures underneath ([`density_image`], [`scatter_image`], [`side_by_side`]):
//!   one pixel per grid cell, no text.
//!
//! Everything is drawn on a square grid over an [`Extent`]. Pixel `(row, col)` covers the
//! cell centred at `x = xmin + (col + ½)·w`, `y = ymax − (row + ½)·h`: the top row is the
//! largest `y`, so pictures appear with the usual axis orientation. Colours come from
//! [`viridis`], a perceptually uniform map (dark purple for low, yellow for high). Text uses
//! DejaVu Sans embedded in the binary, so nothing depends on the fonts of the machine.
//!
//! ```no_run
//! use flows::plot::{Extent, Figure, Panel};
//! # fn main() -> Result<(), flows::FlowError> {
//! let ext = Extent::square(4.0);
//! let samples = autodiff::Tensor::<f64>::zeros(10, 2);
//! let dens = |x: f64, y: f64| (-(x * x + y * y) / 2.0).exp() / (2.0 * std::f64::consts::PI);
//! Figure::new()
//!     .panel(Panel::histogram("samples", &samples, ext, 128))
//!     .panel(Panel::density_fn("density", dens, ext, 128))
//!     .save("panels.png")?;
//! # Ok(()) }
//! ```

mod axis;
mod clip;
mod figure;
mod line_plot;
mod panel;
mod raster;
mod scale;
mod series;
mod text;

pub use figure::{Figure, FigureLayout, PanelLayout, PixelRect};
pub use line_plot::{series_color, CurveLayout, LinePlot};
pub use panel::Panel;
pub use raster::{
    density_fn_image, density_image, density_png, grid, heat_map, histogram_counts, scatter_image,
    scatter_png, side_by_side, viridis, Extent, Image,
};
pub use scale::{
    format_tick, nice_step, nice_ticks, tick_decimals, tick_labels, ColorScale, ScaleKind,
};
pub use series::{read_csv_series, Series};
