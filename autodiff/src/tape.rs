//! The tape: a flat arena of nodes in execution order, and the transforms that walk it.

mod batched;
mod transforms;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use smallvec::SmallVec;

use crate::ops::Prim;
use crate::{CustomOp, Element, Result, Tensor, Var};

pub(crate) use transforms::accumulate;

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
}
