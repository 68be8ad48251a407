//! grad, grad-of-grad, JVP, Hessian-vector product and Jacobian of a small function.
//!
//! Run with `cargo run --release --example grad_basics`.

mod common;

use std::error::Error;

use autodiff::{Tape, Tensor};

fn main() {
    common::exit_on_error(run());
}

fn run() -> Result<(), Box<dyn Error>> {
    let tape = Tape::<f64>::new();
    // f(x) = Σ tanh(x W) ⊙ x₀ + ½‖x‖², a small scalar function of a 1×3 input.
    let w = tape.constant(Tensor::from_f64s(
        3,
        3,
        &[0.5, -0.2, 0.1, 0.3, 0.8, -0.4, -0.6, 0.2, 0.9],
    ));
    let x = tape.var(Tensor::from_f64s(1, 3, &[0.3, -1.2, 0.7]));
    let f = (x.matmul(w).tanh() * x.slice_cols(0, 1)).sum() + x.square().sum() * 0.5;
    println!("f(x)            = {:.6}", f.item());

    let g = tape.grad_graph(f, &[x])?;
    println!("grad f          = {:?}", g[0].value().as_slice());

    // Differentiate the gradient again: the gradient of ‖∇f‖².
    let gg = tape.grad(g[0].square().sum(), &[x])?;
    println!("grad ‖grad f‖²  = {:?}", gg[0].as_slice());

    let v = tape.constant(Tensor::from_f64s(1, 3, &[1.0, 0.0, -1.0]));
    let jv = tape.jvp(&[f], &[x], &[v])?;
    println!(
        "jvp f · v       = {:.6} (equals grad f · v = {:.6})",
        jv[0].item(),
        g[0].value().dot(&v.value())
    );

    let hv = tape.hvp(f, &[x], &[v])?;
    println!("hvp  H v        = {:?}", hv[0].value().as_slice());

    let jac = tape.jacobian(x.matmul(w).tanh(), x)?;
    println!("jacobian of tanh(x W): {jac:?}");
    Ok(())
}
