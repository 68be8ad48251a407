//! The pictures the 2-D examples write: data, samples and density side by side on a shared
//! count scale, each also on its own, and training curves read back from the CSV log.

use std::error::Error;
use std::path::Path;

use autodiff::{Element, Tensor};
use flows::plot::{self, read_csv_series, Extent, Figure, LinePlot, Panel, Series};

/// The `res × res` grid over `ext` (row-major, as [`plot::grid`]) at which densities are
/// evaluated, and the area of one cell.
pub fn density_grid<E: Element>(ext: Extent, res: usize) -> (Tensor<E>, f64) {
    let cell = (ext.xmax - ext.xmin) * (ext.ymax - ext.ymin) / (res * res) as f64;
    (plot::grid::<E>(ext, res), cell)
}

/// Writes `data.png`, `samples.png`, `density.png` and `panels.png` (the three side by side;
/// data and samples share one count scale) to `out`; `prefix` goes before each name.
pub fn write_panels<E: Element>(
    out: &Path,
    prefix: &str,
    data: &Tensor<E>,
    samples: &Tensor<E>,
    density: &[f64],
    ext: Extent,
    res: usize,
) -> Result<Vec<String>, Box<dyn Error>> {
    let make = || {
        [
            Panel::histogram("data", data, ext, res),
            Panel::histogram("samples", samples, ext, res),
            Panel::density("density", density, ext, res),
        ]
    };
    let mut panels = Figure::new();
    for p in make() {
        panels.push(p);
    }
    // The single pictures keep the scales of the panels, so they match them exactly.
    let scales = panels.scales();
    let mut written = Vec::new();
    for ((name, panel), scale) in ["data", "samples", "density"]
        .iter()
        .zip(make())
        .zip(scales)
    {
        let file = format!("{prefix}{name}.png");
        Figure::new()
            .panel(panel.with_scale(scale))
            .save(out.join(&file))?;
        written.push(file);
    }
    let file = format!("{prefix}panels.png");
    panels.save(out.join(&file))?;
    written.push(file);
    Ok(written)
}

/// Reads the training log `csv` and writes `loss.png`: the loss per iteration, its moving
/// average and, when validated more than once, the validation values.
pub fn write_training_curve(csv: &Path, out: &Path, title: &str) -> Result<String, Box<dyn Error>> {
    let series = read_csv_series(csv, "iter", &["loss", "val"])?;
    let loss = series[0].clone();
    let n = loss.points.len();
    let window = (n / 30).max(1);
    let mut plot = LinePlot::new(title)
        .x_label("iteration")
        .y_label("loss")
        .series(Series {
            name: "per iteration".into(),
            ..loss.clone()
        })
        .series(Series {
            name: format!("mean of last {window}"),
            ..loss.moving_average(window)
        });
    if series[1].points.len() > 1 {
        plot = plot.series(Series {
            name: "validation".into(),
            ..series[1].clone()
        });
    }
    let file = "loss.png".to_string();
    plot.save(out.join(&file))?;
    Ok(file)
}
