//! Every primitive's VJP and JVP against central finite differences (f64), with shapes and
//! values drawn by proptest, and second order (grad of grad, JVP of VJP) for all of them.

use autodiff::testing::{check_grads, tape_fn, CheckOpts, TapeFn};
use autodiff::Tensor;
use proptest::prelude::*;

fn mat(r: usize, c: usize, lo: f64, hi: f64) -> impl Strategy<Value = Tensor<f64>> {
    proptest::collection::vec(lo..hi, r * c).prop_map(move |v| Tensor::from_vec(r, c, v))
}

/// Values in ±[0.2, 2]: away from the kinks of abs and relu and the pole of 1/x.
fn mat_nz(r: usize, c: usize) -> impl Strategy<Value = Tensor<f64>> {
    (
        proptest::collection::vec(0.2..2.0f64, r * c),
        proptest::collection::vec(any::<bool>(), r * c),
    )
        .prop_map(move |(v, s)| {
            Tensor::from_vec(
                r,
                c,
                v.iter()
                    .zip(&s)
                    .map(|(&x, &neg)| if neg { -x } else { x })
                    .collect(),
            )
        })
}

fn shape() -> impl Strategy<Value = (usize, usize)> {
    (1usize..5, 1usize..5)
}

fn check<F: TapeFn<f64> + Clone + 'static>(f: F, xs: &[Tensor<f64>]) {
    let o = CheckOpts {
        eps: 1e-5,
        rtol: 1e-6,
        atol: 1e-7,
        seed: 3,
    };
    if let Err(e) = check_grads(&f, xs, 2, &o) {
        panic!("{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn add_sub_mul(x in shape().prop_flat_map(|(r, c)| (mat(r, c, -2.0, 2.0), mat(r, c, -2.0, 2.0)))) {
        check(tape_fn(|_, v| vec![v[0] + v[1], v[0] - v[1], v[0] * v[1]]), &[x.0, x.1]);
    }

    #[test]
    fn div(x in shape().prop_flat_map(|(r, c)| (mat(r, c, -2.0, 2.0), mat_nz(r, c)))) {
        check(tape_fn(|_, v| vec![v[0] / v[1]]), &[x.0, x.1]);
    }

    #[test]
    fn neg_and_scalar_ops(x in shape().prop_flat_map(|(r, c)| mat_nz(r, c)), a in -3.0..3.0f64) {
        check(tape_fn(move |_, v| vec![-v[0], v[0] + a, v[0] * a, a - v[0], v[0] / 1.7, 2.5 / v[0]]), &[x]);
    }

    #[test]
    fn broadcasting_rows_cols_scalars(
        x in shape().prop_flat_map(|(r, c)| (mat(r, c, -2.0, 2.0), mat(1, c, -2.0, 2.0), mat(r, 1, -2.0, 2.0), mat_nz(1, 1)))
    ) {
        check(
            tape_fn(|_, v| vec![v[0] + v[1], v[2] * v[0], v[0] / v[3], v[1] - v[0], v[3] * v[1] + v[2]]),
            &[x.0, x.1, x.2, x.3],
        );
    }

    #[test]
    fn exp_tanh_sigmoid_softplus_sin_cos(x in shape().prop_flat_map(|(r, c)| mat(r, c, -3.0, 3.0))) {
        check(tape_fn(|_, v| vec![v[0].exp(), v[0].tanh(), v[0].sigmoid(), v[0].softplus(), v[0].sin(), v[0].cos()]), &[x]);
    }

    #[test]
    fn log_sqrt_powf(x in shape().prop_flat_map(|(r, c)| mat(r, c, 0.3, 3.0)), p in -1.5..2.5f64) {
        check(tape_fn(move |_, v| vec![v[0].log(), v[0].sqrt(), v[0].powf(p)]), &[x]);
    }

    #[test]
    fn abs_relu_powi(x in shape().prop_flat_map(|(r, c)| mat_nz(r, c)), n in -3i32..5) {
        check(tape_fn(move |_, v| vec![v[0].abs() * v[0], v[0].relu() * v[0], v[0].powi(n)]), &[x]);
    }

    #[test]
    fn matmul_all_transposes(
        d in (1usize..5, 1usize..5, 1usize..5).prop_flat_map(|(m, k, n)| (mat(m, k, -2.0, 2.0), mat(k, n, -2.0, 2.0), mat(k, m, -2.0, 2.0), mat(n, k, -2.0, 2.0)))
    ) {
        // a: m×k, b: k×n, at: k×m, bt: n×k. Products are made nonlinear so second order is exercised.
        check(
            tape_fn(|_, v| {
                let (a, b, at, bt) = (v[0], v[1], v[2], v[3]);
                vec![
                    a.matmul(b).tanh(),
                    at.t_matmul(b).sin(),
                    a.matmul_t(bt) * a.matmul(b),
                    at.mm(bt, true, true).exp(),
                ]
            }),
            &[d.0, d.1, d.2, d.3],
        );
    }

    #[test]
    fn linear_and_prod3(
        d in (1usize..5, 1usize..5, 1usize..5).prop_flat_map(|(n, i, o)| (mat(n, i, -2.0, 2.0), mat(o, i, -2.0, 2.0), mat(1, o, -2.0, 2.0), mat(n, o, -2.0, 2.0)))
    ) {
        check(
            tape_fn(|_, v| {
                let (x, w, b, c) = (v[0], v[1], v[2], v[3]);
                let y = x.linear(w, b);
                vec![y.tanh(), y.prod3(c, y.sin(), -1.5), c.prod3(c, c, 0.5)]
            }),
            &[d.0, d.1, d.2, d.3],
        );
    }

    #[test]
    fn transpose_and_sums(x in shape().prop_flat_map(|(r, c)| mat(r, c, -2.0, 2.0))) {
        check(
            tape_fn(|_, v| {
                let x = v[0].sin();
                vec![x.t(), x.sum(), x.sum_axis(0), x.sum_axis(1), x.mean(), x.sum_axis(0).broadcast_to(3, x.shape().1)]
            }),
            &[x],
        );
    }

    #[test]
    fn slice_pad_concat(x in (1usize..4, 2usize..6).prop_flat_map(|(r, c)| (mat(r, c, -2.0, 2.0), mat(r, 2, -2.0, 2.0), 0..c))) {
        let (a, b, cut) = x;
        check(
            tape_fn(move |tape, v| {
                let c = v[0].shape().1;
                let left = v[0].slice_cols(0, cut).tanh();
                let right = v[0].slice_cols(cut, c);
                vec![tape.concat_cols(&[right, v[1], left]) * tape.concat_cols(&[v[1], v[0]]).slice_cols(0, c + 2), v[1].pad_cols(1, 5).exp()]
            }),
            &[a, b],
        );
    }

    #[test]
    fn composites(x in shape().prop_flat_map(|(r, c)| mat(r, c, -3.0, 3.0))) {
        check(
            tape_fn(|_, v| vec![v[0].logsumexp(), v[0].log_normal(), v[0].log_cosh(), v[0].swish(), v[0].square(), v[0].mean_axis(1)]),
            &[x],
        );
    }

    #[test]
    fn elu_away_from_zero(x in shape().prop_flat_map(|(r, c)| mat_nz(r, c))) {
        check(tape_fn(|_, v| vec![v[0].elu()]), &[x]);
    }

    #[test]
    fn mlp_second_order(x in (1usize..6).prop_flat_map(|b| (mat(b, 3, -1.5, 1.5), mat(3, 4, -1.0, 1.0), mat(1, 4, -1.0, 1.0), mat(4, 2, -1.0, 1.0)))) {
        check(
            tape_fn(|_, v| vec![(v[0].matmul(v[1]) + v[2]).tanh().matmul(v[3]).softplus()]),
            &[x.0, x.1, x.2, x.3],
        );
    }
}

#[test]
fn third_order_through_nonlinear_ops() {
    let f =
        tape_fn::<f64, _>(|_, v| vec![(v[0].tanh() * v[1].exp() + v[0].sin() * v[1]).sum_axis(1)]);
    let xs = [
        Tensor::from_f64s(2, 2, &[0.3, -0.7, 1.1, 0.2]),
        Tensor::from_f64s(2, 2, &[-0.4, 0.5, 0.9, -1.2]),
    ];
    let o = CheckOpts {
        eps: 1e-4,
        rtol: 1e-5,
        atol: 1e-6,
        seed: 11,
    };
    check_grads(&f, &xs, 3, &o).unwrap();
}

#[test]
fn log_cosh_is_stable_for_large_inputs() {
    let tape = autodiff::Tape::<f64>::new();
    let x = tape.var(Tensor::from_f64s(1, 3, &[800.0, -800.0, 0.0]));
    let y = x.log_cosh().value();
    let ln2 = std::f64::consts::LN_2;
    assert!((y.get(0, 0) - (800.0 - ln2)).abs() < 1e-10);
    assert!((y.get(0, 1) - (800.0 - ln2)).abs() < 1e-10);
    assert!(y.get(0, 2).abs() < 1e-15);
    let g = tape.grad(x.log_cosh().sum(), &[x]).unwrap();
    assert_eq!(g[0].as_slice(), &[1.0, -1.0, 0.0]);
}

#[test]
fn logsumexp_does_not_overflow() {
    let tape = autodiff::Tape::<f64>::new();
    let x = tape.var(Tensor::from_f64s(1, 2, &[1000.0, 1000.0]));
    let y = x.logsumexp().item();
    assert!((y - (1000.0 + std::f64::consts::LN_2)).abs() < 1e-10);
}
