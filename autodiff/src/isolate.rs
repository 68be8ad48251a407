//! A function evaluated at fresh copies of its arguments: nested derivatives without
//! perturbation confusion.
//!
//! On one tape, a derivative taken *inside* a function with respect to its own arguments is a
//! derivative along the recorded graph: if the arguments depend on each other (a state `z`
//! computed from parameters `θ`, a time `t` that `z` depends on), then `vjp(f, wrt = θ)` follows
//! the path through `z` as well and gives a total derivative where the function meant a
//! partial one. This is the "perturbation confusion" of nested automatic differentiation
//! (Siskind & Pearlmutter 2005). [`Tape::isolated`] removes it: the function runs at fresh
//! leaves holding copies of the arguments, so inside it the arguments are independent inputs,
//! and the result is connected back to the real arguments by one node whose derivative rules
//! are again isolated evaluations (of the function's VJP and JVP), so derivatives of any
//! order stay exact.

use std::cell::RefCell;
use std::rc::Rc;

use crate::{CustomOp, Element, Result, Tape, Tensor, Var};

/// A function of tape variables, as [`Tape::isolated`] takes it: it receives the tape and one
/// fresh variable per argument, and returns its outputs.
pub type TapeFn<E> = Rc<dyn for<'t> Fn(&'t Tape<E>, &[Var<'t, E>]) -> Result<Vec<Var<'t, E>>>>;

impl<E: Element> Tape<E> {
    /// Evaluates `f` at fresh copies of `args` and returns its outputs, differentiable with
    /// respect to `args` to any order.
    ///
    /// Inside `f` the arguments are independent leaves, so a derivative that `f` takes of its
    /// own outputs with respect to some of its arguments (an exact divergence, the VJP of an
    /// adjoint system, a JVP along `t`) is the partial derivative of `f`, whatever the
    /// arguments depend on outside. Outside, the outputs depend on `args` through `f`: the
    /// first-order VJP reuses the graph `f` recorded; derivatives that must themselves be
    /// differentiable evaluate `f` once more, isolated again.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use autodiff::{Tape, TapeFn, Tensor};
    ///
    /// let tape = Tape::<f64>::new();
    /// let th = tape.var(Tensor::scalar(3.0));
    /// let z = th * th; // z depends on θ
    /// // f(z, θ) = ∂(z θ)/∂θ: the partial derivative is z, not the total z + 2θ².
    /// let f: TapeFn<f64> = Rc::new(|tape, a| tape.vjp(&[a[0] * a[1]], &[tape.scalar(1.0)], &a[1..]));
    /// let out = tape.isolated(&f, &[z, th]).unwrap();
    /// assert_eq!(out[0].item(), 9.0);
    /// let g = tape.grad(out[0], &[th]).unwrap(); // d z / dθ = 2θ
    /// assert_eq!(g[0].item(), 6.0);
    /// ```
    pub fn isolated<'t>(&'t self, f: &TapeFn<E>, args: &[Var<'t, E>]) -> Result<Vec<Var<'t, E>>> {
        let leaves: Vec<Var<'t, E>> = args.iter().map(|a| self.var(a.value())).collect();
        let outs = f(self, &leaves)?;
        if !args.iter().any(|a| a.requires_grad()) {
            // Nothing outside can be differentiated through this evaluation: the outputs on the
            // fresh leaves are the result.
            return Ok(outs);
        }
        let op = Rc::new(Isolated {
            f: f.clone(),
            leaves: leaves.iter().map(|v| (v.id, v.gen)).collect(),
            outs: outs.iter().map(|v| (v.id, v.gen)).collect(),
            values: RefCell::new(Some(outs.iter().map(|v| v.value()).collect())),
        });
        self.custom(op, args)
    }
}

/// The node that connects an isolated evaluation to its arguments.
struct Isolated<E: Element> {
    f: TapeFn<E>,
    /// The fresh leaves `f` was evaluated at and the outputs it returned (node ids and
    /// generations, so a stale node is caught like a stale `Var`).
    leaves: Vec<(u32, u32)>,
    outs: Vec<(u32, u32)>,
    /// The output values, handed to the tape once by `forward`.
    values: RefCell<Option<Vec<Tensor<E>>>>,
}

impl<E: Element> CustomOp<E> for Isolated<E> {
    fn name(&self) -> &str {
        "isolated"
    }

    fn forward(&self, _inputs: &[&Tensor<E>]) -> Result<Vec<Tensor<E>>> {
        Ok(self
            .values
            .borrow_mut()
            .take()
            .expect("isolated: forward runs once, when the node is recorded"))
    }

    fn vjp<'t>(
        &self,
        x: &[Var<'t, E>],
        _y: &[Var<'t, E>],
        g: &[Option<Var<'t, E>>],
        needs: &[bool],
    ) -> Result<Vec<Option<Var<'t, E>>>> {
        let tape = x[0].tape();
        let sel: Vec<usize> = (0..g.len()).filter(|&k| g[k].is_some()).collect();
        let want: Vec<usize> = (0..x.len()).filter(|&i| needs[i]).collect();
        let mut res = vec![None; x.len()];
        if sel.is_empty() || want.is_empty() {
            return Ok(res);
        }
        let cts: Vec<Var<'t, E>> = sel.iter().map(|&k| g[k].expect("selected")).collect();
        if !tape.creates_graph() {
            // First order only: pull the cotangents back through the graph `f` recorded.
            let outs: Vec<Var<'t, E>> = sel.iter().map(|&k| var_at(tape, self.outs[k])).collect();
            let leaves: Vec<Var<'t, E>> =
                want.iter().map(|&i| var_at(tape, self.leaves[i])).collect();
            let vals = tape.vjp_values(&outs, &cts, &leaves)?;
            for (&i, v) in want.iter().zip(vals) {
                res[i] = Some(tape.constant(v));
            }
            return Ok(res);
        }
        // Differentiable: the VJP of `f` is itself a function of (args, cotangents), isolated.
        let f = self.f.clone();
        let n = x.len();
        let (sel_c, want_c) = (sel.clone(), want.clone());
        let vjp_fn: TapeFn<E> = Rc::new(move |tape, a| {
            let outs = f(tape, &a[..n])?;
            let o: Vec<Var<'_, E>> = sel_c.iter().map(|&k| outs[k]).collect();
            let wrt: Vec<Var<'_, E>> = want_c.iter().map(|&i| a[i]).collect();
            tape.vjp(&o, &a[n..], &wrt)
        });
        let mut args = x.to_vec();
        args.extend(cts);
        for (&i, v) in want.iter().zip(tape.isolated(&vjp_fn, &args)?) {
            res[i] = Some(v);
        }
        Ok(res)
    }

    fn jvp<'t>(
        &self,
        x: &[Var<'t, E>],
        _y: &[Var<'t, E>],
        t: &[Option<Var<'t, E>>],
    ) -> Result<Vec<Option<Var<'t, E>>>> {
        let tape = x[0].tape();
        let sel: Vec<usize> = (0..t.len()).filter(|&i| t[i].is_some()).collect();
        if sel.is_empty() {
            return Ok(vec![None; self.outs.len()]);
        }
        let f = self.f.clone();
        let n = x.len();
        let sel_c = sel.clone();
        let jvp_fn: TapeFn<E> = Rc::new(move |tape, a| {
            let outs = f(tape, &a[..n])?;
            let wrt: Vec<Var<'_, E>> = sel_c.iter().map(|&i| a[i]).collect();
            tape.jvp(&outs, &wrt, &a[n..])
        });
        let mut args = x.to_vec();
        args.extend(sel.iter().map(|&i| t[i].expect("selected")));
        Ok(tape
            .isolated(&jvp_fn, &args)?
            .into_iter()
            .map(Some)
            .collect())
    }
}

fn var_at<E: Element>(tape: &Tape<E>, (id, gen): (u32, u32)) -> Var<'_, E> {
    Var { tape, id, gen }
}
