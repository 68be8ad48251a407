//! The `Backsolve` strategy: Chen et al. 2018, Algorithm 1.

use std::rc::Rc;

use autodiff::{Element, Var};

use super::node::{zeros_like, Node};
use super::systems::{adjoint_options, AdjointDynamics};
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
    let (c, p, n) = (node.n_state, node.n_params, node.times.len());
    let theta = &x[c..c + p];
    let cot = |k: usize| -> Vec<Option<Var<'t, E>>> {
        if k == 0 {
            vec![None; c]
        } else {
            g[(k - 1) * c..k * c].to_vec()
        }
    };
    let mut grads: Vec<Option<Var<'t, E>>> = vec![None; x.len()];
    if node.time_vars {
        for k in 1..n {
            if needs[c + p + k] {
                grads[c + p + k] = node.dot_f(x, &node.state(x, y, k), k, &cot(k))?;
            }
        }
    }
    let need_theta = needs[c..c + p].iter().any(|&b| b);
    let last = node.state(x, y, n - 1);
    let mut a: Vec<Var<'t, E>> = cot(n - 1)
        .into_iter()
        .zip(&last)
        .map(|(g, z)| g.unwrap_or_else(|| zeros_like(*z)))
        .collect();
    let mut a_theta: Vec<Var<'t, E>> = if need_theta {
        theta.iter().map(|t| zeros_like(*t)).collect()
    } else {
        Vec::new()
    };
    let aug: Rc<dyn Dynamics<E>> = Rc::new(AdjointDynamics {
        f: node.f.clone(),
        n_state: c,
        with_params: need_theta,
    });
    let aug_opts = adjoint_options(&node.opts, c, if need_theta { p } else { 0 });
    for k in (1..n).rev() {
        let mut init = node.state(x, y, k);
        init.extend(&a);
        init.extend(&a_theta);
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
        a = end[c..2 * c].to_vec();
        a_theta = end[2 * c..].to_vec();
        if k > 1 {
            for (ac, gc) in a.iter_mut().zip(cot(k - 1)) {
                if let Some(gc) = gc {
                    *ac = *ac + gc;
                }
            }
        }
    }
    if node.time_vars && needs[c + p] {
        let a_opt: Vec<Option<Var<'t, E>>> = a.iter().map(|v| Some(*v)).collect();
        grads[c + p] = node.dot_f(x, &x[..c], 0, &a_opt)?.map(|v| -v);
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
