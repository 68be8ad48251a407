//! Line plots of training curves: values against iteration with axes, a legend and an
//! optional log scale.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{cell, Axis};
use super::clip::clip_polyline;
use super::figure::PixelRect;
use super::raster::Image;
use super::scale::{format_tick, log_ticks, nice_ticks, padded_range, tick_decimals, tick_labels};
use super::series::Series;
use super::text::{draw_text, draw_text_up, line_height, text_width, HAlign, VAlign};
use crate::FlowError;

/// Line colours in legend order: the ten of matplotlib's default cycle, which readers of the
/// field know from most papers' training curves.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The colour of the line of series number `index` (in the order they were added) of a
/// [`LinePlot`]: the palette repeats after ten.
pub fn series_color(index: usize) -> [u8; 3] {
    let RGBColor(r, g, b) = PALETTE[index % PALETTE.len()];
    [r, g, b]
}

const BLACK_RGB: RGBColor = RGBColor(0, 0, 0);
const BLACK: [u8; 3] = [0, 0, 0];
const GRID_RGB: RGBColor = RGBColor(225, 225, 225);
const TITLE_PX: f64 = 15.0;
const LABEL_PX: f64 = 12.0;
const DESC_PX: f64 = 13.0;
const TITLE_H: usize = 28;
const PAD: usize = 14;
const TICK: usize = 4;
const LABEL_GAP: usize = 3;
/// Room for an axis name (one line of text) beside the tick labels.
const DESC: usize = 20;
/// Legend: margin inside the plot area, inner padding, length of the line sample.
const LEGEND_INSET: usize = 8;
const LEGEND_PAD: usize = 6;
const LEGEND_LINE: usize = 20;

/// A line plot of one or more [`Series`]: axes with tick labels, axis names, a title and a
/// legend.
///
/// ```no_run
/// use flows::plot::{LinePlot, Series};
/// # fn main() -> Result<(), flows::FlowError> {
/// let loss: Vec<f64> = (0..500).map(|i| 3.0 + 2.0 * (-(i as f64) / 100.0).exp()).collect();
/// LinePlot::new("training")
///     .x_label("iteration")
///     .y_label("loss")
///     .series(Series::from_values("loss", &loss))
///     .save("loss.png")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LinePlot {
    title: String,
    x_label: String,
    y_label: String,
    series: Vec<Series>,
    log_y: bool,
    width: usize,
    height: usize,
    y_range: Option<(f64, f64)>,
}

/// Where a [`LinePlot`]'s plot area lands in the picture and which data it spans.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveLayout {
    /// The plot area's pixels.
    pub plot: PixelRect,
    /// The x values at the left and right edges.
    pub x_range: (f64, f64),
    /// The y values at the bottom and top edges.
    pub y_range: (f64, f64),
    /// The labelled x values.
    pub x_ticks: Vec<f64>,
    /// The labelled y values.
    pub y_ticks: Vec<f64>,
    /// Whether y is on a logarithmic axis.
    pub log_y: bool,
}

impl CurveLayout {
    /// The image column showing `x`.
    pub fn column_of(&self, x: f64) -> usize {
        let (lo, hi) = self.x_range;
        self.plot.left + cell((x - lo) / (hi - lo), self.plot.width)
    }

    /// The image row showing `y` (on the log axis if the plot has one).
    pub fn row_of(&self, y: f64) -> usize {
        let t = |v: f64| if self.log_y { v.log10() } else { v };
        let (lo, hi) = (t(self.y_range.0), t(self.y_range.1));
        self.plot.top + cell((hi - t(y)) / (hi - lo), self.plot.height)
    }
}

impl LinePlot {
    /// An empty 640 × 400 plot titled `title`.
    pub fn new(title: impl Into<String>) -> Self {
        LinePlot {
            title: title.into(),
            x_label: "iteration".into(),
            y_label: String::new(),
            series: Vec::new(),
            log_y: false,
            width: 640,
            height: 400,
            y_range: None,
        }
    }

    /// The name of the x axis (`iteration` by default).
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// The name of the y axis.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }

    /// Adds a line.
    pub fn series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Adds a line (in place, for loops).
    pub fn push(&mut self, series: Series) {
        self.series.push(series);
    }

    /// A logarithmic y axis (points with `y ≤ 0` are then left out): for quantities that
    /// fall over decades, such as a regression error or a gradient norm.
    pub fn log_y(mut self, on: bool) -> Self {
        self.log_y = on;
        self
    }

    /// The image size in pixels (640 × 400 by default); panics below 200 × 150, which
    /// leaves no room for the axes.
    pub fn size(mut self, width: usize, height: usize) -> Self {
        assert!(
            width >= 200 && height >= 150,
            "LinePlot::size: {width}x{height} leaves no room for the axes (at least 200x150)"
        );
        self.width = width;
        self.height = height;
        self
    }

    /// Fixes the y range instead of fitting the data (e.g. to leave out the first
    /// iterations' spike, or to draw two plots on the same axes). Curves are clipped to it.
    /// Panics unless `lo < hi` (and `lo > 0` on a log axis).
    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        assert!(
            lo < hi && (!self.log_y || lo > 0.0),
            "LinePlot::y_range: [{lo}, {hi}] is empty (or not positive on a log axis)"
        );
        self.y_range = Some((lo, hi));
        self
    }

    /// The points that can be drawn: finite, and positive on a log axis.
    fn drawable(&self, s: &Series) -> Vec<(f64, f64)> {
        s.points
            .iter()
            .copied()
            .filter(|&(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0))
            .collect()
    }

    /// Where the plot area goes and which ranges and ticks it shows.
    pub fn layout(&self) -> CurveLayout {
        let pts: Vec<(f64, f64)> = self.series.iter().flat_map(|s| self.drawable(s)).collect();
        let x_range = padded_range(pts.iter().map(|p| p.0), 0.0, false);
        // A fixed range that a later `log_y(true)` made invalid (not positive) is ignored
        // rather than drawn as NaN.
        let y_range = self
            .y_range
            .filter(|&(lo, _)| !self.log_y || lo > 0.0)
            .unwrap_or_else(|| padded_range(pts.iter().map(|p| p.1), 0.05, self.log_y));
        let x_ticks = nice_ticks(x_range.0, x_range.1, 6);
        let y_ticks = if self.log_y {
            log_ticks(y_range.0, y_range.1)
        } else {
            nice_ticks(y_range.0, y_range.1, 6)
        };
        let y_lab = DESC + widest(&y_labels(&y_ticks, self.log_y)) + LABEL_GAP + TICK + 2;
        let x_lab = TICK + 2 + line_height(LABEL_PX) + DESC;
        let plot = PixelRect {
            left: PAD + y_lab,
            top: TITLE_H,
            width: self.width - (PAD + y_lab) - PAD,
            height: self.height - TITLE_H - x_lab - PAD,
        };
        CurveLayout {
            plot,
            x_range,
            y_range,
            x_ticks,
            y_ticks,
            log_y: self.log_y,
        }
    }

    /// The plot as an RGB image.
    ///
    /// # Panics
    ///
    /// Only if plotters fails to draw into memory, which does not happen for lines inside
    /// the picture.
    pub fn render(&self) -> Image {
        let layout = self.layout();
        let legend = self.legend_box(&layout);
        let mut rgb = vec![255u8; 3 * self.width * self.height];
        {
            let root =
                BitMapBackend::with_buffer(&mut rgb, (self.width as u32, self.height as u32))
                    .into_drawing_area();
            self.draw_lines(&root, &layout, legend)
                .expect("flows::plot: drawing a line plot into memory failed");
            root.present()
                .expect("flows::plot: finishing an in-memory picture failed");
        }
        let mut img = Image {
            width: self.width,
            height: self.height,
            rgb,
        };
        self.draw_labels(&mut img, &layout, legend);
        img
    }

    /// Writes the plot as a PNG (atomically, see [`Image::save`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FlowError> {
        self.render().save(path)
    }

    /// The series that get a legend entry (those with a name).
    fn named(&self) -> impl Iterator<Item = (usize, &Series)> {
        self.series
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.name.is_empty())
    }

    /// The legend's rectangle, if any series is named: in the corner of the plot area that
    /// the curves cross least (top right when several are equally free), so it hides as
    /// little data as it can.
    fn legend_box(&self, l: &CurveLayout) -> Option<PixelRect> {
        let names: Vec<String> = self.named().map(|(_, s)| s.name.clone()).collect();
        if names.is_empty() {
            return None;
        }
        let width = LEGEND_PAD + LEGEND_LINE + LEGEND_PAD + widest(&names) + LEGEND_PAD;
        let height = 2 * LEGEND_PAD + names.len() * legend_row();
        let p = l.plot;
        let right = (p.left + p.width).saturating_sub(LEGEND_INSET + width);
        let bottom = (p.top + p.height).saturating_sub(LEGEND_INSET + height);
        let (left, top) = (p.left + LEGEND_INSET, p.top + LEGEND_INSET);
        let corners = [(right, top), (left, top), (right, bottom), (left, bottom)];
        // The pixels the curves pass through, sampled along each segment so that a sparse
        // series (a validation loss every 100 iterations) still counts where it is drawn.
        let mut hits = [0usize; 4];
        let (x_lo, x_hi) = l.x_range;
        let (y_lo, y_hi) = l.y_range;
        let visible = |x: f64, y: f64| x >= x_lo && x <= x_hi && y >= y_lo && y <= y_hi;
        for s in &self.series {
            let pts = self.drawable(s);
            let samples = pts.windows(2).flat_map(|w| {
                (0..8).map(move |k| {
                    let t = k as f64 / 8.0;
                    let y = if self.log_y {
                        // Straight on the log axis: interpolate the logarithms.
                        10f64.powf(w[0].1.log10() + t * (w[1].1.log10() - w[0].1.log10()))
                    } else {
                        w[0].1 + t * (w[1].1 - w[0].1)
                    };
                    (w[0].0 + t * (w[1].0 - w[0].0), y)
                })
            });
            for (x, y) in samples.chain(pts.last().copied()) {
                if !visible(x, y) {
                    continue;
                }
                let (r, c) = (l.row_of(y), l.column_of(x));
                for (h, &(bl, bt)) in hits.iter_mut().zip(&corners) {
                    let rect = PixelRect {
                        left: bl,
                        top: bt,
                        width,
                        height,
                    };
                    *h += usize::from(rect.contains(r, c));
                }
            }
        }
        let best = (0..4).min_by_key(|&k| hits[k]).unwrap_or(0);
        let (bl, bt) = corners[best];
        Some(PixelRect {
            left: bl,
            top: bt,
            width,
            height,
        })
    }

    /// Grid, frame, tick marks, the curves (clipped to the plot area) and the legend box.
    fn draw_lines<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        l: &CurveLayout,
        legend: Option<PixelRect>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        let p = l.plot;
        let (left, top) = (p.left as i32, p.top as i32);
        let (right, bottom) = ((p.left + p.width) as i32, (p.top + p.height) as i32);
        let tick = TICK as i32;
        for &x in &l.x_ticks {
            let c = l.column_of(x) as i32;
            root.draw(&PathElement::new(vec![(c, top), (c, bottom - 1)], GRID_RGB))?;
            root.draw(&PathElement::new(
                vec![(c, bottom + 1), (c, bottom + tick)],
                BLACK_RGB,
            ))?;
        }
        for &y in &l.y_ticks {
            let row = l.row_of(y) as i32;
            root.draw(&PathElement::new(
                vec![(left, row), (right - 1, row)],
                GRID_RGB,
            ))?;
            root.draw(&PathElement::new(
                vec![(left - 1 - tick, row), (left - 2, row)],
                BLACK_RGB,
            ))?;
        }
        root.draw(&Rectangle::new(
            [(left - 1, top - 1), (right, bottom)],
            BLACK_RGB,
        ))?;

        // On a log axis the chart's coordinate is log10(y).
        let t = |v: f64| if self.log_y { v.log10() } else { v };
        let area = root
            .clone()
            .shrink((left, top), (p.width as u32, p.height as u32));
        let (y0, y1) = (t(l.y_range.0), t(l.y_range.1));
        let mut chart = ChartBuilder::on(&area).build_cartesian_2d(
            Axis {
                lo: l.x_range.0,
                hi: l.x_range.1,
                ticks: Vec::new(),
            },
            Axis {
                lo: y0,
                hi: y1,
                ticks: Vec::new(),
            },
        )?;
        for (i, s) in self.series.iter().enumerate() {
            let style = PALETTE[i % PALETTE.len()].stroke_width(2);
            let pts: Vec<(f64, f64)> = self
                .drawable(s)
                .into_iter()
                .map(|(x, y)| (x, t(y)))
                .collect();
            // Pieces inside the plot area only: a fixed y range must not let a curve run
            // over the axes (and a single point still shows as a dot).
            for piece in clip_polyline(&pts, l.x_range, (y0, y1)) {
                if piece.len() == 1 {
                    chart.draw_series(std::iter::once(Circle::new(piece[0], 2, style.filled())))?;
                } else {
                    chart.draw_series(LineSeries::new(piece, style))?;
                }
            }
        }

        if let Some(b) = legend {
            let (bl, bt) = (b.left as i32, b.top as i32);
            let (br, bb) = ((b.left + b.width) as i32, (b.top + b.height) as i32);
            root.draw(&Rectangle::new([(bl, bt), (br, bb)], WHITE.filled()))?;
            root.draw(&Rectangle::new([(bl, bt), (br, bb)], BLACK_RGB))?;
            for (k, (i, _)) in self.named().enumerate() {
                let row = legend_row_center(b, k) as i32;
                let x0 = bl + LEGEND_PAD as i32;
                root.draw(&PathElement::new(
                    vec![(x0, row), (x0 + LEGEND_LINE as i32, row)],
                    PALETTE[i % PALETTE.len()].stroke_width(2),
                ))?;
            }
        }
        Ok(())
    }

    /// Title, tick labels, axis names and legend entries.
    fn draw_labels(&self, img: &mut Image, l: &CurveLayout, legend: Option<PixelRect>) {
        let p = l.plot;
        draw_text(
            img,
            &self.title,
            TITLE_PX,
            (p.left as f64 + p.width as f64 / 2.0, TITLE_H as f64 / 2.0),
            (HAlign::Center, VAlign::Center),
            BLACK,
        );
        let below = (p.top + p.height + TICK + 2) as f64;
        for (&x, label) in l.x_ticks.iter().zip(tick_labels(&l.x_ticks)) {
            let c = l.column_of(x) as f64 + 0.5;
            draw_text(
                img,
                &label,
                LABEL_PX,
                (c, below),
                (HAlign::Center, VAlign::Top),
                BLACK,
            );
        }
        let left_of = (p.left - 1 - TICK - LABEL_GAP) as f64;
        for (&y, label) in l.y_ticks.iter().zip(y_labels(&l.y_ticks, l.log_y)) {
            let row = l.row_of(y) as f64 + 0.5;
            draw_text(
                img,
                &label,
                LABEL_PX,
                (left_of, row),
                (HAlign::Right, VAlign::Center),
                BLACK,
            );
        }
        let desc_y = below + line_height(LABEL_PX) as f64 + DESC as f64 / 2.0;
        draw_text(
            img,
            &self.x_label,
            DESC_PX,
            (p.left as f64 + p.width as f64 / 2.0, desc_y),
            (HAlign::Center, VAlign::Center),
            BLACK,
        );
        draw_text_up(
            img,
            &self.y_label,
            DESC_PX,
            (
                PAD as f64 + DESC as f64 / 2.0,
                p.top as f64 + p.height as f64 / 2.0,
            ),
            BLACK,
        );
        if let Some(b) = legend {
            let x = (b.left + LEGEND_PAD + LEGEND_LINE + LEGEND_PAD) as f64;
            for (k, (_, s)) in self.named().enumerate() {
                let row = legend_row_center(b, k) as f64 + 0.5;
                draw_text(
                    img,
                    &s.name,
                    LABEL_PX,
                    (x, row),
                    (HAlign::Left, VAlign::Center),
                    BLACK,
                );
            }
        }
    }
}

/// Height of one legend entry.
fn legend_row() -> usize {
    line_height(LABEL_PX) + 2
}

/// The pixel row through the middle of legend entry `k`.
fn legend_row_center(b: PixelRect, k: usize) -> usize {
    b.top + LEGEND_PAD + k * legend_row() + legend_row() / 2
}

/// Labels of the y ticks. On a log axis each label gets the decimals of its own value
/// (`1`, `0.1`, `0.01`), since the spacing varies over decades.
fn y_labels(ticks: &[f64], log: bool) -> Vec<String> {
    if log {
        ticks
            .iter()
            .map(|&v| format_tick(v, tick_decimals(v)))
            .collect()
    } else {
        tick_labels(ticks)
    }
}

fn widest(labels: &[String]) -> usize {
    labels
        .iter()
        .map(|l| text_width(l, LABEL_PX))
        .max()
        .unwrap_or(0)
}
