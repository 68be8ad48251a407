//! Every tableau satisfies its consistency and order conditions.

use ode::tableau::{self, order_residual, tree_counts};
use ode::Method;

#[test]
fn rooted_trees_are_counted_correctly() {
    // OEIS A000081: the number of order conditions of each order.
    assert_eq!(tree_counts(8), vec![1, 1, 2, 4, 9, 20, 48, 115]);
}

#[test]
fn every_explicit_tableau_validates() {
    for m in Method::ALL {
        if let Some(t) = m.tableau() {
            t.validate(1e-12).unwrap_or_else(|e| panic!("{m}: {e}"));
        }
    }
}

#[test]
fn every_implicit_tableau_validates() {
    for t in [&tableau::IMPLICIT_EULER, &tableau::SDIRK2] {
        t.validate(1e-14)
            .unwrap_or_else(|e| panic!("{}: {e}", t.name));
    }
}

#[test]
fn tableaux_do_not_exceed_their_claimed_order() {
    // The order conditions of order p + 1 fail, so the claimed orders are exact.
    for m in Method::ALL {
        if let Some(t) = m.tableau() {
            let r = order_residual(&t.full_a(), t.b, t.order + 1);
            assert!(
                r > 1e-6,
                "{m} satisfies order {} conditions (residual {r:e})",
                t.order + 1
            );
            if let (Some(bh), Some(q)) = (t.b_hat(), t.error_order) {
                let r = order_residual(&t.full_a(), &bh, q + 1);
                assert!(
                    r > 1e-6,
                    "{m}: embedded solution satisfies order {} (residual {r:e})",
                    q + 1
                );
            }
        }
    }
    let a: Vec<Vec<f64>> = tableau::SDIRK2.a.iter().map(|r| r.to_vec()).collect();
    assert!(order_residual(&a, tableau::SDIRK2.b, 3) > 1e-6);
}

#[test]
fn validation_catches_a_corrupted_tableau() {
    let mut t = tableau::DOPRI5;
    let b: &'static [f64] = Box::leak(
        vec![
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0 + 1e-9,
            0.0,
        ]
        .into_boxed_slice(),
    );
    t.b = b;
    assert!(t.validate(1e-12).is_err());
    let mut t = tableau::TSIT5;
    t.fsal = false;
    assert!(
        t.validate(1e-12).is_err(),
        "inconsistent FSAL flag must be caught"
    );
}

#[test]
fn dopri5_dense_output_matches_the_endpoint_derivatives() {
    // b_i'(0) = δ_i0 and b_i'(1) = δ_i6: the continuous extension is C¹ across steps.
    let d = tableau::DOPRI5.dense.unwrap();
    for (i, row) in d.iter().enumerate() {
        let d0 = row[0];
        let d1: f64 = row
            .iter()
            .enumerate()
            .map(|(m, c)| (m + 1) as f64 * c)
            .sum();
        assert!((d0 - if i == 0 { 1.0 } else { 0.0 }).abs() < 1e-14);
        assert!(
            (d1 - if i == 6 { 1.0 } else { 0.0 }).abs() < 1e-12,
            "stage {i}: {d1}"
        );
    }
    // Order 4 at θ = 1/2: Σ b_i(θ) c_i^{m} = θ^{m+1}/(m+1) for m ≤ 3 (bushy-tree conditions).
    let theta: f64 = 0.5;
    let c = tableau::DOPRI5.c;
    for m in 0..4 {
        let s: f64 = d
            .iter()
            .zip(c)
            .map(|(row, ci)| {
                row.iter()
                    .enumerate()
                    .map(|(k, co)| co * theta.powi(k as i32 + 1))
                    .sum::<f64>()
                    * ci.powi(m)
            })
            .sum();
        let want = theta.powi(m + 1) / (m + 1) as f64;
        assert!((s - want).abs() < 1e-13, "m = {m}: {s} vs {want}");
    }
}
