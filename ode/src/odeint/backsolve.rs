//! The `Backsolve` strategy: Chen et al. 2018, Algorithm 1.

use std::rc::Rc;

use autodiff::{Element, Var};

use super::node::Node;
use super::systems::{adjoint_options, AdjointDynamics};
use super::vjp::Cotangents;
use crate::Dynamics;

/// Chen et al. 2018, Algorithm 1, one save interval at a time, each an `odeint` call of the
/// augmented system (so the VJP is itself differentiable).
pub(crate) fn backsolve_vjp<'t, E: Element>(
    node: &Node<E>,
    x: &[Var<'t, E>],
    y: &[Var<'t, E>],
    g: &[Option<Var<'t, E>>],
    needs: &[bool],
) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
    let tape = x[0].tape();
    let (c, p) = (node.n_state, node.n_params);
    let theta = &x[c..c + p];
    let vjp = Cotangents::new(node, x, y, g, needs);
    let need_theta = vjp.need_theta();
    let aug: Rc<dyn Dynamics<E>> = Rc::new(AdjointDynamics {
        f: node.f.clone(),
        n_state: c,
        with_params: need_theta,
    });
    let aug_opts = adjoint_options(&node.opts, c, if need_theta { p } else { 0 });
    // Each interval is an odeint call of [z, a, a_θ] from z(t_k) back to t_{k−1}.
    vjp.run(true, |k, a, a_theta| {
        let mut init = node.state(x, y, k);
        init.extend(a.iter());
        init.extend(a_theta.iter());
        let sol = node.record_inner(
            tape,
            &aug,
            &init,
            theta,
            node.interval(x, k, k - 1),
            &aug_opts,
            "odeint (adjoint solve of the backward pass)",
        )?;
        let end = sol.last();
        *a = end[c..2 * c].to_vec();
        *a_theta = end[2 * c..].to_vec();
        Ok(())
    })
}
