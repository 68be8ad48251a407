//! The continuous normalizing flow: analytic log-densities, traces, normalisation, and
//! gradients of the training loss against finite differences for every trace estimator and
//! adjoint strategy.

use std::rc::Rc;

use autodiff::testing::{check_vjp, tape_fn, CheckOpts};
use autodiff::{Element, Tape, Tensor, Var};
use flows::cnf::{Cnf, FieldOutput, Mode, VectorField};
use flows::nn::{Act, OdeNet};
use flows::trace::{exact_divergence, hutchinson_divergence, Probe, Trace};
use flows::Params;
use ode::{Adjoint, Method, Options};
use rand::SeedableRng;
use rand_pcg::Pcg64;

/// f(z) = z Aᵀ (each row z ↦ A z) with A the single parameter.
struct Linear;
impl<E: Element> VectorField<E> for Linear {
    fn eval<'t>(
        &self,
        _t: Var<'t, E>,
        z: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>> {
        Ok(z.matmul_t(p[0]))
    }
}

fn linear_flow(a: Tensor<f64>, t: f64) -> (Cnf<f64>, Params<f64>) {
    let mut params = Params::new();
    params.add("A", a);
    let tight = Options::dopri5(1e-10, 1e-10);
    let cnf = Cnf::from_fields(vec![(Rc::new(Linear) as Rc<dyn VectorField<f64>>, 0..1)])
        .end_time(t)
        .trace(Trace::Exact)
        .train_opts(tight.clone())
        .eval_opts(tight);
    (cnf, params)
}

fn log_normal(z: &[f64]) -> f64 {
    -0.5 * z.iter().map(|v| v * v).sum::<f64>()
        - 0.5 * z.len() as f64 * (2.0 * std::f64::consts::PI).ln()
}

#[test]
fn linear_dynamics_give_the_analytic_log_density() {
    // A = [[a, b], [−b, a]]: z(T) = e^{aT} R(bT) x, and ∫₀ᵀ tr A dt = 2aT.
    let (a, b, t) = (-0.3, 0.8, 1.3);
    let (cnf, params) = linear_flow(Tensor::from_f64s(2, 2, &[a, b, -b, a]), t);
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Tensor::<f64>::randn(6, 2, &mut rng);
    for mode in [Mode::Train, Mode::Eval] {
        let tape = Tape::new();
        let p = params.vars(&tape);
        let lp = cnf
            .log_prob(&tape, &p, tape.constant(x.clone()), mode)
            .unwrap()
            .log_prob
            .value();
        for i in 0..6 {
            let (x0, x1) = (x.get(i, 0), x.get(i, 1));
            let (c, s, g) = ((b * t).cos(), (b * t).sin(), (a * t).exp());
            let z = [g * (c * x0 + s * x1), g * (-s * x0 + c * x1)];
            let expected = log_normal(&z) + 2.0 * a * t;
            assert!(
                (lp.get(i, 0) - expected).abs() < 1e-8,
                "{mode:?} row {i}: {} vs {expected}",
                lp.get(i, 0)
            );
        }
    }
}

#[test]
fn gaussian_to_gaussian_flow() {
    // f(z) = −s z maps N(0, e^{2sT} I) exactly onto N(0, I).
    let (s, t) = (0.7, 0.9);
    let (cnf, params) = linear_flow(Tensor::from_f64s(2, 2, &[-s, 0.0, 0.0, -s]), t);
    let mut rng = Pcg64::seed_from_u64(1);
    let x = Tensor::<f64>::randn(5, 2, &mut rng);
    let lp = cnf.log_prob_values(&params, &x).unwrap();
    let sigma2 = (2.0 * s * t).exp();
    for i in 0..5 {
        let r2 = x.get(i, 0).powi(2) + x.get(i, 1).powi(2);
        let expected = -r2 / (2.0 * sigma2) - sigma2.ln() - (2.0 * std::f64::consts::PI).ln();
        assert!((lp.get(i, 0) - expected).abs() < 1e-8);
    }
    // Sampling inverts the flow: the log-density of samples agrees with log_prob at them.
    let (xs, lps) = cnf.sample(&params, 7, 2, &mut rng).unwrap();
    let again = cnf.log_prob_values(&params, &xs).unwrap();
    assert!(again.max_abs_diff(&lps) < 1e-7);
}

fn random_net(seed: u64, hidden: &[usize]) -> (OdeNet, Params<f64>) {
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut params = Params::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 3, hidden, Act::Tanh, &mut rng);
    (net, params)
}

#[test]
fn exact_trace_is_the_trace_of_the_jacobian_and_hutchinson_is_unbiased() {
    let (net, params) = random_net(2, &[16, 16]);
    let mut rng = Pcg64::seed_from_u64(3);
    let z0 = Tensor::<f64>::randn(4, 3, &mut rng);
    let tape = Tape::new();
    let p = params.vars(&tape);
    let t = tape.scalar(0.4);
    let z = tape.var(z0.clone());
    let f = net.forward(&p, t, z);
    let exact = exact_divergence(f, z).value();
    let jac = tape.jacobian(f, z).unwrap();
    for i in 0..4 {
        let tr: f64 = (0..3).map(|j| jac.get(i * 3 + j, i * 3 + j)).sum();
        assert!(
            (exact.get(i, 0) - tr).abs() < 1e-12,
            "row {i}: {} vs {tr}",
            exact.get(i, 0)
        );
    }
    for probe in [Probe::Gaussian, Probe::Rademacher] {
        let draws = 4000;
        let mut sum = [0.0; 4];
        let mut sq = [0.0; 4];
        for _ in 0..draws {
            let eps = Trace::hutchinson(probe).draw::<f64, _>(4, 3, &mut rng);
            let (est, _) = hutchinson_divergence(f, z, &eps);
            let est = est.value();
            for i in 0..4 {
                sum[i] += est.get(i, 0);
                sq[i] += est.get(i, 0).powi(2);
            }
        }
        for i in 0..4 {
            let mean = sum[i] / draws as f64;
            let se = ((sq[i] / draws as f64 - mean * mean) / draws as f64).sqrt();
            assert!(
                (mean - exact.get(i, 0)).abs() < 4.0 * se + 1e-12,
                "{probe:?} row {i}: {mean} ± {se} vs {}",
                exact.get(i, 0)
            );
        }
    }
}

#[test]
fn a_learned_density_integrates_to_one() {
    let mut rng = Pcg64::seed_from_u64(4);
    let mut params = Params::<f64>::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[16, 16], Act::Tanh, &mut rng);
    let cnf = Cnf::new(net)
        .end_time(0.5)
        .train_opts(Options::fixed(Method::Rk4, 4))
        .eval_opts(Options::dopri5(1e-6, 1e-6));
    let mut opt = flows::optim::Adam::new(5e-3);
    use flows::optim::Optimizer;
    for _ in 0..30 {
        let tape = Tape::new();
        let p = params.vars(&tape);
        let x = tape.constant(flows::data::eight_gaussians(128, &mut rng));
        let loss = -cnf
            .log_prob(&tape, &p, x, Mode::Train)
            .unwrap()
            .log_prob
            .mean();
        let g = tape.grad(loss, &p).unwrap();
        opt.step(&mut params, &g);
    }
    let ext = flows::plot::Extent::square(7.0);
    let res = 140;
    let grid = flows::plot::grid::<f64>(ext, res);
    let lp = cnf.log_prob_values(&params, &grid).unwrap();
    let cell = (14.0 / res as f64).powi(2);
    let mass: f64 = lp.as_slice().iter().map(|v| v.exp()).sum::<f64>() * cell;
    assert!((mass - 1.0).abs() < 0.02, "mass {mass}");
}

/// The mean NLL of a small batch as a function of the parameters, with the probes drawn from
/// the same seed at every evaluation.
fn loss_fn(
    base: Cnf<f64>,
    x: Tensor<f64>,
) -> impl for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Vec<Var<'t, f64>> + Clone {
    tape_fn(move |tape, p| {
        let cnf = base.clone().seed(9);
        vec![-cnf
            .log_prob(tape, p, tape.constant(x.clone()), Mode::Train)
            .unwrap()
            .log_prob
            .mean()]
    })
}

#[test]
fn loss_gradients_match_finite_differences_for_every_trace_and_adjoint() {
    let mut rng = Pcg64::seed_from_u64(5);
    let mut params = Params::<f64>::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[6], Act::Tanh, &mut rng);
    let base = Cnf::new(net).learnable_end_time(&mut params, "sqrt_end_time", 0.6);
    let x = Tensor::<f64>::randn(4, 2, &mut rng);
    let xs: Vec<Tensor<f64>> = params.tensors().cloned().collect();
    let o = CheckOpts {
        eps: 1e-5,
        rtol: 5e-6,
        atol: 1e-7,
        seed: 0,
    };
    for trace in [
        Trace::Exact,
        Trace::hutchinson(Probe::Gaussian),
        Trace::Hutchinson {
            probe: Probe::Rademacher,
            samples: 2,
        },
    ] {
        for adjoint in [
            Adjoint::Backsolve,
            Adjoint::Checkpointed { checkpoints: 2 },
            Adjoint::Direct,
        ] {
            let cnf = base
                .clone()
                .trace(trace)
                .train_opts(Options::fixed(Method::Rk4, 100).adjoint(adjoint));
            let f = loss_fn(cnf, x.clone());
            check_vjp(&f, &xs, &o).unwrap_or_else(|e| panic!("{trace:?} {adjoint:?}: {e}"));
        }
    }
}

#[test]
fn stacked_blocks_compose_their_log_densities() {
    // Two linear blocks that do not commute: A₁ diagonal, A₂ = a I + b J a rotation-scaling.
    // z(T) = e^{A₂T} e^{A₁T} x, whose norm is e^{aT} ‖e^{A₁T} x‖, and
    // log p = log N(z(T)) + T (tr A₁ + tr A₂).
    let (t, a1, (a, b)) = (0.8, [-0.4, 0.3], (0.2, 0.9));
    let mut params = Params::<f64>::new();
    params.add("A1", Tensor::from_f64s(2, 2, &[a1[0], 0.0, 0.0, a1[1]]));
    params.add("A2", Tensor::from_f64s(2, 2, &[a, b, -b, a]));
    let tight = Options::dopri5(1e-10, 1e-10);
    let cnf = Cnf::from_fields(vec![
        (Rc::new(Linear) as Rc<dyn VectorField<f64>>, 0..1),
        (Rc::new(Linear) as Rc<dyn VectorField<f64>>, 1..2),
    ])
    .end_time(t)
    .trace(Trace::Exact)
    .train_opts(tight.clone())
    .eval_opts(tight);
    assert_eq!(cnf.num_blocks(), 2);
    let mut rng = Pcg64::seed_from_u64(12);
    let x = Tensor::<f64>::randn(5, 2, &mut rng);
    let lp = cnf.log_prob_values(&params, &x).unwrap();
    for i in 0..5 {
        let z: Vec<f64> = (0..2)
            .map(|j| x.get(i, j) * (a1[j] * t).exp() * (a * t).exp())
            .collect();
        let expected = log_normal(&z) + t * (a1[0] + a1[1] + 2.0 * a);
        assert!(
            (lp.get(i, 0) - expected).abs() < 1e-8,
            "row {i}: {} vs {expected}",
            lp.get(i, 0)
        );
    }
    // Sampling must run the blocks in reverse order to invert the (non-commuting) stack.
    let (xs, lps) = cnf.sample(&params, 6, 2, &mut rng).unwrap();
    let again = cnf.log_prob_values(&params, &xs).unwrap();
    assert!(again.max_abs_diff(&lps) < 1e-7);
}

/// f(z) = z Aᵀ with its own exact divergence tr(A) per row, plus a known `bias` so a test can
/// tell the field's divergence from the configured trace's.
struct LinearWithTrace {
    bias: f64,
}

impl VectorField<f64> for LinearWithTrace {
    fn eval<'t>(
        &self,
        _t: Var<'t, f64>,
        z: Var<'t, f64>,
        p: &[Var<'t, f64>],
    ) -> autodiff::Result<Var<'t, f64>> {
        Ok(z.matmul_t(p[0]))
    }

    fn eval_with_divergence<'t>(
        &self,
        t: Var<'t, f64>,
        z: Var<'t, f64>,
        p: &[Var<'t, f64>],
        _mode: Mode,
    ) -> autodiff::Result<FieldOutput<'t, f64>> {
        let (n, d) = z.shape();
        // tr(A) from the parameter itself, so gradients reach A through the divergence too.
        let eye = z.tape().constant(Tensor::eye(d));
        let tr = (p[0] * eye).sum().add_scalar(self.bias).broadcast_to(n, 1);
        Ok(FieldOutput::with_divergence(self.eval(t, z, p)?, tr))
    }
}

fn linear_with_trace(a: Tensor<f64>, t: f64, bias: f64, trace: Trace) -> (Cnf<f64>, Params<f64>) {
    let mut params = Params::new();
    params.add("A", a);
    let tight = Options::dopri5(1e-10, 1e-10);
    let field = Rc::new(LinearWithTrace { bias }) as Rc<dyn VectorField<f64>>;
    let cnf = Cnf::from_fields(vec![(field, 0..1)])
        .end_time(t)
        .trace(trace)
        .train_opts(tight.clone())
        .eval_opts(tight);
    (cnf, params)
}

#[test]
fn a_fields_own_divergence_gives_the_analytic_density_instead_of_the_trace() {
    // A = [[a, b], [−b, a]]: z(T) = e^{aT} R(bT) x and ∫₀ᵀ tr A dt = 2aT. With Hutchinson's
    // estimator configured, εᵀAε ≠ tr A per row, so only the field's own divergence can give
    // the closed form on every row; a bias c in it must show up as T·c.
    let (a, b, t) = (-0.3, 0.8, 1.3);
    let mut rng = Pcg64::seed_from_u64(5);
    let x = Tensor::<f64>::randn(6, 2, &mut rng);
    for bias in [0.0, 0.25] {
        let (cnf, params) = linear_with_trace(
            Tensor::from_f64s(2, 2, &[a, b, -b, a]),
            t,
            bias,
            Trace::hutchinson(Probe::Rademacher),
        );
        let expected = |i: usize| {
            let (x0, x1) = (x.get(i, 0), x.get(i, 1));
            let (c, s, g) = ((b * t).cos(), (b * t).sin(), (a * t).exp());
            let z = [g * (c * x0 + s * x1), g * (-s * x0 + c * x1)];
            log_normal(&z) + (2.0 * a + bias) * t
        };
        for mode in [Mode::Train, Mode::Eval] {
            let tape = Tape::new();
            let p = params.vars(&tape);
            let lp = cnf
                .log_prob(&tape, &p, tape.constant(x.clone()), mode)
                .unwrap()
                .log_prob
                .value();
            for i in 0..6 {
                assert!(
                    (lp.get(i, 0) - expected(i)).abs() < 1e-8,
                    "bias {bias}, {mode:?} row {i}: {} vs {}",
                    lp.get(i, 0),
                    expected(i)
                );
            }
        }
        let lp = cnf.log_prob_values(&params, &x).unwrap();
        for i in 0..6 {
            assert!((lp.get(i, 0) - expected(i)).abs() < 1e-8, "values row {i}");
        }
        // Sampling integrates the same divergence backwards.
        let (xs, lps) = cnf.sample(&params, 5, 2, &mut rng).unwrap();
        let again = cnf.log_prob_values(&params, &xs).unwrap();
        assert!(again.max_abs_diff(&lps) < 1e-7, "bias {bias}");
    }
}

#[test]
fn gradients_through_a_fields_own_divergence_match_finite_differences() {
    // Through x, A (also inside the divergence) and a learnable end time, for every adjoint.
    let mut params = Params::<f64>::new();
    params.add("A", Tensor::from_f64s(2, 2, &[-0.2, 0.5, -0.4, 0.1]));
    let field = Rc::new(LinearWithTrace { bias: 0.0 }) as Rc<dyn VectorField<f64>>;
    let base = Cnf::from_fields(vec![(field, 0..1)])
        .learnable_end_time(&mut params, "sqrt_end_time", 0.7)
        .trace(Trace::hutchinson(Probe::Gaussian));
    let mut rng = Pcg64::seed_from_u64(6);
    let mut xs = vec![Tensor::<f64>::randn(3, 2, &mut rng)];
    xs.extend(params.tensors().cloned());
    for adjoint in [
        Adjoint::Direct,
        Adjoint::Backsolve,
        Adjoint::Checkpointed { checkpoints: 2 },
    ] {
        let cnf = base
            .clone()
            .train_opts(Options::fixed(Method::Rk4, 100).adjoint(adjoint));
        let f = tape_fn(move |tape, v| {
            let lp = cnf.log_prob(tape, &v[1..], v[0], Mode::Train).unwrap();
            vec![lp.log_prob]
        });
        let o = CheckOpts {
            eps: 1e-6,
            rtol: 1e-6,
            atol: 1e-7,
            seed: 2,
        };
        check_vjp(&f, &xs, &o).unwrap_or_else(|e| panic!("{adjoint:?}: {e}"));
    }
}
