//! The transforms that walk the tape: reverse mode ([`grad`](Tape::grad),
//! [`grad_graph`](Tape::grad_graph), [`vjp`](Tape::vjp), [`jacobian`](Tape::jacobian)), forward
//! mode ([`jvp`](Tape::jvp)) and their composition ([`hvp`](Tape::hvp)), with the two sweeps
//! they share.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::{Kind, Tape};
use crate::{Element, Result, Tensor, Var};

impl<E: Element> Tape<E> {
    /// Gradient of the scalar `y` with respect to each of `xs`, as plain values.
    ///
    /// Nothing the backward pass records is kept: the tape is truncated back afterwards.
    /// For gradients that can be differentiated again use [`grad_graph`](Tape::grad_graph).
    pub fn grad<'t>(&'t self, y: Var<'t, E>, xs: &[Var<'t, E>]) -> Result<Vec<Tensor<E>>> {
        assert_scalar(y, "grad");
        let mark = self.len();
        let seed = self.scalar(E::ONE);
        let res = self.backward_mode(false, || self.backward(&[y], &[seed], xs));
        let out = res.map(|gs| values_or_zeros(xs, &gs));
        self.truncate(mark);
        out
    }

    /// Gradient of the scalar `y` with respect to `xs`, recorded on the tape (PyTorch's
    /// `create_graph=True`): the results are `Var`s that can be differentiated again.
    pub fn grad_graph<'t>(&'t self, y: Var<'t, E>, xs: &[Var<'t, E>]) -> Result<Vec<Var<'t, E>>> {
        assert_scalar(y, "grad_graph");
        let seed = self.scalar(E::ONE);
        let gs = self.backward_mode(true, || self.backward(&[y], &[seed], xs))?;
        Ok(self.vars_or_zeros(xs, gs))
    }

    /// Vector-Jacobian product: Σₖ cotangentsₖᵀ ∂outputsₖ/∂xs, recorded on the tape (the
    /// results are differentiable). Each cotangent must have its output's shape.
    pub fn vjp<'t>(
        &'t self,
        outputs: &[Var<'t, E>],
        cotangents: &[Var<'t, E>],
        xs: &[Var<'t, E>],
    ) -> Result<Vec<Var<'t, E>>> {
        let gs = self.backward_mode(true, || self.backward(outputs, cotangents, xs))?;
        Ok(self.vars_or_zeros(xs, gs))
    }

    /// Vector-Jacobian product as plain values (like [`vjp`](Tape::vjp) without
    /// `create_graph`): nothing the backward pass records is kept.
    pub fn vjp_values<'t>(
        &'t self,
        outputs: &[Var<'t, E>],
        cotangents: &[Var<'t, E>],
        xs: &[Var<'t, E>],
    ) -> Result<Vec<Tensor<E>>> {
        let mark = self.len();
        let res = self.backward_mode(false, || self.backward(outputs, cotangents, xs));
        let out = res.map(|gs| values_or_zeros(xs, &gs));
        self.truncate(mark);
        out
    }

    /// Jacobian-vector product: the directional derivative of each output along the tangents
    /// of `xs`, by one forward sweep. Recorded on the tape (differentiable).
    pub fn jvp<'t>(
        &'t self,
        outputs: &[Var<'t, E>],
        xs: &[Var<'t, E>],
        tangents: &[Var<'t, E>],
    ) -> Result<Vec<Var<'t, E>>> {
        assert_eq!(
            xs.len(),
            tangents.len(),
            "jvp: {} inputs but {} tangents",
            xs.len(),
            tangents.len()
        );
        let ts = self.forward_sweep(outputs, xs, tangents)?;
        Ok(outputs
            .iter()
            .zip(ts)
            .map(|(o, t)| {
                t.unwrap_or_else(|| {
                    let (r, c) = o.shape();
                    self.zeros(r, c)
                })
            })
            .collect())
    }

    /// Hessian-vector product ∇²y · v of a scalar `y` (forward-over-reverse: the JVP of the
    /// recorded gradient). Recorded on the tape.
    pub fn hvp<'t>(
        &'t self,
        y: Var<'t, E>,
        xs: &[Var<'t, E>],
        vs: &[Var<'t, E>],
    ) -> Result<Vec<Var<'t, E>>> {
        let g = self.grad_graph(y, xs)?;
        self.jvp(&g, xs, vs)
    }

    /// Full Jacobian ∂y/∂x as a `(len y) × (len x)` matrix (row-major flattening), by one VJP
    /// per output element. Meant for small problems and tests.
    pub fn jacobian<'t>(&'t self, y: Var<'t, E>, x: Var<'t, E>) -> Result<Tensor<E>> {
        let (r, c) = y.shape();
        let n = x.shape().0 * x.shape().1;
        let mut jac = Tensor::zeros(r * c, n);
        for i in 0..r * c {
            let mark = self.len();
            let mut e = Tensor::zeros(r, c);
            e.as_mut_slice()[i] = E::ONE;
            let seed = self.constant(e);
            let g = self.backward_mode(false, || self.backward(&[y], &[seed], &[x]));
            let row = g.map(|g| values_or_zeros(&[x], &g));
            self.truncate(mark);
            let row = row?;
            jac.as_mut_slice()[i * n..(i + 1) * n].copy_from_slice(row[0].as_slice());
        }
        Ok(jac)
    }

    fn vars_or_zeros<'t>(
        &'t self,
        xs: &[Var<'t, E>],
        gs: Vec<Option<Var<'t, E>>>,
    ) -> Vec<Var<'t, E>> {
        xs.iter()
            .zip(gs)
            .map(|(x, g)| {
                g.unwrap_or_else(|| {
                    let (r, c) = x.shape();
                    self.zeros(r, c)
                })
            })
            .collect()
    }

    /// The reverse sweep shared by every reverse-mode transform: cotangents accumulate in a
    /// table indexed by node id; `None` is the symbolic zero.
    fn backward<'t>(
        &'t self,
        outputs: &[Var<'t, E>],
        cts: &[Var<'t, E>],
        xs: &[Var<'t, E>],
    ) -> Result<Vec<Option<Var<'t, E>>>> {
        assert_eq!(
            outputs.len(),
            cts.len(),
            "vjp: {} outputs but {} cotangents",
            outputs.len(),
            cts.len()
        );
        // Every handle is checked before its id is used as an index.
        for x in xs.iter().chain(outputs).chain(cts) {
            self.check_same(*x, "vjp");
        }
        let Some(start) = xs.iter().map(|x| x.id).min() else {
            return Ok(Vec::new());
        };
        let end = outputs.iter().map(|o| o.id).max().unwrap_or(0);
        if end < start {
            return Ok(vec![None; xs.len()]);
        }
        let mut cot: Vec<Option<Var<'t, E>>> = vec![None; (end - start + 1) as usize];
        for (o, c) in outputs.iter().zip(cts) {
            assert_eq!(
                o.shape(),
                c.shape(),
                "vjp: cotangent shape {:?} differs from output shape {:?}",
                c.shape(),
                o.shape()
            );
            if o.id >= start {
                accumulate(&mut cot[(o.id - start) as usize], *c);
            }
        }
        // Only nodes downstream of `xs` can pass a cotangent on to them. Marking them
        // structurally (rather than by `requires_grad`) lets a VJP be taken with respect to a
        // constant or an intermediate value, and skips subgraphs that do not depend on `xs`.
        let mut active = vec![false; (end - start + 1) as usize];
        for x in xs {
            active[(x.id - start) as usize] = true;
        }
        {
            let inner = self.inner.borrow();
            for id in start..=end {
                let slot = (id - start) as usize;
                if !active[slot] {
                    active[slot] = inner.nodes[id as usize]
                        .inputs
                        .iter()
                        .any(|&j| j >= start && active[(j - start) as usize]);
                }
            }
        }
        let mut multi: HashMap<u32, Vec<Option<Var<'t, E>>>> = HashMap::new();
        for id in (start..=end).rev() {
            let slot = (id - start) as usize;
            if !active[slot] || (cot[slot].is_none() && !multi.contains_key(&id)) {
                continue;
            }
            let (kind, inputs, xs_in, y) = self.sweep_node(id);
            let needs: SmallVec<[bool; 4]> = inputs
                .iter()
                .map(|&j| j >= start && active[(j - start) as usize])
                .collect();
            match kind {
                Kind::Leaf => {}
                Kind::Prim(p) => {
                    if !needs.iter().any(|&b| b) {
                        continue;
                    }
                    let g = cot[slot].expect("checked");
                    let gs = p.vjp(&xs_in, y, g, &needs);
                    for ((&j, gj), &need) in inputs.iter().zip(gs).zip(&needs) {
                        if let (Some(gj), true) = (gj, need) {
                            accumulate(&mut cot[(j - start) as usize], gj);
                        }
                    }
                }
                Kind::Output(k) => {
                    let op_id = inputs[0];
                    let g = cot[slot].expect("checked");
                    let n = self.with_node(op_id, |n| match n.kind {
                        Kind::Custom(_, n) => n,
                        _ => unreachable!("Output node whose input is not a custom op"),
                    });
                    let entry = multi.entry(op_id).or_insert_with(|| vec![None; n]);
                    accumulate(&mut entry[k], g);
                }
                Kind::Custom(op, n) => {
                    let cs = multi.remove(&id).expect("checked");
                    if !needs.iter().any(|&b| b) {
                        continue;
                    }
                    let outs = self.custom_outputs(id, n);
                    let gs = op.vjp(&xs_in, &outs, &cs, &needs)?;
                    assert_eq!(
                        gs.len(),
                        inputs.len(),
                        "{}: vjp returned {} cotangents for {} inputs",
                        op.name(),
                        gs.len(),
                        inputs.len()
                    );
                    for ((&j, gj), &need) in inputs.iter().zip(gs).zip(&needs) {
                        if let (Some(gj), true) = (gj, need) {
                            accumulate(&mut cot[(j - start) as usize], gj);
                        }
                    }
                }
            }
        }
        Ok(xs.iter().map(|x| cot[(x.id - start) as usize]).collect())
    }

    /// The forward sweep of forward mode: tangents flow from `xs` through the ancestors of
    /// `outputs` in recording order.
    fn forward_sweep<'t>(
        &'t self,
        outputs: &[Var<'t, E>],
        xs: &[Var<'t, E>],
        ts: &[Var<'t, E>],
    ) -> Result<Vec<Option<Var<'t, E>>>> {
        // Every handle is checked before its id is used as an index.
        for x in xs.iter().chain(outputs).chain(ts) {
            self.check_same(*x, "jvp");
        }
        let Some(start) = xs.iter().map(|x| x.id).min() else {
            return Ok(vec![None; outputs.len()]);
        };
        let end = outputs.iter().map(|o| o.id).max().unwrap_or(0);
        if end < start {
            return Ok(vec![None; outputs.len()]);
        }
        let n = (end - start + 1) as usize;
        // Only ancestors of the outputs need tangents.
        let mut needed = vec![false; n];
        for o in outputs {
            if o.id >= start {
                needed[(o.id - start) as usize] = true;
            }
        }
        // A seeded node's tangent is given, so nothing upstream of it is needed through it.
        let mut seeded_ids = vec![false; n];
        for x in xs {
            seeded_ids[(x.id - start) as usize] = true;
        }
        for id in (start..=end).rev() {
            if needed[(id - start) as usize] && !seeded_ids[(id - start) as usize] {
                self.with_node(id, |node| {
                    for &j in &node.inputs {
                        if j >= start {
                            needed[(j - start) as usize] = true;
                        }
                    }
                });
            }
        }
        let mut tan: Vec<Option<Var<'t, E>>> = vec![None; n];
        let mut seeded = vec![false; n];
        for (x, t) in xs.iter().zip(ts) {
            assert_eq!(
                x.shape(),
                t.shape(),
                "jvp: tangent shape {:?} differs from input shape {:?}",
                t.shape(),
                x.shape()
            );
            let slot = (x.id - start) as usize;
            accumulate(&mut tan[slot], *t);
            seeded[slot] = true;
        }
        let mut multi: HashMap<u32, Vec<Option<Var<'t, E>>>> = HashMap::new();
        for id in start..=end {
            let slot = (id - start) as usize;
            if !needed[slot] || seeded[slot] {
                continue;
            }
            let (kind, inputs, xs_in, y) = self.sweep_node(id);
            let tin: SmallVec<[Option<Var<'t, E>>; 4]> = inputs
                .iter()
                .map(|&j| {
                    if j >= start {
                        tan[(j - start) as usize]
                    } else {
                        None
                    }
                })
                .collect();
            match kind {
                Kind::Leaf => {}
                Kind::Prim(p) => {
                    if tin.iter().all(|t| t.is_none()) {
                        continue;
                    }
                    tan[slot] = p.jvp(&xs_in, y, &tin);
                }
                Kind::Custom(op, nout) => {
                    if tin.iter().all(|t| t.is_none()) {
                        continue;
                    }
                    let outs = self.custom_outputs(id, nout);
                    let res = op.jvp(&xs_in, &outs, &tin)?;
                    assert_eq!(
                        res.len(),
                        nout,
                        "{}: jvp returned {} tangents for {} outputs",
                        op.name(),
                        res.len(),
                        nout
                    );
                    multi.insert(id, res);
                }
                Kind::Output(k) => {
                    if let Some(ts) = multi.get(&inputs[0]) {
                        tan[slot] = ts[k];
                    }
                }
            }
        }
        Ok(outputs
            .iter()
            .map(|o| {
                if o.id >= start {
                    tan[(o.id - start) as usize]
                } else {
                    None
                }
            })
            .collect())
    }
}

fn assert_scalar<E: Element>(y: Var<'_, E>, what: &str) {
    assert_eq!(
        y.shape(),
        (1, 1),
        "{what}: output must be a 1x1 scalar, got {:?} (use vjp for non-scalar outputs)",
        y.shape()
    );
}

fn values_or_zeros<E: Element>(xs: &[Var<'_, E>], gs: &[Option<Var<'_, E>>]) -> Vec<Tensor<E>> {
    xs.iter()
        .zip(gs)
        .map(|(x, g)| match g {
            Some(g) => g.value(),
            None => {
                let (r, c) = x.shape();
                Tensor::zeros(r, c)
            }
        })
        .collect()
}

/// Adds a contribution to a cotangent or tangent slot (`None` is the symbolic zero).
pub(crate) fn accumulate<'t, E: Element>(slot: &mut Option<Var<'t, E>>, g: Var<'t, E>) {
    *slot = Some(match *slot {
        None => g,
        Some(prev) => {
            assert_eq!(
                prev.shape(),
                g.shape(),
                "gradient accumulation: shapes {:?} and {:?} differ",
                prev.shape(),
                g.shape()
            );
            prev + g
        }
    });
}
