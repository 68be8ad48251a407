//! The exact trace by one batched reverse sweep (`Tape::vjp_batched`): equal to the `d`
//! separate vector-Jacobian products and to the analytic trace of a linear field, falling back
//! to the separate products for ops without a batched rule, and differentiable (gradients and
//! second derivatives against finite differences). All in f64.

use autodiff::testing::{check_grads, check_jvp, check_vjp, tape_fn, CheckOpts};
use autodiff::{Tape, Tensor, Var};
use flows::trace::{exact_divergence, exact_divergence_rows, exact_divergence_rows_per_dim};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_pcg::Pcg64;

/// Parameters of [`field`] for `d` dimensions and `h` hidden units.
fn params(d: usize, h: usize, rng: &mut Pcg64) -> Vec<Tensor<f64>> {
    vec![
        Tensor::randn(h, d + 1, rng), // W1 (linear, time column appended)
        Tensor::randn(1, h, rng),     // b1
        Tensor::randn(1, h, rng),     // gate logits
        Tensor::randn(h, h, rng),     // W2 (matmul)
        Tensor::randn(d, h, rng),     // W3 (matmul_t)
        Tensor::randn(1, d, rng),     // output bias
    ]
}

/// A row-wise field that passes through every op with a batched rule: concatenation with a
/// time column, `linear`, tanh, a broadcast gate, `matmul`, softplus, a per-row norm (a sum
/// over columns) multiplying and dividing as a column, slices and pads, `matmul_t`, a
/// broadcast bias, sin and an affine map.
fn field<'t>(z: Var<'t, f64>, p: &[Var<'t, f64>]) -> Var<'t, f64> {
    let tape = z.tape();
    let (n, d) = z.shape();
    let tcol = tape.constant(Tensor::from_fn(n, 1, |i, _| 0.1 * i as f64 + 0.3));
    let h0 = tape.concat_cols(&[z, tcol]);
    let h1 = h0.linear(p[0], p[1]).tanh();
    let h2 = (h1 * p[2].sigmoid()).matmul(p[3]).softplus();
    let s = z.row_sq_norm();
    let h3 = h2 * s.tanh() / (s + 1.0);
    let first = z.slice_cols(0, 1).sin().pad_cols(0, d);
    h3.matmul_t(p[4]) + p[5] + first.affine(0.5, 0.25)
}

fn assert_close(a: &Tensor<f64>, b: &Tensor<f64>, tol: f64, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shapes");
    let scale = 1.0 + b.as_slice().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = a.max_abs_diff(b);
    assert!(
        diff <= tol * scale,
        "{what}: max |Δ| = {diff:e} (scale {scale})"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The batched sweep returns the same trace and the same Jacobian rows as `d` separate
    /// products, on a field that exercises every batched rule.
    #[test]
    fn batched_equals_per_dimension(n in 0usize..6, d in 1usize..5, h in 1usize..7, seed in 0u64..1000) {
        let mut rng = Pcg64::seed_from_u64(seed);
        let ps = params(d, h, &mut rng);
        let z0 = Tensor::randn(n, d, &mut rng);
        let tape = Tape::<f64>::new();
        let p: Vec<_> = ps.iter().map(|t| tape.var_from(t)).collect();
        let z = tape.var_from(&z0);
        let f = field(z, &p);
        let (div, rows) = exact_divergence_rows(f, z);
        let (div_ref, rows_ref) = exact_divergence_rows_per_dim(f, z);
        prop_assert_eq!(div.shape(), (n, 1));
        prop_assert_eq!(rows.len(), d);
        assert_close(&div.value(), &div_ref.value(), 1e-13, "divergence");
        for (j, (a, b)) in rows.iter().zip(&rows_ref).enumerate() {
            assert_close(&a.value(), &b.value(), 1e-13, &format!("Jacobian row {j}"));
        }
        // And with the diagonal of the full Jacobian, taken one output element at a time.
        let jac = tape.jacobian(f, z).unwrap();
        let diag = Tensor::from_fn(n, 1, |i, _| (0..d).map(|j| jac.get(i * d + j, i * d + j)).sum());
        assert_close(&div.value(), &diag, 1e-13, "Jacobian diagonal");
    }

    /// For f(z) = z Aᵀ + b the trace is tr(A) at every point and row j of the Jacobian is
    /// row j of A.
    #[test]
    fn linear_field_analytic(n in 1usize..6, d in 1usize..6, seed in 0u64..1000) {
        let mut rng = Pcg64::seed_from_u64(seed);
        let a = Tensor::<f64>::randn(d, d, &mut rng);
        let tape = Tape::<f64>::new();
        let av = tape.constant_from(&a);
        let b = tape.constant(Tensor::randn(1, d, &mut rng));
        let z = tape.var(Tensor::randn(n, d, &mut rng));
        let f = z.matmul_t(av) + b;
        let (div, rows) = exact_divergence_rows(f, z);
        let tr: f64 = (0..d).map(|i| a.get(i, i)).sum();
        assert_close(&div.value(), &Tensor::from_fn(n, 1, |_, _| tr), 1e-14, "tr(A)");
        for (j, row) in rows.iter().enumerate() {
            assert_close(&row.value(), &Tensor::from_fn(n, d, |_, c| a.get(j, c)), 1e-14, "row of A");
        }
    }

    /// The gradient of Σ tr(∂f/∂z) with respect to z and every parameter, and the second
    /// derivative (JVP of the recorded VJP), against central differences.
    #[test]
    fn gradients_match_finite_differences(n in 1usize..4, d in 1usize..4, h in 1usize..5, seed in 0u64..1000) {
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut xs = vec![Tensor::randn(n, d, &mut rng)];
        xs.extend(params(d, h, &mut rng));
        let f = tape_fn(|_tape: &Tape<f64>, x: &[Var<'_, f64>]| {
            let z = x[0];
            vec![exact_divergence(field(z, &x[1..]), z)]
        });
        let opts = CheckOpts { seed, ..CheckOpts::default() };
        prop_assert!(check_vjp(&f, &xs, &opts).is_ok(), "{:?}", check_vjp(&f, &xs, &opts));
        prop_assert!(check_jvp(&f, &xs, &opts).is_ok(), "{:?}", check_jvp(&f, &xs, &opts));
        let loose = CheckOpts { rtol: 1e-5, atol: 1e-5, ..opts };
        let r = check_grads(&f, &xs, 2, &loose);
        prop_assert!(r.is_ok(), "{:?}", r);
    }

    /// `vjp_batched` with arbitrary (not one-hot) stacked cotangents equals the separate VJPs.
    #[test]
    fn vjp_batched_equals_separate_vjps(n in 1usize..5, d in 1usize..4, k in 1usize..5, seed in 0u64..1000) {
        let mut rng = Pcg64::seed_from_u64(seed);
        let ps = params(d, 3, &mut rng);
        let tape = Tape::<f64>::new();
        let p: Vec<_> = ps.iter().map(|t| tape.var_from(t)).collect();
        let z = tape.var(Tensor::randn(n, d, &mut rng));
        let f = field(z, &p);
        let cts: Vec<Tensor<f64>> = (0..k).map(|_| Tensor::randn(n, d, &mut rng)).collect();
        let stacked = tape.constant(Tensor::from_fn(k * n, d, |i, c| cts[i / n].get(i % n, c)));
        let g = tape.vjp_batched(f, stacked, k, z).expect("every op has a batched rule");
        prop_assert_eq!(g.shape(), (k * n, d));
        let gv = g.value();
        for (i, ct) in cts.iter().enumerate() {
            let e = tape.constant_from(ct);
            let gi = tape.vjp(&[f], &[e], &[z]).unwrap()[0].value();
            let block = Tensor::from_fn(n, d, |r, c| gv.get(i * n + r, c));
            assert_close(&block, &gi, 1e-13, "stacked block");
        }
    }
}

/// A field written through a transpose, f = (A zᵀ)ᵀ: the transpose has no batched rule, so
/// `vjp_batched` declines and leaves the tape as it was, and the trace falls back to the
/// separate products — still tr(A).
#[test]
fn transpose_falls_back_to_separate_products() {
    let mut rng = Pcg64::seed_from_u64(3);
    let (n, d) = (4, 3);
    let a = Tensor::<f64>::randn(d, d, &mut rng);
    let tape = Tape::<f64>::new();
    let av = tape.constant_from(&a);
    let z = tape.var(Tensor::randn(n, d, &mut rng));
    let f = av.matmul(z.t()).t();
    let one_hot = tape.constant(Tensor::from_fn(d * n, d, |i, c| f64::from(c == i / n)));
    let before = tape.len();
    assert!(tape.vjp_batched(f, one_hot, d, z).is_none());
    assert_eq!(
        tape.len(),
        before,
        "a declined batched sweep records nothing"
    );
    let div = exact_divergence(f, z).value();
    let tr: f64 = (0..d).map(|i| a.get(i, i)).sum();
    assert_close(
        &div,
        &Tensor::from_fn(n, 1, |_, _| tr),
        1e-14,
        "tr(A) by the fallback",
    );
}

/// A field that does not depend on z has zero divergence and zero Jacobian rows.
#[test]
fn constant_field_has_zero_trace() {
    let tape = Tape::<f64>::new();
    let z = tape.var(Tensor::from_fn(3, 2, |i, j| (i + j) as f64));
    let f = tape.constant(Tensor::from_fn(3, 2, |i, j| (i * j) as f64));
    let (div, rows) = exact_divergence_rows(f, z);
    assert_eq!(div.value().as_slice(), &[0.0; 3]);
    assert!(rows
        .iter()
        .all(|r| r.value().as_slice().iter().all(|&v| v == 0.0)));
}

/// `tile_rows` and `sum_row_blocks` (the adjoint pair the batched sweep records): values, and
/// their VJPs, JVPs and second derivatives against finite differences.
#[test]
fn tile_rows_and_sum_row_blocks() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::from_f64s(2, 2, &[1.0, 2.0, 3.0, 4.0]));
    let t = x.tile_rows(3);
    assert_eq!(t.shape(), (6, 2));
    assert_eq!(
        t.value().as_slice(),
        &[1., 2., 3., 4., 1., 2., 3., 4., 1., 2., 3., 4.]
    );
    let s = t.sum_row_blocks(2);
    assert_eq!(s.shape(), (3, 2));
    assert_eq!(s.value().as_slice(), &[4., 6., 4., 6., 4., 6.]);

    let mut rng = Pcg64::seed_from_u64(5);
    let xs = vec![Tensor::randn(2, 3, &mut rng), Tensor::randn(6, 3, &mut rng)];
    let f = tape_fn(|_tape: &Tape<f64>, x: &[Var<'_, f64>]| {
        let a = x[0].tile_rows(3).tanh() * x[1];
        vec![a.sum_row_blocks(3).sin(), (x[1] * x[1]).sum_row_blocks(2)]
    });
    let o = CheckOpts::default();
    check_vjp(&f, &xs, &o).unwrap();
    check_jvp(&f, &xs, &o).unwrap();
    check_grads(
        &f,
        &xs,
        2,
        &CheckOpts {
            rtol: 1e-5,
            atol: 1e-5,
            ..o
        },
    )
    .unwrap();
}

#[test]
#[should_panic(expected = "sum_row_blocks")]
fn sum_row_blocks_rejects_uneven_split() {
    let tape = Tape::<f64>::new();
    let x = tape.var(Tensor::zeros(5, 2));
    let _ = x.sum_row_blocks(2);
}

#[test]
#[should_panic(expected = "vjp_batched")]
fn vjp_batched_rejects_wrong_stack_height() {
    let tape = Tape::<f64>::new();
    let z = tape.var(Tensor::zeros(3, 2));
    let f = z.tanh();
    let ct = tape.constant(Tensor::zeros(5, 2));
    let _ = tape.vjp_batched(f, ct, 2, z);
}
