//! The VJP skeleton every adjoint strategy shares; a strategy supplies only how `[a, a_θ]` is
//! pulled back over one save interval.
//!
//! For cotangents `g_k` of the states at the save times `t_1 … t_{n−1}`: the gradient of a
//! save time is `g_kᵀ f(z_k, t_k)`; the adjoint starts as `a = g_{n−1}` and `a_θ = 0` at the
//! last save time, is pulled back interval by interval, and gains `g_k` at each save time it
//! passes; at `t_0` it is the gradient of `z0` and `θ`, and `t_0` gets `−aᵀ f(z0, t0)`.

use autodiff::{Element, Var};

use super::node::{zeros_like, Node};

/// The cotangents of one VJP call of a node and the inputs they are pulled back to.
pub(crate) struct Cotangents<'a, 't, E: Element> {
    node: &'a Node<E>,
    x: &'a [Var<'t, E>],
    y: &'a [Var<'t, E>],
    g: &'a [Option<Var<'t, E>>],
    needs: &'a [bool],
}

impl<'a, 't, E: Element> Cotangents<'a, 't, E> {
    /// The VJP of `node` at inputs `x` and outputs `y`, for output cotangents `g`, computing
    /// the gradients of the inputs flagged in `needs`.
    pub(crate) fn new(
        node: &'a Node<E>,
        x: &'a [Var<'t, E>],
        y: &'a [Var<'t, E>],
        g: &'a [Option<Var<'t, E>>],
        needs: &'a [bool],
    ) -> Self {
        Cotangents {
            node,
            x,
            y,
            g,
            needs,
        }
    }

    /// Whether some parameter needs a gradient, so that the adjoint carries `a_θ` (otherwise
    /// `a_θ` is empty and the strategy need not integrate it).
    pub(crate) fn need_theta(&self) -> bool {
        let (c, p) = (self.node.n_state, self.node.n_params);
        self.needs[c..c + p].iter().any(|&b| b)
    }

    /// The cotangent of the state at save time `k` (none for the initial state, which is an
    /// input, not an output).
    fn at(&self, k: usize) -> Vec<Option<Var<'t, E>>> {
        let c = self.node.n_state;
        if k == 0 {
            vec![None; c]
        } else {
            self.g[(k - 1) * c..k * c].to_vec()
        }
    }

    /// Runs the VJP, calling `pull(k, a, a_θ)` to pull the adjoint back from save time `k`
    /// to `k − 1`, for `k` from the last save time down to 1.
    ///
    /// A strategy that is not `differentiable` (its pull-back works on plain values) gets the
    /// time gradients detached as well, so that none of its results carries a partial
    /// dependency a derivative of the VJP could follow.
    pub(crate) fn run(
        &self,
        differentiable: bool,
        mut pull: impl FnMut(usize, &mut Vec<Var<'t, E>>, &mut Vec<Var<'t, E>>) -> autodiff::Result<()>,
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        let (node, x, y, needs) = (self.node, self.x, self.y, self.needs);
        let (c, p, n) = (node.n_state, node.n_params, node.times.len());
        let finish = |v: Var<'t, E>| if differentiable { v } else { v.detach() };
        let mut grads: Vec<Option<Var<'t, E>>> = vec![None; x.len()];
        if node.time_vars {
            for k in 1..n {
                if needs[c + p + k] {
                    grads[c + p + k] = node
                        .dot_f(x, &node.state(x, y, k), k, &self.at(k))?
                        .map(finish);
                }
            }
        }
        let last = node.state(x, y, n - 1);
        let mut a: Vec<Var<'t, E>> = self
            .at(n - 1)
            .into_iter()
            .zip(&last)
            .map(|(g, z)| g.unwrap_or_else(|| zeros_like(*z)))
            .collect();
        let mut a_theta: Vec<Var<'t, E>> = if self.need_theta() {
            x[c..c + p].iter().map(|t| zeros_like(*t)).collect()
        } else {
            Vec::new()
        };
        for k in (1..n).rev() {
            pull(k, &mut a, &mut a_theta)?;
            if k > 1 {
                for (ac, gc) in a.iter_mut().zip(self.at(k - 1)) {
                    if let Some(gc) = gc {
                        *ac = *ac + gc;
                    }
                }
            }
        }
        if node.time_vars && needs[c + p] {
            let a_opt: Vec<Option<Var<'t, E>>> = a.iter().map(|v| Some(*v)).collect();
            grads[c + p] = node.dot_f(x, &x[..c], 0, &a_opt)?.map(|v| finish(-v));
        }
        for (i, ai) in a.into_iter().enumerate() {
            if needs[i] {
                grads[i] = Some(ai);
            }
        }
        for (i, gi) in a_theta.into_iter().enumerate() {
            if needs[c + i] {
                grads[c + i] = Some(gi);
            }
        }
        Ok(grads)
    }
}
