//! The raw pictures: a grid over a rectangle of the plane, RGB images written as PNG, heat
//! maps and sample histograms with one pixel per grid cell, panels placed side by side.
//!
//! These carry no axes or text; [`Figure`](super::Figure) frames them for a reader.

use std::path::Path;

use autodiff::{Element, Tensor};

use super::scale::{ColorScale, ScaleKind};
use crate::FlowError;

/// A rectangle `[xmin, xmax] × [ymin, ymax]` of the plane.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extent {
    /// Left edge.
    pub xmin: f64,
    /// Right edge.
    pub xmax: f64,
    /// Bottom edge.
    pub ymin: f64,
    /// Top edge.
    pub ymax: f64,
}

impl Extent {
    /// The square `[−half, half]²` (the FFJORD figures use `half = 4`).
    pub fn square(half: f64) -> Self {
        Extent {
            xmin: -half,
            xmax: half,
            ymin: -half,
            ymax: half,
        }
    }

    /// The rectangle `[xmin, xmax] × [ymin, ymax]`.
    pub fn new(xmin: f64, xmax: f64, ymin: f64, ymax: f64) -> Self {
        assert!(
            xmax > xmin && ymax > ymin,
            "Extent::new: empty rectangle [{xmin}, {xmax}] x [{ymin}, {ymax}]"
        );
        Extent {
            xmin,
            xmax,
            ymin,
            ymax,
        }
    }

    /// Centre of pixel `(row, col)` on a `res × res` grid.
    pub fn pixel_center(&self, res: usize, row: usize, col: usize) -> (f64, f64) {
        let w = (self.xmax - self.xmin) / res as f64;
        let h = (self.ymax - self.ymin) / res as f64;
        (
            self.xmin + (col as f64 + 0.5) * w,
            self.ymax - (row as f64 + 0.5) * h,
        )
    }

    /// The pixel `(row, col)` containing `(x, y)` on a `res × res` grid, if inside.
    pub fn pixel_of(&self, res: usize, x: f64, y: f64) -> Option<(usize, usize)> {
        let u = (x - self.xmin) / (self.xmax - self.xmin);
        let v = (self.ymax - y) / (self.ymax - self.ymin);
        if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
            return None;
        }
        // `u < 1` can still round to `u · res = res` in floating point: clamp to the last cell.
        let cell = |t: f64| ((t * res as f64) as usize).min(res.saturating_sub(1));
        Some((cell(v), cell(u)))
    }
}

/// An 8-bit RGB image, row-major, top row first.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `3 · width · height` bytes, `[r, g, b]` per pixel.
    pub rgb: Vec<u8>,
}

impl Image {
    /// A `width × height` image filled with one colour.
    pub fn filled(width: usize, height: usize, color: [u8; 3]) -> Self {
        Image {
            width,
            height,
            rgb: color.repeat(width * height),
        }
    }

    /// Colour of pixel `(row, col)`.
    pub fn pixel(&self, row: usize, col: usize) -> [u8; 3] {
        assert!(
            row < self.height && col < self.width,
            "Image::pixel: ({row}, {col}) out of {}x{}",
            self.height,
            self.width
        );
        let i = 3 * (row * self.width + col);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Sets pixel `(row, col)`.
    pub fn set_pixel(&mut self, row: usize, col: usize, color: [u8; 3]) {
        assert!(
            row < self.height && col < self.width,
            "Image::set_pixel: ({row}, {col}) out of {}x{}",
            self.height,
            self.width
        );
        let i = 3 * (row * self.width + col);
        self.rgb[i..i + 3].copy_from_slice(&color);
    }

    /// Writes the image as an 8-bit RGB PNG.
    ///
    /// The file is replaced atomically ([`crate::io::write_atomic_with`]): a failed write is a
    /// [`FlowError::Io`] naming `path` (an encoder error, e.g. for an empty image, a
    /// [`FlowError::BadFile`]) and leaves a previous file at `path` intact.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FlowError> {
        let path = path.as_ref();
        crate::io::write_atomic_with(path, |out| {
            // I/O failures inside the encoder (disk full, ...) are reported as such, not as
            // encoding failures, so the caller sees the same error as for any other file.
            let png_err = |e: png::EncodingError| match e {
                png::EncodingError::IoError(e) => FlowError::io(path, e),
                e => FlowError::BadFile {
                    path: path.to_path_buf(),
                    reason: format!("PNG encoding failed: {e}"),
                },
            };
            let mut enc = png::Encoder::new(out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().map_err(png_err)?;
            writer.write_image_data(&self.rgb).map_err(png_err)?;
            writer.finish().map_err(png_err)
        })
    }
}

/// Viridis anchor colours at k/9, k = 0..=9 (the ten-colour sampling of the published map of
/// van der Walt and Smith, 2015); [`viridis`] interpolates linearly between them.
const VIRIDIS: [[f64; 3]; 10] = [
    [68.0, 1.0, 84.0],
    [72.0, 40.0, 120.0],
    [62.0, 73.0, 137.0],
    [49.0, 104.0, 142.0],
    [38.0, 130.0, 142.0],
    [31.0, 158.0, 137.0],
    [53.0, 183.0, 121.0],
    [110.0, 206.0, 88.0],
    [181.0, 222.0, 43.0],
    [253.0, 231.0, 37.0],
];

/// The viridis colour of `v ∈ [0, 1]` (clamped; NaN maps to 0): a table of anchors
/// interpolated linearly, dark purple at 0 and yellow at 1.
pub fn viridis(v: f64) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let pos = v * (VIRIDIS.len() - 1) as f64;
    let k = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let f = pos - k as f64;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    let mix = |i: usize| (a[i] + f * (b[i] - a[i])).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// The centres of a `res × res` grid over `extent` as a `res² × 2` tensor, in pixel order
/// (top row first, left to right): evaluate a model's density on it in one batch and pass
/// the values to [`density_image`].
pub fn grid<E: Element>(extent: Extent, res: usize) -> Tensor<E> {
    Tensor::from_fn(res * res, 2, |i, j| {
        let (x, y) = extent.pixel_center(res, i / res, i % res);
        E::from_f64(if j == 0 { x } else { y })
    })
}

/// A heat map of `values` given in [`grid`] order (`res²` of them), one pixel per value,
/// coloured by `scale`. Panics if `values.len()` is not `res²`.
pub fn heat_map(values: &[f64], res: usize, scale: &ColorScale) -> Image {
    assert_eq!(
        values.len(),
        res * res,
        "heat_map: {} values for a {res}x{res} grid",
        values.len()
    );
    let mut img = Image::filled(res, res, viridis(0.0));
    for (i, &v) in values.iter().enumerate() {
        img.set_pixel(i / res, i % res, scale.color(v));
    }
    img
}

/// A heat map of non-negative `values` given in [`grid`] order (`res²` of them): each is
/// divided by the largest and coloured with [`viridis`] (a [`heat_map`] on the linear scale
/// fitting these values). Non-finite or negative values are drawn as 0. Panics if
/// `values.len()` is not `res²`.
pub fn density_image(values: &[f64], res: usize) -> Image {
    assert_eq!(
        values.len(),
        res * res,
        "density_image: {} values for a {res}x{res} grid",
        values.len()
    );
    heat_map(
        values,
        res,
        &ColorScale::fitting(ScaleKind::Linear, values.iter().copied()),
    )
}

/// `f(x, y)` at the centres of a `res × res` grid over `extent`, in [`grid`] order.
pub(crate) fn grid_values(f: impl Fn(f64, f64) -> f64, extent: Extent, res: usize) -> Vec<f64> {
    let mut values = Vec::with_capacity(res * res);
    for r in 0..res {
        for c in 0..res {
            let (x, y) = extent.pixel_center(res, r, c);
            values.push(f(x, y));
        }
    }
    values
}

/// A heat map of a density given as a function of `(x, y)`, evaluated at the pixel centres.
pub fn density_fn_image(f: impl Fn(f64, f64) -> f64, extent: Extent, res: usize) -> Image {
    density_image(&grid_values(f, extent, res), res)
}

/// Writes a density heat map to `path`. `density` receives the [`grid`] points (`res² × 2`)
/// in one batch and returns the densities (any shape with `res²` elements, in grid order) —
/// e.g. `exp` of a flow's log-likelihood.
pub fn density_png<E: Element>(
    path: impl AsRef<Path>,
    density: impl FnOnce(&Tensor<E>) -> Tensor<E>,
    extent: Extent,
    res: usize,
) -> Result<(), FlowError> {
    let pts = grid::<E>(extent, res);
    let d = density(&pts);
    let values: Vec<f64> = d.as_slice().iter().map(|v| v.to_f64()).collect();
    density_image(&values, res).save(path)
}

/// The number of points of `points` (its first two columns) in each cell of a `res × res`
/// grid over `extent`, in [`grid`] order. Points outside the extent (or with a NaN
/// coordinate) are dropped.
pub fn histogram_counts<E: Element>(points: &Tensor<E>, extent: Extent, res: usize) -> Vec<f64> {
    assert!(
        points.cols() >= 2,
        "histogram_counts: points are {}x{}, need at least 2 columns",
        points.rows(),
        points.cols()
    );
    let mut counts = vec![0.0; res * res];
    for i in 0..points.rows() {
        let (x, y) = (points.get(i, 0).to_f64(), points.get(i, 1).to_f64());
        if let Some((r, c)) = extent.pixel_of(res, x, y) {
            counts[r * res + c] += 1.0;
        }
    }
    counts
}

/// A 2-D histogram of the first two columns of `points` on a `res × res` grid over `extent`,
/// with log-scaled counts: a bin with `c` points gets `viridis(ln(1 + c) / ln(1 + max))`, so
/// empty bins are dark and sparse tails stay visible ([`ColorScale::log_counts`]). Points
/// outside the extent are dropped.
pub fn scatter_image<E: Element>(points: &Tensor<E>, extent: Extent, res: usize) -> Image {
    let counts = histogram_counts(points, extent, res);
    let scale = ColorScale::fitting(ScaleKind::LogCounts, counts.iter().copied());
    heat_map(&counts, res, &scale)
}

/// Writes [`scatter_image`] of `points` to `path`.
pub fn scatter_png<E: Element>(
    path: impl AsRef<Path>,
    points: &Tensor<E>,
    extent: Extent,
    res: usize,
) -> Result<(), FlowError> {
    scatter_image(points, extent, res).save(path)
}

/// Places `images` left to right, top-aligned, separated by `gap` white columns, on a white
/// background as tall as the tallest (e.g. data | samples | density).
pub fn side_by_side(images: &[Image], gap: usize) -> Image {
    let height = images.iter().map(|i| i.height).max().unwrap_or(0);
    let width =
        images.iter().map(|i| i.width).sum::<usize>() + gap * images.len().saturating_sub(1);
    let mut out = Image::filled(width, height, [255, 255, 255]);
    let mut x0 = 0;
    for img in images {
        for r in 0..img.height {
            let src = &img.rgb[3 * r * img.width..3 * (r + 1) * img.width];
            let dst = 3 * (r * width + x0);
            out.rgb[dst..dst + src.len()].copy_from_slice(src);
        }
        x0 += img.width + gap;
    }
    out
}
