//! PNG output: files decode to the right size and show what they should.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use autodiff::Tensor;
use flows::plot::{self, viridis, Extent};

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
