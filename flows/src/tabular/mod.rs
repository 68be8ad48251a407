//! Density estimation on tabular data: the shipped UCI digits, a seeded train / validation /
//! test split, invertible preprocessing fitted on the training split ([`Preprocess`]), and
//! log-likelihoods reported in the data's own space, in nats and bits per dimension.
//!
//! ```
//! use flows::tabular::{self, Preprocess};
//! use rand::SeedableRng;
//!
//! let digits = tabular::digits().unwrap();
//! assert_eq!(digits.pixels.shape(), (1797, 64));
//! let split = tabular::split(&digits.pixels, 0.1, 0.1, 0).unwrap();
//! assert_eq!(split.train.rows() + split.valid.rows() + split.test.rows(), 1797);
//!
//! // Pixels 0..=16 → dequantised to [0, 17) → logit → standardised (fitted on train only).
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let train = tabular::dequantize(&split.train, &mut rng);
//! let pre = Preprocess::fit_logit(&train, 17.0, 0.05).unwrap();
//! let (y, logdet) = pre.forward(&train).unwrap();
//! // A model of y gives log p_y; the density of the pixels is log p_y(y) + logdet.
//! let back = pre.inverse(&y).unwrap();
//! assert!(back.max_abs_diff(&train) < 1e-9);
//! # assert_eq!(logdet.len(), train.rows());
//! ```

mod preprocess;

use std::fmt;
use std::io::Read;

use autodiff::Tensor;
use rand::{Rng, SeedableRng};

pub use preprocess::{dequantize, integer_levels, Logit, Preprocess};

use crate::plot::Image;
use crate::FlowError;

/// The UCI digits as shipped: `flows/data/digits.csv.gz` (see `flows/data/README.md` for the
/// source, licence CC BY 4.0 and citation), embedded in the library.
pub const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// Levels of a digits pixel: the values are `0..=16`, so dequantised pixels lie in `[0, 17)`.
pub const DIGITS_LEVELS: usize = 17;

/// Side of a digits image (8 × 8 = 64 pixels, stored row-major).
pub const DIGITS_SIDE: usize = 8;

/// Errors of the tabular pipeline: files, shapes and values that do not fit.
#[derive(Debug)]
#[non_exhaustive]
pub enum TabularError {
    /// Reading or parsing a file (or the embedded data) failed.
    File(FlowError),
    /// Too few rows for what was asked (a split with an empty part, fitting on one row).
    TooFewRows {
        /// Rows available.
        rows: usize,
        /// Rows needed.
        needed: usize,
    },
    /// The data has a different number of columns than the map or model expects.
    ColumnMismatch {
        /// Columns expected.
        expected: usize,
        /// Columns found.
        found: usize,
    },
    /// A NaN or infinite value (0-based row and column).
    NonFinite {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
    },
    /// A value outside `[0, levels]` given to a logit transform (0-based row and column).
    OutOfRange {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
        /// The value.
        value: f64,
        /// The number of levels K of the transform.
        levels: f64,
    },
    /// A configuration value that cannot be used (fractions, α, levels, stored maps).
    BadConfig(String),
}

impl fmt::Display for TabularError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TabularError::File(e) => write!(f, "{e}"),
            TabularError::TooFewRows { rows, needed } => {
                write!(f, "the data has {rows} rows, at least {needed} are needed")
            }
            TabularError::ColumnMismatch { expected, found } => {
                write!(f, "expected {expected} columns, the data has {found}")
            }
            TabularError::NonFinite { row, col } => write!(
                f,
                "row {}, column {}: the value is not finite",
                row + 1,
                col + 1
            ),
            TabularError::OutOfRange {
                row,
                col,
                value,
                levels,
            } => write!(
                f,
                "row {}, column {}: {value} lies outside [0, {levels}], the logit transform's range",
                row + 1,
                col + 1
            ),
            TabularError::BadConfig(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TabularError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TabularError::File(e) => Some(e),
            _ => None,
        }
    }
}

impl From<FlowError> for TabularError {
    fn from(e: FlowError) -> Self {
        TabularError::File(e)
    }
}

/// The UCI optical digits: images and their classes.
#[derive(Clone, Debug)]
pub struct Digits {
    /// `1797 × 64` pixels in `0..=16` (row-major 8 × 8 images).
    pub pixels: Tensor<f64>,
    /// The class `0..=9` of each image.
    pub labels: Vec<u8>,
}

/// Decompresses and parses the embedded digits ([`DIGITS_CSV_GZ`]).
///
/// Errors: [`TabularError::File`] with a [`FlowError::BadFile`] if the embedded bytes are
/// not the expected gzip CSV of 65 integer columns (they are checked, not assumed).
pub fn digits() -> Result<Digits, TabularError> {
    let bad = |reason: String| {
        TabularError::File(FlowError::BadFile {
            path: "<embedded digits.csv.gz>".into(),
            reason,
        })
    };
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("cannot decompress: {e}")))?;
    let mut pixels = Vec::with_capacity(1797 * 64);
    let mut labels = Vec::with_capacity(1797);
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let fields: Vec<u8> = line
            .split(',')
            .map(|f| f.trim().parse::<u8>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if fields.len() != 65 || fields[..64].iter().any(|&v| v > 16) || fields[64] > 9 {
            return Err(bad(format!(
                "line {} is not 64 pixels in 0..=16 and a label in 0..=9",
                i + 1
            )));
        }
        pixels.extend(fields[..64].iter().map(|&v| v as f64));
        labels.push(fields[64]);
    }
    Ok(Digits {
        pixels: Tensor::from_vec(labels.len(), 64, pixels),
        labels,
    })
}

/// A train / validation / test split of the rows of a data set.
#[derive(Clone, Debug)]
pub struct Split {
    /// Training rows.
    pub train: Tensor<f64>,
    /// Validation rows (model selection).
    pub valid: Tensor<f64>,
    /// Test rows (reported once, at the end).
    pub test: Tensor<f64>,
    /// The original row index of each row of `train`, `valid` and `test`, in order.
    pub indices: [Vec<usize>; 3],
}

/// Splits the rows of `x` at random but reproducibly: a Fisher–Yates permutation drawn from
/// `Pcg64::seed_from_u64(seed)`; the first `round(test·n)` permuted rows are the test split,
/// the next `round(valid·n)` the validation split, the rest training.
///
/// Errors: [`TabularError::BadConfig`] unless `valid, test ≥ 0` and `valid + test < 1`;
/// [`TabularError::TooFewRows`] if a part with a positive fraction would be empty or fewer
/// than two rows remain for training.
pub fn split(x: &Tensor<f64>, valid: f64, test: f64, seed: u64) -> Result<Split, TabularError> {
    if !(valid >= 0.0 && test >= 0.0 && valid + test < 1.0) {
        return Err(TabularError::BadConfig(format!(
            "split fractions must be ≥ 0 with a sum below 1, got validation {valid} and test {test}"
        )));
    }
    let n = x.rows();
    let n_test = (test * n as f64).round() as usize;
    let n_valid = (valid * n as f64).round() as usize;
    let needed = 2 + usize::from(valid > 0.0).max(n_valid) + usize::from(test > 0.0).max(n_test);
    if (test > 0.0 && n_test == 0) || (valid > 0.0 && n_valid == 0) || n < needed {
        return Err(TabularError::TooFewRows { rows: n, needed });
    }
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    for i in (1..n).rev() {
        perm.swap(i, rng.random_range(0..=i));
    }
    let test_idx = perm[..n_test].to_vec();
    let valid_idx = perm[n_test..n_test + n_valid].to_vec();
    let train_idx = perm[n_test + n_valid..].to_vec();
    Ok(Split {
        train: take_rows(x, &train_idx),
        valid: take_rows(x, &valid_idx),
        test: take_rows(x, &test_idx),
        indices: [train_idx, valid_idx, test_idx],
    })
}

/// The rows `idx` of `x`, in that order.
pub fn take_rows(x: &Tensor<f64>, idx: &[usize]) -> Tensor<f64> {
    let mut out = Vec::with_capacity(idx.len() * x.cols());
    for &i in idx {
        out.extend_from_slice(x.row(i));
    }
    Tensor::from_vec(idx.len(), x.cols(), out)
}

/// A negative log-likelihood: the mean over rows of `−log p(x)`, in nats and in bits per
/// dimension (`nats / (d · ln 2)`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nll {
    /// Mean negative log-likelihood per row, in nats.
    pub nats: f64,
    /// The same per dimension, in bits.
    pub bits_per_dim: f64,
    /// Standard error of the mean in nats (sample std / √n).
    pub std_err: f64,
}

impl Nll {
    /// The NLL of per-row log-densities `log_probs` of `dim`-dimensional data.
    pub fn from_log_probs(log_probs: &[f64], dim: usize) -> Nll {
        let n = log_probs.len().max(1) as f64;
        let nats = -log_probs.iter().sum::<f64>() / n;
        let var = log_probs.iter().map(|l| (-l - nats).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        Nll {
            nats,
            bits_per_dim: nats / (dim as f64 * std::f64::consts::LN_2),
            std_err: (var / n).sqrt(),
        }
    }
}

impl fmt::Display for Nll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2} ± {:.2} nats ({:.4} bits/dim)",
            self.nats, self.std_err, self.bits_per_dim
        )
    }
}

/// A grid of grey-scale images, one per row of `x` (`n × (height·width)`, row-major pixels),
/// `cols` images across, each pixel drawn as a `scale × scale` block, `gap` white pixels
/// between images. Values map linearly from `[lo, hi]` (clamped) to white … black, so ink
/// is dark as on paper.
///
/// Errors: [`TabularError::ColumnMismatch`] if `x` does not have `height·width` columns,
/// [`TabularError::BadConfig`] for a zero size, `cols` or `scale`, or `hi ≤ lo`.
#[allow(clippy::too_many_arguments)]
pub fn image_grid(
    x: &Tensor<f64>,
    height: usize,
    width: usize,
    lo: f64,
    hi: f64,
    cols: usize,
    scale: usize,
    gap: usize,
) -> Result<Image, TabularError> {
    if height == 0
        || width == 0
        || cols == 0
        || scale == 0
        || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater)
        || x.rows() == 0
    {
        return Err(TabularError::BadConfig(format!(
            "image grid of {} images {height}×{width}, {cols} across, scale {scale}, values [{lo}, {hi}]: nothing to draw",
            x.rows()
        )));
    }
    if x.cols() != height * width {
        return Err(TabularError::ColumnMismatch {
            expected: height * width,
            found: x.cols(),
        });
    }
    let rows = x.rows().div_ceil(cols);
    let (cw, ch) = (width * scale + gap, height * scale + gap);
    let mut img = Image::filled(cols * cw + gap, rows * ch + gap, [255, 255, 255]);
    for k in 0..x.rows() {
        let (r0, c0) = (gap + (k / cols) * ch, gap + (k % cols) * cw);
        for (p, &v) in x.row(k).iter().enumerate() {
            let v = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
            let v = if v.is_nan() { 0.0 } else { v };
            let g = (255.0 * (1.0 - v)).round() as u8;
            let (pr, pc) = (p / width, p % width);
            for a in 0..scale {
                for b in 0..scale {
                    img.set_pixel(r0 + pr * scale + a, c0 + pc * scale + b, [g, g, g]);
                }
            }
        }
    }
    Ok(img)
}
