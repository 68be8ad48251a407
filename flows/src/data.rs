//! Data: the 2-D toy distributions of the FFJORD experiments and loaders for tabular data.
//!
//! The toys (Grathwohl et al., 2019, Figure 2 and appendix; most go back to earlier density
//! estimation work) each return an `n × 2` tensor of samples drawn with the given rng, so a
//! seeded `rand_pcg::Pcg64` gives the same batch every time. Their scale roughly fills
//! `[−4, 4]²`, the square the FFJORD figures show.
//!
//! ```
//! use flows::data;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let x: autodiff::Tensor<f32> = data::toy("8gaussians", 256, &mut rng).unwrap();
//! assert_eq!(x.shape(), (256, 2));
//! assert!(data::toy::<f64, _>("nope", 8, &mut rng).is_err());
//! ```

use std::f64::consts::{FRAC_1_SQRT_2, PI};
use std::path::Path;

use autodiff::{Element, Tensor};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::FlowError;

/// The names [`toy`] accepts.
pub const TOY_NAMES: [&str; 8] = [
    "8gaussians",
    "2spirals",
    "checkerboard",
    "moons",
    "pinwheel",
    "swissroll",
    "circles",
    "rings",
];

/// Samples `n` points of the toy distribution `name` (one of [`TOY_NAMES`]).
pub fn toy<E: Element, R: Rng + ?Sized>(
    name: &str,
    n: usize,
    rng: &mut R,
) -> Result<Tensor<E>, FlowError> {
    Ok(match name {
        "8gaussians" => eight_gaussians(n, rng),
        "2spirals" => two_spirals(n, rng),
        "checkerboard" => checkerboard(n, rng),
        "moons" => moons(n, rng),
        "pinwheel" => pinwheel(n, rng),
        "swissroll" => swissroll(n, rng),
        "circles" => circles(n, rng),
        "rings" => rings(n, rng),
        _ => {
            return Err(FlowError::UnknownDataset {
                name: name.to_string(),
            })
        }
    })
}

fn normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    StandardNormal.sample(rng)
}

/// Builds an `n × 2` tensor from a point sampler.
fn points<E: Element, R: Rng + ?Sized>(
    n: usize,
    rng: &mut R,
    mut f: impl FnMut(&mut R) -> (f64, f64),
) -> Tensor<E> {
    let mut data = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let (x, y) = f(rng);
        data.push(E::from_f64(x));
        data.push(E::from_f64(y));
    }
    Tensor::from_vec(n, 2, data)
}

/// A mixture of eight Gaussians: centres `4·(cos kπ/4, sin kπ/4)`, `k = 0..8`, chosen
/// uniformly, plus isotropic N(0, 0.5²) noise; the whole set is then divided by 1.414
/// (so the centres lie on a circle of radius ≈ 2.83 and the noise has σ ≈ 0.35).
pub fn eight_gaussians<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    const C: [(f64, f64); 8] = [
        (1.0, 0.0),
        (FRAC_1_SQRT_2, FRAC_1_SQRT_2),
        (0.0, 1.0),
        (-FRAC_1_SQRT_2, FRAC_1_SQRT_2),
        (-1.0, 0.0),
        (-FRAC_1_SQRT_2, -FRAC_1_SQRT_2),
        (0.0, -1.0),
        (FRAC_1_SQRT_2, -FRAC_1_SQRT_2),
    ];
    points(n, rng, |rng| {
        let (cx, cy) = C[rng.random_range(0..8)];
        let x = 4.0 * cx + 0.5 * normal(rng);
        let y = 4.0 * cy + 0.5 * normal(rng);
        (x / 1.414, y / 1.414)
    })
}

/// Two interleaved spirals. Along an arm the angle is `θ = 3π√u` (`u ~ U(0,1)`, so points
/// are uniform in arc area) and the point is `(−θ cos θ, θ sin θ)` plus a U(0, 0.5) jitter per
/// coordinate; half the points are mirrored through the origin to form the second arm. The
/// set is scaled by 1/3 and gets N(0, 0.1²) noise.
pub fn two_spirals<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    points(n, rng, |rng| {
        let theta = 3.0 * PI * rng.random::<f64>().sqrt();
        let mut x = -theta * theta.cos() + 0.5 * rng.random::<f64>();
        let mut y = theta * theta.sin() + 0.5 * rng.random::<f64>();
        if rng.random::<bool>() {
            x = -x;
            y = -y;
        }
        (x / 3.0 + 0.1 * normal(rng), y / 3.0 + 0.1 * normal(rng))
    })
}

/// A checkerboard: `[−4, 4]²` split into a 4 × 4 board of 2 × 2 squares, points uniform on
/// the 8 squares whose (column + row) index is even.
pub fn checkerboard<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    points(n, rng, |rng| {
        // In units of one square: column in {−2, −1, 0, 1}, then a row of matching parity.
        let u = rng.random_range(-2.0..2.0f64);
        let col = u.floor() as i64;
        let row = 2 * rng.random_range(-1..1i64) + col.rem_euclid(2);
        let v = row as f64 + rng.random::<f64>();
        (2.0 * u, 2.0 * v)
    })
}

/// Two interleaving half circles: the upper one `(cos θ, sin θ)`, the lower one
/// `(1 − cos θ, ½ − sin θ)`, `θ ~ U(0, π)`, with N(0, 0.1²) noise; mapped by
/// `x ↦ 2x − (1, 0.2)` to centre the pair.
pub fn moons<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    points(n, rng, |rng| {
        let theta = rng.random_range(0.0..PI);
        let (x, y) = if rng.random::<bool>() {
            (theta.cos(), theta.sin())
        } else {
            (1.0 - theta.cos(), 0.5 - theta.sin())
        };
        let x = x + 0.1 * normal(rng);
        let y = y + 0.1 * normal(rng);
        (2.0 * x - 1.0, 2.0 * y - 0.2)
    })
}

/// A pinwheel of five arms. For arm `k` a point starts at `(r, s)` with `r ~ N(1, 0.3²)`
/// (radial) and `s ~ N(0, 0.1²)` (tangential) and is rotated by `2πk/5 + 0.25·eʳ` — the twist
/// grows with the radius — then scaled by 2.
pub fn pinwheel<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    points(n, rng, |rng| {
        let k = rng.random_range(0..5) as f64;
        let r = 1.0 + 0.3 * normal(rng);
        let s = 0.1 * normal(rng);
        let a = 2.0 * PI * k / 5.0 + 0.25 * r.exp();
        let (sa, ca) = a.sin_cos();
        (2.0 * (ca * r - sa * s), 2.0 * (sa * r + ca * s))
    })
}

/// A 2-D swiss roll: `t ~ U(1.5π, 4.5π)`, point `(t cos t, t sin t)` plus N(0, 1) noise,
/// scaled by 1/5.
pub fn swissroll<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    points(n, rng, |rng| {
        let t = 1.5 * PI * (1.0 + 2.0 * rng.random::<f64>());
        let x = t * t.cos() + normal(rng);
        let y = t * t.sin() + normal(rng);
        (x / 5.0, y / 5.0)
    })
}

/// Two concentric circles of radii 3 and 1.5 (equally likely), uniform angle, N(0, 0.08²)
/// noise before scaling by 3 (so σ = 0.24 in the output).
pub fn circles<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    points(n, rng, |rng| {
        let r = if rng.random::<bool>() { 1.0 } else { 0.5 };
        let theta = rng.random_range(0.0..2.0 * PI);
        let x = r * theta.cos() + 0.08 * normal(rng);
        let y = r * theta.sin() + 0.08 * normal(rng);
        (3.0 * x, 3.0 * y)
    })
}

/// Four concentric rings of radii 0.75, 1.5, 2.25 and 3 (equally likely), uniform angle,
/// N(0, 0.08²) noise.
pub fn rings<E: Element, R: Rng + ?Sized>(n: usize, rng: &mut R) -> Tensor<E> {
    points(n, rng, |rng| {
        let r = 0.75 * (1 + rng.random_range(0..4)) as f64;
        let theta = rng.random_range(0.0..2.0 * PI);
        (
            r * theta.cos() + 0.08 * normal(rng),
            r * theta.sin() + 0.08 * normal(rng),
        )
    })
}

// ------------------------------------------------------------------------------ tabular

/// Column means and standard deviations of `x` (population std, floored at 1e-12).
pub fn column_stats<E: Element>(x: &Tensor<E>) -> (Vec<f64>, Vec<f64>) {
    let (r, c) = x.shape();
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for i in 0..r {
        for (m, &v) in mean.iter_mut().zip(x.row(i)) {
            *m += v.to_f64();
        }
    }
    let n = r.max(1) as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    for i in 0..r {
        for ((s, &v), m) in var.iter_mut().zip(x.row(i)).zip(&mean) {
            *s += (v.to_f64() - m).powi(2);
        }
    }
    let std = var.iter().map(|s| (s / n).sqrt().max(1e-12)).collect();
    (mean, std)
}

/// `x` with every column shifted to mean 0 and scaled to standard deviation 1, with the
/// means and standard deviations used (the usual preprocessing of tabular density data).
pub fn standardize<E: Element>(x: &Tensor<E>) -> (Tensor<E>, Vec<f64>, Vec<f64>) {
    let (mean, std) = column_stats(x);
    let out = Tensor::from_fn(x.rows(), x.cols(), |i, j| {
        E::from_f64((x.get(i, j).to_f64() - mean[j]) / std[j])
    });
    (out, mean, std)
}

/// Reads a numeric, comma-separated file into an `rows × cols` tensor.
///
/// A leading UTF-8 byte-order mark (U+FEFF, which spreadsheet programs such as Excel write at
/// the start of "CSV UTF-8" files) is ignored: it is invisible in an editor and would
/// otherwise make the first field unparsable. Blank lines are skipped; with `has_header` the
/// first non-blank line is skipped too. Fields are trimmed and parsed as `f64` (`nan` and
/// `inf` are accepted, as Rust parses them).
/// Errors: [`FlowError::Io`] if the file cannot be read, [`FlowError::Parse`] with the line
/// and column (both 1-based) of a value that is not a number, [`FlowError::BadFile`] if the
/// rows have different lengths or there is no data.
pub fn load_csv(path: impl AsRef<Path>, has_header: bool) -> Result<Tensor<f64>, FlowError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| FlowError::io(path, e))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut data = Vec::new();
    let mut cols = None;
    let mut rows = 0;
    let mut header_pending = has_header;
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if header_pending {
            header_pending = false;
            continue;
        }
        let mut count = 0;
        for (col, field) in line.split(',').enumerate() {
            let field = field.trim();
            let v: f64 = field.parse().map_err(|_| FlowError::Parse {
                path: path.to_path_buf(),
                line: lineno + 1,
                column: col + 1,
                text: field.to_string(),
            })?;
            data.push(v);
            count += 1;
        }
        match cols {
            None => cols = Some(count),
            Some(c) if c != count => {
                return Err(FlowError::BadFile {
                    path: path.to_path_buf(),
                    reason: format!(
                        "line {} has {count} fields, expected {c} like the first data line",
                        lineno + 1
                    ),
                })
            }
            Some(_) => {}
        }
        rows += 1;
    }
    match cols {
        Some(c) => Ok(Tensor::from_vec(rows, c, data)),
        None => Err(FlowError::BadFile {
            path: path.to_path_buf(),
            reason: "no data rows".into(),
        }),
    }
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a NumPy `.npy` file (format versions 1, 2 and 3) holding little-endian `f4` or `f8`
/// values in C order, of rank 1 (`[n]` → an `n × 1` column: `n` samples of one feature) or
/// rank 2 (`[r, c]` → `r × c`). Values are returned as `f64`; `cast` for `f32`.
///
/// Errors: [`FlowError::Io`], or [`FlowError::BadFile`] naming what is unsupported or
/// inconsistent (magic string, header, dtype, Fortran order, rank, or a shape that does not
/// match the data length — including one too large to address, which is checked before
/// anything is allocated).
pub fn load_npy(path: impl AsRef<Path>) -> Result<Tensor<f64>, FlowError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
    parse_npy(&bytes).map_err(|reason| FlowError::BadFile {
        path: path.to_path_buf(),
        reason,
    })
}

fn parse_npy(bytes: &[u8]) -> Result<Tensor<f64>, String> {
    if bytes.len() < 10 || &bytes[..6] != NPY_MAGIC {
        return Err("not a .npy file (missing \\x93NUMPY magic)".into());
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated header".into());
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&e| e <= bytes.len())
        .ok_or("header length runs past the end of the file")?;
    let header = std::str::from_utf8(&bytes[start..end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let fortran = dict_value(header, "fortran_order").ok_or("header has no 'fortran_order'")?;
    let shape = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let width = match descr {
        "<f8" => 8,
        "<f4" => 4,
        ">f8" | ">f4" => return Err(format!("big-endian dtype '{descr}' is not supported")),
        d => {
            return Err(format!(
                "dtype '{d}' is not supported (only little-endian '<f4' and '<f8')"
            ))
        }
    };
    match fortran {
        "False" => {}
        "True" => return Err("Fortran-ordered arrays are not supported (save in C order)".into()),
        v => return Err(format!("bad fortran_order value '{v}'")),
    }
    let dims = parse_shape(shape)?;
    let (rows, cols) = match dims.as_slice() {
        [n] => (*n, 1),
        [r, c] => (*r, *c),
        d => {
            return Err(format!(
                "array has shape {d:?}; only 1-D and 2-D arrays are supported"
            ))
        }
    };
    // The shape comes from the file: a crafted header such as (2**61, 1) must not overflow
    // the byte count (which could then wrap to the actual length and pass the check).
    let body = &bytes[end..];
    match rows.checked_mul(cols).and_then(|n| n.checked_mul(width)) {
        Some(needed) if needed == body.len() => {}
        Some(needed) => {
            return Err(format!(
                "shape {dims:?} of '{descr}' needs {needed} data bytes, the file has {}",
                body.len()
            ))
        }
        None => {
            return Err(format!(
            "shape {dims:?} of '{descr}' needs more data bytes than fit in memory, the file has {}",
            body.len()
        ))
        }
    }
    let data = if width == 8 {
        body.chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8-byte chunk")))
            .collect()
    } else {
        body.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4-byte chunk")) as f64)
            .collect()
    };
    Ok(Tensor::from_vec(rows, cols, data))
}

/// The raw text of `key`'s value in a Python dict literal such as the `.npy` header
/// `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }`.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat_single = format!("'{key}'");
    let pat_double = format!("\"{key}\"");
    let at = header
        .find(&pat_single)
        .map(|i| i + pat_single.len())
        .or_else(|| header.find(&pat_double).map(|i| i + pat_double.len()))?;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if let Some(q) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
        rest[1..].find(q)? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("bad shape '{s}'"))?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad shape entry '{p}' in '{s}'"))
        })
        .collect()
}

/// Writes `x` as a NumPy `.npy` file (format 1.0, C order, shape `(rows, cols)`, dtype `<f4`
/// for `f32` and `<f8` for `f64`), readable by `numpy.load` and [`load_npy`].
///
/// The file is replaced atomically ([`crate::io::write_atomic`]): on failure the error is a
/// [`FlowError::Io`] naming `path` and a previous file at `path` is left intact.
pub fn save_npy<E: Element>(path: impl AsRef<Path>, x: &Tensor<E>) -> Result<(), FlowError> {
    let path = path.as_ref();
    let wide = std::mem::size_of::<E>() == 8;
    let descr = if wide { "<f8" } else { "<f4" };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}), }}",
        x.rows(),
        x.cols()
    );
    // Pad with spaces and a final newline so magic + version + length + header is a multiple
    // of 64 bytes (the alignment NumPy writes).
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + x.len() * if wide { 8 } else { 4 });
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for &v in x.as_slice() {
        if wide {
            out.extend_from_slice(&v.to_f64().to_le_bytes());
        } else {
            out.extend_from_slice(&(v.to_f64() as f32).to_le_bytes());
        }
    }
    crate::io::write_atomic(path, &out)
}
