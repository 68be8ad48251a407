//! Initial values of layer parameters.

use autodiff::{Element, Tensor};
use rand::Rng;

/// Draws a `rows × cols` tensor uniform on `±1/√fan_in` (PyTorch's `nn.Linear` default).
pub fn uniform_init<E: Element, R: Rng + ?Sized>(
    rows: usize,
    cols: usize,
    fan_in: usize,
    rng: &mut R,
) -> Tensor<E> {
    assert!(fan_in > 0, "uniform_init: fan_in must be positive");
    let bound = 1.0 / (fan_in as f64).sqrt();
    Tensor::rand_uniform(rows, cols, E::from_f64(-bound), E::from_f64(bound), rng)
}

/// Where a layer's initial values come from: every random generator (`&mut rng`, PyTorch's
/// default initialisation, [`uniform_init`]) or [`Zeros`], for a layer built only to load
/// weights into (then [`Params::load_into`] fills it, checking every name and shape).
///
/// ```
/// use flows::nn::{Act, OdeNet, Zeros};
/// use flows::Params;
///
/// let mut params = Params::<f64>::new();
/// let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[8], Act::Tanh, &mut Zeros);
/// assert!(params.tensors().all(|t| t.as_slice().iter().all(|&v| v == 0.0)));
/// # let _ = net;
/// ```
///
/// [`Params::load_into`]: crate::Params::load_into
pub trait Init {
    /// A `rows × cols` tensor for a weight of fan-in `fan_in`.
    fn uniform<E: Element>(&mut self, rows: usize, cols: usize, fan_in: usize) -> Tensor<E>;
}

impl<R: Rng + ?Sized> Init for R {
    fn uniform<E: Element>(&mut self, rows: usize, cols: usize, fan_in: usize) -> Tensor<E> {
        uniform_init(rows, cols, fan_in, self)
    }
}

/// Zero initial values: a layer built to receive loaded weights, without a random generator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Zeros;

impl Init for Zeros {
    fn uniform<E: Element>(&mut self, rows: usize, cols: usize, fan_in: usize) -> Tensor<E> {
        assert!(fan_in > 0, "Zeros: fan_in must be positive");
        Tensor::zeros(rows, cols)
    }
}
