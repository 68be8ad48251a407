//! Test problems with known solutions.
#![allow(dead_code)]

use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, Dynamics};

/// z' = z Aᵀ for a 1×2 row z, A = [[-0.1, 1], [-1, -0.1]] (rotation with decay); the
/// parameter is Aᵀ.
pub fn rotation() -> (impl Dynamics<f64>, Vec<Tensor<f64>>) {
    let f = dynamics::<f64, _>(|_tape, _t, z, p| Ok(vec![z[0].matmul(p[0])]));
    let at = Tensor::from_f64s(2, 2, &[-0.1, -1.0, 1.0, -0.1]);
    (f, vec![at])
}

/// Exact solution of [`rotation`] from z0 = (1, 0.5).
pub fn rotation_exact(t: f64) -> [f64; 2] {
    let (x, y) = (1.0, 0.5);
    let d = (-0.1 * t).exp();
    [
        d * (t.cos() * x + t.sin() * y),
        d * (-t.sin() * x + t.cos() * y),
    ]
}

pub fn rotation_z0() -> Vec<Tensor<f64>> {
    vec![Tensor::from_f64s(1, 2, &[1.0, 0.5])]
}

pub fn max_err(z: &Tensor<f64>, want: &[f64]) -> f64 {
    z.as_slice()
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

/// Harmonic oscillator (x, v)' = (v, −x) as one 1×2 channel.
pub fn oscillator() -> impl Dynamics<f64> {
    dynamics::<f64, _>(|_tape, _t, z, _p| {
        let x = z[0].slice_cols(0, 1);
        let v = z[0].slice_cols(1, 2);
        Ok(vec![z[0].tape().concat_cols(&[v, -x])])
    })
}

/// Kepler two-body problem, state (q1, q2, p1, p2) as a 1×4 channel.
pub fn kepler() -> impl Dynamics<f64> {
    dynamics::<f64, _>(|tape: &Tape<f64>, _t, z, _p| {
        let q = z[0].slice_cols(0, 2);
        let p = z[0].slice_cols(2, 4);
        let r2 = (q * q).sum();
        let r3 = r2.powf(1.5);
        let acc = -(q / r3);
        Ok(vec![tape.concat_cols(&[p, acc])])
    })
}

/// Kepler initial state with eccentricity e (period 2π).
pub fn kepler_z0(e: f64) -> Vec<Tensor<f64>> {
    vec![Tensor::from_f64s(
        1,
        4,
        &[1.0 - e, 0.0, 0.0, ((1.0 + e) / (1.0 - e)).sqrt()],
    )]
}

/// Van der Pol oscillator x'' = μ(1 − x²)x' − x, state (x, v) as a 1×2 channel, μ in p[0].
pub fn van_der_pol() -> impl Dynamics<f64> {
    dynamics::<f64, _>(|tape: &Tape<f64>, _t, z, p| {
        let x = z[0].slice_cols(0, 1);
        let v = z[0].slice_cols(1, 2);
        let a = p[0] * (1.0 - x * x) * v - x;
        Ok(vec![tape.concat_cols(&[v, a])])
    })
}

/// Stiff linear system z' = z Dᵀ with eigenvalues −1 and −1e4 (a rotated diagonal), 1×2 row.
pub fn stiff_linear() -> (impl Dynamics<f64>, Vec<Tensor<f64>>) {
    // D = Q diag(−1, −1e4) Qᵀ with Q the rotation by 30°.
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let (l1, l2) = (-1.0, -1e4);
    let d = [
        c * c * l1 + s * s * l2,
        c * s * (l1 - l2),
        c * s * (l1 - l2),
        s * s * l1 + c * c * l2,
    ];
    // symmetric, so Dᵀ = D
    let f = dynamics::<f64, _>(|_tape, _t, z: &[Var<'_, f64>], p: &[Var<'_, f64>]| {
        Ok(vec![z[0].matmul(p[0])])
    });
    (f, vec![Tensor::from_f64s(2, 2, &d)])
}

/// Exact solution of [`stiff_linear`] from z0 = (1, 1).
pub fn stiff_exact(t: f64) -> [f64; 2] {
    let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
    let z0 = [1.0, 1.0];
    // coordinates in the eigenbasis
    let u1 = c * z0[0] + s * z0[1];
    let u2 = -s * z0[0] + c * z0[1];
    let (v1, v2) = (u1 * (-t).exp(), u2 * (-1e4 * t).exp());
    [c * v1 - s * v2, s * v1 + c * v2]
}
