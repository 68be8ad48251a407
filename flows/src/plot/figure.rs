//! Figures a reader can read: heat-map panels in a row, each with axes in data coordinates,
//! tick labels and a title, and colour bars that state the scale.
//!
//! Panels of the same kind (densities, histograms) in one [`Figure`] share a colour scale by
//! default, because panels side by side are compared: the same density is the same colour in
//! every panel, and one colour bar after each run of panels sharing a scale says what the
//! colours mean. Frames and tick marks are drawn with plotters, the heat maps are then copied
//! in pixel by pixel (so a value's colour in the picture is exactly [`ColorScale::color`] of
//! it: nothing is resampled or blended), and the text goes on last.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::cell;
use super::panel::Panel;
use super::raster::{viridis, Extent, Image};
use super::scale::{nice_ticks, tick_labels, ColorScale};
use super::text::{draw_text, text_width, HAlign, VAlign};
use crate::FlowError;

/// Plot areas are at least this many pixels wide: a coarse grid is enlarged by a whole
/// factor (each cell a block of pixels) so the text does not dwarf the picture.
const MIN_SIDE: usize = 160;
/// Height of the title row above the panels.
const TITLE_H: usize = 26;
/// Height of the x tick labels below a plot area.
const X_LABELS_H: usize = 24;
/// Blank margin around the figure and between one panel (or colour bar) and the next.
const PAD: usize = 12;
/// Gap between a plot area and its colour bar, and the bar's width.
const BAR_GAP: usize = 8;
const BAR_W: usize = 14;
/// Length of tick marks, and the space between a tick mark and its label.
const TICK: usize = 4;
const LABEL_GAP: usize = 3;
/// Font sizes (pixels) of titles and of tick labels.
const TITLE_PX: f64 = 15.0;
const LABEL_PX: f64 = 12.0;

const BLACK_RGB: RGBColor = RGBColor(0, 0, 0);
const BLACK: [u8; 3] = [0, 0, 0];

/// A rectangle of pixels: columns `left .. left + width`, rows `top .. top + height`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PixelRect {
    /// First column.
    pub left: usize,
    /// First row.
    pub top: usize,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

impl PixelRect {
    /// Whether pixel `(row, col)` lies inside.
    pub fn contains(&self, row: usize, col: usize) -> bool {
        (self.top..self.top + self.height).contains(&row)
            && (self.left..self.left + self.width).contains(&col)
    }
}

/// Where one panel of a [`Figure`] lands in the picture, and the scale it is drawn with.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelLayout {
    /// The heat map's pixels.
    pub plot: PixelRect,
    /// The data rectangle the plot area shows.
    pub extent: Extent,
    /// The colour scale of this panel (shared or its own).
    pub scale: ColorScale,
    /// The colour bar drawn right of this panel, if this panel ends a run of panels that
    /// share its scale.
    pub colorbar: Option<PixelRect>,
    /// The x values labelled below the plot area.
    pub x_ticks: Vec<f64>,
    /// The y values labelled left of the plot area.
    pub y_ticks: Vec<f64>,
}

impl PanelLayout {
    /// The image column showing `x` (the same convention as [`Extent::pixel_of`]: the column
    /// whose cell contains `x`; `xmax` itself falls in the last column).
    pub fn column_of(&self, x: f64) -> usize {
        let e = &self.extent;
        self.plot.left + cell((x - e.xmin) / (e.xmax - e.xmin), self.plot.width)
    }

    /// The image row showing `y` (top row = `ymax`).
    pub fn row_of(&self, y: f64) -> usize {
        let e = &self.extent;
        self.plot.top + cell((e.ymax - y) / (e.ymax - e.ymin), self.plot.height)
    }

    /// The colour bar's row showing value `v` (its top row is the scale's maximum), if
    /// this panel has a bar.
    pub fn bar_row(&self, v: f64) -> Option<usize> {
        let bar = self.colorbar?;
        Some(bar.top + cell(1.0 - self.scale.unit(v), bar.height))
    }
}

/// Where everything of a [`Figure`] goes.
#[derive(Clone, Debug, PartialEq)]
pub struct FigureLayout {
    /// Image width in pixels.
    pub width: usize,
    /// Image height in pixels.
    pub height: usize,
    /// One entry per panel, left to right.
    pub panels: Vec<PanelLayout>,
}

/// Heat-map panels in a row with axes, ticks, titles and colour bars.
///
/// ```no_run
/// use flows::plot::{Extent, Figure, Panel};
/// # fn main() -> Result<(), flows::FlowError> {
/// let ext = Extent::square(4.0);
/// let wide = |x: f64, y: f64| (-(x * x + y * y) / 8.0).exp() / (8.0 * std::f64::consts::PI);
/// let narrow = |x: f64, y: f64| (-(x * x + y * y) / 2.0).exp() / (2.0 * std::f64::consts::PI);
/// // One scale for both: the wide Gaussian looks fainter, as it is.
/// Figure::new()
///     .panel(Panel::density_fn("σ = 2", wide, ext, 128))
///     .panel(Panel::density_fn("σ = 1", narrow, ext, 128))
///     .save("gaussians.png")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Figure {
    panels: Vec<Panel>,
    independent: bool,
    side: Option<usize>,
}

impl Figure {
    /// An empty figure (panels of the same kind will share a colour scale).
    pub fn new() -> Self {
        Figure::default()
    }

    /// Appends a panel on the right.
    pub fn panel(mut self, panel: Panel) -> Self {
        self.panels.push(panel);
        self
    }

    /// Appends a panel on the right (in place, for loops).
    pub fn push(&mut self, panel: Panel) {
        self.panels.push(panel);
    }

    /// Gives every panel the scale of its own maximum, with a colour bar each: for pictures
    /// whose intensities are not meant to be compared.
    pub fn independent_scales(mut self) -> Self {
        self.independent = true;
        self
    }

    /// Draws every plot area `px × px` pixels (nearest-neighbour; by default one pixel per
    /// grid cell, enlarged by a whole factor for grids coarser than 160).
    pub fn panel_size(mut self, px: usize) -> Self {
        assert!(px > 0, "Figure::panel_size: zero");
        self.side = Some(px);
        self
    }

    /// The colour scale of each panel: its own if set with [`Panel::with_scale`], otherwise
    /// one reaching the largest value among the figure's panels of the same kind (or the
    /// panel's own largest with [`independent_scales`](Self::independent_scales)).
    pub fn scales(&self) -> Vec<ColorScale> {
        self.panels
            .iter()
            .map(|p| {
                if let Some(s) = p.scale {
                    return s;
                }
                if self.independent {
                    return ColorScale::fitting(p.kind, p.values.iter().copied());
                }
                let same_kind = self
                    .panels
                    .iter()
                    .filter(|q| q.scale.is_none() && q.kind == p.kind);
                ColorScale::fitting(p.kind, same_kind.flat_map(|q| q.values.iter().copied()))
            })
            .collect()
    }

    /// Where each panel, its axes and its colour bar go.
    pub fn layout(&self) -> FigureLayout {
        let scales = self.scales();
        let sides: Vec<usize> = self.panels.iter().map(|p| self.side_of(p)).collect();
        let height = TITLE_H + sides.iter().copied().max().unwrap_or(0) + X_LABELS_H + PAD;
        let mut x = PAD;
        let mut panels = Vec::with_capacity(self.panels.len());
        for (i, (p, &side)) in self.panels.iter().zip(&sides).enumerate() {
            let x_ticks = nice_ticks(p.extent.xmin, p.extent.xmax, 5);
            let y_ticks = nice_ticks(p.extent.ymin, p.extent.ymax, 5);
            x += y_labels_width(&y_ticks);
            let plot = PixelRect {
                left: x,
                top: TITLE_H,
                width: side,
                height: side,
            };
            x += side;
            // A bar closes a run of panels drawn with one scale; the next panel with the
            // same scale would repeat it.
            let ends_run = scales.get(i + 1) != Some(&scales[i]);
            let colorbar = ends_run.then(|| {
                let bar = PixelRect {
                    left: x + BAR_GAP,
                    top: TITLE_H,
                    width: BAR_W,
                    height: side,
                };
                x += BAR_GAP + BAR_W + bar_labels_width(&scales[i], &p.bar_label);
                bar
            });
            x += PAD;
            panels.push(PanelLayout {
                plot,
                extent: p.extent,
                scale: scales[i],
                colorbar,
                x_ticks,
                y_ticks,
            });
        }
        FigureLayout {
            width: x.max(2 * PAD),
            height,
            panels,
        }
    }

    /// The figure as an RGB image.
    ///
    /// # Panics
    ///
    /// Only if plotters fails to draw into memory, which does not happen for lines inside
    /// the picture.
    pub fn render(&self) -> Image {
        let layout = self.layout();
        let mut rgb = vec![255u8; 3 * layout.width * layout.height];
        {
            let root =
                BitMapBackend::with_buffer(&mut rgb, (layout.width as u32, layout.height as u32))
                    .into_drawing_area();
            for pl in &layout.panels {
                draw_lines(&root, pl).expect("flows::plot: drawing a panel into memory failed");
            }
            root.present()
                .expect("flows::plot: finishing an in-memory picture failed");
        }
        let mut img = Image {
            width: layout.width,
            height: layout.height,
            rgb,
        };
        for (p, pl) in self.panels.iter().zip(&layout.panels) {
            blit(&mut img, &p.raster(&pl.scale), pl.plot);
            if let Some(bar) = pl.colorbar {
                paint_bar(&mut img, bar);
            }
            draw_labels(&mut img, p, pl);
        }
        img
    }

    /// Writes the figure as a PNG (atomically, see [`Image::save`]).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FlowError> {
        self.render().save(path)
    }

    fn side_of(&self, p: &Panel) -> usize {
        self.side
            .unwrap_or_else(|| p.res * MIN_SIDE.div_ceil(p.res.max(1)))
    }
}

/// Width of the y tick labels, their gap and tick marks left of a plot area.
fn y_labels_width(ticks: &[f64]) -> usize {
    widest(&tick_labels(ticks), LABEL_PX) + LABEL_GAP + TICK + 2
}

/// Width right of a colour bar: its tick marks and labels, or the label above it if wider.
fn bar_labels_width(scale: &ColorScale, label: &str) -> usize {
    let ticks = TICK + LABEL_GAP + widest(&tick_labels(&scale.ticks()), LABEL_PX);
    let above = text_width(label, LABEL_PX).saturating_sub(BAR_W);
    ticks.max(above)
}

fn widest(labels: &[String], px: f64) -> usize {
    labels.iter().map(|l| text_width(l, px)).max().unwrap_or(0)
}

/// The frame around a plot area and around its colour bar, and their tick marks.
fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pl: &PanelLayout,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let r = pl.plot;
    let (left, top) = (r.left as i32, r.top as i32);
    let (right, bottom) = ((r.left + r.width) as i32, (r.top + r.height) as i32);
    let tick = TICK as i32;
    // One pixel outside the plot area on every side, so the frame hides no data.
    root.draw(&Rectangle::new(
        [(left - 1, top - 1), (right, bottom)],
        BLACK_RGB,
    ))?;
    for &x in &pl.x_ticks {
        let c = pl.column_of(x) as i32;
        root.draw(&PathElement::new(
            vec![(c, bottom + 1), (c, bottom + tick)],
            BLACK_RGB,
        ))?;
    }
    for &y in &pl.y_ticks {
        let row = pl.row_of(y) as i32;
        root.draw(&PathElement::new(
            vec![(left - 1 - tick, row), (left - 2, row)],
            BLACK_RGB,
        ))?;
    }
    if let Some(bar) = pl.colorbar {
        let (bl, bt) = (bar.left as i32, bar.top as i32);
        let (br, bb) = ((bar.left + bar.width) as i32, (bar.top + bar.height) as i32);
        root.draw(&Rectangle::new([(bl - 1, bt - 1), (br, bb)], BLACK_RGB))?;
        for v in pl.scale.ticks() {
            let row = pl.bar_row(v).expect("a panel with a bar") as i32;
            root.draw(&PathElement::new(
                vec![(br + 1, row), (br + tick, row)],
                BLACK_RGB,
            ))?;
        }
    }
    Ok(())
}

/// Title, tick labels, and the colour bar's label and tick labels of one panel.
fn draw_labels(img: &mut Image, p: &Panel, pl: &PanelLayout) {
    let r = pl.plot;
    draw_text(
        img,
        &p.title,
        TITLE_PX,
        ((r.left as f64 + r.width as f64 / 2.0), TITLE_H as f64 / 2.0),
        (HAlign::Center, VAlign::Center),
        BLACK,
    );
    let below = (r.top + r.height + TICK + 2) as f64;
    for (&x, label) in pl.x_ticks.iter().zip(tick_labels(&pl.x_ticks)) {
        let c = pl.column_of(x) as f64 + 0.5;
        draw_text(
            img,
            &label,
            LABEL_PX,
            (c, below),
            (HAlign::Center, VAlign::Top),
            BLACK,
        );
    }
    let left_of = (r.left - 1 - TICK - LABEL_GAP) as f64;
    for (&y, label) in pl.y_ticks.iter().zip(tick_labels(&pl.y_ticks)) {
        let row = pl.row_of(y) as f64 + 0.5;
        draw_text(
            img,
            &label,
            LABEL_PX,
            (left_of, row),
            (HAlign::Right, VAlign::Center),
            BLACK,
        );
    }
    if let Some(bar) = pl.colorbar {
        draw_text(
            img,
            &p.bar_label,
            LABEL_PX,
            (bar.left as f64, TITLE_H as f64 / 2.0),
            (HAlign::Left, VAlign::Center),
            BLACK,
        );
        let at = (bar.left + bar.width + TICK + LABEL_GAP) as f64;
        let ticks = pl.scale.ticks();
        for (&v, label) in ticks.iter().zip(tick_labels(&ticks)) {
            let row = pl.bar_row(v).expect("a panel with a bar") as f64 + 0.5;
            draw_text(
                img,
                &label,
                LABEL_PX,
                (at, row),
                (HAlign::Left, VAlign::Center),
                BLACK,
            );
        }
    }
}

/// Copies `src` into `dst`'s rectangle `at`, nearest neighbour (each source pixel becomes a
/// block when enlarging; colours are copied, never mixed).
fn blit(dst: &mut Image, src: &Image, at: PixelRect) {
    for r in 0..at.height {
        let sr = r * src.height / at.height;
        for c in 0..at.width {
            let sc = c * src.width / at.width;
            dst.set_pixel(at.top + r, at.left + c, src.pixel(sr, sc));
        }
    }
}

/// The colour bar's gradient: row `r` (of `h`, top first) shows the colour at `1 − (r + ½)/h`.
fn paint_bar(img: &mut Image, bar: PixelRect) {
    for r in 0..bar.height {
        let color = viridis(1.0 - (r as f64 + 0.5) / bar.height as f64);
        for c in 0..bar.width {
            img.set_pixel(bar.top + r, bar.left + c, color);
        }
    }
}
