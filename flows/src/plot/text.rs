//! Text on pictures: DejaVu Sans, embedded in the binary, laid out and rasterized with
//! ab_glyph and blended onto an [`Image`].
//!
//! Embedding the font (from the `dejavu` crate, which ships the TTF files) means a picture
//! looks the same on every machine and nothing is looked up on the system: no fontconfig,
//! no freetype, no installed fonts. Layout is the usual one: each glyph is placed at a pen
//! position that advances by the glyph's advance width (plus kerning), and its outline is
//! drawn where the font says relative to that position, side bearings included.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, OutlinedGlyph, PxScale, ScaleFont};

use super::raster::Image;

/// Horizontal placement of text relative to its anchor point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HAlign {
    Left,
    Center,
    Right,
}

/// Vertical placement of text relative to its anchor point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VAlign {
    /// The anchor is at the top of the line (the font's ascent).
    Top,
    /// The anchor is halfway between the font's ascent and descent lines.
    Center,
}

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        // The bytes are a known-good TTF compiled into the binary: failing to parse them is
        // a broken build, not a condition a caller could handle.
        FontRef::try_from_slice(dejavu::sans::regular())
            .expect("flows::plot: the embedded DejaVu Sans font failed to parse")
    })
}

/// A line of text laid out with its baseline at y = 0 and its pen starting at x = 0.
struct Line {
    glyphs: Vec<OutlinedGlyph>,
    /// Advance width of the whole line.
    width: f32,
    ascent: f32,
    descent: f32,
}

fn layout(text: &str, px: f64) -> Line {
    let font = font();
    let scale = PxScale::from(px as f32);
    let scaled = font.as_scaled(scale);
    let mut pen = 0.0f32;
    let mut prev = None;
    let mut glyphs = Vec::new();
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        if let Some(g) = font.outline_glyph(id.with_scale_and_position(scale, point(pen, 0.0))) {
            glyphs.push(g);
        }
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    Line {
        glyphs,
        width: pen,
        ascent: scaled.ascent(),
        descent: scaled.descent(),
    }
}

/// The advance width of `text` at `px` pixels, rounded up.
pub(crate) fn text_width(text: &str, px: f64) -> usize {
    layout(text, px).width.ceil() as usize
}

/// Height of a line of text at `px` pixels (ascent to descent), rounded up.
pub(crate) fn line_height(px: f64) -> usize {
    let scaled = font().as_scaled(PxScale::from(px as f32));
    (scaled.ascent() - scaled.descent()).ceil() as usize
}

/// Blends `color` over pixel `(x, y)` with coverage `cov` (glyph edges are antialiased);
/// pixels outside the image are skipped.
fn blend(img: &mut Image, x: i64, y: i64, cov: f32, color: [u8; 3]) {
    if x < 0 || y < 0 || x >= img.width as i64 || y >= img.height as i64 {
        return;
    }
    let (x, y) = (x as usize, y as usize);
    let cov = cov.clamp(0.0, 1.0);
    let old = img.pixel(y, x);
    let mix = |o: u8, n: u8| (o as f32 + (n as f32 - o as f32) * cov).round() as u8;
    img.set_pixel(
        y,
        x,
        [
            mix(old[0], color[0]),
            mix(old[1], color[1]),
            mix(old[2], color[2]),
        ],
    );
}

/// Where the pen starts and the baseline lies for a line anchored at `(x, y)`; whole pixels,
/// so every label's baseline falls on a pixel row and digits look alike.
fn origin(line: &Line, x: f64, y: f64, h: HAlign, v: VAlign) -> (f64, f64) {
    let left = match h {
        HAlign::Left => x,
        HAlign::Center => x - line.width as f64 / 2.0,
        HAlign::Right => x - line.width as f64,
    };
    let baseline = match v {
        VAlign::Top => y + line.ascent as f64,
        VAlign::Center => y + (line.ascent + line.descent) as f64 / 2.0,
    };
    (left.round(), baseline.round())
}

/// Draws `text` at `px` pixels, anchored at `(x, y)` as `h` and `v` say.
pub(crate) fn draw_text(
    img: &mut Image,
    text: &str,
    px: f64,
    (x, y): (f64, f64),
    (h, v): (HAlign, VAlign),
    color: [u8; 3],
) {
    let line = layout(text, px);
    let (ox, oy) = origin(&line, x, y, h, v);
    for g in &line.glyphs {
        let b = g.px_bounds();
        g.draw(|gx, gy, cov| {
            let px = ox as i64 + b.min.x as i64 + gx as i64;
            let py = oy as i64 + b.min.y as i64 + gy as i64;
            blend(img, px, py, cov, color);
        });
    }
}

/// Draws `text` turned a quarter left (reading upwards, as a y-axis name), centred on
/// `(x, y)`.
pub(crate) fn draw_text_up(
    img: &mut Image,
    text: &str,
    px: f64,
    (x, y): (f64, f64),
    color: [u8; 3],
) {
    let line = layout(text, px);
    // Lay the line out as if horizontal and centred on the origin, then turn it: a point
    // `u` along the line and `v` below the baseline lands `u` above and `v` right of the
    // anchor.
    let (ou, ov) = origin(&line, 0.0, 0.0, HAlign::Center, VAlign::Center);
    let (cx, cy) = (x.round() as i64, y.round() as i64);
    for g in &line.glyphs {
        let b = g.px_bounds();
        g.draw(|gx, gy, cov| {
            let u = ou as i64 + b.min.x as i64 + gx as i64;
            let v = ov as i64 + b.min.y as i64 + gy as i64;
            blend(img, cx + v, cy - u, cov, color);
        });
    }
}
