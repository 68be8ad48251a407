//! Every tableau satisfies its consistency and order conditions.

use ode::tableau::{self, order_residual, tree_counts};
use ode::{Method, OdeError};

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

#[test]
fn rooted_trees_are_counted_correctly_up_to_the_checked_maximum() {
    // OEIS A000081 for orders 1..=14.
    assert_eq!(tableau::MAX_CHECKED_ORDER, 14);
    assert_eq!(
        tree_counts(tableau::MAX_CHECKED_ORDER),
        vec![1, 1, 2, 4, 9, 20, 48, 115, 286, 719, 1842, 4766, 12486, 32973]
    );
}

/// The s-stage Gauss–Legendre collocation method (full implicit `a`, weights `b`), of order
/// exactly 2s: nodes are the roots of the shifted Legendre polynomial, `a_ij = ∫₀^{c_i} ℓ_j`
/// and `b_j = ∫₀¹ ℓ_j` for the Lagrange basis `ℓ_j` on the nodes.
fn gauss_legendre(s: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    // Roots of P_s on [−1, 1] by Newton from the usual cosine guesses, mapped to [0, 1].
    let legendre = |x: f64| {
        let (mut p0, mut p1) = (1.0, x);
        for k in 2..=s {
            let p2 = ((2 * k - 1) as f64 * x * p1 - (k - 1) as f64 * p0) / k as f64;
            (p0, p1) = (p1, p2);
        }
        // P_s(x) and P_s'(x) = s (x P_s − P_{s−1}) / (x² − 1).
        (p1, s as f64 * (x * p1 - p0) / (x * x - 1.0))
    };
    let c: Vec<f64> = (0..s)
        .map(|i| {
            let mut x = (std::f64::consts::PI * (i as f64 + 0.75) / (s as f64 + 0.5)).cos();
            for _ in 0..100 {
                let (p, dp) = legendre(x);
                x -= p / dp;
            }
            (1.0 - x) / 2.0
        })
        .collect();
    // Coefficients (lowest degree first) of each Lagrange basis polynomial.
    let basis: Vec<Vec<f64>> = (0..s)
        .map(|j| {
            let mut poly = vec![1.0];
            for (m, &cm) in c.iter().enumerate() {
                if m != j {
                    let scale = 1.0 / (c[j] - cm);
                    let mut next = vec![0.0; poly.len() + 1];
                    for (k, &pk) in poly.iter().enumerate() {
                        next[k + 1] += pk * scale;
                        next[k] -= pk * cm * scale;
                    }
                    poly = next;
                }
            }
            poly
        })
        .collect();
    let integral = |poly: &[f64], x: f64| -> f64 {
        poly.iter()
            .enumerate()
            .map(|(k, pk)| pk * x.powi(k as i32 + 1) / (k + 1) as f64)
            .sum()
    };
    let a = c
        .iter()
        .map(|&ci| basis.iter().map(|l| integral(l, ci)).collect())
        .collect();
    let b = basis.iter().map(|l| integral(l, 1.0)).collect();
    (a, b)
}

#[test]
fn gauss_methods_satisfy_exactly_their_order_conditions_up_to_the_checked_maximum() {
    // Every condition up to order 2s holds and some condition of order 2s + 1 fails: a check
    // of the tree enumeration, the elementary weights and the densities at every order up to
    // MAX_CHECKED_ORDER (the 7-stage method is of order 14). The failing residuals shrink with
    // the order (1/γ does; it is about 1e-7 at order 13), the holding ones stay at rounding.
    for s in 1..=7 {
        let (a, b) = gauss_legendre(s);
        let r = order_residual(&a, &b, 2 * s);
        assert!(r < 1e-12, "gauss{s}: order {} residual {r:e}", 2 * s);
        if 2 * s < tableau::MAX_CHECKED_ORDER {
            let r = order_residual(&a, &b, 2 * s + 1);
            assert!(r > 1e-10, "gauss{s}: order {} holds ({r:e})", 2 * s + 1);
        }
    }
}

#[test]
fn claimed_orders_above_the_checked_maximum_are_a_typed_error() {
    // Issue 11 item 14: order 17 used to enumerate a million trees (and effectively hang).
    let mut t = tableau::RK4;
    t.order = 17;
    match t.validate(1e-12) {
        Err(OdeError::InvalidTableau(msg)) => {
            assert!(
                msg.contains("rk4") && msg.contains("17") && msg.contains("MAX_CHECKED_ORDER"),
                "{msg}"
            )
        }
        other => panic!("expected InvalidTableau, got {other:?}"),
    }
    let mut t = tableau::DOPRI5;
    t.error_order = Some(usize::MAX);
    assert!(matches!(
        t.validate(1e-12),
        Err(OdeError::InvalidTableau(msg)) if msg.contains("error order")
    ));
    let mut t = tableau::SDIRK2;
    t.order = 40;
    assert!(matches!(
        t.validate(1e-12),
        Err(OdeError::InvalidTableau(msg)) if msg.contains("40")
    ));
    // At the maximum itself a claim is checked, and an overstated one fails at the first order
    // it misses.
    let mut t = tableau::RK4;
    t.order = tableau::MAX_CHECKED_ORDER;
    match t.validate(1e-12) {
        Err(OdeError::InvalidTableau(msg)) => {
            assert!(msg.contains("trees of order 5"), "{msg}")
        }
        other => panic!("expected InvalidTableau, got {other:?}"),
    }
}

#[test]
#[should_panic(expected = "MAX_CHECKED_ORDER")]
fn order_residual_above_the_checked_maximum_panics() {
    let _ = order_residual(&tableau::RK4.full_a(), tableau::RK4.b, 17);
}
