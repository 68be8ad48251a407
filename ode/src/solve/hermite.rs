//! Cubic Hermite interpolation inside a step, from the values and derivatives at its ends.

use autodiff::{Element, Tensor};

/// Cubic Hermite interpolation from values and derivatives at both ends of a step.
pub(crate) fn hermite<E: Element>(
    y0: &[Tensor<E>],
    y1: &[Tensor<E>],
    f0: &[Tensor<E>],
    f1: &[Tensor<E>],
    h: E,
    theta: f64,
    out: &mut [Tensor<E>],
) {
    let (t2, t3) = (theta * theta, theta * theta * theta);
    let h00 = E::from_f64(2.0 * t3 - 3.0 * t2 + 1.0);
    let h10 = h * E::from_f64(t3 - 2.0 * t2 + theta);
    let h01 = E::from_f64(-2.0 * t3 + 3.0 * t2);
    let h11 = h * E::from_f64(t3 - t2);
    for ch in 0..out.len() {
        let o = out[ch].as_mut_slice();
        let (a, b, c, d) = (
            y0[ch].as_slice(),
            y1[ch].as_slice(),
            f0[ch].as_slice(),
            f1[ch].as_slice(),
        );
        for i in 0..o.len() {
            o[i] = h00 * a[i] + h10 * c[i] + h01 * b[i] + h11 * d[i];
        }
    }
}
