//! `Var`: a handle to a node on a tape, with the primitive operations as methods and operators.

use std::fmt;
use std::ops::{Add, Div, Mul, Neg, Sub};

use crate::ops::{Fun, Prim};
use crate::{Element, Tape, Tensor};

/// A handle to a value recorded on a [`Tape`]. Cheap to copy (a pointer and two integers);
/// valid until the tape is cleared, or truncated below it. Using a handle after that panics:
/// it carries the generation of its node, checked whenever it is resolved, so it is never
/// silently read as the new node that took over its id.
///
/// Binary operators broadcast a `1 × c` row, an `r × 1` column or a `1 × 1` scalar against the
/// other operand inside the kernel (nothing is materialised; gradients are summed back).
#[derive(Clone, Copy)]
pub struct Var<'t, E: Element> {
    pub(crate) tape: &'t Tape<E>,
    pub(crate) id: u32,
    /// The tape's generation when the node was recorded (see [`Tape::clear`]).
    pub(crate) gen: u32,
}

impl<E: Element> fmt::Debug for Var<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Formatting must not panic, so a stale handle is shown as such.
        match self.tape.try_shape(*self) {
            Some((r, c)) => write!(f, "Var#{}({r}x{c})", self.id),
            None => write!(f, "Var#{}(stale, generation {})", self.id, self.gen),
        }
    }
}

impl<'t, E: Element> Var<'t, E> {
    /// The tape this variable lives on.
    pub fn tape(&self) -> &'t Tape<E> {
        self.tape
    }

    /// Position on the tape (nodes are numbered in execution order).
    pub fn id(&self) -> usize {
        self.id as usize
    }

    /// `(rows, cols)`.
    pub fn shape(&self) -> (usize, usize) {
        self.tape.with_var(*self, "Var::shape", |n| n.value.shape())
    }

    /// A copy of the value.
    pub fn value(&self) -> Tensor<E> {
        self.tape.with_var(*self, "Var::value", |n| n.value.clone())
    }

    /// Runs `f` on the value without copying it. `f` must not record on the tape.
    pub fn with_value<R>(&self, f: impl FnOnce(&Tensor<E>) -> R) -> R {
        self.tape
            .with_var(*self, "Var::with_value", |n| f(&n.value))
    }

    /// The single element of a `1 × 1` value.
    pub fn item(&self) -> E {
        self.with_value(|v| v.item())
    }

    /// Whether gradients flow to this value.
    pub fn requires_grad(&self) -> bool {
        self.tape
            .with_var(*self, "Var::requires_grad", |n| n.requires_grad)
    }

    /// A constant copy of this value: gradients stop here (PyTorch's `detach`).
    pub fn detach(&self) -> Var<'t, E> {
        self.tape.constant(self.value())
    }

    fn prim(self, p: Prim<E>) -> Var<'t, E> {
        self.tape.push_prim(p, &[self])
    }

    fn binary(self, other: Var<'t, E>, p: Prim<E>) -> Var<'t, E> {
        self.tape.push_prim(p, &[self, other])
    }

    // ---- elementwise arithmetic (the binary ones are the operators + − * /)

    /// `self + c`.
    pub fn add_scalar(self, c: E) -> Var<'t, E> {
        self.affine(E::ONE, c)
    }
    /// `c − self`.
    pub fn rsub_scalar(self, c: E) -> Var<'t, E> {
        self.affine(-E::ONE, c)
    }
    /// `c · self`.
    pub fn mul_scalar(self, c: E) -> Var<'t, E> {
        self.affine(c, E::ZERO)
    }
    /// `m · self + c` in one pass.
    pub fn affine(self, m: E, c: E) -> Var<'t, E> {
        self.prim(Prim::Affine { mul: m, add: c })
    }

    // ---- elementwise functions

    /// eˣ.
    pub fn exp(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Exp))
    }
    /// Natural logarithm.
    pub fn log(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Log))
    }
    /// Hyperbolic tangent.
    pub fn tanh(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Tanh))
    }
    /// Logistic sigmoid 1/(1+e⁻ˣ).
    pub fn sigmoid(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Sigmoid))
    }
    /// softplus(x) = ln(1+eˣ), computed without overflow.
    pub fn softplus(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Softplus))
    }
    /// Square root.
    pub fn sqrt(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Sqrt))
    }
    /// Absolute value (derivative sign(x), 0 at 0; NaN at NaN).
    pub fn abs(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Abs))
    }
    /// max(x, 0) (derivative 0 at 0). NaN stays NaN, and so does its derivative.
    pub fn relu(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Relu))
    }
    /// Sine.
    pub fn sin(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Sin))
    }
    /// Cosine.
    pub fn cos(self) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Cos))
    }
    /// xⁿ for an integer constant n.
    pub fn powi(self, n: i32) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Powi(n)))
    }
    /// xᵖ for a real constant p.
    pub fn powf(self, p: E) -> Var<'t, E> {
        self.prim(Prim::Map(Fun::Powf(p)))
    }

    // ---- linear algebra

    /// Matrix product `self · other`.
    pub fn matmul(self, other: Var<'t, E>) -> Var<'t, E> {
        self.mm(other, false, false)
    }
    /// `self · otherᵀ` without forming the transpose.
    pub fn matmul_t(self, other: Var<'t, E>) -> Var<'t, E> {
        self.mm(other, false, true)
    }
    /// `selfᵀ · other` without forming the transpose.
    pub fn t_matmul(self, other: Var<'t, E>) -> Var<'t, E> {
        self.mm(other, true, false)
    }
    /// `op(self) · op(other)` where `op` transposes when its flag is set.
    pub fn mm(self, other: Var<'t, E>, ta: bool, tb: bool) -> Var<'t, E> {
        self.tape.push_prim(Prim::MatMul { ta, tb }, &[self, other])
    }
    /// `self Wᵀ + b` (PyTorch's `F.linear`): `self` is `n × in`, `w` is `out × in`, `b` a
    /// `1 × out` row, in one fused node.
    pub fn linear(self, w: Var<'t, E>, b: Var<'t, E>) -> Var<'t, E> {
        self.tape.push_prim(Prim::Linear, &[self, w, b])
    }
    /// `k · self ⊙ b ⊙ c` (equal shapes) in one pass.
    pub fn prod3(self, b: Var<'t, E>, c: Var<'t, E>, k: E) -> Var<'t, E> {
        self.tape.push_prim(Prim::Prod3(k), &[self, b, c])
    }
    /// Transpose.
    pub fn t(self) -> Var<'t, E> {
        self.prim(Prim::Transpose)
    }

    // ---- reductions and shapes
    //
    // Reductions accept empty axes (a batch of 0 rows, 0 features): a sum over nothing is 0
    // of the reduced shape, so `mean` and `mean_axis` over an empty axis are 0 · (1/0) = NaN,
    // as in PyTorch and NumPy, and `logsumexp` over no columns is ln 0 = −∞. Their VJPs and
    // JVPs are the same ops on the empty shapes.

    /// Sum of all elements (`1 × 1`); 0 for an empty tensor.
    pub fn sum(self) -> Var<'t, E> {
        self.sum_to(1, 1)
    }
    /// Sum along an axis, keeping it as size 1: `axis = 0` sums over rows (→ `1 × c`),
    /// `axis = 1` over columns (→ `r × 1`). Summing over an empty axis gives zeros (`sum_axis(0)`
    /// of a `0 × c` batch is a `1 × c` row of zeros); [`mean_axis`](Var::mean_axis) of it is NaN.
    pub fn sum_axis(self, axis: usize) -> Var<'t, E> {
        let (r, c) = self.shape();
        match axis {
            0 => self.sum_to(1, c),
            1 => self.sum_to(r, 1),
            _ => panic!("sum_axis: axis {axis} out of range for a matrix (0 or 1)"),
        }
    }
    /// Sums down to `(rows, cols)`, each of which must equal this axis or be 1.
    pub fn sum_to(self, rows: usize, cols: usize) -> Var<'t, E> {
        if self.shape() == (rows, cols) {
            return self;
        }
        self.prim(Prim::SumTo(rows, cols))
    }
    /// Repeats a row, a column or a scalar up to `(rows, cols)`.
    pub fn broadcast_to(self, rows: usize, cols: usize) -> Var<'t, E> {
        if self.shape() == (rows, cols) {
            return self;
        }
        self.prim(Prim::BroadcastTo(rows, cols))
    }
    /// Columns `start..end`.
    pub fn slice_cols(self, start: usize, end: usize) -> Var<'t, E> {
        if (start, end) == (0, self.shape().1) {
            return self;
        }
        self.prim(Prim::SliceCols(start, end))
    }
    /// `k` copies stacked by rows (`k·r × c`; PyTorch's `x.repeat(k, 1)`, JAX's
    /// `jnp.tile(x, (k, 1))`).
    pub fn tile_rows(self, k: usize) -> Var<'t, E> {
        if k == 1 {
            return self;
        }
        self.prim(Prim::TileRows(k))
    }
    /// The sum of the `k` row blocks of equal height this value stacks (`k·r × c` → `r × c`),
    /// the adjoint of [`tile_rows`](Var::tile_rows).
    pub fn sum_row_blocks(self, k: usize) -> Var<'t, E> {
        if k == 1 {
            return self;
        }
        self.prim(Prim::SumRowBlocks(k))
    }
    /// Places this value at column `start` of a `rows × total` zero matrix.
    pub fn pad_cols(self, start: usize, total: usize) -> Var<'t, E> {
        if (start, total) == (0, self.shape().1) {
            return self;
        }
        self.prim(Prim::PadCols { start, total })
    }
}

// ---- operators

impl<'t, E: Element> Add for Var<'t, E> {
    type Output = Var<'t, E>;
    fn add(self, rhs: Self) -> Self::Output {
        self.binary(rhs, Prim::Add)
    }
}
impl<'t, E: Element> Sub for Var<'t, E> {
    type Output = Var<'t, E>;
    fn sub(self, rhs: Self) -> Self::Output {
        self.binary(rhs, Prim::Sub)
    }
}
impl<'t, E: Element> Mul for Var<'t, E> {
    type Output = Var<'t, E>;
    fn mul(self, rhs: Self) -> Self::Output {
        self.binary(rhs, Prim::Mul)
    }
}
impl<'t, E: Element> Div for Var<'t, E> {
    type Output = Var<'t, E>;
    fn div(self, rhs: Self) -> Self::Output {
        self.binary(rhs, Prim::Div)
    }
}
impl<'t, E: Element> Neg for Var<'t, E> {
    type Output = Var<'t, E>;
    fn neg(self) -> Self::Output {
        self.affine(-E::ONE, E::ZERO)
    }
}
impl<'t, E: Element> Add<E> for Var<'t, E> {
    type Output = Var<'t, E>;
    fn add(self, rhs: E) -> Self::Output {
        self.add_scalar(rhs)
    }
}
impl<'t, E: Element> Sub<E> for Var<'t, E> {
    type Output = Var<'t, E>;
    fn sub(self, rhs: E) -> Self::Output {
        self.add_scalar(-rhs)
    }
}
impl<'t, E: Element> Mul<E> for Var<'t, E> {
    type Output = Var<'t, E>;
    fn mul(self, rhs: E) -> Self::Output {
        self.mul_scalar(rhs)
    }
}
impl<'t, E: Element> Div<E> for Var<'t, E> {
    type Output = Var<'t, E>;
    fn div(self, rhs: E) -> Self::Output {
        self.mul_scalar(E::ONE / rhs)
    }
}

macro_rules! scalar_lhs {
    ($t:ty) => {
        impl<'t> Add<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn add(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.add_scalar(self)
            }
        }
        impl<'t> Sub<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn sub(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.rsub_scalar(self)
            }
        }
        impl<'t> Mul<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn mul(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.mul_scalar(self)
            }
        }
        impl<'t> Div<Var<'t, $t>> for $t {
            type Output = Var<'t, $t>;
            fn div(self, rhs: Var<'t, $t>) -> Self::Output {
                rhs.powi(-1).mul_scalar(self)
            }
        }
    };
}
scalar_lhs!(f32);
scalar_lhs!(f64);
