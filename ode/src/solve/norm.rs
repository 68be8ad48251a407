//! The error norm: Hairer's scaled RMS, taken per state channel (the largest channel's RMS
//! is the norm) or over all controlled entries at once, as [`Norm`] says.

use autodiff::{Element, Tensor};

use crate::options::{Norm, SolveOptions};

/// The error norm the steppers measure their error estimates with (and the Newton iteration
/// takes its tolerances from): `rtol`, `atol`, the channels that take part and how their
/// errors are combined.
pub(super) struct ErrorNorm {
    pub(super) rtol: f64,
    pub(super) atol: f64,
    /// Channels that take part in error control.
    pub(super) mask: Vec<bool>,
    /// How the channels' errors are combined.
    pub(super) kind: Norm,
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
            kind: o.norm,
        }
    }

    /// The scaled error of `e` for a step from `a` to `b`, over the masked channels (`all`
    /// takes every channel), from the ratios `e_i / sc_i` with `sc_i = atol + rtol ·
    /// max(|a_i|, |b_i|)` (Hairer, Nørsett & Wanner 1993, eq. II.4.11):
    ///
    /// - [`Norm::ChannelMax`]: `max_c sqrt(mean_{i ∈ c} (e_i / sc_i)²)`, the largest RMS of a
    ///   single channel (torchdiffeq's norm for a tuple state). Leaving a channel out can only
    ///   lower it, which is what makes the seminorm of the adjoint save work.
    /// - [`Norm::Rms`]: `sqrt(mean_i (e_i / sc_i)²)` over all masked entries together.
    ///
    /// A component with `sc_i = 0` (`atol = 0` and the component exactly zero at both ends)
    /// has no scale to be measured against: it counts as a zero ratio, so pure relative
    /// control of a state with exact zeros is well defined instead of `0/0`. A sum of squares
    /// that would overflow is rescaled by its largest ratio first, so a huge but finite state
    /// or derivative gives a huge but finite norm; a NaN anywhere gives NaN.
    pub(super) fn scaled<E: Element>(
        &self,
        e: &[Tensor<E>],
        a: &[Tensor<E>],
        b: &[Tensor<E>],
        all: bool,
    ) -> f64 {
        let kept = || (0..e.len()).filter(move |&ch| all || self.mask[ch]);
        match self.kind {
            Norm::Rms => self.rms(e, a, b, kept()),
            Norm::ChannelMax => {
                let mut worst = 0.0f64;
                for ch in kept() {
                    let r = self.rms(e, a, b, std::iter::once(ch));
                    // `f64::max` would drop a NaN; it must reach the stepper's finiteness check.
                    if r.is_nan() {
                        return r;
                    }
                    worst = worst.max(r);
                }
                worst
            }
        }
    }

    /// The RMS of the scaled ratios over the entries of `channels` together (0 when they
    /// hold no entries).
    fn rms<E: Element>(
        &self,
        e: &[Tensor<E>],
        a: &[Tensor<E>],
        b: &[Tensor<E>],
        channels: impl Iterator<Item = usize> + Clone,
    ) -> f64 {
        let ratios = || {
            channels.clone().flat_map(move |ch| {
                e[ch]
                    .as_slice()
                    .iter()
                    .zip(a[ch].as_slice())
                    .zip(b[ch].as_slice())
                    .map(move |((x, p), q)| {
                        let sc = self.atol + self.rtol * p.to_f64().abs().max(q.to_f64().abs());
                        if sc == 0.0 {
                            0.0
                        } else {
                            x.to_f64() / sc
                        }
                    })
            })
        };
        let count: usize = channels.clone().map(|ch| e[ch].len()).sum();
        if count == 0 {
            return 0.0;
        }
        let sum: f64 = ratios().map(|r| r * r).sum();
        if sum.is_finite() {
            return (sum / count as f64).sqrt();
        }
        if sum.is_nan() {
            return sum;
        }
        // Overflow (or an infinite ratio): scale by the largest ratio first.
        let big = ratios().fold(0.0f64, |m, r| m.max(r.abs()));
        if !big.is_finite() {
            return big;
        }
        let sum: f64 = ratios().map(|r| (r / big) * (r / big)).sum();
        big * (sum / count as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64;

    fn norm(kind: Norm, mask: Vec<bool>) -> ErrorNorm {
        ErrorNorm {
            rtol: 1e-3,
            atol: 1e-6,
            mask,
            kind,
        }
    }

    /// The RMS of `e_i / (atol + rtol max(|a_i|, |b_i|))` over the given channels, written
    /// out directly (no overflow guard: the test values are moderate).
    fn reference(n: &ErrorNorm, e: &[Tensor<f64>], a: &[Tensor<f64>], chs: &[usize]) -> f64 {
        let (mut sum, mut count) = (0.0, 0usize);
        for &ch in chs {
            for (x, p) in e[ch].as_slice().iter().zip(a[ch].as_slice()) {
                sum += (x / (n.atol + n.rtol * p.abs())).powi(2);
                count += 1;
            }
        }
        if count == 0 {
            0.0
        } else {
            (sum / count as f64).sqrt()
        }
    }

    /// Random channels of random shapes (some empty), errors spread over decades.
    fn draw(rng: &mut Pcg64) -> (Vec<Tensor<f64>>, Vec<Tensor<f64>>) {
        let k = rng.random_range(1..6);
        let mut e = Vec::new();
        let mut a = Vec::new();
        for _ in 0..k {
            let (r, c) = (rng.random_range(0..4), rng.random_range(1..5));
            let scale = 10f64.powf(rng.random_range(-4.0..2.0));
            e.push(Tensor::from_fn(r, c, |_, _| {
                scale * rng.random_range(-1.0..1.0)
            }));
            a.push(Tensor::from_fn(r, c, |_, _| rng.random_range(-3.0..3.0)));
        }
        (e, a)
    }

    #[test]
    fn channel_max_is_the_largest_channel_rms_and_bounds_the_joint_rms() {
        let mut rng = Pcg64::seed_from_u64(7);
        for _ in 0..500 {
            let (e, a) = draw(&mut rng);
            let k = e.len();
            let n = norm(Norm::ChannelMax, vec![true; k]);
            let got = n.scaled(&e, &a, &a, false);
            let per: Vec<f64> = (0..k).map(|ch| reference(&n, &e, &a, &[ch])).collect();
            let want = per.iter().cloned().fold(0.0, f64::max);
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1e-300),
                "{got} vs {want}"
            );
            for r in &per {
                assert!(got >= *r * (1.0 - 1e-12));
            }
            let joint = norm(Norm::Rms, vec![true; k]).scaled(&e, &a, &a, false);
            let all: Vec<usize> = (0..k).collect();
            let joint_ref = reference(&n, &e, &a, &all);
            assert!((joint - joint_ref).abs() <= 1e-12 * joint_ref.max(1e-300));
            assert!(
                got >= joint * (1.0 - 1e-12),
                "max {got} < joint RMS {joint}"
            );
        }
    }

    #[test]
    fn leaving_channels_out_lowers_channel_max_to_the_kept_channels_norm() {
        // The seminorm property: the norm with some channels left out is the full per-channel
        // norm restricted to the kept channels, so it accepts every step the full norm accepts
        // and rejects exactly the steps whose kept channels the full norm would reject.
        let mut rng = Pcg64::seed_from_u64(11);
        for _ in 0..500 {
            let (e, a) = draw(&mut rng);
            let k = e.len();
            let mask: Vec<bool> = (0..k).map(|_| rng.random_bool(0.5)).collect();
            let full = norm(Norm::ChannelMax, vec![true; k]).scaled(&e, &a, &a, false);
            let semi_norm = norm(Norm::ChannelMax, mask.clone());
            let semi = semi_norm.scaled(&e, &a, &a, false);
            assert!(semi <= full, "seminorm {semi} above the full norm {full}");
            let kept = (0..k)
                .filter(|&ch| mask[ch])
                .map(|ch| reference(&semi_norm, &e, &a, &[ch]))
                .fold(0.0, f64::max);
            assert!((semi - kept).abs() <= 1e-12 * kept.max(1e-300));
            // `all` ignores the mask.
            assert_eq!(semi_norm.scaled(&e, &a, &a, true), full);
        }
    }

    #[test]
    fn the_joint_rms_can_rise_when_a_channel_is_left_out() {
        // Why the joint RMS made the seminorm cost work: a large channel of small errors
        // (parameter gradients) dilutes the others' mean, and dropping it undoes that.
        let e: Vec<Tensor<f64>> = vec![Tensor::from_f64s(1, 1, &[1e-3]), Tensor::zeros(1, 99)];
        let a = vec![Tensor::zeros(1, 1), Tensor::zeros(1, 99)];
        let rms = |mask: Vec<bool>| norm(Norm::Rms, mask).scaled(&e, &a, &a, false);
        let max = |mask: Vec<bool>| norm(Norm::ChannelMax, mask).scaled(&e, &a, &a, false);
        // e / atol = 1000 in one entry of 100, then of 1.
        assert!((rms(vec![true, true]) - 100.0).abs() < 1e-9);
        assert!((rms(vec![true, false]) - 1000.0).abs() < 1e-9);
        assert!((max(vec![true, true]) - 1000.0).abs() < 1e-9);
        assert_eq!(max(vec![true, true]), max(vec![true, false]));
    }

    #[test]
    fn on_one_channel_both_norms_agree() {
        let mut rng = Pcg64::seed_from_u64(3);
        for _ in 0..100 {
            let (e, a) = draw(&mut rng);
            let (e, a) = (&e[..1], &a[..1]);
            let x = norm(Norm::ChannelMax, vec![true]).scaled(e, a, a, false);
            let y = norm(Norm::Rms, vec![true]).scaled(e, a, a, false);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn scale_uses_the_larger_end_and_exact_zeros_without_atol_count_as_zero() {
        let n = ErrorNorm {
            rtol: 0.5,
            atol: 0.0,
            mask: vec![true],
            kind: Norm::ChannelMax,
        };
        let e: Vec<Tensor<f64>> = vec![Tensor::from_f64s(1, 2, &[1.0, 3.0])];
        let a = vec![Tensor::from_f64s(1, 2, &[1.0, 0.0])];
        let b = vec![Tensor::from_f64s(1, 2, &[-4.0, 0.0])];
        // Ratios 1 / (0.5 · 4) = 0.5 and 3 / 0 → 0: RMS sqrt(0.25 / 2).
        assert!((n.scaled(&e, &a, &b, false) - (0.125f64).sqrt()).abs() < 1e-15);
    }

    #[test]
    fn nan_and_overflow_reach_the_caller() {
        let big = 1e200;
        let a: Vec<Tensor<f64>> = vec![Tensor::zeros(1, 2), Tensor::zeros(1, 2)];
        for kind in [Norm::ChannelMax, Norm::Rms] {
            let n = norm(kind, vec![true, true]);
            // A larger channel next to a NaN must not hide it.
            let e = vec![
                Tensor::from_f64s(1, 2, &[f64::NAN, 0.0]),
                Tensor::from_f64s(1, 2, &[big, big]),
            ];
            assert!(n.scaled(&e, &a, &a, false).is_nan(), "{kind:?}");
            // Squares overflow, the norm does not: every ratio is 1e206.
            let e = vec![
                Tensor::from_f64s(1, 2, &[big, big]),
                Tensor::from_f64s(1, 2, &[big, -big]),
            ];
            let v = n.scaled(&e, &a, &a, false);
            assert!((v / 1e206 - 1.0).abs() < 1e-12, "{kind:?}: {v}");
            let e = vec![
                Tensor::from_f64s(1, 2, &[f64::INFINITY, 0.0]),
                Tensor::zeros(1, 2),
            ];
            assert_eq!(n.scaled(&e, &a, &a, false), f64::INFINITY);
        }
    }
}
