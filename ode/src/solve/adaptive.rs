//! The adaptive driver: embedded error estimates, step-size control and dense output at the
//! save times.

use autodiff::{Element, Tensor};

use super::controller::StepControl;
use super::dense::Recorder;
use super::evaluator::Evaluator;
use super::initial_step::initial_step;
use super::norm::ErrorNorm;
use super::state::{alloc_like, finite};
use super::stepper::{Outcome, Stepper};
use super::Output;
use crate::options::SolveOptions;
use crate::OdeError;

/// Adaptive stepping over `[times[0], times[last]]` with dense output at the save times; with
/// a [`Recorder`], the interpolant of every accepted step is kept too, and its check may end
/// the solve after any step.
#[allow(clippy::too_many_arguments)]
pub(super) fn adaptive<E: Element>(
    ev: &mut Evaluator<'_, '_, E>,
    st: &mut dyn Stepper<E>,
    z0: &[Tensor<E>],
    times: &[E],
    opts: &SolveOptions<E>,
    norm: &ErrorNorm,
    out: &mut Output<E>,
    mut dense: Option<&mut Recorder<'_, E>>,
) -> Result<(), OdeError> {
    let t0 = times[0];
    let t_end = *times.last().expect("checked");
    let dir = if t_end > t0 { 1.0 } else { -1.0 };
    let span = (t_end - t0).to_f64().abs();
    let max_step = opts.max_step.map_or(f64::INFINITY, |h| h.to_f64());
    let min_step = opts.min_step.to_f64();
    let mut control = StepControl::new(&opts.controller, st.error_exponent());

    let mut y = z0.to_vec();
    let mut t = t0;
    if !finite(st.f0(ev, t, &y)) {
        return Err(OdeError::NonFinite {
            t: t.to_f64(),
            step: 0,
        });
    }
    let mut h = match opts.first_step {
        Some(h) => h.to_f64().min(span),
        None => initial_step(ev, st, t, &y, dir, span, max_step, norm),
    };
    let mut next = 1usize;
    let mut attempted = 0usize;
    let mut interp = alloc_like(z0);
    let dense_ok = st.dense_ok();
    while next < times.len() {
        h = h.min(max_step);
        // Steps end exactly at the last time, or at every save time when interpolation would
        // be less accurate than the method.
        let target = if dense_ok { t_end } else { times[next] };
        let remaining = (target - t).to_f64() * dir;
        // Land exactly on the target; stretch a step that would leave a sliver behind.
        let last = h >= remaining * (1.0 - 1e-12) || h * 1.01 >= remaining;
        let h_step = if last { remaining } else { h };
        if attempted >= opts.max_steps {
            return Err(OdeError::MaxSteps {
                t: t.to_f64(),
                steps: attempted,
            });
        }
        let hs = E::from_f64(dir * h_step);
        let t_new = if last { target } else { t + hs };
        if !last && (h < min_step || t_new == t) {
            return Err(OdeError::StepSizeUnderflow {
                t: t.to_f64(),
                h: dir * h,
            });
        }
        let outcome = st.attempt(ev, t, hs, &y, true, norm, &mut out.stats);
        attempted += 1;
        let err = match outcome {
            Outcome::Done(e) => e,
            Outcome::NonFinite => {
                return Err(OdeError::NonFinite {
                    t: t.to_f64(),
                    step: attempted - 1,
                })
            }
            Outcome::NewtonFailed => {
                out.stats.rejected += 1;
                control.failed();
                h = h_step * 0.5;
                if h < min_step || t + E::from_f64(dir * h) == t || h <= 1e-14 * span {
                    return Err(OdeError::NewtonDiverged {
                        t: t.to_f64(),
                        h: dir * h_step,
                    });
                }
                continue;
            }
        };
        if err <= 1.0 {
            // Save times inside (t, t_new]: exact at the end of the step, dense output inside.
            while next < times.len() && (times[next] - t_new).to_f64() * dir <= 0.0 {
                if times[next] == t_new {
                    out.states.push(st.candidate().to_vec());
                } else {
                    let theta = (times[next] - t).to_f64() / hs.to_f64();
                    st.interpolate(ev, t, hs, &y, theta, &mut interp);
                    if !finite(&interp) {
                        return Err(OdeError::NonFinite {
                            t: t.to_f64(),
                            step: attempted - 1,
                        });
                    }
                    out.states.push(interp.clone());
                }
                next += 1;
            }
            if let Some(rec) = dense.as_deref_mut() {
                let mut c: Vec<Vec<Tensor<E>>> =
                    (0..=st.dense_degree()).map(|_| alloc_like(z0)).collect();
                st.dense_polynomial(ev, t, hs, &y, &mut c);
                if !c.iter().all(|cm| finite(cm)) {
                    return Err(OdeError::NonFinite {
                        t: t.to_f64(),
                        step: attempted - 1,
                    });
                }
                rec.sol.push(t_new, c);
            }
            st.accept(&mut y);
            t = t_new;
            out.stats.accepted += 1;
            out.stats.last_step = hs.to_f64();
            if out.record {
                out.steps.push(t);
            }
            if out.record_states {
                out.step_states.push(y.clone());
            }
            out.stats.error_sum += err;
            if let Some(rec) = dense.as_deref_mut() {
                if let Some(stop) = rec.stop.as_mut() {
                    if stop(&rec.sol, &y) {
                        rec.stopped = true;
                        return Ok(());
                    }
                }
            }
            let fac = control.accepted(err);
            // A step shortened to hit a save time does not shrink the next one.
            h = if last && h_step < h {
                (h_step * fac).max(h.min(h_step * control.factormax()))
            } else {
                h_step * fac
            };
        } else {
            out.stats.rejected += 1;
            h = h_step * control.rejected(err);
            if h < min_step || t + E::from_f64(dir * h) == t {
                return Err(OdeError::StepSizeUnderflow {
                    t: t.to_f64(),
                    h: dir * h,
                });
            }
        }
    }
    Ok(())
}
