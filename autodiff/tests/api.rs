//! The transforms (grad, grad_graph, vjp, jvp, hvp, jacobian, no_grad), custom ops, errors,
//! f32, and tape reuse.

use std::rc::Rc;

use autodiff::testing::{check_grads, check_jvp, check_vjp, eval, tape_fn, CheckOpts};
use autodiff::{CustomOp, Tape, Tensor, Var};
use proptest::prelude::*;
use rand::SeedableRng;

fn scalar_fn<'t>(x: Var<'t, f64>, w: Var<'t, f64>) -> Var<'t, f64> {
    (x.matmul(w).tanh() * x).sum() + x.powi(3).sum() * 0.1
}

fn grad_at(x: &Tensor<f64>, w: &Tensor<f64>) -> Tensor<f64> {
    let tape = Tape::new();
    let (xv, wv) = (tape.var(x.clone()), tape.constant(w.clone()));
    tape.grad(scalar_fn(xv, wv), &[xv]).unwrap().remove(0)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// hvp (forward over reverse) equals central differences of gradients, and equals the
    /// reverse-over-reverse product grad(⟨∇f, v⟩).
    #[test]
    fn hvp_matches_finite_differences_of_gradients(
        n in 1usize..5,
        seed in 0u64..1000,
    ) {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let x = Tensor::<f64>::randn(2, n, &mut rng);
        let w = Tensor::<f64>::randn(n, n, &mut rng);
        let v = Tensor::<f64>::randn(2, n, &mut rng);
        let tape = Tape::new();
        let (xv, wv, vv) = (tape.var(x.clone()), tape.constant(w.clone()), tape.constant(v.clone()));
        let y = scalar_fn(xv, wv);
        let hv = tape.hvp(y, &[xv], &[vv]).unwrap()[0].value();
        let g = tape.grad_graph(y, &[xv]).unwrap()[0];
        let rr = tape.grad((g * vv).sum(), &[xv]).unwrap().remove(0);
        let h = 1e-5;
        let mut xp = x.clone();
        xp.axpy(h, &v);
        let mut xm = x.clone();
        xm.axpy(-h, &v);
        let gp = grad_at(&xp, &w);
        let gm = grad_at(&xm, &w);
        let fd = gp.zip_map(&gm, |a, b| (a - b) / (2.0 * h));
        prop_assert!(hv.max_abs_diff(&fd) < 1e-6 * (1.0 + fd.max_abs()), "hvp {:?} vs fd {:?}", hv, fd);
        prop_assert!(hv.max_abs_diff(&rr) < 1e-12 * (1.0 + rr.max_abs()));
    }

    #[test]
    fn jacobian_matches_finite_differences(r in 1usize..4, c in 1usize..4, seed in 0u64..1000) {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let x = Tensor::<f64>::randn(r, c, &mut rng);
        let f = tape_fn::<f64, _>(|_, v| vec![(v[0].sin() * v[0].sum_axis(0)).t()]);
        let tape = Tape::new();
        let xv = tape.var(x.clone());
        let jac = tape.jacobian(f(&tape, &[xv])[0], xv).unwrap();
        let n = r * c;
        prop_assert_eq!(jac.shape(), (n, n));
        let h = 1e-6;
        for j in 0..n {
            let mut xp = x.clone();
            xp.as_mut_slice()[j] += h;
            let mut xm = x.clone();
            xm.as_mut_slice()[j] -= h;
            let yp = eval(&f, &[xp]).remove(0);
            let ym = eval(&f, &[xm]).remove(0);
            for i in 0..n {
                let fd = (yp.as_slice()[i] - ym.as_slice()[i]) / (2.0 * h);
                prop_assert!((jac.get(i, j) - fd).abs() < 1e-7, "J[{i},{j}] = {} vs {fd}", jac.get(i, j));
            }
        }
    }
}

#[test]
fn gradient_of_unused_input_is_zero_and_any_named_input_is_differentiated() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::ones(2, 2));
    let unused = tape.var(Tensor::ones(1, 3));
    let c = tape.constant(Tensor::full(2, 2, 3.0));
    let y = (x * c).sum();
    let g = tape.grad(y, &[x, unused, c]).unwrap();
    assert_eq!(g[0], Tensor::full(2, 2, 3.0));
    assert_eq!(g[1], Tensor::zeros(1, 3));
    // A constant named as an input is differentiated (as in JAX): a dynamics that takes the
    // divergence with respect to a state that happens to be data must see the true Jacobian.
    assert_eq!(g[2], Tensor::ones(2, 2));
    // So is an intermediate value, treated as an independent input.
    let h = c.sin();
    let y2 = (h * h).sum();
    let gh = tape.grad(y2, &[h]).unwrap();
    assert_eq!(gh[0], h.value().map(|v| 2.0 * v));
}

#[test]
fn grad_leaves_no_nodes_behind() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from_f64s(1, 2, &[0.5, 1.5]));
    let y = x.tanh().sum();
    let before = tape.len();
    let _ = tape.grad(y, &[x]).unwrap();
    assert_eq!(tape.len(), before);
}

#[test]
fn no_grad_makes_constants() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::ones(1, 2));
    let y = tape.no_grad(|| x.exp());
    assert!(!y.requires_grad());
    let g = tape.grad((y * x).sum(), &[x]).unwrap();
    // Only the explicit factor x contributes: d/dx (c · x) = c = e.
    for &v in g[0].as_slice() {
        assert!((v - 1f64.exp()).abs() < 1e-15);
    }
}

#[test]
fn cleared_tape_reuses_its_buffers() {
    let tape = Tape::<f64>::new();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(1);
    let w = Tensor::<f64>::randn(8, 8, &mut rng);
    let run = |tape: &Tape<f64>| {
        let x = tape.var(Tensor::ones(16, 8));
        let wv = tape.constant(w.clone());
        let y = x.matmul(wv).tanh().matmul(wv).sum();
        tape.grad(y, &[x]).unwrap()
    };
    let first = run(&tape);
    let n = tape.len();
    tape.clear();
    assert!(tape.is_empty());
    let second = run(&tape);
    assert_eq!(tape.len(), n);
    assert_eq!(first, second);
}

/// x ↦ x³ with hand-written rules that use tape ops (so they differentiate again).
struct Cube;

impl CustomOp<f64> for Cube {
    fn name(&self) -> &str {
        "cube"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> autodiff::Result<Vec<Tensor<f64>>> {
        Ok(vec![x[0].map(|v| v * v * v), x[0].map(|v| 2.0 * v)])
    }
    fn vjp<'t>(
        &self,
        x: &[Var<'t, f64>],
        _y: &[Var<'t, f64>],
        g: &[Option<Var<'t, f64>>],
        _needs: &[bool],
    ) -> autodiff::Result<Vec<Option<Var<'t, f64>>>> {
        let a = g[0].map(|g| g * x[0].square() * 3.0);
        let b = g[1].map(|g| g * 2.0);
        Ok(vec![match (a, b) {
            (Some(a), Some(b)) => Some(a + b),
            (a, None) => a,
            (None, b) => b,
        }])
    }
    fn jvp<'t>(
        &self,
        x: &[Var<'t, f64>],
        _y: &[Var<'t, f64>],
        t: &[Option<Var<'t, f64>>],
    ) -> autodiff::Result<Vec<Option<Var<'t, f64>>>> {
        Ok(vec![
            t[0].map(|t| t * x[0].square() * 3.0),
            t[0].map(|t| t * 2.0),
        ])
    }
}

#[test]
fn custom_multi_output_op_checks_to_third_order() {
    let f = tape_fn::<f64, _>(|tape, v| {
        let outs = tape.custom(Rc::new(Cube), &[v[0].sin()]).unwrap();
        vec![outs[0] * outs[1], outs[1].exp()]
    });
    let xs = [Tensor::from_f64s(2, 2, &[0.3, -0.8, 1.2, 0.1])];
    check_grads(
        &f,
        &xs,
        3,
        &CheckOpts {
            eps: 1e-4,
            rtol: 1e-5,
            atol: 1e-6,
            seed: 5,
        },
    )
    .unwrap();
}

#[derive(Debug)]
struct Boom;
impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom")
    }
}
impl std::error::Error for Boom {}

struct FailsBackward;
impl CustomOp<f64> for FailsBackward {
    fn name(&self) -> &str {
        "fails_backward"
    }
    fn forward(&self, x: &[&Tensor<f64>]) -> autodiff::Result<Vec<Tensor<f64>>> {
        if x[0].all_finite() {
            Ok(vec![x[0].clone()])
        } else {
            Err(autodiff::Error::new("fails_backward", Boom))
        }
    }
    fn vjp<'t>(
        &self,
        _: &[Var<'t, f64>],
        _: &[Var<'t, f64>],
        _: &[Option<Var<'t, f64>>],
        _: &[bool],
    ) -> autodiff::Result<Vec<Option<Var<'t, f64>>>> {
        Err(autodiff::Error::new("fails_backward", Boom))
    }
    fn jvp<'t>(
        &self,
        _: &[Var<'t, f64>],
        _: &[Var<'t, f64>],
        _: &[Option<Var<'t, f64>>],
    ) -> autodiff::Result<Vec<Option<Var<'t, f64>>>> {
        Err(autodiff::Error::new("fails_backward", Boom))
    }
}

#[test]
fn custom_op_errors_surface_as_results() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::ones(1, 1));
    let y = tape.custom(Rc::new(FailsBackward), &[x]).unwrap()[0];
    let err = tape.grad(y, &[x]).unwrap_err();
    assert!(
        err.to_string().contains("fails_backward") && err.to_string().contains("boom"),
        "{err}"
    );
    assert!(tape.jvp(&[y], &[x], &[x]).is_err());
    let bad = tape.var(Tensor::full(1, 1, f64::NAN));
    assert!(tape.custom(Rc::new(FailsBackward), &[bad]).is_err());
}

#[test]
#[should_panic(expected = "matmul: inner dimensions differ")]
fn matmul_shape_mismatch_panics_with_shapes() {
    let tape = Tape::<f64>::new();
    let a = tape.var(Tensor::ones(2, 3));
    let b = tape.var(Tensor::ones(2, 3));
    let _ = a.matmul(b);
}

#[test]
#[should_panic(expected = "add: shapes (2, 3) and (3, 2) do not broadcast")]
fn broadcast_mismatch_panics_with_shapes() {
    let tape = Tape::<f64>::new();
    let a = tape.var(Tensor::ones(2, 3));
    let b = tape.var(Tensor::ones(3, 2));
    let _ = a + b;
}

#[test]
#[should_panic(expected = "different tape")]
fn mixing_tapes_panics() {
    let t1 = Tape::<f64>::new();
    let t2 = Tape::<f64>::new();
    let _ = t1.var(Tensor::ones(1, 1)) + t2.var(Tensor::ones(1, 1));
}

#[test]
fn f32_runs_the_same_api() {
    let f = tape_fn::<f32, _>(|_, v| {
        vec![(v[0].matmul(v[1]).tanh() + v[0].sigmoid().sum_axis(1))
            .softplus()
            .log()]
    });
    let mut rng = rand_pcg::Pcg64::seed_from_u64(2);
    let xs = [
        Tensor::<f32>::randn(3, 2, &mut rng),
        Tensor::<f32>::randn(2, 2, &mut rng),
    ];
    let o = CheckOpts::f32();
    check_vjp(&f, &xs, &o).unwrap();
    check_jvp(&f, &xs, &o).unwrap();
    check_grads(&f, &xs, 2, &o).unwrap();
    let tape = Tape::<f32>::new();
    let x = tape.var(Tensor::from_f64s(1, 2, &[1.0, 2.0]));
    let g = tape.grad((x * x).sum(), &[x]).unwrap();
    assert_eq!(g[0].as_slice(), &[2.0f32, 4.0]);
}
