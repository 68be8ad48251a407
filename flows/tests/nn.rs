//! Layers: values against hand computations, derivatives against finite differences.

use autodiff::testing::{check_grads, check_jvp, check_vjp, tape_fn, CheckOpts};
use autodiff::{Tape, Tensor};
use flows::nn::{Act, ConcatLinear, ConcatSquash, Linear, Mlp, OdeNet};
use flows::Params;
use rand::SeedableRng;
use rand_pcg::Pcg64;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn close(a: &Tensor<f64>, b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.as_slice().iter().zip(b) {
        assert!((x - y).abs() < tol, "{a:?} vs {b:?}");
    }
}

/// Inputs for a derivative check: `[x, t, params...]`.
fn inputs(p: &Params<f64>, x: Tensor<f64>, t: f64) -> Vec<Tensor<f64>> {
    let mut v = vec![x, Tensor::scalar(t)];
    v.extend(p.tensors().cloned());
    v
}

#[test]
fn linear_matches_hand_computation() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut p = Params::<f64>::new();
    let lin = Linear::new(&mut p, "fc", 2, 3, true, &mut rng);
    assert_eq!(p.names().collect::<Vec<_>>(), ["fc.weight", "fc.bias"]);
    *p.get_mut("fc.weight").unwrap() = Tensor::from_f64s(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    *p.get_mut("fc.bias").unwrap() = Tensor::from_f64s(1, 3, &[0.1, 0.2, 0.3]);
    let tape = Tape::new();
    let v = p.vars(&tape);
    let x = tape.constant(Tensor::from_f64s(2, 2, &[1.0, -1.0, 0.5, 2.0]));
    let y = lin.forward(&v, x).value();
    assert_eq!(y.shape(), (2, 3));
    close(&y, &[-0.9, -0.8, -0.7, 4.6, 9.7, 14.8], 1e-12);
}

#[test]
fn linear_without_bias_and_init_bounds() {
    let mut rng = Pcg64::seed_from_u64(1);
    let mut p = Params::<f32>::new();
    let lin = Linear::new(&mut p, "fc", 16, 32, false, &mut rng);
    assert_eq!(lin.bias_index(), None);
    assert_eq!(p.len(), 1);
    let w = p.tensor(lin.weight_index());
    assert_eq!(w.shape(), (32, 16));
    let bound = 1.0 / 4.0;
    assert!(w.max_abs() <= bound);
    assert!(w.max_abs() > 0.9 * bound, "draws should fill the interval");
    let mean = w.sum() / w.len() as f32;
    assert!(mean.abs() < 0.03);

    let mut p = Params::<f64>::new();
    Linear::new(&mut p, "g", 9, 4, true, &mut rng);
    let b = p.get("g.bias").unwrap();
    assert_eq!(b.shape(), (1, 4));
    assert!(b.max_abs() <= 1.0 / 3.0);
}

#[test]
fn concat_squash_matches_hand_computation() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut p = Params::<f64>::new();
    let cs = ConcatSquash::new(&mut p, "l", 2, 2, &mut rng);
    let mut names: Vec<_> = p.names().map(str::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "l._hyper_bias.weight",
            "l._hyper_gate.bias",
            "l._hyper_gate.weight",
            "l._layer.bias",
            "l._layer.weight"
        ]
    );
    assert_eq!(p.get("l._hyper_gate.weight").unwrap().shape(), (2, 1));
    assert_eq!(p.get("l._hyper_bias.weight").unwrap().shape(), (2, 1));
    *p.get_mut("l._layer.weight").unwrap() = Tensor::from_f64s(2, 2, &[1.0, 0.0, 2.0, -1.0]);
    *p.get_mut("l._layer.bias").unwrap() = Tensor::from_f64s(1, 2, &[0.5, -0.5]);
    *p.get_mut("l._hyper_gate.weight").unwrap() = Tensor::from_f64s(2, 1, &[1.0, -2.0]);
    *p.get_mut("l._hyper_gate.bias").unwrap() = Tensor::from_f64s(1, 2, &[0.0, 1.0]);
    *p.get_mut("l._hyper_bias.weight").unwrap() = Tensor::from_f64s(2, 1, &[3.0, 4.0]);

    let t = 0.5;
    let x = [1.0, 2.0];
    let h = [x[0] + 0.5, 2.0 * x[0] - x[1] - 0.5];
    let gate = [sig(t), sig(-2.0 * t + 1.0)];
    let want = [h[0] * gate[0] + 3.0 * t, h[1] * gate[1] + 4.0 * t];

    let tape = Tape::new();
    let v = p.vars(&tape);
    let xs = tape.constant(Tensor::from_f64s(1, 2, &x));
    let y = cs.forward(&v, tape.scalar(t), xs).value();
    close(&y, &want, 1e-12);
}

#[test]
fn concat_linear_equals_linear_on_concatenated_input() {
    let mut rng = Pcg64::seed_from_u64(2);
    let mut p = Params::<f64>::new();
    let cl = ConcatLinear::new(&mut p, "c", 3, 4, &mut rng);
    assert_eq!(p.get("c._layer.weight").unwrap().shape(), (4, 4));
    let x = Tensor::randn(5, 3, &mut rng);
    let t = 0.7;
    let tape = Tape::new();
    let v = p.vars(&tape);
    let y = cl
        .forward(&v, tape.scalar(t), tape.constant(x.clone()))
        .value();

    // By hand: [t, x] Wᵀ + b.
    let w = p.get("c._layer.weight").unwrap();
    let b = p.get("c._layer.bias").unwrap();
    for i in 0..5 {
        for o in 0..4 {
            let mut s = b.get(0, o) + t * w.get(o, 0);
            for j in 0..3 {
                s += x.get(i, j) * w.get(o, j + 1);
            }
            assert!((y.get(i, o) - s).abs() < 1e-12);
        }
    }
}

#[test]
fn activations_match_scalar_formulas() {
    let xs = [-3.0, -0.5, 0.0, 0.25, 2.0];
    for act in [
        Act::Tanh,
        Act::Softplus,
        Act::Elu,
        Act::Swish,
        Act::Relu,
        Act::Sigmoid,
        Act::Identity,
    ] {
        let tape = Tape::<f64>::new();
        let y = act
            .apply(tape.constant(Tensor::from_f64s(1, 5, &xs)))
            .value();
        let want: Vec<f64> = xs.iter().map(|&x| act.eval(x)).collect();
        close(&y, &want, 1e-12);
    }
    assert!((Act::Softplus.eval(0.0) - 2f64.ln()).abs() < 1e-15);
    assert!((Act::Elu.eval(-1.0) - ((-1f64).exp() - 1.0)).abs() < 1e-15);
    assert!((Act::Swish.eval(1.0) - sig(1.0)).abs() < 1e-15);
}

#[test]
fn ode_net_composes_its_layers() {
    let mut rng = Pcg64::seed_from_u64(3);
    let mut p = Params::<f64>::new();
    Linear::new(&mut p, "before", 1, 1, false, &mut rng); // the net need not start at 0
    let net = OdeNet::concat_squash(&mut p, "odefunc", 2, &[5, 4], Act::Softplus, &mut rng);
    assert_eq!(net.param_range(), 1..p.len());
    assert_eq!(net.param_range().len(), 3 * 5);
    assert_eq!(net.layers().len(), 3);
    assert_eq!(
        p.get("odefunc.layers.1._layer.weight").unwrap().shape(),
        (4, 5)
    );
    assert_eq!(
        p.get("odefunc.layers.2._layer.weight").unwrap().shape(),
        (2, 4)
    );

    let tape = Tape::new();
    let v = p.vars(&tape);
    let z = tape.constant(Tensor::randn(6, 2, &mut rng));
    let t = tape.scalar(0.2);
    let got = net.forward(&v, t, z).value();
    let ls = net.layers();
    let h = Act::Softplus.apply(ls[0].forward(&v, t, z));
    let h = Act::Softplus.apply(ls[1].forward(&v, t, h));
    let want = ls[2].forward(&v, t, h).value();
    assert_eq!(got, want);

    // The relative copy runs on the net's own slice of the parameters.
    let rel = net.relative();
    assert_eq!(rel.param_range(), 0..15);
    assert_eq!(rel.forward(&v[net.param_range()], t, z).value(), got);

    let mut q = Params::<f64>::new();
    let cnet = OdeNet::concat(&mut q, "f", 3, &[7], Act::Tanh, &mut rng);
    assert_eq!(q.get("f.layers.0._layer.weight").unwrap().shape(), (7, 4));
    assert_eq!(q.get("f.layers.1._layer.weight").unwrap().shape(), (3, 8));
    let tape = Tape::new();
    let v = q.vars(&tape);
    let out = cnet.forward(
        &v,
        tape.scalar(1.0),
        tape.constant(Tensor::randn(4, 3, &mut rng)),
    );
    assert_eq!(out.shape(), (4, 3));
}

#[test]
fn mlp_uses_sequential_names() {
    let mut rng = Pcg64::seed_from_u64(4);
    let mut p = Params::<f64>::new();
    let mlp = Mlp::new(&mut p, "net", &[3, 8, 2], Act::Relu, &mut rng);
    assert_eq!(
        p.names().collect::<Vec<_>>(),
        ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    );
    assert_eq!(mlp.param_range(), 0..4);
    let tape = Tape::new();
    let v = p.vars(&tape);
    let x = tape.constant(Tensor::randn(5, 3, &mut rng));
    let l = mlp.layers();
    let want = l[1].forward(&v, l[0].forward(&v, x).relu()).value();
    assert_eq!(mlp.forward(&v, x).value(), want);

    let mut p2 = Params::<f64>::new();
    p2.add("other", Tensor::zeros(1, 1));
    let m2 = Mlp::new(&mut p2, "net", &[3, 8, 2], Act::Relu, &mut rng);
    p2.get_mut("net.0.weight").unwrap().copy_from(p.tensor(0));
    p2.get_mut("net.0.bias").unwrap().copy_from(p.tensor(1));
    p2.get_mut("net.2.weight").unwrap().copy_from(p.tensor(2));
    p2.get_mut("net.2.bias").unwrap().copy_from(p.tensor(3));
    let v2 = p2.vars(&tape);
    assert_eq!(m2.relative().forward(&v2[1..], x).value(), want);
}

#[test]
#[should_panic(expected = "Linear `fc`: input is 4x3, expected 2 columns")]
fn linear_shape_error_names_layer_and_shapes() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut p = Params::<f64>::new();
    let lin = Linear::new(&mut p, "fc", 2, 3, true, &mut rng);
    let tape = Tape::new();
    let v = p.vars(&tape);
    lin.forward(&v, tape.constant(Tensor::zeros(4, 3)));
}

#[test]
fn linear_derivatives() {
    let mut rng = Pcg64::seed_from_u64(5);
    let mut p = Params::<f64>::new();
    let lin = Linear::new(&mut p, "fc", 3, 2, true, &mut rng);
    let f = tape_fn(move |_t, v| vec![lin.forward(&v[2..], v[0])]);
    let xs = inputs(&p, Tensor::randn(4, 3, &mut rng), 0.0);
    let o = CheckOpts::default();
    check_vjp(&f, &xs, &o).unwrap();
    check_jvp(&f, &xs, &o).unwrap();
}

#[test]
fn concat_squash_derivatives_to_second_order() {
    let mut rng = Pcg64::seed_from_u64(6);
    let mut p = Params::<f64>::new();
    let cs = ConcatSquash::new(&mut p, "l", 3, 2, &mut rng);
    let f = tape_fn(move |_t, v| vec![cs.forward(&v[2..], v[1], v[0])]);
    let xs = inputs(&p, Tensor::randn(4, 3, &mut rng), 0.3);
    check_grads(&f, &xs, 2, &CheckOpts::default()).unwrap();
}

#[test]
fn concat_linear_derivatives() {
    let mut rng = Pcg64::seed_from_u64(7);
    let mut p = Params::<f64>::new();
    let cl = ConcatLinear::new(&mut p, "l", 3, 2, &mut rng);
    let f = tape_fn(move |_t, v| vec![cl.forward(&v[2..], v[1], v[0])]);
    let xs = inputs(&p, Tensor::randn(4, 3, &mut rng), -0.4);
    let o = CheckOpts::default();
    check_vjp(&f, &xs, &o).unwrap();
    check_jvp(&f, &xs, &o).unwrap();
}

#[test]
fn ode_net_derivatives_for_each_activation() {
    let o = CheckOpts::default();
    for (k, act) in [Act::Tanh, Act::Softplus, Act::Elu, Act::Swish]
        .into_iter()
        .enumerate()
    {
        let mut rng = Pcg64::seed_from_u64(10 + k as u64);
        let mut p = Params::<f64>::new();
        let net = OdeNet::concat_squash(&mut p, "f", 2, &[5, 5], act, &mut rng);
        let f = tape_fn(move |_t, v| vec![net.forward(&v[2..], v[1], v[0])]);
        let xs = inputs(&p, Tensor::randn(3, 2, &mut rng), 0.6);
        check_vjp(&f, &xs, &o).unwrap_or_else(|e| panic!("{act:?}: {e}"));
        check_jvp(&f, &xs, &o).unwrap_or_else(|e| panic!("{act:?}: {e}"));
    }
    // The concat variant and a plain MLP.
    let mut rng = Pcg64::seed_from_u64(20);
    let mut p = Params::<f64>::new();
    let net = OdeNet::concat(&mut p, "f", 2, &[4], Act::Tanh, &mut rng);
    let f = tape_fn(move |_t, v| vec![net.forward(&v[2..], v[1], v[0])]);
    let xs = inputs(&p, Tensor::randn(3, 2, &mut rng), 0.1);
    check_vjp(&f, &xs, &o).unwrap();
    check_jvp(&f, &xs, &o).unwrap();

    let mut p = Params::<f64>::new();
    let mlp = Mlp::new(&mut p, "m", &[2, 4, 3], Act::Swish, &mut rng);
    let f = tape_fn(move |_t, v| vec![mlp.forward(&v[2..], v[0])]);
    let xs = inputs(&p, Tensor::randn(3, 2, &mut rng), 0.0);
    check_vjp(&f, &xs, &o).unwrap();
    check_jvp(&f, &xs, &o).unwrap();
}

#[test]
fn ode_net_divergence_is_differentiable() {
    // A CNF needs tr(∂f/∂z) and its parameter gradient: check the exact divergence of a
    // 2-D net (two VJPs) against finite differences, to second order.
    let mut rng = Pcg64::seed_from_u64(30);
    let mut p = Params::<f64>::new();
    let net = OdeNet::concat_squash(&mut p, "f", 2, &[6], Act::Tanh, &mut rng);
    let f = tape_fn(move |tape, v| {
        let z = v[0];
        let out = net.forward(&v[2..], v[1], z);
        let mut div = tape.scalar(0.0);
        for j in 0..2 {
            let mut e = Tensor::zeros(3, 2);
            for i in 0..3 {
                e.set(i, j, 1.0);
            }
            let e = tape.constant(e);
            let g = tape.vjp(&[out], &[e], &[z]).unwrap()[0];
            div = div + g.slice_cols(j, j + 1).sum();
        }
        vec![div]
    });
    let xs = inputs(&p, Tensor::randn(3, 2, &mut rng), 0.4);
    check_grads(&f, &xs, 2, &CheckOpts::default()).unwrap();
}
