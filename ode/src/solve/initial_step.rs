//! Hairer's choice of the first step size.

use autodiff::{Element, Tensor};

use super::evaluator::Evaluator;
use super::norm::ErrorNorm;
use super::state::alloc_like;
use super::stepper::Stepper;

/// Hairer's initial step (Hairer, Nørsett & Wanner 1993, Section II.4, algorithm "starting
/// step size"); returns a magnitude.
#[allow(clippy::too_many_arguments)]
pub(super) fn initial_step<E: Element>(
    ev: &mut Evaluator<'_, '_, E>,
    st: &mut dyn Stepper<E>,
    t0: E,
    y0: &[Tensor<E>],
    dir: f64,
    span: f64,
    max_step: f64,
    norm: &ErrorNorm,
) -> f64 {
    let order = st.order();
    let f0 = st.f0(ev, t0, y0).to_vec();
    let d0 = norm.scaled(y0, y0, y0, false);
    // ‖f0‖ and ‖f1 − f0‖ with the scale of y0.
    let scaled = |v: &[Tensor<E>]| norm.scaled(v, y0, y0, false);
    let d1 = scaled(&f0);
    let mut h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    // A derivative so large that d0/d1 underflows still needs a positive first step.
    if !(h0 > 0.0 && h0.is_finite()) {
        h0 = f64::MIN_POSITIVE.max(1e-12 * span);
    }
    h0 = h0.min(max_step).min(span);
    let mut y1 = y0.to_vec();
    for (a, f) in y1.iter_mut().zip(&f0) {
        a.axpy(E::from_f64(dir * h0), f);
    }
    let mut f1 = alloc_like(y0);
    ev.eval(t0 + E::from_f64(dir * h0), &y1, &mut f1);
    for (a, b) in f1.iter_mut().zip(&f0) {
        a.axpy(-E::ONE, b);
    }
    let d2 = scaled(&f1) / h0;
    if !(d1.is_finite() && d2.is_finite()) {
        return h0;
    }
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / (order as f64 + 1.0))
    };
    (100.0 * h0).min(h1).min(max_step).min(span)
}
