//! Dense row-major matrices.

use std::fmt;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::Element;

/// A dense row-major matrix of `rows × cols` elements.
///
/// By convention rows are the batch and columns the features; a scalar is `1 × 1`.
/// Tensors are plain values: the [`Tape`](crate::Tape) records operations on them through
/// [`Var`](crate::Var) handles.
#[derive(Clone, PartialEq)]
pub struct Tensor<E> {
    rows: usize,
    cols: usize,
    data: Vec<E>,
}

impl<E: Element> Tensor<E> {
    /// A tensor from row-major data. Panics if `data.len() != rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<E>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "Tensor::from_vec: {} elements do not fill a {rows}x{cols} matrix",
            data.len()
        );
        Tensor { rows, cols, data }
    }

    /// A tensor from `f64` values (converted to `E`).
    pub fn from_f64s(rows: usize, cols: usize, data: &[f64]) -> Self {
        Self::from_vec(rows, cols, data.iter().map(|&x| E::from_f64(x)).collect())
    }

    /// A tensor whose element `(i, j)` is `f(i, j)`.
    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> E) -> Self {
        let mut data = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for j in 0..cols {
                data.push(f(i, j));
            }
        }
        Tensor { rows, cols, data }
    }

    /// All elements equal to `value`.
    pub fn full(rows: usize, cols: usize, value: E) -> Self {
        Tensor {
            rows,
            cols,
            data: vec![value; rows * cols],
        }
    }

    /// All zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self::full(rows, cols, E::ZERO)
    }

    /// All ones.
    pub fn ones(rows: usize, cols: usize) -> Self {
        Self::full(rows, cols, E::ONE)
    }

    /// The `n × n` identity.
    pub fn eye(n: usize) -> Self {
        Self::from_fn(n, n, |i, j| if i == j { E::ONE } else { E::ZERO })
    }

    /// A `1 × 1` tensor.
    pub fn scalar(value: E) -> Self {
        Self::full(1, 1, value)
    }

    /// Standard-normal entries drawn from `rng` (seed a `rand_pcg::Pcg64` for reproducibility).
    pub fn randn<R: Rng + ?Sized>(rows: usize, cols: usize, rng: &mut R) -> Self {
        Self::from_fn(rows, cols, |_, _| {
            let x: f64 = StandardNormal.sample(rng);
            E::from_f64(x)
        })
    }

    /// Entries uniform on `[lo, hi)` drawn from `rng`.
    pub fn rand_uniform<R: Rng + ?Sized>(
        rows: usize,
        cols: usize,
        lo: E,
        hi: E,
        rng: &mut R,
    ) -> Self {
        let (lo, hi) = (lo.to_f64(), hi.to_f64());
        Self::from_fn(rows, cols, |_, _| E::from_f64(rng.random_range(lo..hi)))
    }

    /// Entries ±1 with equal probability (Rademacher).
    pub fn rademacher<R: Rng + ?Sized>(rows: usize, cols: usize, rng: &mut R) -> Self {
        Self::from_fn(rows, cols, |_, _| {
            if rng.random::<bool>() {
                E::ONE
            } else {
                -E::ONE
            }
        })
    }

    /// Number of rows.
    #[inline]
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    #[inline]
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`.
    #[inline]
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Number of elements.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// `true` when the tensor has no elements.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The row-major elements.
    #[inline]
    pub fn as_slice(&self) -> &[E] {
        &self.data
    }

    /// The row-major elements, mutably.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [E] {
        &mut self.data
    }

    /// Consumes the tensor, returning its row-major elements.
    pub fn into_vec(self) -> Vec<E> {
        self.data
    }

    /// Element `(i, j)`.
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> E {
        assert!(
            i < self.rows && j < self.cols,
            "Tensor::get: ({i}, {j}) out of {}x{}",
            self.rows,
            self.cols
        );
        self.data[i * self.cols + j]
    }

    /// Sets element `(i, j)`.
    #[inline]
    pub fn set(&mut self, i: usize, j: usize, v: E) {
        assert!(
            i < self.rows && j < self.cols,
            "Tensor::set: ({i}, {j}) out of {}x{}",
            self.rows,
            self.cols
        );
        self.data[i * self.cols + j] = v;
    }

    /// The single element of a `1 × 1` tensor. Panics otherwise.
    pub fn item(&self) -> E {
        assert_eq!(
            self.shape(),
            (1, 1),
            "Tensor::item: tensor is {}x{}, not 1x1",
            self.rows,
            self.cols
        );
        self.data[0]
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[E] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Elementwise map into a new tensor.
    pub fn map(&self, f: impl Fn(E) -> E) -> Self {
        Tensor {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }

    /// Elementwise combination of two tensors of equal shape.
    pub fn zip_map(&self, other: &Self, f: impl Fn(E, E) -> E) -> Self {
        assert_eq!(
            self.shape(),
            other.shape(),
            "Tensor::zip_map: shapes differ"
        );
        Tensor {
            rows: self.rows,
            cols: self.cols,
            data: self
                .data
                .iter()
                .zip(&other.data)
                .map(|(&a, &b)| f(a, b))
                .collect(),
        }
    }

    /// Converts every element to another precision.
    pub fn cast<F: Element>(&self) -> Tensor<F> {
        Tensor {
            rows: self.rows,
            cols: self.cols,
            data: self.data.iter().map(|&x| F::from_f64(x.to_f64())).collect(),
        }
    }

    /// The transpose, as a new tensor.
    pub fn t(&self) -> Self {
        Self::from_fn(self.cols, self.rows, |i, j| self.data[j * self.cols + i])
    }

    /// Matrix product `self · other`.
    pub fn matmul(&self, other: &Self) -> Self {
        let mut out = Tensor::zeros(self.rows, other.cols);
        matmul_into(self, false, other, false, &mut out, E::ZERO);
        out
    }

    /// `self += a * x` (shapes must match).
    pub fn axpy(&mut self, a: E, x: &Self) {
        assert_eq!(self.shape(), x.shape(), "Tensor::axpy: shapes differ");
        for (s, &v) in self.data.iter_mut().zip(&x.data) {
            *s += a * v;
        }
    }

    /// `self *= a`.
    pub fn scale(&mut self, a: E) {
        for s in &mut self.data {
            *s *= a;
        }
    }

    /// Sets every element to `v`.
    pub fn fill(&mut self, v: E) {
        self.data.fill(v);
    }

    /// Copies `src` into `self` (shapes must match).
    pub fn copy_from(&mut self, src: &Self) {
        assert_eq!(
            self.shape(),
            src.shape(),
            "Tensor::copy_from: shapes differ"
        );
        self.data.copy_from_slice(&src.data);
    }

    /// Sum of all elements.
    pub fn sum(&self) -> E {
        self.data.iter().copied().sum()
    }

    /// Frobenius inner product `Σ self_ij other_ij`.
    pub fn dot(&self, other: &Self) -> E {
        assert_eq!(self.shape(), other.shape(), "Tensor::dot: shapes differ");
        self.data
            .iter()
            .zip(&other.data)
            .map(|(&a, &b)| a * b)
            .sum()
    }

    /// Frobenius norm.
    pub fn norm(&self) -> E {
        self.dot(self).sqrt()
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> E {
        self.data.iter().fold(E::ZERO, |m, &x| m.max(x.abs()))
    }

    /// `true` if no element is NaN or infinite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|x| x.is_finite())
    }

    /// `(rows, cols)` reinterpretation of the same data. Panics if the size differs.
    pub fn reshape(mut self, rows: usize, cols: usize) -> Self {
        assert_eq!(
            rows * cols,
            self.data.len(),
            "Tensor::reshape: {}x{} -> {rows}x{cols}",
            self.rows,
            self.cols
        );
        self.rows = rows;
        self.cols = cols;
        self
    }

    /// Largest elementwise difference `|self - other|`.
    pub fn max_abs_diff(&self, other: &Self) -> E {
        assert_eq!(
            self.shape(),
            other.shape(),
            "Tensor::max_abs_diff: shapes differ"
        );
        self.data
            .iter()
            .zip(&other.data)
            .fold(E::ZERO, |m, (&a, &b)| m.max((a - b).abs()))
    }

    pub(crate) fn from_parts(rows: usize, cols: usize, data: Vec<E>) -> Self {
        debug_assert_eq!(data.len(), rows * cols);
        Tensor { rows, cols, data }
    }
}

/// `out = op(a) · op(b) + beta · out`, where `op` transposes when its flag is set.
pub(crate) fn matmul_into<E: Element>(
    a: &Tensor<E>,
    ta: bool,
    b: &Tensor<E>,
    tb: bool,
    out: &mut Tensor<E>,
    beta: E,
) {
    let (m, k) = if ta {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (k2, n) = if tb {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
    assert_eq!(
        k, k2,
        "matmul: inner dimensions differ ({m}x{k} · {k2}x{n})"
    );
    assert_eq!(
        out.shape(),
        (m, n),
        "matmul: output is {}x{}, expected {m}x{n}",
        out.rows,
        out.cols
    );
    let (rsa, csa) = if ta {
        (1, a.cols as isize)
    } else {
        (a.cols as isize, 1)
    };
    let (rsb, csb) = if tb {
        (1, b.cols as isize)
    } else {
        (b.cols as isize, 1)
    };
    if k == 0 {
        if beta == E::ZERO {
            out.fill(E::ZERO);
        } else {
            out.scale(beta);
        }
        return;
    }
    E::gemm(
        m,
        k,
        n,
        E::ONE,
        &a.data,
        rsa,
        csa,
        &b.data,
        rsb,
        csb,
        beta,
        &mut out.data,
        n as isize,
        1,
    );
}

impl<E: Element> fmt::Debug for Tensor<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Tensor<{}> {}x{} [", E::NAME, self.rows, self.cols)?;
        let show = self.rows.min(8);
        for i in 0..show {
            let row = &self.data[i * self.cols..(i + 1) * self.cols];
            let shown: Vec<String> = row.iter().take(8).map(|x| format!("{x:.6}")).collect();
            writeln!(
                f,
                "  [{}{}]",
                shown.join(", "),
                if self.cols > 8 { ", ..." } else { "" }
            )?;
        }
        if self.rows > show {
            writeln!(f, "  ...")?;
        }
        write!(f, "]")
    }
}
