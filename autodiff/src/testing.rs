//! Derivative checks against finite differences, for this crate's primitives and for anything
//! built on the tape (ODE solves, flows).
//!
//! A checked function maps a list of input matrices to a list of output matrices:
//! `for<'t> Fn(&'t Tape<E>, &[Var<'t, E>]) -> Vec<Var<'t, E>>`.
//!
//! ```
//! use autodiff::testing::{check_grads, tape_fn, CheckOpts};
//! use autodiff::Tensor;
//! let f = tape_fn::<f64, _>(|_tape, x| vec![(x[0].tanh() * x[1]).sum()]);
//! let xs = [Tensor::from_f64s(2, 2, &[0.1, -0.4, 0.3, 0.8]), Tensor::from_f64s(2, 2, &[1.0, 2.0, -1.0, 0.5])];
//! check_grads(&f, &xs, 2, &CheckOpts::default()).unwrap();
//! ```

use std::fmt;

use rand::SeedableRng;
use rand_pcg::Pcg64;

use crate::{Element, Tape, Tensor, Var};

/// Step size and tolerances of a check. Two numbers `a` (from the tape) and `b` (finite
/// differences) agree when `|a − b| ≤ atol + rtol · max(|a|, |b|)`.
#[derive(Clone, Debug)]
pub struct CheckOpts {
    /// Central-difference step.
    pub eps: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Seed of the random directions.
    pub seed: u64,
}

impl Default for CheckOpts {
    /// Settings for `f64`: step 1e-6, tolerances 1e-6.
    fn default() -> Self {
        CheckOpts {
            eps: 1e-6,
            rtol: 1e-6,
            atol: 1e-6,
            seed: 0,
        }
    }
}

impl CheckOpts {
    /// Looser settings suited to `f32` (step 1e-2, tolerances 2e-2).
    pub fn f32() -> Self {
        CheckOpts {
            eps: 1e-2,
            rtol: 2e-2,
            atol: 2e-2,
            seed: 0,
        }
    }
}

/// A derivative check that failed.
#[derive(Clone, Debug)]
pub struct CheckError {
    /// Which check ("vjp" or "jvp") at which derivative order.
    pub what: String,
    /// The value from the tape.
    pub tape: f64,
    /// The finite-difference value.
    pub finite_diff: f64,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: tape gives {:.12e}, finite differences give {:.12e} (difference {:.3e})",
            self.what,
            self.tape,
            self.finite_diff,
            (self.tape - self.finite_diff).abs()
        )
    }
}

impl std::error::Error for CheckError {}

/// The shape of a function the checks accept.
pub trait TapeFn<E: Element>: for<'t> Fn(&'t Tape<E>, &[Var<'t, E>]) -> Vec<Var<'t, E>> {}
impl<E: Element, F: ?Sized> TapeFn<E> for F where
    F: for<'t> Fn(&'t Tape<E>, &[Var<'t, E>]) -> Vec<Var<'t, E>>
{
}

/// Gives a closure the higher-ranked signature the checks need (Rust does not infer
/// `for<'t>` signatures for closures stored in a variable): `tape_fn(|tape, x| vec![...])`.
pub fn tape_fn<E: Element, F>(f: F) -> F
where
    F: for<'t> Fn(&'t Tape<E>, &[Var<'t, E>]) -> Vec<Var<'t, E>>,
{
    f
}

/// Evaluates `f` at plain values.
pub fn eval<E: Element, F: TapeFn<E> + ?Sized>(f: &F, xs: &[Tensor<E>]) -> Vec<Tensor<E>> {
    let tape = Tape::new();
    let vars: Vec<Var<'_, E>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    f(&tape, &vars).iter().map(|y| y.value()).collect()
}

fn like<E: Element>(ts: &[Tensor<E>], rng: &mut Pcg64) -> Vec<Tensor<E>> {
    ts.iter()
        .map(|t| Tensor::randn(t.rows(), t.cols(), rng))
        .collect()
}

fn inner<E: Element>(a: &[Tensor<E>], b: &[Tensor<E>]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a.dot(b).to_f64()).sum()
}

/// Central finite-difference directional derivative of `f` at `xs` along `vs`.
fn fd_jvp<E: Element, F: TapeFn<E> + ?Sized>(
    f: &F,
    xs: &[Tensor<E>],
    vs: &[Tensor<E>],
    eps: f64,
) -> Vec<Tensor<E>> {
    let shift = |s: f64| -> Vec<Tensor<E>> {
        xs.iter()
            .zip(vs)
            .map(|(x, v)| {
                let mut x = x.clone();
                x.axpy(E::from_f64(s), v);
                x
            })
            .collect()
    };
    let yp = eval(f, &shift(eps));
    let ym = eval(f, &shift(-eps));
    yp.iter()
        .zip(&ym)
        .map(|(p, m)| {
            p.zip_map(m, |a, b| {
                E::from_f64((a.to_f64() - b.to_f64()) / (2.0 * eps))
            })
        })
        .collect()
}

fn agree(what: String, tape: f64, fd: f64, o: &CheckOpts) -> Result<(), CheckError> {
    let ok = (tape - fd).abs() <= o.atol + o.rtol * tape.abs().max(fd.abs());
    if ok {
        Ok(())
    } else {
        Err(CheckError {
            what,
            tape,
            finite_diff: fd,
        })
    }
}

/// Dot-product test of the VJP: for random `u` (output cotangents) and `v` (input directions),
/// `⟨vjp(u), v⟩` must equal `⟨u, J v⟩` with `J v` from central differences, input by input.
pub fn check_vjp<E: Element, F: TapeFn<E> + ?Sized>(
    f: &F,
    xs: &[Tensor<E>],
    o: &CheckOpts,
) -> Result<(), CheckError> {
    let mut rng = Pcg64::seed_from_u64(o.seed);
    let tape = Tape::new();
    let vars: Vec<Var<'_, E>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let ys = f(&tape, &vars);
    let yv: Vec<Tensor<E>> = ys.iter().map(|y| y.value()).collect();
    let us = like(&yv, &mut rng);
    let vs = like(xs, &mut rng);
    let uvars: Vec<Var<'_, E>> = us.iter().map(|u| tape.constant(u.clone())).collect();
    let gs = tape.vjp_values(&ys, &uvars, &vars).expect("vjp failed");
    // One test per input, so a small input's error is not hidden behind a large one's.
    for i in 0..xs.len() {
        let vi: Vec<Tensor<E>> = vs
            .iter()
            .enumerate()
            .map(|(j, v)| {
                if j == i {
                    v.clone()
                } else {
                    Tensor::zeros(v.rows(), v.cols())
                }
            })
            .collect();
        let analytic = gs[i].dot(&vs[i]).to_f64();
        let numeric = inner(&us, &fd_jvp(f, xs, &vi, o.eps));
        agree(
            format!("vjp dot-product test, input {i}"),
            analytic,
            numeric,
            o,
        )?;
    }
    Ok(())
}

/// Checks the JVP elementwise against central differences along a random direction.
pub fn check_jvp<E: Element, F: TapeFn<E> + ?Sized>(
    f: &F,
    xs: &[Tensor<E>],
    o: &CheckOpts,
) -> Result<(), CheckError> {
    let mut rng = Pcg64::seed_from_u64(o.seed.wrapping_add(1));
    let vs = like(xs, &mut rng);
    let tape = Tape::new();
    let vars: Vec<Var<'_, E>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let ys = f(&tape, &vars);
    let vvars: Vec<Var<'_, E>> = vs.iter().map(|v| tape.constant(v.clone())).collect();
    let ts: Vec<Tensor<E>> = tape
        .jvp(&ys, &vars, &vvars)
        .expect("jvp failed")
        .iter()
        .map(|t| t.value())
        .collect();
    let fd = fd_jvp(f, xs, &vs, o.eps);
    for (k, (t, d)) in ts.iter().zip(&fd).enumerate() {
        for (i, (&a, &b)) in t.as_slice().iter().zip(d.as_slice()).enumerate() {
            agree(
                format!("jvp output {k} element {i}"),
                a.to_f64(),
                b.to_f64(),
                o,
            )?;
        }
    }
    Ok(())
}

type Boxed<E> = Box<dyn for<'t> Fn(&'t Tape<E>, &[Var<'t, E>]) -> Vec<Var<'t, E>>>;

/// Checks VJP and JVP of `f` and of its derivatives up to `order`: the derivative of order
/// k + 1 is the recorded VJP of order k with a fixed random cotangent, so order 2 checks
/// grad-of-grad and JVP-of-VJP (Hessian-vector products), order 3 the next level, and so on.
pub fn check_grads<E: Element, F>(
    f: &F,
    xs: &[Tensor<E>],
    order: usize,
    o: &CheckOpts,
) -> Result<(), CheckError>
where
    F: TapeFn<E> + Clone + 'static,
{
    let mut rng = Pcg64::seed_from_u64(o.seed.wrapping_add(7));
    let mut g: std::rc::Rc<Boxed<E>> = std::rc::Rc::new(Box::new(f.clone()));
    for k in 1..=order {
        let tag = |e: CheckError| CheckError {
            what: format!("order {k}: {}", e.what),
            ..e
        };
        check_vjp(&**g, xs, o).map_err(tag)?;
        check_jvp(&**g, xs, o).map_err(tag)?;
        if k < order {
            let ys = eval(&**g, xs);
            let us = like(&ys, &mut rng);
            let prev = g.clone();
            g = std::rc::Rc::new(Box::new(move |tape: &Tape<E>, x: &[Var<'_, E>]| {
                let ys = prev(tape, x);
                let uv: Vec<Var<'_, E>> = us.iter().map(|u| tape.constant(u.clone())).collect();
                tape.vjp(&ys, &uv, x).expect("vjp failed")
            }));
        }
    }
    Ok(())
}
