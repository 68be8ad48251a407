//! Discretise-then-optimise: the solver's steps replayed with tape operations.
//!
//! A plain solve of each save interval chooses the accepted steps; they are then replayed as
//! Runge–Kutta steps written with tape ops, so reverse and forward mode differentiate the
//! discrete solution exactly (step sizes are held fixed as fractions of the interval, so a
//! time given as a variable still receives its gradient through the step lengths). Steps of
//! the implicit methods are recorded by the implicit function theorem (see [`implicit`]).

mod implicit;

use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};

use super::node::eval_isolated;
use super::stats::{OdeStats, FORWARD};
use super::types::{OdeSolution, Times};
use crate::options::SolveOptions;
use crate::tableau::{terms, Tableau};
use crate::{solve, Dynamics, OdeError, Options, Stats};

pub(crate) fn odeint_direct<'t, E: Element>(
    tape: &'t Tape<E>,
    f: &Rc<dyn Dynamics<E>>,
    z0: &[Var<'t, E>],
    params: &[Var<'t, E>],
    times: &Times<'t, E>,
    opts: &Options<E>,
    stats: OdeStats,
) -> autodiff::Result<OdeSolution<'t, E>> {
    let wrap = |e: OdeError| autodiff::Error::new("odeint (direct)", e);
    let _phase = stats.enter(FORWARD);
    let tab = opts.method.tableau();
    let dirk = opts.method.dirk();
    let tv: Vec<E> = match times {
        Times::Values(v) => v.clone(),
        Times::Vars(v) => v.iter().map(|t| t.item()).collect(),
    };
    let time_var = |k: usize| -> Var<'t, E> {
        match times {
            Times::Values(v) => tape.scalar(v[k]),
            Times::Vars(v) => v[k],
        }
    };
    let theta_vals: Vec<Tensor<E>> = params.iter().map(|p| p.value()).collect();
    let mut total = Stats::default();
    let mut z: Vec<Var<'t, E>> = z0.to_vec();
    let mut states = vec![z.clone()];
    for k in 1..tv.len() {
        let zv: Vec<Tensor<E>> = z.iter().map(|v| v.value()).collect();
        let sol = solve(
            &**f,
            &zv,
            &theta_vals,
            &[tv[k - 1], tv[k]],
            &opts.solve.clone().record_steps(true),
        )
        .map_err(wrap)?;
        total += sol.stats;
        let (ta, tb) = (tv[k - 1].to_f64(), tv[k].to_f64());
        let span = tb - ta;
        let (t_a, t_b) = (time_var(k - 1), time_var(k));
        let width = t_b - t_a;
        // Step ends as fractions of the interval; the last one is the save time exactly.
        let mut fracs: Vec<f64> = sol.steps.iter().map(|s| (s.to_f64() - ta) / span).collect();
        if fracs.last().is_none_or(|&l| l != 1.0) {
            fracs.retain(|&s| s < 1.0);
            fracs.push(1.0);
        }
        let mut prev = 0.0;
        let mut k1: Option<Vec<Var<'t, E>>> = None;
        for &s in &fracs {
            let t = t_a + width * E::from_f64(prev);
            let h = width * E::from_f64(s - prev);
            match (tab, &dirk) {
                (Some(tab), _) => {
                    let (znew, klast) = rk_step(f, tab, t, h, &z, params, k1.take())?;
                    z = znew;
                    if tab.fsal {
                        k1 = Some(klast);
                    }
                }
                (None, Some(d)) => z = implicit::dirk_step(f, d, t, h, &z, params, &theta_vals)?,
                (None, None) => unreachable!("every method is explicit or diagonally implicit"),
            }
            prev = s;
        }
        check_replay(&z, sol.last(), opts, tv[k]).map_err(wrap)?;
        states.push(z.clone());
    }
    stats.add_solve(FORWARD, total);
    Ok(OdeSolution { states, stats })
}

/// The new state and the last stage derivative of a recorded step.
type Step<'t, E> = (Vec<Var<'t, E>>, Vec<Var<'t, E>>);

/// One explicit Runge–Kutta step recorded on the tape. Returns the new state and the last
/// stage derivative (the next step's first stage when the method is FSAL).
#[allow(clippy::too_many_arguments)]
fn rk_step<'t, E: Element>(
    f: &Rc<dyn Dynamics<E>>,
    tab: &Tableau,
    t: Var<'t, E>,
    h: Var<'t, E>,
    z: &[Var<'t, E>],
    params: &[Var<'t, E>],
    k1: Option<Vec<Var<'t, E>>>,
) -> autodiff::Result<Step<'t, E>> {
    let s = tab.stages();
    let mut ks: Vec<Vec<Var<'t, E>>> = Vec::with_capacity(s);
    // Each stage is an isolated evaluation, so a dynamics that differentiates itself with
    // respect to `t` or `θ` gets partial derivatives, not derivatives through earlier stages.
    ks.push(match k1 {
        Some(k1) => k1,
        None => eval_isolated(f, t, z, params)?,
    });
    for i in 1..s {
        let zi = combine(z, h, &ks, tab.a[i]);
        let ti = t + h * E::from_f64(tab.c[i]);
        ks.push(eval_isolated(f, ti, &zi, params)?);
    }
    let znew = combine(z, h, &ks, tab.b);
    let last = ks.pop().expect("at least one stage");
    Ok((znew, last))
}

/// The replayed state at a save time must be finite and agree with the solve that chose the
/// steps: a replay that drifts (an unstable discretisation amplifying the rounding differences
/// of the recorded step sizes) would otherwise return a wrong value and its wrong derivatives
/// as `Ok`. Agreement means within the solve's tolerance `atol + rtol·|z|` plus a rounding
/// allowance `√ε·max(1, |z|)` (the replay evaluates the same steps in a different order of
/// operations, which in single precision alone can exceed a tight tolerance).
fn check_replay<'t, E: Element>(
    replay: &[Var<'t, E>],
    solved: &[Tensor<E>],
    opts: &SolveOptions<E>,
    t: E,
) -> Result<(), OdeError> {
    let (rtol, atol) = (opts.rtol.to_f64(), opts.atol.to_f64());
    let rounding = E::EPSILON.to_f64().sqrt();
    let mut worst = 0.0f64;
    for (r, s) in replay.iter().zip(solved) {
        let finite = r.with_value(|rv| {
            for (a, b) in rv.as_slice().iter().zip(s.as_slice()) {
                let (a, b) = (a.to_f64(), b.to_f64());
                if !a.is_finite() {
                    return false;
                }
                let m = a.abs().max(b.abs());
                let allowed = atol + rtol * m + rounding * m.max(1.0);
                worst = worst.max((a - b).abs() / allowed);
            }
            true
        });
        if !finite {
            return Err(OdeError::ReplayDiverged {
                t: t.to_f64(),
                deviation: f64::INFINITY,
            });
        }
    }
    if worst > 1.0 {
        return Err(OdeError::ReplayDiverged {
            t: t.to_f64(),
            deviation: worst,
        });
    }
    Ok(())
}

/// `z + h Σ_j w_j k_j` per channel over the [`terms`] of `w`, recorded on the tape (the sum
/// first, then one product with the variable step `h`).
fn combine<'t, E: Element>(
    z: &[Var<'t, E>],
    h: Var<'t, E>,
    ks: &[Vec<Var<'t, E>>],
    w: &[f64],
) -> Vec<Var<'t, E>> {
    (0..z.len())
        .map(|c| {
            let mut acc: Option<Var<'t, E>> = None;
            for (j, wj) in terms(w) {
                let term = ks[j][c] * E::from_f64(wj);
                acc = Some(match acc {
                    None => term,
                    Some(a) => a + term,
                });
            }
            match acc {
                Some(a) => z[c] + h * a,
                None => z[c],
            }
        })
        .collect()
}
