//! PNG output: files decode to the right size and show what they should; figures put axes,
//! ticks and colour bars where their layouts say, and panels compared in one figure share a
//! colour scale.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use autodiff::Tensor;
use flows::plot::{self, viridis, ColorScale, Extent, Figure, LinePlot, Panel, ScaleKind, Series};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flows_plot");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Decodes an RGB PNG: (width, height, bytes).
fn decode(path: &Path) -> (usize, usize, Vec<u8>) {
    let dec = png::Decoder::new(BufReader::new(File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, buf)
}

fn brightness(rgb: &[u8], width: usize, row: usize, col: usize) -> u32 {
    let i = 3 * (row * width + col);
    rgb[i] as u32 + rgb[i + 1] as u32 + rgb[i + 2] as u32
}

#[test]
fn viridis_runs_dark_to_bright() {
    assert_eq!(viridis(0.0), [68, 1, 84]);
    assert_eq!(viridis(1.0), [253, 231, 37]);
    assert_eq!(viridis(2.0), viridis(1.0));
    assert_eq!(viridis(f64::NAN), viridis(0.0));
    // Perceived lightness (Rec. 601 luma) grows monotonically along the map.
    let luma = |c: [u8; 3]| 0.299 * c[0] as f64 + 0.587 * c[1] as f64 + 0.114 * c[2] as f64;
    let ls: Vec<f64> = (0..=100).map(|k| luma(viridis(k as f64 / 100.0))).collect();
    assert!(ls.windows(2).all(|w| w[1] >= w[0] - 0.5), "{ls:?}");
}

#[test]
fn grid_is_in_pixel_order() {
    let g = plot::grid::<f64>(Extent::square(2.0), 4);
    assert_eq!(g.shape(), (16, 2));
    assert_eq!(g.row(0), &[-1.5, 1.5]); // top left
    assert_eq!(g.row(3), &[1.5, 1.5]); // top right
    assert_eq!(g.row(15), &[1.5, -1.5]); // bottom right
}

#[test]
fn density_in_a_corner_is_bright_there() {
    let ext = Extent::square(4.0);
    let res = 32;
    let path = tmp("corner.png");
    // A narrow bump at the top-right corner (x = 4, y = 4).
    plot::density_png::<f64>(
        &path,
        |pts| {
            Tensor::from_fn(pts.rows(), 1, |i, _| {
                let (x, y) = (pts.get(i, 0) - 4.0, pts.get(i, 1) - 4.0);
                (-(x * x + y * y)).exp()
            })
        },
        ext,
        res,
    )
    .unwrap();
    let (w, h, rgb) = decode(&path);
    assert_eq!((w, h), (res, res));
    let top_right = brightness(&rgb, w, 0, res - 1);
    let bottom_left = brightness(&rgb, w, res - 1, 0);
    let top_left = brightness(&rgb, w, 0, 0);
    assert!(top_right > 400, "{top_right}");
    assert!(bottom_left < 160 && top_left < 160);
    let dark: u32 = viridis(0.0).iter().map(|&c| c as u32).sum();
    assert_eq!(bottom_left, dark);
}

#[test]
fn density_fn_image_agrees_with_values() {
    let ext = Extent::new(-1.0, 3.0, 0.0, 2.0);
    let f = |x: f64, y: f64| x + 2.0 * y + 10.0;
    let a = plot::density_fn_image(f, ext, 8);
    let g = plot::grid::<f64>(ext, 8);
    let vals: Vec<f64> = (0..64).map(|i| f(g.get(i, 0), g.get(i, 1))).collect();
    assert_eq!(a, plot::density_image(&vals, 8));
}

#[test]
fn scatter_histogram_marks_occupied_bins() {
    let ext = Extent::square(4.0);
    let res = 16;
    // 100 points near (−3.9, −3.9) (bottom-left bin), 1 point at the origin, 1 outside.
    let mut pts = vec![];
    for _ in 0..100 {
        pts.extend([-3.9, -3.9]);
    }
    pts.extend([0.1, 0.1, 50.0, 0.0]);
    let x = Tensor::<f32>::from_f64s(102, 2, &pts);
    let path = tmp("scatter.png");
    plot::scatter_png(&path, &x, ext, res).unwrap();
    let (w, h, rgb) = decode(&path);
    assert_eq!((w, h), (res, res));
    let full = brightness(&rgb, w, res - 1, 0);
    let one = brightness(&rgb, w, res / 2 - 1, res / 2);
    let empty = brightness(&rgb, w, 0, 0);
    assert_eq!(full, viridis(1.0).iter().map(|&c| c as u32).sum::<u32>());
    // Log scale: one point out of a maximum of 100 is still clearly visible.
    assert!(full > one && one > empty, "{full} {one} {empty}");
    let expected = plot::viridis((2f64).ln() / (101f64).ln());
    let i = 3 * ((res / 2 - 1) * w + res / 2);
    assert_eq!(&rgb[i..i + 3], &expected);
}

#[test]
fn side_by_side_composes_panels() {
    let a = plot::Image::filled(10, 8, [1, 2, 3]);
    let b = plot::Image::filled(6, 12, [9, 9, 9]);
    let c = plot::side_by_side(&[a, b], 3);
    assert_eq!((c.width, c.height), (19, 12));
    assert_eq!(c.pixel(0, 0), [1, 2, 3]);
    assert_eq!(c.pixel(0, 11), [255, 255, 255]); // gap
    assert_eq!(c.pixel(11, 13), [9, 9, 9]);
    assert_eq!(c.pixel(10, 5), [255, 255, 255]); // below the shorter panel
    let path = tmp("panels.png");
    c.save(&path).unwrap();
    let (w, h, rgb) = decode(&path);
    assert_eq!((w, h), (19, 12));
    assert_eq!(rgb, c.rgb);
}

// ---- Scales and ticks.

#[test]
fn ticks_are_round_values_covering_the_range() {
    assert_eq!(
        plot::nice_ticks(-4.0, 4.0, 5),
        vec![-4.0, -2.0, 0.0, 2.0, 4.0]
    );
    assert_eq!(plot::nice_ticks(-2.2, 2.2, 5), vec![-2.0, 0.0, 2.0]);
    assert_eq!(plot::nice_ticks(0.0, 0.159, 5), vec![0.0, 0.05, 0.1, 0.15]);
    assert_eq!(
        plot::nice_ticks(1.0, 1500.0, 6),
        vec![500.0, 1000.0, 1500.0]
    );
    // Labels: a true minus sign, the decimals the spacing needs, no "−0".
    let labels = plot::tick_labels(&[-4.0, -2.0, 0.0, 2.0, 4.0]);
    assert_eq!(labels, ["\u{2212}4", "\u{2212}2", "0", "2", "4"]);
    assert_eq!(
        plot::tick_labels(&[0.0, 0.05, 0.1]),
        ["0.00", "0.05", "0.10"]
    );
    assert_eq!(plot::format_tick(-1e-9, 2), "0.00");
    assert_eq!(plot::format_tick(2e-5, 6), "2e\u{2212}5");
}

#[test]
fn color_scales_clamp_and_place_values() {
    let lin = ColorScale::linear(2.0);
    assert_eq!(lin.unit(1.0), 0.5);
    assert_eq!(lin.unit(5.0), 1.0);
    assert_eq!(lin.unit(-1.0), 0.0);
    assert_eq!(lin.unit(f64::NAN), 0.0);
    assert_eq!(lin.color(2.0), viridis(1.0));
    let log = ColorScale::log_counts(99.0);
    assert!((log.unit(9.0) - 0.5).abs() < 1e-12); // ln 10 / ln 100
                                                  // Only two powers of ten below 99: 1-2-5 steps instead.
    assert_eq!(log.ticks(), vec![0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0]);
    assert_eq!(
        ColorScale::log_counts(1000.0).ticks(),
        vec![0.0, 1.0, 10.0, 100.0, 1000.0]
    );
    let fit = ColorScale::fitting(ScaleKind::Linear, [0.5, f64::INFINITY, 3.0, -7.0]);
    assert_eq!(fit.max(), 3.0);
    // A scale with nothing to show draws everything with the bottom colour.
    assert_eq!(ColorScale::linear(0.0).color(1.0), viridis(0.0));
}

// ---- Figures of heat maps.

/// Values on a `res × res` grid: `v` at the cell containing `(x, y)`, `fill` elsewhere.
fn one_cell(ext: Extent, res: usize, (x, y): (f64, f64), v: f64, fill: f64) -> Vec<f64> {
    let (r, c) = ext.pixel_of(res, x, y).unwrap();
    let mut vals = vec![fill; res * res];
    vals[r * res + c] = v;
    vals
}

#[test]
fn shared_scale_gives_equal_values_equal_colours() {
    let ext = Extent::square(4.0);
    let res = 40;
    let at = (1.3, -0.7);
    // The same density 0.7 at the same point; panel A's maximum elsewhere is 2, B's is 1.
    let mut a = one_cell(ext, res, at, 0.7, 0.0);
    a[0] = 2.0;
    let mut b = one_cell(ext, res, at, 0.7, 0.0);
    b[1] = 1.0;
    let fig = Figure::new()
        .panel(Panel::density("A", &a, ext, res))
        .panel(Panel::density("B", &b, ext, res));
    let layout = fig.layout();
    let img = fig.render();
    let colour = |k: usize| {
        let pl = &layout.panels[k];
        img.pixel(pl.row_of(at.1), pl.column_of(at.0))
    };
    assert_eq!(layout.panels[0].scale, ColorScale::linear(2.0));
    assert_eq!(layout.panels[1].scale, layout.panels[0].scale);
    assert_eq!(colour(0), colour(1));
    assert_eq!(colour(0), ColorScale::linear(2.0).color(0.7));
    // One bar for the run of panels sharing a scale, after the last of them.
    assert!(layout.panels[0].colorbar.is_none());
    assert!(layout.panels[1].colorbar.is_some());

    // Scaled each to its own maximum (as regularization_toy used to), the same density
    // looks different: the point of sharing.
    let own = fig.clone().independent_scales();
    let (ol, oi) = (own.layout(), own.render());
    let c = |k: usize| oi.pixel(ol.panels[k].row_of(at.1), ol.panels[k].column_of(at.0));
    assert_ne!(c(0), c(1));
    assert!(ol.panels.iter().all(|p| p.colorbar.is_some()));
}

#[test]
fn kinds_keep_their_own_scales_and_histograms_share_counts() {
    let ext = Extent::square(2.0);
    let res = 16;
    let few = Tensor::<f64>::from_f64s(3, 2, &[0.1, 0.1, 0.1, 0.1, -1.0, 1.0]);
    let many = Tensor::<f64>::from_f64s(4, 2, &[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
    let dens = vec![0.25; res * res];
    let fig = Figure::new()
        .panel(Panel::histogram("data", &few, ext, res))
        .panel(Panel::histogram("samples", &many, ext, res))
        .panel(Panel::density("density", &dens, ext, res));
    let scales = fig.scales();
    assert_eq!(scales[0], ColorScale::log_counts(4.0));
    assert_eq!(scales[1], scales[0]);
    assert_eq!(scales[2], ColorScale::linear(0.25));
    let layout = fig.layout();
    assert!(layout.panels[0].colorbar.is_none());
    assert!(layout.panels[1].colorbar.is_some() && layout.panels[2].colorbar.is_some());
    // A fixed scale overrides the shared one for that panel only.
    let fixed =
        fig.panel(Panel::density("fixed", &dens, ext, res).with_scale(ColorScale::linear(1.0)));
    let s = fixed.scales();
    assert_eq!(s[3], ColorScale::linear(1.0));
    assert_eq!(s[2], ColorScale::linear(0.25));
}

#[test]
fn colour_bar_spans_the_scale() {
    let ext = Extent::square(4.0);
    let res = 50;
    let f = |x: f64, y: f64| (-(x * x + y * y) / 2.0).exp();
    let fig = Figure::new().panel(Panel::density_fn("g", f, ext, res));
    let layout = fig.layout();
    let img = fig.render();
    let pl = &layout.panels[0];
    let bar = pl.colorbar.unwrap();
    let max = pl.scale.max();
    assert!(max > 0.99 && max <= 1.0, "{max}");
    assert_eq!(pl.bar_row(max), Some(bar.top));
    assert_eq!(pl.bar_row(0.0), Some(bar.top + bar.height - 1));
    assert_eq!(bar.height, pl.plot.height);
    let mid = bar.left + bar.width / 2;
    // Top and bottom rows show the ends of the map; the row for v shows v's colour to
    // within the one-row resolution of the bar.
    assert_eq!(
        img.pixel(bar.top, mid),
        viridis(1.0 - 0.5 / bar.height as f64)
    );
    assert_eq!(
        img.pixel(bar.top + bar.height - 1, mid),
        viridis(0.5 / bar.height as f64)
    );
    for v in [0.1, 0.25, 0.5, 0.8] {
        let row = pl.bar_row(v * max).unwrap();
        let shown = 1.0 - ((row - bar.top) as f64 + 0.5) / bar.height as f64;
        assert!(
            (shown - v).abs() <= 0.5 / bar.height as f64 + 1e-12,
            "{v}: {shown}"
        );
        assert_eq!(img.pixel(row, mid), viridis(shown));
    }
    // The heat map's brightest pixel (the origin) has the bar's top colour range.
    let centre = img.pixel(pl.row_of(0.01), pl.column_of(0.01));
    assert_eq!(centre, pl.scale.color(f(0.04, 0.04)));
}

/// Whether pixel `(row, col)` is (nearly) black.
fn dark(img: &plot::Image, row: usize, col: usize) -> bool {
    img.pixel(row, col).iter().all(|&c| c < 60)
}

#[test]
fn tick_marks_sit_at_their_data_coordinates() {
    let ext = Extent::new(-4.0, 4.0, -2.0, 6.0);
    let res = 200;
    let fig = Figure::new().panel(Panel::density_fn("t", |x, _| x + 4.0, ext, res));
    let layout = fig.layout();
    let img = fig.render();
    let pl = &layout.panels[0];
    let r = pl.plot;
    assert_eq!(pl.x_ticks, vec![-4.0, -2.0, 0.0, 2.0, 4.0]);
    assert_eq!(pl.y_ticks, vec![-2.0, 0.0, 2.0, 4.0, 6.0]);
    // The data coordinates map to the plot area's edges and, linearly, in between.
    assert_eq!(pl.column_of(-4.0), r.left);
    assert_eq!(pl.column_of(0.0), r.left + r.width / 2);
    assert_eq!(pl.column_of(4.0), r.left + r.width - 1);
    assert_eq!(pl.column_of(2.0), r.left + 3 * r.width / 4);
    assert_eq!(pl.row_of(6.0), r.top);
    assert_eq!(pl.row_of(2.0), r.top + r.height / 2);
    assert_eq!(pl.row_of(-2.0), r.top + r.height - 1);
    // The same convention as the heat map: the column of x is the grid cell containing x.
    let (_, c) = ext.pixel_of(res, 1.37, 0.0).unwrap();
    assert_eq!(pl.column_of(1.37), r.left + c);
    // A tick mark below the frame at every x tick and nowhere between them; one left of
    // the frame at every y tick.
    let below = r.top + r.height + 2;
    for &x in &pl.x_ticks {
        assert!(dark(&img, below, pl.column_of(x)), "no x tick at {x}");
    }
    for w in pl.x_ticks.windows(2) {
        let between = (w[0] + w[1]) / 2.0;
        assert!(
            !dark(&img, below, pl.column_of(between)),
            "stray mark at {between}"
        );
    }
    let left = r.left - 3;
    for &y in &pl.y_ticks {
        assert!(dark(&img, pl.row_of(y), left), "no y tick at {y}");
    }
    assert!(!dark(&img, pl.row_of(1.0), left));
    // The frame runs along the plot area, one pixel outside it.
    assert!((r.left..r.left + r.width).all(|c| dark(&img, r.top + r.height, c)));
    assert!((r.top..r.top + r.height).all(|row| dark(&img, row, r.left - 1)));
}

#[test]
fn heat_map_pixels_are_the_scale_colours_of_their_cells() {
    let ext = Extent::new(-1.0, 3.0, 0.0, 2.0);
    let res = 32; // coarse: enlarged 5x, each cell a 5x5 block
    let f = |x: f64, y: f64| x * x + y;
    let fig = Figure::new().panel(Panel::density_fn("f", f, ext, res));
    let layout = fig.layout();
    let pl = &layout.panels[0];
    assert_eq!((pl.plot.width, pl.plot.height), (160, 160));
    let img = fig.render();
    for &(x, y) in &[(-0.9, 0.1), (0.0, 1.0), (2.95, 1.95), (1.234, 0.567)] {
        let (r, c) = ext.pixel_of(res, x, y).unwrap();
        let (cx, cy) = ext.pixel_center(res, r, c);
        assert_eq!(
            img.pixel(pl.row_of(y), pl.column_of(x)),
            pl.scale.color(f(cx, cy))
        );
    }
    // An explicit panel size resamples to it.
    let small = Figure::new()
        .panel(Panel::density_fn("f", f, ext, res))
        .panel_size(64);
    assert_eq!(small.layout().panels[0].plot.width, 64);
}

#[test]
fn figure_png_decodes_to_its_layout() {
    let ext = Extent::square(3.0);
    let pts = Tensor::<f32>::from_f64s(2, 2, &[0.0, 0.0, 1.0, -1.0]);
    let fig = Figure::new()
        .panel(Panel::histogram("points", &pts, ext, 100))
        .panel(Panel::density_fn("flat", |_, _| 1.0, ext, 180));
    let layout = fig.layout();
    let path = tmp("figure.png");
    fig.save(&path).unwrap();
    let (w, h, rgb) = decode(&path);
    assert_eq!((w, h), (layout.width, layout.height));
    assert_eq!(rgb, fig.render().rgb);
    // Panels left to right without overlap, bars inside the picture.
    let ps = &layout.panels;
    assert!(ps[0].plot.left + ps[0].plot.width < ps[1].plot.left);
    let bar = ps[1].colorbar.unwrap();
    assert!(bar.left + bar.width < w && bar.top + bar.height < h);
    // The title row holds text (dark pixels) above each plot area.
    let img = fig.render();
    for p in ps {
        let r = p.plot;
        assert!((0..r.top).any(|row| (r.left..r.left + r.width).any(|c| dark(&img, row, c))));
    }
}

// ---- Training curves.

/// Whether a pixel of `colour` lies within `d` pixels of `(row, col)`.
fn near(img: &plot::Image, row: usize, col: usize, d: usize, colour: [u8; 3]) -> bool {
    (row.saturating_sub(d)..=row + d).any(|r| {
        (col.saturating_sub(d)..=col + d)
            .any(|c| r < img.height && c < img.width && img.pixel(r, c) == colour)
    })
}

#[test]
fn line_plot_draws_each_series_where_its_layout_says() {
    let up = Series::new("up", (0..=100).map(|i| (i as f64, i as f64 / 10.0)));
    let flat = Series::new("flat", (0..=100).map(|i| (i as f64, 2.0)));
    let plot = LinePlot::new("curves")
        .y_label("value")
        .series(up)
        .series(flat)
        .size(500, 320);
    let l = plot.layout();
    let img = plot.render();
    assert_eq!((img.width, img.height), (500, 320));
    assert_eq!(l.x_range, (0.0, 100.0));
    // 5% headroom on each side of [0, 10].
    assert_eq!(l.y_range, (-0.5, 10.5));
    assert_eq!(l.y_ticks, vec![0.0, 2.5, 5.0, 7.5, 10.0]);
    let (c0, c1) = (plot::series_color(0), plot::series_color(1));
    assert_ne!(c0, c1);
    for x in [10.0, 35.0, 60.0] {
        assert!(
            near(&img, l.row_of(x / 10.0), l.column_of(x), 1, c0),
            "up at {x}"
        );
        assert!(
            near(&img, l.row_of(2.0), l.column_of(x), 1, c1),
            "flat at {x}"
        );
        // ... and not where the data is not.
        assert!(!near(&img, l.row_of(x / 10.0 + 3.0), l.column_of(x), 1, c0));
    }
    // The legend goes where the curves are not: "up" fills the top-right corner, the
    // top-left is empty, so both line samples appear there and "up" stays visible.
    let top_left = |colour| {
        (l.plot.top..l.plot.top + 60)
            .any(|r| (l.plot.left..l.plot.left + 150).any(|c| img.pixel(r, c) == colour))
    };
    assert!(top_left(c0) && top_left(c1));
    assert!(near(&img, l.row_of(9.5), l.column_of(95.0), 1, c0));
    let path = tmp("curves.png");
    plot.save(&path).unwrap();
    let (w, h, rgb) = decode(&path);
    assert_eq!((w, h, rgb), (500, 320, img.rgb));
}

#[test]
fn log_axis_spaces_decades_evenly_and_a_fixed_range_clips() {
    let s = Series::new(
        "",
        (0..=30).map(|i| (i as f64, 10f64.powf(i as f64 / 10.0))),
    );
    let plot = LinePlot::new("log").log_y(true).series(s.clone());
    let l = plot.layout();
    assert_eq!(l.y_ticks, vec![1.0, 10.0, 100.0, 1000.0]);
    let rows: Vec<usize> = l.y_ticks.iter().map(|&v| l.row_of(v)).collect();
    let steps: Vec<i64> = rows.windows(2).map(|w| w[0] as i64 - w[1] as i64).collect();
    assert!(
        steps.iter().all(|&d| (d - steps[0]).abs() <= 1),
        "{steps:?}"
    );
    // A fixed range narrower than the data: nothing of the curve outside the plot area.
    let clipped = LinePlot::new("clip")
        .series(Series::new("", [(0.0, -5.0), (1.0, 5.0), (2.0, -5.0)]))
        .y_range(-1.0, 1.0);
    let cl = clipped.layout();
    let img = clipped.render();
    let c0 = plot::series_color(0);
    for r in 0..img.height {
        for c in 0..img.width {
            if img.pixel(r, c) == c0 {
                assert!(
                    cl.plot.contains(r, c),
                    "curve pixel at ({r}, {c}) outside {:?}",
                    cl.plot
                );
            }
        }
    }
    assert!(near(&img, cl.row_of(0.0), cl.column_of(0.5), 1, c0));
}

#[test]
fn moving_average_is_a_trailing_mean() {
    let s = Series::from_values("loss", &[4.0, 2.0, f64::NAN, 6.0, 0.0]);
    assert_eq!(s.points[0], (1.0, 4.0));
    let m = s.moving_average(2);
    let ys: Vec<f64> = m.points.iter().map(|p| p.1).collect();
    assert_eq!(ys, vec![4.0, 3.0, 2.0, 6.0, 3.0]);
    assert_eq!(m.name, "loss");
}

#[test]
fn csv_log_reads_named_columns() {
    let path = tmp("log.csv");
    let csv = "iter,loss,val_nll,note\n1,3.5,,a\n2,3.25,,b\n\n# a comment\n3,3.0,2.9,c\n4,2.5\n";
    flows::io::write_atomic(&path, csv.as_bytes()).unwrap();
    let s = plot::read_csv_series(&path, "iter", &["loss", "val_nll"]).unwrap();
    assert_eq!(s[0].name, "loss");
    assert_eq!(
        s[0].points,
        vec![(1.0, 3.5), (2.0, 3.25), (3.0, 3.0), (4.0, 2.5)]
    );
    assert_eq!(s[1].points, vec![(3.0, 2.9)]); // logged less often
    match plot::read_csv_series(&path, "iter", &["nfe"]) {
        Err(flows::FlowError::BadFile { reason, .. }) => {
            assert!(
                reason.contains("nfe") && reason.contains("val_nll"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    match plot::read_csv_series(&path, "iter", &["note"]) {
        Err(flows::FlowError::Parse {
            line, column, text, ..
        }) => {
            assert_eq!((line, column, text.as_str()), (2, 4, "a"))
        }
        other => panic!("{other:?}"),
    }
    // And it plots.
    let img = LinePlot::new("log").series(s[0].clone()).render();
    assert_eq!((img.width, img.height), (640, 400));
}
