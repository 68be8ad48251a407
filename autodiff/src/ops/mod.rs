//! The primitive operations: each one's forward, VJP and JVP.
//!
//! The set is small and closed. Every derivative rule is written with tape operations, so the
//! rules themselves are recorded and can be differentiated again. The binary ops broadcast a
//! row, a column or a scalar inside their kernels; their VJPs sum cotangents back to each
//! operand's shape through one helper (`arith::unbroadcast`). `tanh_grad(g, y) = g ⊙ (1 − y²)`
//! is a fused primitive because tanh networks apply it in every backward pass (one memory pass
//! instead of four); its own rules close over the set.

mod arith;
mod batched;
mod linalg;
mod shape;
mod unary;

use smallvec::SmallVec;

pub use unary::Fun;

use crate::{Element, Tensor, Var};

/// Cotangents for a primitive's inputs (`None` = zero or not needed).
pub(crate) type Grads<'t, E> = SmallVec<[Option<Var<'t, E>>; 2]>;

/// A primitive operation with its parameters.
#[derive(Clone, Debug)]
pub(crate) enum Prim<E> {
    Add,
    Sub,
    Mul,
    Div,
    Affine { mul: E, add: E },
    TanhGrad,
    Map(Fun<E>),
    MatMul { ta: bool, tb: bool },
    Linear,
    Prod3(E),
    Transpose,
    SumTo(usize, usize),
    BroadcastTo(usize, usize),
    SliceCols(usize, usize),
    PadCols { start: usize, total: usize },
    ConcatCols,
    TileRows(usize),
    SumRowBlocks(usize),
}

impl<E: Element> Prim<E> {
    /// A name for panics and debugging.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Prim::Add => "add",
            Prim::Sub => "sub",
            Prim::Mul => "mul",
            Prim::Div => "div",
            Prim::Affine { .. } => "affine",
            Prim::TanhGrad => "tanh_grad",
            Prim::Map(f) => f.name(),
            Prim::MatMul { .. } => "matmul",
            Prim::Linear => "linear",
            Prim::Prod3(_) => "prod3",
            Prim::Transpose => "transpose",
            Prim::SumTo(..) => "sum_to",
            Prim::BroadcastTo(..) => "broadcast_to",
            Prim::SliceCols(..) => "slice_cols",
            Prim::PadCols { .. } => "pad_cols",
            Prim::ConcatCols => "concat_cols",
            Prim::TileRows(_) => "tile_rows",
            Prim::SumRowBlocks(_) => "sum_row_blocks",
        }
    }

    /// Checks the input shapes (panicking with the op's name and the shapes) and returns the
    /// output shape.
    pub(crate) fn out_shape(&self, x: &[&Tensor<E>]) -> (usize, usize) {
        match self {
            Prim::Add | Prim::Sub | Prim::Mul | Prim::Div => arith::binary_shape(self.name(), x),
            Prim::Affine { .. } | Prim::Map(_) => x[0].shape(),
            Prim::TanhGrad => unary::tanh_grad_shape(x),
            Prim::MatMul { ta, tb } => linalg::matmul_shape(x, *ta, *tb),
            Prim::Linear => linalg::linear_shape(x),
            Prim::Prod3(_) => arith::prod3_shape(x),
            Prim::Transpose => (x[0].cols(), x[0].rows()),
            Prim::SumTo(r, c) => shape::sum_to_shape(x[0], *r, *c),
            Prim::BroadcastTo(r, c) => shape::broadcast_to_shape(x[0], *r, *c),
            Prim::SliceCols(a, b) => shape::slice_cols_shape(x[0], *a, *b),
            Prim::PadCols { start, total } => shape::pad_cols_shape(x[0], *start, *total),
            Prim::ConcatCols => shape::concat_cols_shape(x),
            Prim::TileRows(k) => shape::tile_rows_shape(x[0], *k),
            Prim::SumRowBlocks(k) => shape::sum_row_blocks_shape(x[0], *k),
        }
    }

    /// Writes the output into `out` (whose length is the output size; its contents are stale).
    pub(crate) fn forward(&self, x: &[&Tensor<E>], out: &mut Tensor<E>) {
        // The elementwise loops below are compiled for the CPU's widest kernel path.
        crate::kernels::vectorize(
            #[inline(always)]
            || self.forward_here(x, out),
        )
    }

    #[inline(always)]
    fn forward_here(&self, x: &[&Tensor<E>], out: &mut Tensor<E>) {
        match self {
            Prim::Add => arith::zip(x, out, |a, b| a + b),
            Prim::Sub => arith::zip(x, out, |a, b| a - b),
            Prim::Mul => arith::zip(x, out, |a, b| a * b),
            Prim::Div => arith::zip(x, out, |a, b| a / b),
            Prim::Affine { mul, add } => arith::map(x[0], out, |a| *mul * a + *add),
            Prim::TanhGrad => arith::zip(x, out, |g, y| g * (E::ONE - y * y)),
            Prim::Linear => linalg::linear_forward(x, out),
            Prim::Prod3(k) => arith::prod3(x, *k, out),
            Prim::Map(f) => f.forward(x[0].as_slice(), out.as_mut_slice()),
            Prim::MatMul { ta, tb } => {
                crate::tensor::matmul_into(x[0], *ta, x[1], *tb, out, E::ZERO)
            }
            Prim::Transpose => shape::transpose(x[0], out),
            Prim::SumTo(..) => shape::sum_to(x[0], out),
            Prim::BroadcastTo(..) => shape::broadcast_to(x[0], out),
            Prim::SliceCols(a, _) => shape::slice_cols(x[0], *a, out),
            Prim::PadCols { start, .. } => shape::pad_cols(x[0], *start, out),
            Prim::ConcatCols => shape::concat_cols(x, out),
            Prim::TileRows(_) => shape::tile_rows(x[0], out),
            Prim::SumRowBlocks(_) => shape::sum_row_blocks(x[0], out),
        }
    }

    /// Pulls the output cotangent `g` back to the inputs `x` (output value `y`).
    pub(crate) fn vjp<'t>(
        &self,
        x: &[Var<'t, E>],
        y: Var<'t, E>,
        g: Var<'t, E>,
        needs: &[bool],
    ) -> Grads<'t, E> {
        match self {
            Prim::Add | Prim::Sub | Prim::Mul | Prim::Div | Prim::Affine { .. } => {
                arith::vjp(self, x, y, g, needs)
            }
            Prim::Map(f) => smallvec::smallvec![Some(f.pullback(x[0], y, g))],
            Prim::TanhGrad => unary::tanh_grad_vjp(x, g, needs),
            Prim::Linear => linalg::linear_vjp(x, g, needs),
            Prim::Prod3(k) => arith::prod3_vjp(x, *k, g, needs),
            Prim::MatMul { ta, tb } => linalg::matmul_vjp(x, g, *ta, *tb, needs),
            Prim::Transpose => smallvec::smallvec![Some(g.t())],
            Prim::SumTo(..)
            | Prim::BroadcastTo(..)
            | Prim::SliceCols(..)
            | Prim::PadCols { .. }
            | Prim::ConcatCols
            | Prim::TileRows(_)
            | Prim::SumRowBlocks(_) => shape::vjp(self, x, g, needs),
        }
    }

    /// Pushes input tangents `t` forward to the output's tangent (`None` = zero).
    pub(crate) fn jvp<'t>(
        &self,
        x: &[Var<'t, E>],
        y: Var<'t, E>,
        t: &[Option<Var<'t, E>>],
    ) -> Option<Var<'t, E>> {
        match self {
            Prim::Add | Prim::Sub | Prim::Mul | Prim::Div | Prim::Affine { .. } => {
                arith::jvp(self, x, y, t)
            }
            Prim::Map(f) => t[0].map(|t| f.pullback(x[0], y, t)),
            Prim::TanhGrad => unary::tanh_grad_jvp(x, t),
            Prim::Linear => linalg::linear_jvp(x, t),
            Prim::Prod3(k) => arith::prod3_jvp(x, *k, t),
            Prim::MatMul { ta, tb } => linalg::matmul_jvp(x, t, *ta, *tb),
            Prim::Transpose => t[0].map(|t| t.t()),
            Prim::SumTo(..)
            | Prim::BroadcastTo(..)
            | Prim::SliceCols(..)
            | Prim::PadCols { .. }
            | Prim::ConcatCols
            | Prim::TileRows(_)
            | Prim::SumRowBlocks(_) => shape::jvp(self, x, t),
        }
    }
}

/// Adds two optional tangents (`None` is zero).
pub(crate) fn add_opt<'t, E: Element>(
    a: Option<Var<'t, E>>,
    b: Option<Var<'t, E>>,
) -> Option<Var<'t, E>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, None) => a,
        (None, b) => b,
    }
}
