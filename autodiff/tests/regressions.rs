//! Regression tests for issue 11: stale `Var`s, NaN through relu and abs, reductions of empty
//! batches. Each test fails on the code before its fix.

use std::panic::{catch_unwind, AssertUnwindSafe};

use autodiff::testing::{check_grads, tape_fn, CheckOpts};
use autodiff::{Tape, Tensor, Var};

/// Runs `f`, which must panic, and returns its panic message.
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    match err.downcast::<String>() {
        Ok(s) => *s,
        Err(e) => e
            .downcast::<&str>()
            .map(|s| s.to_string())
            .unwrap_or_default(),
    }
}

fn assert_stale(msg: &str) {
    assert!(
        msg.contains("stale Var") && msg.contains("generation"),
        "unexpected panic message: {msg}"
    );
}

// ------------------------------------------------------------------ item 3: stale Vars

#[test]
fn var_from_before_clear_is_rejected_by_grad_not_read_as_another_node() {
    // The report of issue 11: `x` names node 0 of the old recording; after `clear`, node 0 is
    // `w`, and the gradient with respect to "x" used to come back as 2w.
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from_f64s(1, 2, &[1.0, 2.0]));
    tape.clear();
    let w = tape.var(Tensor::from_f64s(1, 2, &[3.0, 4.0]));
    let y = (w * w).sum();
    let msg = panic_message(|| {
        let _ = tape.grad(y, &[x]);
    });
    assert_stale(&msg);
    assert!(msg.contains("Tape::clear"), "{msg}");
    // The tape itself is still usable, and fresh Vars differentiate as before.
    let g = tape.grad(y, &[w]).unwrap();
    assert_eq!(g[0].as_slice(), &[6.0, 8.0]);
}

#[test]
fn stale_var_is_rejected_everywhere_it_is_resolved() {
    let tape = Tape::<f64>::new();
    let old = tape.var(Tensor::from_f64s(1, 2, &[1.0, 2.0]));
    let old_y = (old * old).sum();
    tape.clear();
    // Refill the tape past the old ids, so that every stale id names a live node.
    let w = tape.var(Tensor::from_f64s(1, 2, &[3.0, 4.0]));
    let y = (w * w).sum();
    let _ = y.exp();
    let one = tape.scalar(1.0);
    let t = tape.constant(Tensor::ones(1, 2));

    assert_stale(&panic_message(|| {
        let _ = old.value();
    }));
    assert_stale(&panic_message(|| {
        let _ = old.shape();
    }));
    assert_stale(&panic_message(|| {
        let _ = old.requires_grad();
    }));
    // An op that records a node with a stale operand, on either side.
    assert_stale(&panic_message(|| {
        let _ = old + w;
    }));
    assert_stale(&panic_message(|| {
        let _ = w * old;
    }));
    assert_stale(&panic_message(|| {
        let _ = old.tanh();
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.concat_cols(&[w, old]);
    }));
    // Transforms: a stale output, a stale input, a stale cotangent or tangent.
    assert_stale(&panic_message(|| {
        let _ = tape.grad(old_y, &[w]);
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.vjp(&[y], &[one], &[old]);
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.vjp(&[w], &[old], &[w]);
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.jvp(&[y], &[old], &[t]);
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.jvp(&[old_y], &[w], &[t]);
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.jvp(&[y], &[w], &[old]);
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.jacobian(y, old);
    }));
}

#[test]
fn truncate_invalidates_exactly_the_vars_it_drops() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from_f64s(1, 2, &[0.5, -1.0]));
    let mark = tape.len();
    let dropped = x.sin();
    tape.truncate(mark);
    // The id of `dropped` now names a new node, as it would after `clear`.
    let y = x.cos().sum();
    assert_stale(&panic_message(|| {
        let _ = dropped.value();
    }));
    assert_stale(&panic_message(|| {
        let _ = tape.grad(y, &[dropped]);
    }));
    // Vars recorded before the mark survive and differentiate as usual: d/dx Σ cos x = −sin x.
    let g = tape.grad(y, &[x]).unwrap();
    assert_eq!(g[0].as_slice(), &[-(0.5f64.sin()), 1.0f64.sin()]);
    // `grad` truncates what it recorded; the Vars the caller holds stay valid across it.
    let g2 = tape.grad(y, &[x]).unwrap();
    assert_eq!(g, g2);
    assert_eq!(y.item(), 0.5f64.cos() + 1.0f64.cos());
}

#[test]
fn var_from_another_tape_is_rejected_by_the_transforms() {
    let t1 = Tape::<f64>::new();
    let t2 = Tape::<f64>::new();
    let x1 = t1.var(Tensor::ones(1, 2));
    let x2 = t2.var(Tensor::ones(1, 2));
    let y2 = (x2 * x2).sum();
    let msg = panic_message(|| {
        let _ = t2.grad(y2, &[x1]);
    });
    assert!(msg.contains("different tape"), "{msg}");
    let msg = panic_message(|| {
        let _ = t1.grad(y2, &[x1]);
    });
    assert!(msg.contains("different tape"), "{msg}");
}

#[test]
fn var_stays_a_two_word_handle() {
    // The generation lives in what used to be padding: a Var is a pointer and two u32s.
    assert!(std::mem::size_of::<Var<'static, f64>>() <= 2 * std::mem::size_of::<usize>());
}

// ------------------------------------------------------------- item 12: NaN through relu, abs

/// Equality that counts NaN as equal to NaN.
fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

fn assert_same(got: &Tensor<f64>, want: &[f64], what: &str) {
    assert!(
        got.as_slice().len() == want.len()
            && got.as_slice().iter().zip(want).all(|(&g, &w)| same(g, w)),
        "{what}: got {:?}, want {want:?}",
        got.as_slice()
    );
}

/// Value, VJP (cotangent 1) and JVP (tangent 1) of an elementwise function at `xs`.
fn value_vjp_jvp(
    f: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
    xs: &[f64],
) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>) {
    let n = xs.len();
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from_f64s(1, n, xs));
    let y = f(x);
    let ones = tape.constant(Tensor::ones(1, n));
    let vjp = tape.vjp(&[y], &[ones], &[x]).unwrap()[0].value();
    let jvp = tape.jvp(&[y], &[x], &[ones]).unwrap()[0].value();
    (y.value(), vjp, jvp)
}

#[test]
fn relu_propagates_nan_in_value_and_derivatives() {
    let nan = f64::NAN;
    let (y, vjp, jvp) = value_vjp_jvp(|x| x.relu(), &[nan, -1.5, 0.0, 2.5]);
    assert_same(&y, &[nan, 0.0, 0.0, 2.5], "relu");
    assert_same(&vjp, &[nan, 0.0, 0.0, 1.0], "relu vjp");
    assert_same(&jvp, &[nan, 0.0, 0.0, 1.0], "relu jvp");
    // Composites inherit it: elu(NaN) used to be relu(NaN) + e^0 − 1 = 0.
    let (y, vjp, _) = value_vjp_jvp(|x| x.elu(), &[nan, -1.0, 1.0]);
    assert_same(&y, &[nan, (-1.0f64).exp() - 1.0, 1.0], "elu");
    assert_same(&vjp, &[nan, (-1.0f64).exp(), 1.0], "elu vjp");
    // Away from NaN and the kink, both still agree with finite differences to second order.
    let f = tape_fn::<f64, _>(|_, v| vec![v[0].relu() * v[0], v[0].abs() * v[0]]);
    let xs = [Tensor::from_f64s(2, 2, &[-1.5, 0.7, 2.5, -0.3])];
    check_grads(&f, &xs, 2, &CheckOpts::default()).unwrap();
}

#[test]
fn abs_derivative_is_nan_at_nan_and_sign_elsewhere() {
    let nan = f64::NAN;
    let (y, vjp, jvp) = value_vjp_jvp(|x| x.abs(), &[nan, -1.5, 0.0, 2.5]);
    assert_same(&y, &[nan, 1.5, 0.0, 2.5], "abs");
    assert_same(&vjp, &[nan, -1.0, 0.0, 1.0], "abs vjp");
    assert_same(&jvp, &[nan, -1.0, 0.0, 1.0], "abs jvp");
}

// -------------------------------------------------------- item 13: reductions of empty batches

/// Gradient (by VJP) and tangent (by JVP, tangent of ones) of `f` at `x`, plus its value.
fn reduce_at(
    f: impl for<'t> Fn(Var<'t, f64>) -> Var<'t, f64>,
    x: Tensor<f64>,
) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>) {
    let (r, c) = x.shape();
    let tape = Tape::<f64>::new();
    let xv = tape.var(x);
    let y = f(xv);
    let (yr, yc) = y.shape();
    let ct = tape.constant(Tensor::ones(yr, yc));
    let g = tape.vjp(&[y], &[ct], &[xv]).unwrap()[0].value();
    assert_eq!(
        g.shape(),
        (r, c),
        "the cotangent of the input has its shape"
    );
    let t = tape.constant(Tensor::ones(r, c));
    let jt = tape.jvp(&[y], &[xv], &[t]).unwrap()[0].value();
    assert_eq!(
        jt.shape(),
        (yr, yc),
        "the tangent of the output has its shape"
    );
    (y.value(), g, jt)
}

#[test]
fn sums_over_an_empty_batch_are_zero_of_the_reduced_shape() {
    // `--batch 0`: 0 × c inputs, and their transposes and empty feature axes.
    for (r, c) in [(0, 1), (0, 3), (3, 0), (1, 0), (0, 0)] {
        let x = Tensor::<f64>::zeros(r, c);
        let (y, g, t) = reduce_at(|x| x.sum(), x.clone());
        assert_eq!(y, Tensor::zeros(1, 1), "sum of {r}x{c}");
        assert_eq!(g, Tensor::zeros(r, c));
        assert_eq!(t, Tensor::zeros(1, 1));
        let (y, _, t) = reduce_at(|x| x.sum_axis(0), x.clone());
        assert_eq!(y, Tensor::zeros(1, c), "sum_axis(0) of {r}x{c}");
        assert_eq!(t, Tensor::zeros(1, c));
        let (y, _, t) = reduce_at(|x| x.sum_axis(1), x.clone());
        assert_eq!(y, Tensor::zeros(r, 1), "sum_axis(1) of {r}x{c}");
        assert_eq!(t, Tensor::zeros(r, 1));
        // The un-broadcasting of a bias gradient over an empty batch is the same reduction.
        let (y, _, _) = reduce_at(|x| x.sum_to(1, c), x);
        assert_eq!(y, Tensor::zeros(1, c));
    }
    // A row of zeros summed over an empty batch still adds to what it is added to.
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::zeros(0, 2));
    let b = tape.var(Tensor::from_f64s(1, 2, &[1.0, -2.0]));
    let loss = ((x + b).sum_axis(0) + b).sum();
    assert_eq!(loss.item(), -1.0);
    let g = tape.grad(loss, &[x, b]).unwrap();
    assert_eq!(g[0].shape(), (0, 2));
    // Only the direct term reaches b: the broadcast over no rows contributes nothing.
    assert_eq!(g[1].as_slice(), &[1.0, 1.0]);
}

#[test]
fn means_over_an_empty_batch_are_nan_like_pytorch() {
    let (y, g, t) = reduce_at(|x| x.mean(), Tensor::zeros(0, 3));
    assert!(y.item().is_nan() && t.item().is_nan());
    assert_eq!(g.shape(), (0, 3));
    let (y, _, _) = reduce_at(|x| x.mean_axis(0), Tensor::zeros(0, 3));
    assert_eq!(y.shape(), (1, 3));
    assert!(y.as_slice().iter().all(|v| v.is_nan()));
    let (y, _, _) = reduce_at(|x| x.mean_axis(1), Tensor::zeros(2, 0));
    assert_eq!(y.shape(), (2, 1));
    assert!(y.as_slice().iter().all(|v| v.is_nan()));
    // Means over a non-empty axis of an empty batch are empty, not NaN.
    let (y, _, _) = reduce_at(|x| x.mean_axis(1), Tensor::zeros(0, 3));
    assert_eq!(y.shape(), (0, 1));
}

#[test]
fn row_reductions_of_empty_inputs_are_empty_or_reduce_nothing() {
    // logsumexp over no columns is log 0 = −∞ (as in PyTorch); over an empty batch it is empty.
    let (y, g, t) = reduce_at(|x| x.logsumexp(), Tensor::zeros(2, 0));
    assert_eq!(y.as_slice(), &[f64::NEG_INFINITY, f64::NEG_INFINITY]);
    assert_eq!((g.shape(), t.shape()), ((2, 0), (2, 1)));
    let (y, g, _) = reduce_at(|x| x.logsumexp(), Tensor::zeros(0, 3));
    assert_eq!((y.shape(), g.shape()), ((0, 1), (0, 3)));
    let (y, _, _) = reduce_at(|x| x.log_normal(), Tensor::zeros(0, 2));
    assert_eq!(y.shape(), (0, 1));
    let (y, _, _) = reduce_at(|x| x.row_sq_norm(), Tensor::zeros(3, 0));
    assert_eq!(y, Tensor::zeros(3, 1));
}

#[test]
fn empty_batch_derivatives_check_against_finite_differences() {
    // A loss that mixes an empty batch with parameters: its derivatives are those of the
    // parameter terms alone, to second order.
    let f = tape_fn::<f64, _>(|_, v| {
        let (x, w, b) = (v[0], v[1], v[2]);
        let h = x.linear(w, b).tanh();
        vec![h.sum_axis(0) + b.sin(), h.sum() + w.square().sum()]
    });
    let xs = [
        Tensor::zeros(0, 2),
        Tensor::from_f64s(3, 2, &[0.3, -0.2, 0.5, 0.1, -0.4, 0.7]),
        Tensor::from_f64s(1, 3, &[0.1, -0.6, 0.2]),
    ];
    check_grads(&f, &xs, 2, &CheckOpts::default()).unwrap();
}
