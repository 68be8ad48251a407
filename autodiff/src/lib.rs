//! Reverse- and forward-mode automatic differentiation on a flat tape, to any order.
//!
//! # Tour
//!
//! - [`Tensor`]: a dense row-major matrix over [`Element`] (`f32` or `f64`); rows are the
//!   batch, columns the features, a scalar is `1 × 1`.
//! - [`Tape`]: records operations in execution order. [`Tape::var`] makes a differentiable
//!   leaf, [`Tape::constant`] a fixed one; [`Var`] is a `Copy` handle with the operations as
//!   methods and `+ − * /` as operators (with scalars too; rows, columns and scalars broadcast).
//! - Primitives carry their forward, VJP and JVP rules in one place (`ops`), the rules written
//!   with tape operations, so every derivative can be differentiated again.
//! - Transforms in JAX/PyTorch vocabulary: [`Tape::grad`] (values), [`Tape::grad_graph`]
//!   (`create_graph=True`), [`Tape::vjp`], [`Tape::jvp`], [`Tape::hvp`], [`Tape::jacobian`],
//!   and [`Tape::no_grad`]; [`Tape::isolated`] evaluates a function at fresh copies of its
//!   arguments, so derivatives it takes inside are partial ones (no perturbation confusion).
//! - [`CustomOp`]: an operation with its own forward, VJP and JVP — how an ODE solve becomes
//!   one node.
//! - [`testing`]: `check_vjp`, `check_jvp` and `check_grads(order)` against finite differences.
//!
//! # Example
//!
//! ```
//! use autodiff::{Tape, Tensor};
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.var(Tensor::from_f64s(1, 3, &[0.5, -1.0, 2.0]));
//! let y = x.sin().sum();                                   // y = Σ sin xᵢ
//!
//! let g = tape.grad_graph(y, &[x]).unwrap();               // ∇y = cos x, recorded
//! let v = tape.constant(Tensor::from_f64s(1, 3, &[1.0, 0.0, 0.0]));
//! let hv = tape.jvp(&g, &[x], &[v]).unwrap();              // ∇²y · v = −sin x ⊙ v
//! assert!((hv[0].value().get(0, 0) + 0.5f64.sin()).abs() < 1e-12);
//!
//! let [gx]: [_; 1] = tape.grad(y, &[x]).unwrap().try_into().unwrap();
//! assert!((gx.get(0, 1) - (-1.0f64).cos()).abs() < 1e-12);
//! ```

#![warn(missing_docs)]

mod composite;
mod cpu;
mod custom;
mod element;
mod error;
mod isolate;
pub mod kernels;
mod matmul;
mod ops;
mod skinny;
#[cfg(target_arch = "x86_64")]
mod smallgemm;
mod tape;
mod tensor;
pub mod testing;
mod var;

pub use custom::CustomOp;
pub use element::Element;
pub use error::{Error, Result};
pub use isolate::TapeFn;
pub use ops::Fun;
pub use tape::Tape;
pub use tensor::Tensor;
pub use var::Var;
