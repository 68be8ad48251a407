//! The tape: a flat arena of nodes in execution order, and the transforms that walk it.

mod batched;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use smallvec::SmallVec;

use crate::ops::Prim;
use crate::{CustomOp, Element, Result, Tensor, Var};

/// What produced a node.
#[derive(Clone)]
pub(crate) enum Kind<E: Element> {
    /// An input: a variable or a constant.
    Leaf,
    /// A primitive applied to the node's inputs.
    Prim(Prim<E>),
    /// A custom op with this many outputs; they are the nodes right after it. The node's own
    /// value is empty.
    Custom(Rc<dyn CustomOp<E>>, usize),
    /// Output `k` of the custom op that is this node's single input.
    Output(usize),
}

pub(crate) struct Node<E: Element> {
    pub(crate) kind: Kind<E>,
    pub(crate) inputs: SmallVec<[u32; 2]>,
    pub(crate) value: Tensor<E>,
    pub(crate) requires_grad: bool,
    /// The tape's generation when this node was pushed. A [`Var`] carries the generation of
    /// its node, so after `clear` or `truncate` reuses the id for a new node the two differ.
    pub(crate) gen: u32,
}

/// Free buffers by length, so a cleared tape reuses its memory instead of allocating.
struct Pool<E> {
    free: HashMap<usize, Vec<Vec<E>>>,
}

impl<E: Element> Pool<E> {
    fn take(&mut self, len: usize) -> Vec<E> {
        match self.free.get_mut(&len).and_then(|v| v.pop()) {
            Some(buf) => buf,
            None => vec![E::ZERO; len],
        }
    }

    fn discard(&mut self, len: usize) {
        if let Some(v) = self.free.get_mut(&len) {
            v.pop();
        }
    }

    fn give(&mut self, buf: Vec<E>) {
        if buf.capacity() > 0 {
            self.free.entry(buf.len()).or_default().push(buf);
        }
    }
}

struct Inner<E: Element> {
    nodes: Vec<Node<E>>,
    pool: Pool<E>,
    /// Generation of the nodes pushed from now on: bumped whenever `clear` or `truncate` drops
    /// nodes, so that an id freed by them and reused is told apart from the node it used to name.
    gen: u32,
}

impl<E: Element> Inner<E> {
    /// The node `x` names, or a panic naming `op` if `x` is stale: its node was dropped by
    /// `clear` or `truncate` (the id is past the end, or names a node of a later generation).
    /// Costs one bounds check and one integer compare.
    #[inline]
    fn node(&self, x: Var<'_, E>, op: &str) -> &Node<E> {
        resolve(&self.nodes, self.gen, x, op)
    }

    /// A handle to node `id`, which must be on the tape (ids taken from the tape itself).
    #[inline]
    fn handle<'t>(&self, tape: &'t Tape<E>, id: u32) -> Var<'t, E> {
        Var {
            tape,
            id,
            gen: self.nodes[id as usize].gen,
        }
    }
}

/// [`Inner::node`] on the node list alone, for callers that also borrow the pool.
#[inline]
fn resolve<'n, E: Element>(nodes: &'n [Node<E>], now: u32, x: Var<'_, E>, op: &str) -> &'n Node<E> {
    lookup(nodes, x).unwrap_or_else(|| stale(x, now, op))
}

/// The node `x` names, or `None` if its id is past the end or was reused by a later generation.
#[inline]
fn lookup<'n, E: Element>(nodes: &'n [Node<E>], x: Var<'_, E>) -> Option<&'n Node<E>> {
    nodes.get(x.id as usize).filter(|n| n.gen == x.gen)
}

#[cold]
#[inline(never)]
fn stale<E: Element>(x: Var<'_, E>, now: u32, op: &str) -> ! {
    panic!(
        "{op}: stale Var #{}: it is from before a Tape::clear (or a truncate) that dropped its \
         node (Var generation {}, tape now at generation {now})",
        x.id, x.gen
    )
}

/// A recording of tensor operations, differentiable in reverse and forward mode to any order.
///
/// Nodes are stored in execution order, so reverse mode is one reversed loop and forward mode
/// one forward loop, with no topological sort. [`Var`] is a `Copy` handle into the tape.
/// [`clear`](Tape::clear) drops every node but keeps the buffers, so a solver that evaluates
/// its dynamics thousands of times allocates only on the first evaluation.
///
/// ```
/// use autodiff::{Tape, Tensor};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(Tensor::from_f64s(1, 2, &[1.0, 2.0]));
/// let y = (x * x).sum();                     // y = x₁² + x₂²
/// let g = tape.grad(y, &[x]).unwrap();       // ∇y = 2x
/// assert_eq!(g[0].as_slice(), &[2.0, 4.0]);
/// ```
pub struct Tape<E: Element> {
    inner: RefCell<Inner<E>>,
    no_grad: Cell<u32>,
    creating_graph: Cell<bool>,
}

impl<E: Element> Default for Tape<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Element> Tape<E> {
    /// An empty tape.
    pub fn new() -> Self {
        Tape {
            inner: RefCell::new(Inner {
                nodes: Vec::new(),
                pool: Pool {
                    free: HashMap::new(),
                },
                gen: 0,
            }),
            no_grad: Cell::new(0),
            creating_graph: Cell::new(true),
        }
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.inner.borrow().nodes.len()
    }

    /// `true` when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every node, keeping the buffers for reuse. Every `Var` of this tape becomes
    /// invalid: using one afterwards panics (it is never read as whichever new node took its id).
    pub fn clear(&self) {
        self.truncate(0);
    }

    /// Drops the nodes from `len` on (keeping their buffers); `Var`s created after the tape had
    /// `len` nodes become invalid (using one panics), those created before stay valid. Use with
    /// [`len`](Tape::len) as a mark.
    pub fn truncate(&self, len: usize) {
        let mut inner = self.inner.borrow_mut();
        let Inner { nodes, pool, gen } = &mut *inner;
        if nodes.len() <= len {
            return;
        }
        while nodes.len() > len {
            let node = nodes.pop().expect("non-empty");
            pool.give(node.value.into_vec());
        }
        // The freed ids will be reused; nodes pushed from now on get a new generation, so the
        // dropped nodes' Vars no longer match them. Wrapping after 2³² truncations could only
        // let a Var that is stale by exactly that many generations through.
        *gen = gen.wrapping_add(1);
    }

    /// Bytes held by the node values currently on the tape (not counting the free pool).
    pub fn bytes(&self) -> usize {
        self.inner
            .borrow()
            .nodes
            .iter()
            .map(|n| n.value.len() * std::mem::size_of::<E>())
            .sum()
    }

    /// A leaf that gradients are taken with respect to (`requires_grad = true`).
    pub fn var(&self, value: Tensor<E>) -> Var<'_, E> {
        let rg = self.no_grad.get() == 0;
        self.push_leaf(value, rg)
    }

    /// A leaf that is never differentiated.
    pub fn constant(&self, value: Tensor<E>) -> Var<'_, E> {
        self.push_leaf(value, false)
    }

    /// A differentiable leaf holding a copy of `value`, written into a buffer the tape reuses
    /// (no allocation once the tape is warm: the form to use in loops that clear the tape).
    pub fn var_from(&self, value: &Tensor<E>) -> Var<'_, E> {
        let rg = self.no_grad.get() == 0;
        self.push_copy(value, rg)
    }

    /// A constant holding a copy of `value` in a reused buffer (see [`var_from`](Tape::var_from)).
    pub fn constant_from(&self, value: &Tensor<E>) -> Var<'_, E> {
        self.push_copy(value, false)
    }

    fn push_copy(&self, value: &Tensor<E>, requires_grad: bool) -> Var<'_, E> {
        let (r, c) = value.shape();
        let mut inner = self.inner.borrow_mut();
        let mut buf = inner.pool.take(r * c);
        buf.copy_from_slice(value.as_slice());
        drop(inner);
        self.push_leaf_raw(Tensor::from_parts(r, c, buf), requires_grad)
    }

    /// A `1 × 1` constant.
    pub fn scalar(&self, value: E) -> Var<'_, E> {
        self.constant(Tensor::scalar(value))
    }

    /// A zero constant of the given shape.
    pub fn zeros(&self, rows: usize, cols: usize) -> Var<'_, E> {
        let mut inner = self.inner.borrow_mut();
        let mut buf = inner.pool.take(rows * cols);
        buf.fill(E::ZERO);
        drop(inner);
        self.push_leaf_raw(Tensor::from_parts(rows, cols, buf), false)
    }

    /// A constant filled with `value`.
    pub fn full(&self, rows: usize, cols: usize, value: E) -> Var<'_, E> {
        let z = self.zeros(rows, cols);
        self.inner.borrow_mut().nodes[z.id as usize]
            .value
            .fill(value);
        z
    }

    /// Runs `f` with recording of derivatives switched off: every node it creates, `var`s
    /// included, is a constant (like `torch.no_grad()`).
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Guard<'a>(&'a Cell<u32>);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        self.no_grad.set(self.no_grad.get() + 1);
        let _g = Guard(&self.no_grad);
        f()
    }

    /// Whether the reverse pass now running keeps its results differentiable: `false` inside
    /// [`grad`](Tape::grad) and [`jacobian`](Tape::jacobian), `true` otherwise. Custom ops whose
    /// VJP is only first-order exact consult it to refuse requests for higher derivatives.
    pub fn creates_graph(&self) -> bool {
        self.creating_graph.get()
    }

    fn backward_mode<R>(&self, create_graph: bool, f: impl FnOnce() -> R) -> R {
        let prev = self.creating_graph.replace(create_graph);
        struct Restore<'a>(&'a Cell<bool>, bool);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.set(self.1);
            }
        }
        let _r = Restore(&self.creating_graph, prev);
        f()
    }

    /// Concatenates along columns (all inputs must have the same number of rows).
    pub fn concat_cols<'t>(&'t self, parts: &[Var<'t, E>]) -> Var<'t, E> {
        assert!(!parts.is_empty(), "concat_cols: no inputs");
        if parts.len() == 1 {
            return parts[0];
        }
        self.push_prim(Prim::ConcatCols, parts)
    }

    /// Records a custom op applied to `inputs` and returns its outputs.
    pub fn custom<'t>(
        &'t self,
        op: Rc<dyn CustomOp<E>>,
        inputs: &[Var<'t, E>],
    ) -> Result<Vec<Var<'t, E>>> {
        for x in inputs {
            self.check_same(*x, op.name());
        }
        let outs = {
            let inner = self.inner.borrow();
            let vals: SmallVec<[&Tensor<E>; 8]> = inputs
                .iter()
                .map(|x| &inner.node(*x, op.name()).value)
                .collect();
            op.forward(&vals)?
        };
        let rg = self.no_grad.get() == 0 && inputs.iter().any(|x| x.requires_grad());
        let n = outs.len();
        let mut inner = self.inner.borrow_mut();
        let id = inner.nodes.len() as u32;
        let gen = inner.gen;
        // Under `no_grad` the op keeps no inputs, so its outputs are constants.
        let recorded = if self.no_grad.get() > 0 {
            SmallVec::new()
        } else {
            inputs.iter().map(|x| x.id).collect()
        };
        inner.nodes.push(Node {
            kind: Kind::Custom(op, n),
            inputs: recorded,
            value: Tensor::zeros(0, 0),
            requires_grad: rg,
            gen,
        });
        let mut vars = Vec::with_capacity(n);
        for (k, v) in outs.into_iter().enumerate() {
            let oid = inner.nodes.len() as u32;
            inner.nodes.push(Node {
                kind: Kind::Output(k),
                inputs: smallvec::smallvec![id],
                value: v,
                requires_grad: rg,
                gen,
            });
            vars.push(Var {
                tape: self,
                id: oid,
                gen,
            });
        }
        Ok(vars)
    }

    fn push_leaf(&self, value: Tensor<E>, requires_grad: bool) -> Var<'_, E> {
        // The tape now owns one more buffer of this size; dropping a pooled one keeps the pool
        // no larger than the most nodes ever alive at once, however often leaves are pushed
        // and the tape truncated.
        self.inner.borrow_mut().pool.discard(value.len());
        self.push_leaf_raw(value, requires_grad)
    }

    fn push_leaf_raw(&self, value: Tensor<E>, requires_grad: bool) -> Var<'_, E> {
        let mut inner = self.inner.borrow_mut();
        let id = inner.nodes.len() as u32;
        let gen = inner.gen;
        inner.nodes.push(Node {
            kind: Kind::Leaf,
            inputs: SmallVec::new(),
            value,
            requires_grad,
            gen,
        });
        Var {
            tape: self,
            id,
            gen,
        }
    }

    /// Panics unless `x` is on this tape (not another) and not stale.
    fn check_same(&self, x: Var<'_, E>, op: &str) {
        self.check_tape(x, op);
        self.inner.borrow().node(x, op);
    }

    fn check_tape(&self, x: Var<'_, E>, op: &str) {
        assert!(
            std::ptr::eq(x.tape, self),
            "{op}: operand belongs to a different tape"
        );
    }

    /// Records a primitive: validates shapes, runs the forward kernel into a pooled buffer.
    pub(crate) fn push_prim<'t>(&'t self, prim: Prim<E>, inputs: &[Var<'t, E>]) -> Var<'t, E> {
        for x in inputs {
            self.check_tape(*x, prim.name());
        }
        let mut inner = self.inner.borrow_mut();
        let Inner { nodes, pool, gen } = &mut *inner;
        let gen = *gen;
        let (value, rg) = {
            // Resolving each operand checks that it is not stale.
            let ins: SmallVec<[&Node<E>; 4]> = inputs
                .iter()
                .map(|x| resolve(nodes, gen, *x, prim.name()))
                .collect();
            let vals: SmallVec<[&Tensor<E>; 4]> = ins.iter().map(|n| &n.value).collect();
            let (r, c) = prim.out_shape(&vals);
            let mut out = Tensor::from_parts(r, c, pool.take(r * c));
            prim.forward(&vals, &mut out);
            let rg = self.no_grad.get() == 0 && ins.iter().any(|n| n.requires_grad);
            (out, rg)
        };
        let id = nodes.len() as u32;
        let var = Var {
            tape: self,
            id,
            gen,
        };
        if self.no_grad.get() > 0 {
            // Under `no_grad` a result is a constant: no derivative can flow through it.
            nodes.push(Node {
                kind: Kind::Leaf,
                inputs: SmallVec::new(),
                value,
                requires_grad: false,
                gen,
            });
            return var;
        }
        nodes.push(Node {
            kind: Kind::Prim(prim),
            inputs: inputs.iter().map(|x| x.id).collect(),
            value,
            requires_grad: rg,
            gen,
        });
        var
    }

    /// Runs `f` on the node `x` names, panicking if `x` is stale (its node was dropped by
    /// [`clear`](Tape::clear) or [`truncate`](Tape::truncate)). `x` must be of this tape.
    pub(crate) fn with_var<R>(
        &self,
        x: Var<'_, E>,
        what: &str,
        f: impl FnOnce(&Node<E>) -> R,
    ) -> R {
        let inner = self.inner.borrow();
        f(inner.node(x, what))
    }

    /// The shape of `x`'s value, or `None` if `x` is stale (for formatting, which must not panic).
    pub(crate) fn try_shape(&self, x: Var<'_, E>) -> Option<(usize, usize)> {
        lookup(&self.inner.borrow().nodes, x).map(|n| n.value.shape())
    }

    /// Runs `f` on node `id`, an id taken from the tape itself (an input list, a sweep range).
    fn with_node<R>(&self, id: u32, f: impl FnOnce(&Node<E>) -> R) -> R {
        f(&self.inner.borrow().nodes[id as usize])
    }

    /// What a sweep needs of node `id`: its kind, its input ids, handles to its inputs and a
    /// handle to itself (each carrying its node's generation), read under one borrow.
    #[allow(clippy::type_complexity)]
    fn sweep_node<'t>(
        &'t self,
        id: u32,
    ) -> (
        Kind<E>,
        SmallVec<[u32; 2]>,
        SmallVec<[Var<'t, E>; 4]>,
        Var<'t, E>,
    ) {
        let inner = self.inner.borrow();
        let n = &inner.nodes[id as usize];
        let xs = n.inputs.iter().map(|&j| inner.handle(self, j)).collect();
        (n.kind.clone(), n.inputs.clone(), xs, inner.handle(self, id))
    }

    /// Handles to the `n` output nodes that follow the custom-op node `id`.
    fn custom_outputs<'t>(&'t self, id: u32, n: usize) -> Vec<Var<'t, E>> {
        let inner = self.inner.borrow();
        (1..=n as u32).map(|k| inner.handle(self, id + k)).collect()
    }

    // ---------------------------------------------------------------- transforms

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
