//! Second derivatives through a solve in every composition: full Hessians over the initial
//! state, the parameters and every time (start, interior save time, end), checked for symmetry,
//! against a closed form and against finite differences of gradients; a dynamics that
//! differentiates itself along `t`; and evaluation counts that see every evaluation.

use std::cell::Cell;
use std::rc::Rc;

use autodiff::{Tape, Tensor, Var};
use ode::{dynamics, odeint, Adjoint, Dynamics, OdeError, Options};
use rand::SeedableRng;

/// The loss of the checks: `Σ z(t_m)² + Σ tanh(z(t₁))·z(t₁)`, with every input a variable and
/// the times `[t0, t_m, t1]` variables too. Inputs: `z0, θ…, t0, t_m, t1`.
fn loss<'t>(
    tape: &'t Tape<f64>,
    f: &Rc<dyn Dynamics<f64>>,
    v: &[Var<'t, f64>],
    opts: &Options<f64>,
) -> Var<'t, f64> {
    let n = v.len();
    let times = [v[n - 3], v[n - 2], v[n - 1]];
    let sol = odeint(tape, f, &v[..1], &v[1..n - 3], times, opts).unwrap();
    let (zm, z1) = (sol.states[1][0], sol.states[2][0]);
    zm.square().sum() + (z1.tanh() * z1).sum()
}

fn flat_len(xs: &[Tensor<f64>]) -> usize {
    xs.iter().map(|x| x.len()).sum()
}

/// The gradient of [`loss`] at `xs`, flattened.
fn gradient(f: &Rc<dyn Dynamics<f64>>, xs: &[Tensor<f64>], opts: &Options<f64>) -> Vec<f64> {
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let l = loss(&tape, f, &v, opts);
    let g = tape.grad(l, &v).unwrap();
    g.iter().flat_map(|t| t.as_slice().to_vec()).collect()
}

/// The Hessian of [`loss`] by reverse-over-reverse: row `i` is the gradient of the `i`-th
/// entry of the recorded gradient.
fn hessian(f: &Rc<dyn Dynamics<f64>>, xs: &[Tensor<f64>], opts: &Options<f64>) -> Vec<Vec<f64>> {
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let l = loss(&tape, f, &v, opts);
    let g = tape.grad_graph(l, &v).unwrap();
    let mut rows = Vec::new();
    for gi in &g {
        let (r, c) = gi.shape();
        for e in 0..r * c {
            let mut sel = Tensor::zeros(r, c);
            sel.as_mut_slice()[e] = 1.0;
            let s = (*gi * tape.constant(sel)).sum();
            let row = tape.grad(s, &v).unwrap();
            rows.push(row.iter().flat_map(|t| t.as_slice().to_vec()).collect());
        }
    }
    rows
}

/// Central differences of the gradient: column `j` is `(g(x + ε e_j) − g(x − ε e_j)) / 2ε`.
fn fd_hessian(
    f: &Rc<dyn Dynamics<f64>>,
    xs: &[Tensor<f64>],
    opts: &Options<f64>,
    eps: f64,
) -> Vec<Vec<f64>> {
    let n = flat_len(xs);
    let mut cols = Vec::new();
    for j in 0..n {
        let shifted = |d: f64| {
            let mut ys = xs.to_vec();
            let mut k = j;
            for y in ys.iter_mut() {
                if k < y.len() {
                    y.as_mut_slice()[k] += d;
                    break;
                }
                k -= y.len();
            }
            gradient(f, &ys, opts)
        };
        let (gp, gm) = (shifted(eps), shifted(-eps));
        cols.push(
            gp.iter()
                .zip(&gm)
                .map(|(a, b)| (a - b) / (2.0 * eps))
                .collect::<Vec<f64>>(),
        );
    }
    // cols[j][i] = ∂g_i/∂x_j = H[i][j]
    (0..n)
        .map(|i| (0..n).map(|j| cols[j][i]).collect())
        .collect()
}

fn assert_close(what: &str, a: &[Vec<f64>], b: &[Vec<f64>], tol: f64) {
    for (i, (ra, rb)) in a.iter().zip(b).enumerate() {
        for (j, (x, y)) in ra.iter().zip(rb).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())),
                "{what}: H[{i}][{j}] = {x} vs {y}"
            );
        }
    }
}

fn transpose(a: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..a[0].len())
        .map(|j| a.iter().map(|r| r[j]).collect())
        .collect()
}

fn decay() -> Rc<dyn Dynamics<f64>> {
    Rc::new(dynamics(|_tape, _t, z, p| Ok(vec![-(z[0] * p[0])])))
}

fn opts(adjoint: Adjoint) -> Options<f64> {
    Options::dopri5(1e-12, 1e-12).adjoint(adjoint)
}

#[test]
fn mixed_second_derivative_with_a_learnable_end_time_matches_the_closed_form() {
    // dz/dt = −k z, L = z(T)²: ∂²L/∂k∂T = z0² e^{−2kT} (4kT − 2), in both orders.
    let (z0v, kv, tv) = (1.5f64, 0.7f64, 1.3f64);
    let exact = z0v * z0v * (-2.0 * kv * tv).exp() * (4.0 * kv * tv - 2.0);
    for adj in [Adjoint::Backsolve, Adjoint::Direct] {
        let tape = Tape::<f64>::new();
        let z0 = tape.var(Tensor::scalar(z0v));
        let k = tape.var(Tensor::scalar(kv));
        let t0 = tape.var(Tensor::scalar(0.0));
        let t1 = tape.var(Tensor::scalar(tv));
        let sol = odeint(&tape, &decay(), &[z0], &[k], [t0, t1], &opts(adj)).unwrap();
        let l = sol.last()[0].square().sum();
        let g = tape.grad_graph(l, &[k, t1]).unwrap();
        let d_t_of_dk = tape.grad(g[0], &[t1]).unwrap()[0].item();
        let d_k_of_dt = tape.grad(g[1], &[k]).unwrap()[0].item();
        assert!(
            (d_t_of_dk - exact).abs() < 1e-8,
            "{adj:?}: ∂T(∂L/∂k) = {d_t_of_dk}, exact {exact}"
        );
        assert!(
            (d_k_of_dt - exact).abs() < 1e-8,
            "{adj:?}: ∂k(∂L/∂T) = {d_k_of_dt}, exact {exact}"
        );
        // Forward-over-reverse gives the same.
        let one = tape.constant(Tensor::scalar(1.0));
        let fwd = tape.jvp(&[g[0]], &[t1], &[one]).unwrap()[0].item();
        assert!(
            (fwd - exact).abs() < 1e-8,
            "{adj:?}: forward-over-reverse {fwd}"
        );
    }
}

/// The closed form of [`loss`] for `decay`: z(t) = z0 e^{−k (t − t0)}, written with tape ops
/// so its exact Hessian comes from the tape.
fn decay_closed_form<'t>(v: &[Var<'t, f64>]) -> Var<'t, f64> {
    let (z0, k, t0, tm, t1) = (v[0], v[1], v[2], v[3], v[4]);
    let zm = z0 * (-(k * (tm - t0))).exp();
    let z1 = z0 * (-(k * (t1 - t0))).exp();
    zm.square().sum() + (z1.tanh() * z1).sum()
}

#[test]
fn full_hessian_of_a_linear_solve_is_symmetric_exact_and_matches_finite_differences() {
    let xs: Vec<Tensor<f64>> = [1.5, 0.7, 0.2, 0.9, 1.6]
        .iter()
        .map(|&x| Tensor::scalar(x))
        .collect();
    // The exact Hessian, from the closed form.
    let tape = Tape::new();
    let v: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.var(x.clone())).collect();
    let g = tape.grad_graph(decay_closed_form(&v), &v).unwrap();
    let exact: Vec<Vec<f64>> = g
        .iter()
        .map(|gi| {
            tape.grad(*gi, &v)
                .unwrap()
                .iter()
                .map(|t| t.item())
                .collect()
        })
        .collect();
    let f = decay();
    for adj in [Adjoint::Backsolve, Adjoint::Direct] {
        let o = opts(adj);
        let h = hessian(&f, &xs, &o);
        assert_close(&format!("{adj:?} symmetry"), &h, &transpose(&h), 1e-8);
        assert_close(&format!("{adj:?} vs closed form"), &h, &exact, 1e-8);
        assert_close(
            &format!("{adj:?} vs finite differences"),
            &h,
            &fd_hessian(&f, &xs, &o, 1e-4),
            1e-6,
        );
    }
}

#[test]
fn full_hessian_of_a_neural_solve_is_symmetric_and_matches_finite_differences() {
    // f(t, z) = tanh(z W1 + t u) W2, a time-dependent network; z is 1 × 2.
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|_tape, t, z, p| {
        Ok(vec![(z[0].matmul(p[0]) + t * p[1]).tanh().matmul(p[2])])
    }));
    let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
    let mut w1 = Tensor::randn(2, 3, &mut rng);
    w1.scale(0.8);
    let u = Tensor::randn(1, 3, &mut rng);
    let mut w2 = Tensor::randn(3, 2, &mut rng);
    w2.scale(0.6);
    let xs = vec![
        Tensor::from_f64s(1, 2, &[0.4, -0.3]),
        w1,
        u,
        w2,
        Tensor::scalar(0.1),
        Tensor::scalar(0.6),
        Tensor::scalar(1.2),
    ];
    for adj in [Adjoint::Backsolve, Adjoint::Direct] {
        let o = opts(adj);
        let h = hessian(&f, &xs, &o);
        assert_close(&format!("{adj:?} symmetry"), &h, &transpose(&h), 1e-7);
        assert_close(
            &format!("{adj:?} vs finite differences"),
            &h,
            &fd_hessian(&f, &xs, &o, 1e-4),
            1e-6,
        );
    }
}

#[test]
fn checkpointed_refuses_second_order_with_a_typed_error() {
    let tape = Tape::<f64>::new();
    let z0 = tape.var(Tensor::scalar(1.0));
    let k = tape.var(Tensor::scalar(0.5));
    let o = opts(Adjoint::Checkpointed { checkpoints: 2 });
    let sol = odeint(&tape, &decay(), &[z0], &[k], [0.0, 1.0], &o).unwrap();
    let err = tape
        .grad_graph(sol.last()[0].square().sum(), &[k])
        .unwrap_err();
    assert!(
        matches!(
            err.downcast_ref::<OdeError>(),
            Some(OdeError::InvalidOptions(_))
        ),
        "{err}"
    );
}

#[test]
fn a_dynamics_that_differentiates_itself_along_t_works_with_a_learnable_end_time() {
    // f(t, z; θ) = −z ∂/∂t(θ t²) = −2θ t z, the t-derivative taken inside `eval` by a JVP
    // along `t` alone. z(T) = z0 e^{−θ (T² − t0²)}, L = z(T)².
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(|tape, t, z, p| {
        let h = p[0] * t.square();
        let one = tape.constant(Tensor::scalar(1.0));
        let dh = tape.jvp(&[h], &[t], &[one]).unwrap()[0];
        Ok(vec![-(z[0] * dh)])
    }));
    let (z0v, thv, tv) = (1.2f64, 0.4f64, 1.1f64);
    for adj in [Adjoint::Backsolve, Adjoint::Direct] {
        let tape = Tape::<f64>::new();
        let z0 = tape.var(Tensor::scalar(z0v));
        let th = tape.var(Tensor::scalar(thv));
        let t1 = tape.var(Tensor::scalar(tv));
        let sol = odeint(&tape, &f, &[z0], &[th], [tape.scalar(0.0), t1], &opts(adj)).unwrap();
        let l = sol.last()[0].square().sum();
        let g = tape.grad_graph(l, &[th, t1]).unwrap();
        let e = (-2.0 * thv * tv * tv).exp();
        let (d_th, d_t) = (
            -2.0 * tv * tv * z0v * z0v * e,
            -4.0 * thv * tv * z0v * z0v * e,
        );
        assert!(
            (g[0].item() - d_th).abs() < 1e-8,
            "{adj:?}: dL/dθ = {}",
            g[0].item()
        );
        assert!(
            (g[1].item() - d_t).abs() < 1e-8,
            "{adj:?}: dL/dT = {}",
            g[1].item()
        );
        // ∂²L/∂θ∂T = z0² e^{−2θT²} (−4T + 8θT³).
        let mixed = z0v * z0v * e * (-4.0 * tv + 8.0 * thv * tv.powi(3));
        let h = tape.grad(g[0], &[t1]).unwrap()[0].item();
        assert!(
            (h - mixed).abs() < 1e-7,
            "{adj:?}: ∂²L/∂θ∂T = {h}, exact {mixed}"
        );
        let one = tape.constant(Tensor::scalar(1.0));
        let hv = tape.jvp(&[g[1]], &[th], &[one]).unwrap()[0].item();
        assert!(
            (hv - mixed).abs() < 1e-7,
            "{adj:?}: forward-over-reverse {hv}"
        );
    }
}

#[test]
fn evaluation_counts_see_every_evaluation_of_the_dynamics_by_phase() {
    let calls = Rc::new(Cell::new(0usize));
    let c2 = calls.clone();
    let f: Rc<dyn Dynamics<f64>> = Rc::new(dynamics(move |_tape, t, z, p| {
        c2.set(c2.get() + 1);
        Ok(vec![(z[0].matmul(p[0]) + t * p[1]).tanh()])
    }));
    let tape = Tape::<f64>::new();
    let z0 = tape.var(Tensor::from_f64s(1, 2, &[0.3, -0.2]));
    let w = tape.var(Tensor::from_f64s(2, 2, &[0.5, -0.4, 0.3, 0.2]));
    let u = tape.var(Tensor::from_f64s(1, 2, &[0.1, 0.2]));
    let t1 = tape.var(Tensor::scalar(1.0));
    let o = Options::dopri5(1e-8, 1e-8);
    let sol = odeint(&tape, &f, &[z0], &[w, u], [tape.scalar(0.0), t1], &o).unwrap();
    assert_eq!(sol.stats.forward().nfe, calls.get(), "forward");
    let after_forward = calls.get();
    // A Hessian-vector product: a recorded gradient, then its JVP.
    let l = sol.last()[0].square().sum();
    let g = tape.grad_graph(l, &[z0, w, t1]).unwrap();
    let first = calls.get() - after_forward;
    assert!(first > 0);
    assert_eq!(sol.stats.backward().nfe, first, "backward");
    assert_eq!(sol.stats.nested().nfe, 0);
    let dirs: Vec<Var<'_, f64>> = [z0, w, t1]
        .iter()
        .map(|v| tape.constant(v.value()))
        .collect();
    let _hv = tape.jvp(&g, &[z0, w, t1], &dirs).unwrap();
    // The HVP runs the solve's own JVP (first order: backward) and the derivatives of the
    // adjoint solve and of the time-gradient terms (nested).
    assert_eq!(sol.stats.forward().nfe, after_forward, "forward unchanged");
    assert!(sol.stats.backward().nfe >= first);
    assert!(sol.stats.nested().nfe > 0);
    let s = &sol.stats;
    assert_eq!(
        s.forward().nfe + s.backward().nfe + s.nested().nfe,
        calls.get(),
        "by phase"
    );
    assert_eq!(s.total().nfe, calls.get(), "total");
}
