//! What a training loop needs, in one import: `use flows::prelude::*;`.
//!
//! The tape ([`Tape`], [`Tensor`], [`Var`]), the solver ([`odeint`], [`Options`], [`Method`],
//! [`Adjoint`], [`Dynamics`], [`dynamics`]), the models ([`Cnf`], [`Mode`], [`OdeNet`],
//! [`Mlp`], [`Act`], [`Trace`], [`Probe`], [`Reg`]), the store and its optimizers
//! ([`Params`], [`Adam`], [`AdamW`], [`Sgd`], [`Optimizer`], [`clip_grad_norm`]), the toy
//! [`data`], checkpoints and weight averaging ([`save_checkpoint`], [`load_checkpoint`],
//! [`Ema`]), the errors ([`FlowError`]), and the generator with its traits ([`Pcg64`],
//! [`SeedableRng`], [`Rng`]) — from the crates `flows` is built with, so the versions agree.
//!
//! ```
//! use flows::prelude::*;
//!
//! let mut rng = Pcg64::seed_from_u64(0);
//! let mut params = Params::<f32>::new();
//! let mlp = Mlp::new(&mut params, "net", &[2, 16, 1], Act::Tanh, &mut rng);
//! let mut opt = Adam::new(1e-2);
//! let tape = Tape::new();
//! let p = params.vars(&tape);
//! let x = tape.constant(data::eight_gaussians(32, &mut rng));
//! let loss = mlp.forward(&p, x).square().mean();
//! opt.step(&mut params, &tape.grad(loss, &p).unwrap());
//! assert_eq!(opt.steps(), 1);
//! ```

pub use autodiff::{Element, Tape, Tensor, Var};
pub use ode::{dynamics, odeint, Adjoint, Dynamics, Method, Options};
pub use rand::{Rng, SeedableRng};
pub use rand_pcg::Pcg64;

pub use crate::cnf::{Cnf, Mode};
pub use crate::data;
pub use crate::nn::{Act, Mlp, OdeNet};
pub use crate::optim::{clip_grad_norm, Adam, AdamW, Optimizer, Sgd, StatefulOptimizer};
pub use crate::regularizers::Reg;
pub use crate::trace::{Probe, Trace};
pub use crate::train::{load_checkpoint, save_checkpoint, Ema};
pub use crate::{FlowError, Params};
