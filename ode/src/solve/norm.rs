//! The error norm: Hairer's scaled RMS norm over the channels that take part in error control.

use autodiff::{Element, Tensor};

use crate::options::SolveOptions;

/// The error norm the steppers measure their error estimates with (and the Newton iteration
/// takes its tolerances from): `rtol`, `atol` and the channels that take part.
pub(super) struct ErrorNorm {
    pub(super) rtol: f64,
    pub(super) atol: f64,
    /// Channels that take part in error control.
    pub(super) mask: Vec<bool>,
}

impl ErrorNorm {
    pub(super) fn new<E: Element>(o: &SolveOptions<E>, channels: usize) -> Self {
        ErrorNorm {
            rtol: o.rtol.to_f64(),
            atol: o.atol.to_f64(),
            mask: o
                .error_channels
                .clone()
                .unwrap_or_else(|| vec![true; channels]),
        }
    }

    /// Hairer's scaled RMS norm `sqrt(mean_i (e_i / sc_i)²)` with
    /// `sc_i = atol + rtol · max(|a_i|, |b_i|)`, over the masked channels (Hairer, Nørsett &
    /// Wanner 1993, eq. II.4.11); `all` takes every channel.
    ///
    /// A component with `sc_i = 0` (`atol = 0` and the component exactly zero at both ends)
    /// has no scale to be measured against and is left out of the sum, so pure relative control
    /// of a state with exact zeros is well defined instead of `0/0`. The sum is rescaled when
    /// the squares would overflow, so a huge but finite state or derivative gives a huge but
    /// finite norm.
    pub(super) fn scaled<E: Element>(
        &self,
        e: &[Tensor<E>],
        a: &[Tensor<E>],
        b: &[Tensor<E>],
        all: bool,
    ) -> f64 {
        let ratios = || {
            (0..e.len())
                .filter(move |&ch| all || self.mask[ch])
                .flat_map(move |ch| {
                    e[ch]
                        .as_slice()
                        .iter()
                        .zip(a[ch].as_slice())
                        .zip(b[ch].as_slice())
                        .map(move |((x, p), q)| {
                            let sc = self.atol + self.rtol * p.to_f64().abs().max(q.to_f64().abs());
                            let x = x.to_f64();
                            if sc == 0.0 {
                                0.0
                            } else {
                                x / sc
                            }
                        })
                })
        };
        let count: usize = (0..e.len())
            .filter(|&ch| all || self.mask[ch])
            .map(|ch| e[ch].len())
            .sum();
        if count == 0 {
            return 0.0;
        }
        let sum: f64 = ratios().map(|r| r * r).sum();
        if sum.is_finite() {
            return (sum / count as f64).sqrt();
        }
        // Overflow (or a non-finite ratio): scale by the largest ratio first.
        let big = ratios().fold(0.0f64, |m, r| m.max(r.abs()));
        if !big.is_finite() {
            return big;
        }
        let sum: f64 = ratios().map(|r| (r / big) * (r / big)).sum();
        big * (sum / count as f64).sqrt()
    }
}
