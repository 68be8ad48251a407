//! Arithmetic on states: lists of channels (matrices) of one shape each.

use autodiff::{Element, Tensor};

use crate::tableau::terms;

pub(crate) fn alloc_like<E: Element>(z: &[Tensor<E>]) -> Vec<Tensor<E>> {
    z.iter()
        .map(|c| Tensor::zeros(c.rows(), c.cols()))
        .collect()
}

/// `out = y + h Σ_j w_j k_j` over the [`terms`] of `w`.
pub(super) fn combine<E: Element>(
    out: &mut [Tensor<E>],
    y: &[Tensor<E>],
    h: E,
    w: &[f64],
    k: &[Vec<Tensor<E>>],
) {
    for (ch, o) in out.iter_mut().enumerate() {
        o.copy_from(&y[ch]);
        for (j, wj) in terms(w) {
            o.axpy(h * E::from_f64(wj), &k[j][ch]);
        }
    }
}

/// `out = h Σ_j w_j k_j` over the [`terms`] of `w`.
pub(super) fn combine_diff<E: Element>(
    out: &mut [Tensor<E>],
    h: E,
    w: &[f64],
    k: &[Vec<Tensor<E>>],
) {
    for (ch, o) in out.iter_mut().enumerate() {
        o.fill(E::ZERO);
        for (j, wj) in terms(w) {
            o.axpy(h * E::from_f64(wj), &k[j][ch]);
        }
    }
}

pub(super) fn finite<E: Element>(z: &[Tensor<E>]) -> bool {
    z.iter().all(|c| c.all_finite())
}

pub(super) fn flatten<E: Element>(z: &[Tensor<E>], out: &mut [f64]) {
    let mut off = 0;
    for c in z {
        for (o, x) in out[off..off + c.len()].iter_mut().zip(c.as_slice()) {
            *o = x.to_f64();
        }
        off += c.len();
    }
}

pub(super) fn unflatten<E: Element>(v: &[f64], out: &mut [Tensor<E>]) {
    let mut off = 0;
    for c in out {
        let n = c.len();
        for (o, x) in c.as_mut_slice().iter_mut().zip(&v[off..off + n]) {
            *o = E::from_f64(*x);
        }
        off += n;
    }
}
