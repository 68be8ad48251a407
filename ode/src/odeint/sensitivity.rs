//! The JVP of a solve: the forward-sensitivity system, integrated as one `odeint` call.

use std::rc::Rc;

use autodiff::{Element, Var};

use super::node::{zeros_like, Node};
use super::systems::{sensitivity_options, SensitivityDynamics};
use super::types::Times;
use crate::Dynamics;

/// Forward sensitivities: `[z, ż]` with `dż/dt = ∂f/∂z ż + ∂f/∂θ θ̇`, started from
/// `ż₀ − f(z₀, t₀) ṫ₀`; the tangent at `t_k` adds `f(z_k, t_k) ṫ_k`. One `odeint` call.
pub(crate) fn sensitivity_jvp<'t, E: Element>(
    node: &Node<E>,
    x: &[Var<'t, E>],
    y: &[Var<'t, E>],
    t: &[Option<Var<'t, E>>],
) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
    let tape = x[0].tape();
    let (c, p, n) = (node.n_state, node.n_params, node.times.len());
    let z0 = &x[..c];
    let theta = &x[c..c + p];
    let tdot = |k: usize| if node.time_vars { t[c + p + k] } else { None };
    let mut zd0: Vec<Var<'t, E>> = (0..c)
        .map(|i| t[i].unwrap_or_else(|| zeros_like(z0[i])))
        .collect();
    if let Some(t0d) = tdot(0) {
        let fz = node.f_at(x, z0, 0)?;
        for (zd, fc) in zd0.iter_mut().zip(fz) {
            *zd = *zd - fc * t0d;
        }
    }
    let with_params = t[c..c + p].iter().any(|t| t.is_some());
    let mut init = z0.to_vec();
    init.extend(&zd0);
    let mut ps = theta.to_vec();
    if with_params {
        ps.extend((0..p).map(|i| t[c + i].unwrap_or_else(|| zeros_like(theta[i]))));
    }
    let sens: Rc<dyn Dynamics<E>> = Rc::new(SensitivityDynamics {
        f: node.f.clone(),
        n_state: c,
        n_params: p,
        with_params,
    });
    let times: Times<'t, E> = if node.time_vars {
        Times::Vars((0..n).map(|k| node.time(x, k)).collect())
    } else {
        Times::Values(node.times.clone())
    };
    let sens_opts = sensitivity_options(&node.opts, c);
    let sol = node.record_inner(
        tape,
        &sens,
        &init,
        &ps,
        times,
        &sens_opts,
        "odeint (sensitivity solve of the JVP)",
    )?;
    let mut out = Vec::with_capacity((n - 1) * c);
    for k in 1..n {
        let zk = node.state(x, y, k);
        let extra: Vec<Option<Var<'t, E>>> = match tdot(k) {
            Some(tk) => {
                let fz = node.f_at(x, &zk, k)?;
                fz.into_iter().map(|fc| Some(fc * tk)).collect()
            }
            None => vec![None; c],
        };
        for (i, e) in extra.into_iter().enumerate() {
            let base = sol.states[k][c + i];
            out.push(Some(match e {
                Some(e) => base + e,
                None => base,
            }));
        }
    }
    Ok(out)
}
