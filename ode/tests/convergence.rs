//! Every method converges at its order on a linear problem with an exact solution.

mod common;

use common::*;
use ode::{solve, Method, Options};

const T: f64 = 4.0;

fn error(method: Method, n: usize) -> f64 {
    let (f, p) = rotation();
    let sol = solve(
        &f,
        &rotation_z0(),
        &p,
        &[0.0, T],
        &Options::fixed(method, n),
    )
    .unwrap();
    assert_eq!(sol.stats.accepted, n);
    max_err(&sol.states[1][0], &rotation_exact(T))
}

/// Least-squares slope of log(err) against log(h).
fn slope(method: Method, ns: &[usize]) -> f64 {
    let pts: Vec<(f64, f64)> = ns
        .iter()
        .map(|&n| ((T / n as f64).ln(), error(method, n).ln()))
        .collect();
    let m = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / m, sy / m);
    let num: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
    let errs: Vec<String> = pts.iter().map(|p| format!("{:.3e}", p.1.exp())).collect();
    eprintln!("{method}: errors {errs:?}");
    num / den
}

#[test]
fn every_method_converges_at_its_order() {
    let cases: [(Method, &[usize]); 10] = [
        (Method::Euler, &[100, 200, 400, 800]),
        (Method::Midpoint, &[40, 80, 160, 320]),
        (Method::Heun, &[40, 80, 160, 320]),
        (Method::Rk4, &[10, 20, 40, 80]),
        (Method::Bosh3, &[20, 40, 80, 160]),
        (Method::Dopri5, &[8, 16, 32, 64]),
        (Method::Tsit5, &[40, 80, 160]),
        (Method::Dopri8, &[4, 6, 8, 12]),
        (Method::ImplicitEuler, &[100, 200, 400, 800]),
        (Method::Sdirk2, &[40, 80, 160, 320]),
    ];
    for (m, ns) in cases {
        let s = slope(m, ns);
        eprintln!("{m}: slope {s:.3} (order {})", m.order());
        assert!(
            (s - m.order() as f64).abs() <= 0.3,
            "{m}: slope {s} but order {}",
            m.order()
        );
    }
}
