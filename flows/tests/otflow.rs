//! OT-Flow (Onken, Wu Fung, Li & Ruthotto 2021): the structured exact gradient and Laplacian
//! of the potential against automatic differentiation, loss gradients against finite
//! differences, and the HJB residual of an exact solution of −∂ₜΦ + ½‖∇ₓΦ‖² = 0.

use std::rc::Rc;

use autodiff::testing::{check_vjp, tape_fn, CheckOpts};
use autodiff::{Tape, Tensor, Var};
use flows::cnf::{Cnf, Mode, VectorField};
use flows::otflow::{
    autodiff_gradient, autodiff_gradient_laplacian, HjbResidual, OtFlow, OtMode, OtPotential,
    OtTrace, Potential, PotentialField, TransportCost,
};
use flows::trace::{Probe, Trace};
use flows::Params;
use ode::{Adjoint, Method, Options};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// A potential with every parameter drawn from N(0, 0.5²), so no entry is special (w = 1,
/// c = 0 at initialisation).
fn random_potential(d: usize, m: usize, layers: usize, seed: u64) -> (Params<f64>, OtPotential) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut params = Params::<f64>::new();
    let net = OtPotential::new(&mut params, "otflow", d, m, layers, &mut rng);
    for t in params.tensors_mut() {
        let (r, c) = t.shape();
        let mut v = Tensor::randn(r, c, &mut rng);
        v.scale(0.5);
        *t = v;
    }
    (params, net)
}

fn random_time(n: usize, rng: &mut Pcg64) -> Tensor<f64> {
    Tensor::from_fn(n, 1, |_, _| rng.random_range(0.0..1.0))
}

#[test]
fn parameters_have_the_documented_names_and_shapes() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut params = Params::<f64>::new();
    params.add("other", Tensor::zeros(1, 1));
    let net = OtPotential::new(&mut params, "otflow", 3, 7, 3, &mut rng);
    assert_eq!(net.param_range(), 1..11);
    assert_eq!(net.rank(), 4);
    let shape = |name: &str| params.get(name).unwrap().shape();
    assert_eq!(shape("otflow.w.weight"), (1, 7));
    assert_eq!(shape("otflow.A"), (4, 4));
    assert_eq!(shape("otflow.c.weight"), (1, 4));
    assert_eq!(shape("otflow.c.bias"), (1, 1));
    assert_eq!(shape("otflow.N.layers.0.weight"), (7, 4));
    assert_eq!(shape("otflow.N.layers.0.bias"), (1, 7));
    assert_eq!(shape("otflow.N.layers.1.weight"), (7, 7));
    assert_eq!(shape("otflow.N.layers.2.weight"), (7, 7));
    assert_eq!(shape("otflow.N.layers.2.bias"), (1, 7));
    let wide = OtPotential::new(&mut Params::<f64>::new(), "o", 20, 4, 2, &mut rng);
    assert_eq!(wide.rank(), 10);
}

#[test]
fn structured_gradient_and_laplacian_equal_autodiff() {
    for &(d, m, layers, seed) in &[
        (1, 4, 1, 1),
        (2, 5, 2, 2),
        (2, 6, 3, 3),
        (3, 4, 3, 4),
        (5, 3, 4, 5),
        (8, 6, 2, 6),
        (12, 4, 3, 7),
    ] {
        let (params, net) = random_potential(d, m, layers, seed);
        let mut rng = Pcg64::seed_from_u64(100 + seed);
        let n = 6;
        let tape = Tape::<f64>::new();
        let p = params.vars(&tape);
        let x = tape.var(Tensor::randn(n, d, &mut rng));
        let t = tape.var(random_time(n, &mut rng));

        let (g, lap) = net.gradient_laplacian(t, x, &p).unwrap();
        let (g_ad, lap_ad) = autodiff_gradient_laplacian(&net, t, x, &p).unwrap();
        let g_only = net.gradient(t, x, &p).unwrap();
        let g_vjp = autodiff_gradient(&net, t, x, &p).unwrap();
        let diff = |a: Var<'_, f64>, b: Var<'_, f64>| a.value().max_abs_diff(&b.value());
        let label = format!("d = {d}, m = {m}, M = {layers}");
        assert_eq!(g.grad_x.shape(), (n, d), "{label}");
        assert_eq!(g.dt.shape(), (n, 1), "{label}");
        assert_eq!(lap.shape(), (n, 1), "{label}");
        assert!(diff(g.grad_x, g_ad.grad_x) < 1e-10, "{label}: ∇ₓΦ");
        assert!(diff(g.dt, g_ad.dt) < 1e-10, "{label}: ∂ₜΦ");
        assert!(diff(g_only.grad_x, g_vjp.grad_x) < 1e-10, "{label}");
        assert!(diff(g_only.dt, g_vjp.dt) < 1e-10, "{label}");
        assert!(diff(lap, lap_ad) < 1e-10, "{label}: Laplacian");
        // Not trivially zero.
        assert!(lap.value().max_abs() > 1e-3, "{label}");
        assert!(g.dt.value().max_abs() > 1e-3, "{label}");

        // The structured quantities are differentiable in the weights and in x: their
        // derivatives equal those of the autodiff versions.
        let wg = tape.constant(Tensor::randn(n, d, &mut rng));
        let wl = tape.constant(Tensor::randn(n, 1, &mut rng));
        let mut inputs = p.clone();
        inputs.push(x);
        let d1 = tape
            .grad((g.grad_x * wg).sum() + (lap * wl).sum(), &inputs)
            .unwrap();
        let d2 = tape
            .grad((g_ad.grad_x * wg).sum() + (lap_ad * wl).sum(), &inputs)
            .unwrap();
        for (k, (a, b)) in d1.iter().zip(&d2).enumerate() {
            assert!(
                a.max_abs_diff(b) < 1e-9,
                "{label}: derivative wrt input {k} differs by {}",
                a.max_abs_diff(b)
            );
        }
    }
}

#[test]
fn zero_resnet_weights_leave_the_quadratic_potential() {
    let (d, m, layers, n) = (3, 5, 3, 4);
    let (mut params, net) = random_potential(d, m, layers, 11);
    for i in 0..layers {
        params
            .get_mut(&format!("otflow.N.layers.{i}.weight"))
            .unwrap()
            .fill(0.0);
        params
            .get_mut(&format!("otflow.N.layers.{i}.bias"))
            .unwrap()
            .fill(0.0);
    }
    let a = params.get("otflow.A").unwrap().clone();
    let c = params.get("otflow.c.weight").unwrap().clone();
    let c0 = params.get("otflow.c.bias").unwrap().item();
    let wsum = params.get("otflow.w.weight").unwrap().sum();
    let mut rng = Pcg64::seed_from_u64(12);
    let xs = Tensor::randn(n, d, &mut rng);
    let ts = random_time(n, &mut rng);

    let tape = Tape::<f64>::new();
    let p = params.vars(&tape);
    let (x, t) = (tape.var(xs.clone()), tape.var(ts.clone()));
    let (g, lap) = net.gradient_laplacian(t, x, &p).unwrap();
    let phi = net.phi(t, x, &p).unwrap().value();

    // Closed form: with N ≡ σ(0)(1 + h(M−1)) = 2 ln 2, Φ = 2 ln 2 Σw + ½‖As‖² + cᵀs + c₀,
    // ∇Φ = AᵀA s + c, tr ∇²ₓΦ = Σ_{k<d} ‖A_{:,k}‖².
    let ata = a.t().matmul(&a);
    let tr: f64 = (0..d).map(|k| ata.get(k, k)).sum();
    for i in 0..n {
        let s: Vec<f64> = (0..=d)
            .map(|k| if k < d { xs.get(i, k) } else { ts.get(i, 0) })
            .collect();
        let as_sq: f64 = (0..a.rows())
            .map(|r| (0..=d).map(|k| a.get(r, k) * s[k]).sum::<f64>().powi(2))
            .sum();
        let cs: f64 = (0..=d).map(|k| c.get(0, k) * s[k]).sum();
        let want_phi = 2.0 * std::f64::consts::LN_2 * wsum + 0.5 * as_sq + cs + c0;
        assert!((phi.get(i, 0) - want_phi).abs() < 1e-12);
        for k in 0..=d {
            let want: f64 = (0..=d).map(|l| ata.get(k, l) * s[l]).sum::<f64>() + c.get(0, k);
            let got = if k < d {
                g.grad_x.value().get(i, k)
            } else {
                g.dt.value().get(i, 0)
            };
            assert!((got - want).abs() < 1e-12, "row {i} component {k}");
        }
        assert!((lap.value().get(i, 0) - tr).abs() < 1e-12);
    }
}

/// Φ(x, t) = −‖x‖² / (2(t + t₀)): ∂ₜΦ = ‖x‖²/(2(t + t₀)²) = ½‖∇ₓΦ‖², so it solves the HJB
/// equation −∂ₜΦ + ½‖∇ₓΦ‖² = 0 exactly. The flow dx/dt = −∇ₓΦ = x/(t + t₀) moves on straight
/// lines at constant speed: x(t) = x₀(t + t₀)/t₀.
struct HjbSolution {
    t0: f64,
}

impl Potential<f64> for HjbSolution {
    fn phi<'t>(
        &self,
        t: Var<'t, f64>,
        x: Var<'t, f64>,
        _p: &[Var<'t, f64>],
    ) -> autodiff::Result<Var<'t, f64>> {
        Ok(x.row_sq_norm() / (t + self.t0) * -0.5)
    }
}

#[test]
fn hjb_residual_vanishes_for_an_exact_solution() {
    let (n, d, t0) = (5, 3, 1.5);
    let mut rng = Pcg64::seed_from_u64(21);
    let x0 = Tensor::randn(n, d, &mut rng);
    let flow = OtFlow::from_potential(Rc::new(HjbSolution { t0 }), 0..0)
        .alpha([1.0, 1.0, 1.0])
        .train_opts(Options::fixed(Method::Rk4, 8).adjoint(Adjoint::Direct));
    let tape = Tape::<f64>::new();
    let x = tape.var(x0.clone());
    let out = flow.loss(&tape, &[], x, OtMode::Train).unwrap();

    assert!(out.hjb.item().abs() < 1e-12, "R = {}", out.hjb.item());
    // L = mean ½‖x₀‖²/t₀² · T (the speed is constant), positive.
    let want_l = (0..n)
        .map(|i| x0.row(i).iter().map(|v| v * v).sum::<f64>() / (2.0 * t0 * t0))
        .sum::<f64>()
        / n as f64;
    assert!(out.transport.item() > 0.1);
    assert!((out.transport.item() - want_l).abs() < 1e-10);
    // z(T) = x₀(1 + t₀)/t₀ (RK4 is exact on a linear-in-t path) and ℓ(T) = d ln((1 + t₀)/t₀)
    // (ΔΦ = −d/(t + t₀)), up to RK4's error in the quadrature.
    let z = out.z.value();
    for (zv, xv) in z.as_slice().iter().zip(x0.as_slice()) {
        assert!((zv - xv * (1.0 + t0) / t0).abs() < 1e-10);
    }
    let want_ell = d as f64 * ((1.0 + t0) / t0).ln();
    let logn = out.z.log_normal().value();
    for i in 0..n {
        let ell = out.log_prob.value().get(i, 0) - logn.get(i, 0);
        assert!(
            (ell - want_ell).abs() < 1e-6,
            "ℓ(T) = {ell}, want {want_ell}"
        );
    }

    // A potential that does not solve the HJB equation has a clearly positive residual.
    let (params, net) = random_potential(d, 4, 2, 22);
    let flow = OtFlow::new(net);
    let m = flow.evaluate(&params, &x0).unwrap();
    assert!(m.hjb > 1e-2 && m.transport > 0.0, "{m:?}");
}

/// The OT-Flow loss as a function of (x, parameters…) for the derivative checks.
fn loss_fn(
    net: OtPotential,
    opts: Options<f64>,
    trace: OtTrace,
) -> impl for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Vec<Var<'t, f64>> {
    let flow = OtFlow::new(net)
        .alpha([1.0, 2.0, 0.5])
        .trace(trace)
        .train_opts(opts);
    tape_fn(move |tape, v| {
        let out = flow.loss(tape, &v[1..], v[0], OtMode::Train).unwrap();
        vec![out.loss, out.transport, out.nll, out.hjb]
    })
}

fn check_loss_gradients(layers: usize, opts: Options<f64>, tol: f64) {
    let (d, m, n) = (2, 4, 3);
    let (params, net) = random_potential(d, m, layers, 30 + layers as u64);
    let mut rng = Pcg64::seed_from_u64(31);
    let mut xs = vec![Tensor::randn(n, d, &mut rng)];
    xs.extend(params.tensors().cloned());
    let f = loss_fn(net, opts, OtTrace::Exact);
    let o = CheckOpts {
        eps: 1e-6,
        rtol: tol,
        atol: tol,
        seed: 3,
    };
    check_vjp(&f, &xs, &o).unwrap();
}

#[test]
fn loss_gradients_match_finite_differences_direct() {
    for layers in [2, 3] {
        check_loss_gradients(
            layers,
            Options::fixed(Method::Rk4, 4).adjoint(Adjoint::Direct),
            1e-6,
        );
    }
}

#[test]
fn loss_gradients_match_finite_differences_backsolve() {
    // The adjoint is the continuous derivative, discretised by the same 24 RK4 steps
    // backwards: it agrees with the discrete derivative up to the solver's error.
    for layers in [2, 3] {
        check_loss_gradients(
            layers,
            Options::fixed(Method::Rk4, 24).adjoint(Adjoint::Backsolve),
            1e-5,
        );
    }
}

#[test]
fn trace_variants_give_the_same_loss_and_gradients() {
    let (d, m, n) = (3, 5, 4);
    let (params, net) = random_potential(d, m, 3, 40);
    let mut rng = Pcg64::seed_from_u64(41);
    let x = Tensor::randn(n, d, &mut rng);
    let run = |trace: OtTrace| {
        let flow = OtFlow::new(net.clone())
            .trace(trace)
            .train_opts(Options::fixed(Method::Rk4, 3).adjoint(Adjoint::Direct));
        let tape = Tape::<f64>::new();
        let p = params.vars(&tape);
        let out = flow
            .loss(&tape, &p, tape.constant(x.clone()), OtMode::Train)
            .unwrap();
        let g = tape.grad(out.loss, &p).unwrap();
        (out.loss.item(), g)
    };
    let (l0, g0) = run(OtTrace::Exact);
    for trace in [OtTrace::Autodiff, OtTrace::DivergenceVjp] {
        let (l, g) = run(trace);
        assert!((l - l0).abs() < 1e-9 * l0.abs().max(1.0), "{trace:?}");
        for (a, b) in g.iter().zip(&g0) {
            assert!(a.max_abs_diff(b) < 1e-8, "{trace:?}");
        }
    }
}

#[test]
fn sampling_inverts_the_forward_map() {
    let (d, n) = (2, 16);
    let (params, net) = random_potential(d, 6, 2, 50);
    // Scale the weights down so the flow is tame and RK4 with 32 steps is accurate.
    let mut params = params;
    for t in params.tensors_mut() {
        t.scale(0.5);
    }
    let flow = OtFlow::new(net).eval_opts(Options::fixed(Method::Rk4, 64));
    let mut rng = Pcg64::seed_from_u64(51);
    let (x, logp) = flow.sample(&params, n, d, &mut rng).unwrap();
    assert_eq!(x.shape(), (n, d));
    // The density from the forward solve of the samples matches the sampler's.
    let logp_fwd = flow.log_prob_values(&params, &x).unwrap();
    assert!(
        logp.max_abs_diff(&logp_fwd) < 1e-6,
        "{}",
        logp.max_abs_diff(&logp_fwd)
    );
    let m = flow.evaluate(&params, &x).unwrap();
    let mean_nll = -logp.sum() / n as f64;
    assert!((m.nll - mean_nll).abs() < 1e-6);
}

#[test]
fn the_potential_is_one_more_vector_field_of_the_flow_core() {
    // An OtFlow is the flow core with a PotentialField and the transport/HJB channels: a Cnf
    // built from the same pieces gives the same log-density and terms, for every trace.
    let (d, n) = (3, 4);
    let (params, net) = random_potential(d, 5, 3, 60);
    let mut rng = Pcg64::seed_from_u64(61);
    let x = Tensor::randn(n, d, &mut rng);
    let opts = Options::fixed(Method::Rk4, 4).adjoint(Adjoint::Direct);
    let traces = [
        (OtTrace::Exact, Trace::Exact),
        (OtTrace::Autodiff, Trace::Exact),
        (OtTrace::DivergenceVjp, Trace::Exact),
        (
            OtTrace::Hutchinson(Probe::Rademacher),
            Trace::hutchinson(Probe::Rademacher),
        ),
    ];
    for (ot_trace, trace) in traces {
        let flow = OtFlow::new(net.clone())
            .trace(ot_trace)
            .train_opts(opts.clone())
            .seed(3);
        let field = PotentialField::new(Rc::new(net.clone()) as Rc<dyn Potential<f64>>, ot_trace);
        let cnf = Cnf::from_fields(vec![(
            Rc::new(field) as Rc<dyn VectorField<f64>>,
            net.param_range(),
        )])
        .trace(trace)
        .train_opts(opts.clone())
        .channel(Rc::new(TransportCost), 1.0)
        .channel(Rc::new(HjbResidual), 1.0)
        .seed(3);
        let tape = Tape::<f64>::new();
        let p = params.vars(&tape);
        let ot = flow
            .loss(&tape, &p, tape.constant(x.clone()), OtMode::Train)
            .unwrap();
        let lp = cnf
            .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)
            .unwrap();
        let label = format!("{ot_trace:?}");
        assert!(
            ot.log_prob.value().max_abs_diff(&lp.log_prob.value()) < 1e-12,
            "{label}"
        );
        let transport = lp.term_named("transport").unwrap().value.item();
        let hjb = lp.term_named("hjb").unwrap().value.item();
        assert!((ot.transport.item() - transport).abs() < 1e-12, "{label}");
        assert!((ot.hjb.item() - hjb).abs() < 1e-12, "{label}");
        assert!(ot.hjb.item() > 1e-3, "{label}");
    }
}

#[test]
fn otflow_gets_steer_and_a_learnable_end_time_from_the_core() {
    let (d, n) = (2, 5);
    let (mut params, net) = random_potential(d, 4, 2, 70);
    let flow = OtFlow::new(net)
        .learnable_end_time(&mut params, "sqrt_end_time", 1.0)
        .steer(0.5)
        .seed(4);
    let mut rng = Pcg64::seed_from_u64(71);
    let x = Tensor::randn(n, d, &mut rng);
    let mut seen = Vec::new();
    for _ in 0..5 {
        let tape = Tape::<f64>::new();
        let p = params.vars(&tape);
        let out = flow
            .loss(&tape, &p, tape.constant(x.clone()), OtMode::Train)
            .unwrap();
        let t = out.end_time.item();
        assert!((0.5..=1.5).contains(&t), "T = {t}");
        seen.push(t);
        let g = tape.grad(out.loss, &p).unwrap();
        assert!(g.last().unwrap().max_abs() > 0.0, "no gradient reaches √T");
    }
    assert!(seen.windows(2).any(|w| w[0] != w[1]), "{seen:?}");
    // Evaluation uses T itself.
    let tape = Tape::<f64>::new();
    let p = params.vars(&tape);
    let out = flow
        .loss(&tape, &p, tape.constant(x), OtMode::Eval)
        .unwrap();
    assert_eq!(out.end_time.item(), 1.0);
}
