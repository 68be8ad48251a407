//! The `Checkpointed` strategy: checkpoints on the forward pass, and a backward pass that
//! re-solves each segment forward and integrates the adjoint against an interpolant of it.

use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};

use super::node::Node;
use super::systems::adjoint_options;
use super::vjp::Cotangents;
use crate::options::{SolveOptions, Stepping};
use crate::solve::hermite::hermite;
use crate::solve::state::alloc_like;
use crate::{solve, Dynamics, OdeError, Stats};

/// What the `Checkpointed` strategy keeps from the forward pass.
pub(crate) struct Saved<E> {
    /// `(time, state)` checkpoints in forward order, save times included.
    pub(crate) checkpoints: Vec<(E, Vec<Tensor<E>>)>,
    /// Accepted steps of the forward solve in each checkpoint segment.
    pub(crate) seg_steps: Vec<usize>,
}

/// What the checkpointed forward pass returns: the op's outputs, what it keeps, its cost.
pub(crate) struct CheckpointedForward<E> {
    pub(crate) outs: Vec<Tensor<E>>,
    pub(crate) saved: Saved<E>,
    pub(crate) stats: Stats,
}

/// Forward solve for the `Checkpointed` strategy: the states at the save times, plus
/// `checkpoints` evenly spaced states per save interval and the accepted step times.
pub(crate) fn forward_with_checkpoints<E: Element>(
    f: &dyn Dynamics<E>,
    z0: &[Tensor<E>],
    theta: &[Tensor<E>],
    times: &[E],
    opts: &SolveOptions<E>,
    checkpoints: usize,
) -> Result<CheckpointedForward<E>, OdeError> {
    let mut grid = vec![times[0]];
    let mut is_save = vec![true];
    for w in times.windows(2) {
        let (a, b) = (w[0].to_f64(), w[1].to_f64());
        for j in 1..=checkpoints {
            grid.push(E::from_f64(a + (b - a) * j as f64 / checkpoints as f64));
            is_save.push(j == checkpoints);
        }
        // The last point of the interval is the save time itself, exactly.
        *grid.last_mut().expect("non-empty") = w[1];
    }
    let o = opts.clone().record_steps(true);
    // In fixed-step mode the steps per interval are the user's: split them over the segments.
    let o = if is_fixed(opts) {
        divide_steps(o, checkpoints)
    } else {
        o
    };
    let sol = solve(f, z0, theta, &grid, &o)?;
    let mut outs = Vec::new();
    let mut cps = Vec::with_capacity(grid.len());
    for (k, (state, &save)) in sol.states.iter().zip(&is_save).enumerate() {
        if save && k > 0 {
            outs.extend(state.iter().cloned());
        }
        cps.push((grid[k], state.clone()));
    }
    // Keep only the number of steps per segment (the backward pass decides by it whether to
    // split a segment again), not the step times themselves.
    let mut seg_steps = vec![0usize; grid.len() - 1];
    let mut seg = 0;
    for s in &sol.steps {
        while seg + 1 < seg_steps.len() && past(*s, grid[seg + 1], grid[0], grid[grid.len() - 1]) {
            seg += 1;
        }
        seg_steps[seg] += 1;
    }
    Ok(CheckpointedForward {
        outs,
        saved: Saved {
            checkpoints: cps,
            seg_steps,
        },
        stats: sol.stats,
    })
}

/// Whether step end `s` lies beyond the segment end `b` in the direction from `t0` to `t1`
/// (a step ending exactly at `b` belongs to the segment that ends there).
fn past<E: Element>(s: E, b: E, t0: E, t1: E) -> bool {
    let dir = if t1.to_f64() >= t0.to_f64() {
        1.0
    } else {
        -1.0
    };
    (s.to_f64() - b.to_f64()) * dir > 0.0
}

/// The re-solved trajectory of a segment: states and derivatives at the ends of its steps,
/// at increasing or decreasing times, read between them with the solver's cubic Hermite
/// interpolant (the same one its dense output uses for methods without their own).
struct Trajectory<E> {
    ts: Vec<f64>,
    zs: Vec<Vec<Tensor<E>>>,
    fs: Vec<Vec<Tensor<E>>>,
}

impl<E: Element> Trajectory<E> {
    fn eval(&self, t: f64) -> Vec<Tensor<E>> {
        let n = self.ts.len();
        let increasing = self.ts[n - 1] >= self.ts[0];
        // Index i with t in [ts[i], ts[i+1]] (clamped to the ends).
        let pos = if increasing {
            self.ts.partition_point(|&s| s <= t)
        } else {
            self.ts.partition_point(|&s| s >= t)
        };
        let i = pos.saturating_sub(1).min(n - 2);
        let (t0, t1) = (self.ts[i], self.ts[i + 1]);
        let h = t1 - t0;
        let theta = if h == 0.0 { 0.0 } else { (t - t0) / h };
        let mut out = alloc_like(&self.zs[i]);
        hermite(
            &self.zs[i],
            &self.zs[i + 1],
            &self.fs[i],
            &self.fs[i + 1],
            E::from_f64(h),
            theta,
            &mut out,
        );
        out
    }
}

/// The adjoint `[a, a_θ]` with `z(t)` read from an interpolant of a forward re-solve.
struct InterpolatedAdjoint<E: Element> {
    f: Rc<dyn Dynamics<E>>,
    z: Trajectory<E>,
    n_state: usize,
    with_params: bool,
}

impl<E: Element> Dynamics<E> for InterpolatedAdjoint<E> {
    fn eval<'t>(
        &self,
        tape: &'t Tape<E>,
        t: Var<'t, E>,
        s: &[Var<'t, E>],
        params: &[Var<'t, E>],
    ) -> autodiff::Result<Vec<Var<'t, E>>> {
        let c = self.n_state;
        let z: Vec<Var<'t, E>> = self
            .z
            .eval(t.item().to_f64())
            .into_iter()
            .map(|v| tape.var(v))
            .collect();
        let fz = self.f.eval(tape, t, &z, params)?;
        let mut wrt = z.clone();
        if self.with_params {
            wrt.extend(params);
        }
        let vj = tape.vjp(&fz, &s[..c], &wrt)?;
        Ok(vj.into_iter().map(|v| -v).collect())
    }
}

/// Evaluates `f` at plain values.
fn eval_f<E: Element>(
    f: &dyn Dynamics<E>,
    t: E,
    z: &[Tensor<E>],
    theta: &[Tensor<E>],
) -> Result<Vec<Tensor<E>>, OdeError> {
    let tape = Tape::new();
    let zv: Vec<Var<'_, E>> = z.iter().map(|v| tape.constant(v.clone())).collect();
    let pv: Vec<Var<'_, E>> = theta.iter().map(|v| tape.constant(v.clone())).collect();
    match f.eval(&tape, tape.scalar(t), &zv, &pv) {
        Ok(fz) => Ok(fz.iter().map(|v| v.value()).collect()),
        Err(e) => Err(OdeError::Dynamics {
            t: t.to_f64(),
            source: crate::DynamicsError(std::sync::Arc::new(e)),
        }),
    }
}

/// The VJP of the `Checkpointed` strategy, on plain values (first order only).
pub(crate) fn checkpointed_vjp<'t, E: Element>(
    node: &Node<E>,
    saved: &Saved<E>,
    x: &[Var<'t, E>],
    y: &[Var<'t, E>],
    g: &[Option<Var<'t, E>>],
    needs: &[bool],
) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
    let tape = x[0].tape();
    let (c, p, n) = (node.n_state, node.n_params, node.times.len());
    let wrap =
        |e: OdeError| autodiff::Error::new("odeint (checkpointed adjoint of the backward pass)", e);
    let theta: Vec<Tensor<E>> = x[c..c + p].iter().map(|v| v.value()).collect();
    let vjp = Cotangents::new(node, x, y, g, needs);
    let need_theta = vjp.need_theta();
    let pp = if need_theta { p } else { 0 };
    let mut adj_opts = adjoint_options(&node.opts, 0, pp).solve;
    // The adjoint state is [a, a_θ]: error control on a (all true) and a_θ (unless seminorm).
    let mut flags = vec![true; c];
    flags.extend(std::iter::repeat_n(!node.opts.adjoint.seminorm, pp));
    adj_opts = adj_opts.error_channels(flags);
    let per = (saved.checkpoints.len() - 1) / (n - 1).max(1);
    let mut bstats = Stats::default();
    let mut seg = saved.checkpoints.len() - 1;
    let run = Backward {
        node,
        theta: &theta,
        adj_opts: &adj_opts,
        need_theta,
        split: per.max(2),
    };
    // Each interval is `per` checkpoint segments, pulled back on plain values.
    let grads = vjp.run(false, |_k, a, a_theta| {
        let mut av: Vec<Tensor<E>> = a.iter().map(|v| v.value()).collect();
        let mut atv: Vec<Tensor<E>> = a_theta.iter().map(|v| v.value()).collect();
        for _ in 0..per {
            let (ta, za) = &saved.checkpoints[seg - 1];
            let (tb, _) = &saved.checkpoints[seg];
            run.segment(
                *ta,
                za,
                *tb,
                saved.seg_steps[seg - 1],
                &mut av,
                &mut atv,
                &mut bstats,
            )
            .map_err(wrap)?;
            seg -= 1;
        }
        *a = av.into_iter().map(|v| tape.constant(v)).collect();
        *a_theta = atv.into_iter().map(|v| tape.constant(v)).collect();
        Ok(())
    })?;
    node.ctx.stats.add_solve(node.ctx.depth + 1, bstats);
    Ok(grads)
}

fn is_fixed<E: Element>(opts: &SolveOptions<E>) -> bool {
    !matches!(opts.stepping, Stepping::Adaptive)
}

/// `n` fixed steps per save interval become `⌈n / k⌉` per checkpoint segment.
fn divide_steps<E: Element>(o: SolveOptions<E>, k: usize) -> SolveOptions<E> {
    match o.stepping {
        Stepping::Steps(n) => o.stepping(Stepping::Steps(n.div_ceil(k).max(1))),
        _ => o,
    }
}

/// Segments of at most this many steps are interpolated directly; longer ones are split.
const LEAF_STEPS: usize = 16;

/// The backward pass of the `Checkpointed` strategy over one segment at a time.
struct Backward<'a, E: Element> {
    node: &'a Node<E>,
    theta: &'a [Tensor<E>],
    adj_opts: &'a SolveOptions<E>,
    need_theta: bool,
    /// Sub-segments per split.
    split: usize,
}

impl<E: Element> Backward<'_, E> {
    /// Pulls `[a, a_θ]` back from `tb` to `ta`, where the forward state at `ta` is `za` and the
    /// forward solve took `steps` steps in between.
    #[allow(clippy::too_many_arguments)]
    fn segment(
        &self,
        ta: E,
        za: &[Tensor<E>],
        tb: E,
        steps: usize,
        a: &mut Vec<Tensor<E>>,
        a_theta: &mut Vec<Tensor<E>>,
        stats: &mut Stats,
    ) -> Result<(), OdeError> {
        let fixed = is_fixed(&self.node.opts);
        if steps <= LEAF_STEPS {
            return self.leaf(ta, za, tb, steps.max(1), a, a_theta, stats);
        }
        // Split: re-solve forward keeping only the sub-checkpoints, then recurse backwards.
        let k = self.split.min(steps);
        let counts: Vec<usize> = (0..k)
            .map(|j| (j + 1) * steps / k - j * steps / k)
            .collect();
        let (ta64, tb64) = (ta.to_f64(), tb.to_f64());
        let mut bounds = vec![ta];
        let mut done = 0;
        for &c in &counts {
            done += c;
            bounds.push(if done == steps {
                tb
            } else {
                E::from_f64(ta64 + (tb64 - ta64) * done as f64 / steps as f64)
            });
        }
        let mut subs: Vec<Vec<Tensor<E>>> = vec![za.to_vec()];
        if fixed {
            // Equal steps inside the segment, as the forward pass took them.
            for (j, &c) in counts.iter().enumerate() {
                let o = self.node.opts.solve.clone().stepping(Stepping::Steps(c));
                let sol = solve(
                    &*self.node.f,
                    &subs[j],
                    self.theta,
                    &[bounds[j], bounds[j + 1]],
                    &o,
                )?;
                *stats += sol.stats;
                subs.push(sol.states.into_iter().next_back().expect("end state"));
            }
        } else {
            let sol = solve(&*self.node.f, za, self.theta, &bounds, &self.node.opts)?;
            *stats += sol.stats;
            subs = sol.states;
        }
        for j in (0..k).rev() {
            self.segment(
                bounds[j],
                &subs[j],
                bounds[j + 1],
                counts[j],
                a,
                a_theta,
                stats,
            )?;
        }
        Ok(())
    }

    /// A short segment: re-solve it forward saving every step, interpolate, and integrate
    /// the adjoint backwards against the interpolant.
    #[allow(clippy::too_many_arguments)]
    fn leaf(
        &self,
        ta: E,
        za: &[Tensor<E>],
        tb: E,
        steps: usize,
        a: &mut Vec<Tensor<E>>,
        a_theta: &mut Vec<Tensor<E>>,
        stats: &mut Stats,
    ) -> Result<(), OdeError> {
        let node = self.node;
        let fixed = is_fixed(&node.opts);
        let fwd = if fixed {
            node.opts.solve.clone().stepping(Stepping::Steps(steps))
        } else {
            node.opts.solve.clone()
        };
        let sol = solve(
            &*node.f,
            za,
            self.theta,
            &[ta, tb],
            &fwd.record_step_states(true),
        )?;
        *stats += sol.stats;
        let mut grid = vec![ta];
        grid.extend(sol.steps.iter().copied());
        let mut zs = vec![za.to_vec()];
        zs.extend(sol.step_states);
        let fs: Vec<Vec<Tensor<E>>> = grid
            .iter()
            .zip(&zs)
            .map(|(t, z)| eval_f(&*node.f, *t, z, self.theta))
            .collect::<Result<_, _>>()?;
        stats.nfe += grid.len();
        let interp = Trajectory {
            ts: grid.iter().map(|t| t.to_f64()).collect(),
            zs,
            fs,
        };
        let adj: InterpolatedAdjoint<E> = InterpolatedAdjoint {
            f: node.f.clone(),
            z: interp,
            n_state: node.n_state,
            with_params: self.need_theta,
        };
        let mut init = a.clone();
        init.extend(a_theta.iter().cloned());
        // With fixed steps the adjoint takes the same steps backwards.
        let (times, run) = if fixed {
            (
                grid.iter().rev().copied().collect::<Vec<E>>(),
                self.adj_opts.clone().stepping(Stepping::Steps(1)),
            )
        } else {
            (vec![tb, ta], self.adj_opts.clone())
        };
        let asol = solve(&adj, &init, self.theta, &times, &run)?;
        *stats += asol.stats;
        let end = asol.states.last().expect("solution has states");
        let c = node.n_state;
        *a = end[..c].to_vec();
        *a_theta = end[c..].to_vec();
        Ok(())
    }
}
