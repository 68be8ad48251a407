//! Elementwise transcendental kernels over slices.
//!
//! Scalar reference versions for now; each function has the same contract as its std
//! counterpart applied elementwise.

macro_rules! scalar_kernels {
    ($m:ident, $t:ident) => {
        /// Kernels for this precision.
        pub mod $m {
            /// `out[i] = exp(x[i])`.
            pub fn exp(x: &[$t], out: &mut [$t]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.exp();
                }
            }
            /// `out[i] = ln(x[i])`.
            pub fn ln(x: &[$t], out: &mut [$t]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.ln();
                }
            }
            /// `out[i] = tanh(x[i])`.
            pub fn tanh(x: &[$t], out: &mut [$t]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.tanh();
                }
            }
            /// `out[i] = 1/(1+exp(-x[i]))`.
            pub fn sigmoid(x: &[$t], out: &mut [$t]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = 1.0 / (1.0 + (-v).exp());
                }
            }
            /// `out[i] = ln(1+exp(x[i]))` without overflow.
            pub fn softplus(x: &[$t], out: &mut [$t]) {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.max(0.0) + (-v.abs()).exp().ln_1p();
                }
            }
        }
    };
}
scalar_kernels!(f32k, f32);
scalar_kernels!(f64k, f64);
