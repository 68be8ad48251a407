//! The fixed-step driver: equal steps between consecutive save times.

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::norm::ErrorNorm;
use super::stepper::{Outcome, Stepper};
use super::Output;
use crate::options::SolveOptions;
use crate::OdeError;

/// Fixed steps: `count(Δt)` equal steps between consecutive save times.
#[allow(clippy::too_many_arguments)]
pub(super) fn fixed<E: Element>(
    ev: &mut Evaluator<'_, '_, E>,
    st: &mut dyn Stepper<E>,
    z0: &[Tensor<E>],
    times: &[E],
    count: impl Fn(f64) -> usize,
    opts: &SolveOptions<E>,
    norm: &ErrorNorm,
    out: &mut Output<E>,
) -> Result<(), OdeError> {
    let mut y = z0.to_vec();
    let mut attempted = 0usize;
    for w in times.windows(2) {
        let (ta, tb) = (w[0], w[1]);
        let n = count((tb - ta).to_f64());
        let h = (tb - ta) / E::from_usize(n);
        for j in 0..n {
            if attempted >= opts.max_steps {
                return Err(OdeError::MaxSteps {
                    t: (ta + h * E::from_usize(j)).to_f64(),
                    steps: attempted,
                });
            }
            let t = ta + h * E::from_usize(j);
            let outcome = st.attempt(ev, t, h, &y, false, norm, &mut out.stats);
            attempted += 1;
            match outcome {
                Outcome::Done(_) => {}
                Outcome::NonFinite => {
                    return Err(OdeError::NonFinite {
                        t: t.to_f64(),
                        step: attempted - 1,
                    })
                }
                Outcome::NewtonFailed => {
                    return Err(OdeError::NewtonDiverged {
                        t: t.to_f64(),
                        h: h.to_f64(),
                    })
                }
            }
            st.accept(&mut y);
            out.stats.accepted += 1;
            out.stats.last_step = h.to_f64();
            if out.record {
                out.steps.push(if j + 1 == n {
                    tb
                } else {
                    ta + h * E::from_usize(j + 1)
                });
            }
            if out.record_states {
                out.step_states.push(y.clone());
            }
        }
        out.states.push(y.clone());
    }
    Ok(())
}
