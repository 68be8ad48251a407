//! Regression tests for issue 11: stale `Var`s, NaN through relu and abs, reductions of empty
//! batches. Each test fails on the code before its fix.

use std::panic::{catch_unwind, AssertUnwindSafe};

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
