//! Series of `(x, y)` values (a training curve) and reading them from the columns of a CSV
//! log, such as the one a training loop writes.

use std::path::Path;

use crate::FlowError;

/// One named line: `(x, y)` points in the order they are joined.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The legend entry.
    pub name: String,
    /// The points, e.g. `(iteration, loss)`.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series of `points`.
    pub fn new(name: impl Into<String>, points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points: points.into_iter().collect(),
        }
    }

    /// `values[i]` at `x = i + 1`: one value per iteration, counted from 1.
    pub fn from_values(name: impl Into<String>, values: &[f64]) -> Self {
        Series::new(
            name,
            values.iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v)),
        )
    }

    /// The trailing mean over the last `window` points (fewer at the start), same name and
    /// x values: per-iteration losses of a stochastic objective are noisy, their trend is
    /// what a reader looks for. Non-finite values are left out of the means.
    pub fn moving_average(&self, window: usize) -> Series {
        let window = window.max(1);
        let mut out = Vec::with_capacity(self.points.len());
        let (mut sum, mut n) = (0.0, 0usize);
        for (i, &(x, y)) in self.points.iter().enumerate() {
            if y.is_finite() {
                sum += y;
                n += 1;
            }
            if i >= window {
                let old = self.points[i - window].1;
                if old.is_finite() {
                    sum -= old;
                    n -= 1;
                }
            }
            out.push((x, if n > 0 { sum / n as f64 } else { f64::NAN }));
        }
        Series {
            name: self.name.clone(),
            points: out,
        }
    }
}

/// Reads columns of a CSV log (a header line of column names, then one line per record) as
/// series of `(x, y)`: one series per name in `ys`, each named after its column, against
/// column `x` (e.g. `"iter"`).
///
/// Fields are separated by commas and trimmed (quotes around a name are dropped); blank
/// lines and lines starting with `#` are skipped. A record whose `x` or `y` field is empty or
/// missing contributes no point to that series, so metrics logged only every so often (a
/// validation loss) read back as sparser series. A field that is not a number is a
/// [`FlowError::Parse`] naming its line and column; a name that is not in the header is a
/// [`FlowError::BadFile`] listing the columns there are.
pub fn read_csv_series(
    path: impl AsRef<Path>,
    x: &str,
    ys: &[&str],
) -> Result<Vec<Series>, FlowError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| FlowError::io(path, e))?;
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
    let bad = |reason: String| FlowError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let (_, header) = lines
        .next()
        .ok_or_else(|| bad("empty CSV log: no header line".into()))?;
    let names: Vec<&str> = header
        .split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect();
    let column = |name: &str| {
        names.iter().position(|&n| n == name).ok_or_else(|| {
            bad(format!(
                "no column named '{name}' (the header has: {})",
                names.join(", ")
            ))
        })
    };
    let xi = column(x)?;
    let yis = ys
        .iter()
        .map(|y| column(y))
        .collect::<Result<Vec<_>, _>>()?;
    let mut series: Vec<Series> = ys.iter().map(|&y| Series::new(y, [])).collect();
    for (line, record) in lines {
        let fields: Vec<&str> = record.split(',').map(str::trim).collect();
        let value = |i: usize| -> Result<Option<f64>, FlowError> {
            match fields.get(i).copied() {
                None | Some("") => Ok(None),
                Some(f) => f.parse::<f64>().map(Some).map_err(|_| FlowError::Parse {
                    path: path.to_path_buf(),
                    line,
                    column: i + 1,
                    text: f.to_string(),
                }),
            }
        };
        let Some(xv) = value(xi)? else { continue };
        for (s, &yi) in series.iter_mut().zip(&yis) {
            if let Some(yv) = value(yi)? {
                s.points.push((xv, yv));
            }
        }
    }
    Ok(series)
}
