//! Regularized CNF dynamics (RNODE, FFJORD's penalties, STEER): each regularizer channel
//! against its definition computed independently (closed forms for linear dynamics, composite
//! Simpson quadrature along a dense trajectory for a ConcatSquash net), gradients of the
//! regularized loss against finite differences, and STEER's end times.

use std::rc::Rc;

use autodiff::testing::{check_vjp, tape_fn, CheckOpts};
use autodiff::{Element, Tape, Tensor, Var};
use flows::cnf::{Cnf, Mode, VectorField};
use flows::nn::{Act, OdeNet};
use flows::regularizers::{Reg, SteerError};
use flows::trace::{Probe, Trace};
use flows::Params;
use ode::{dynamics, solve, Adjoint, Method, Options};
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

fn tight() -> Options<f64> {
    Options::dopri5(1e-11, 1e-11)
}

fn all_regs() -> Vec<(Reg, f64)> {
    vec![
        (Reg::Kinetic, 0.1),
        (Reg::JacobianFrobenius, 0.2),
        (Reg::L1, 0.3),
        (Reg::DirectionalDerivative, 0.05),
    ]
}

fn per_sample(lp: &flows::cnf::LogProb<'_, f64>, reg: Reg) -> Tensor<f64> {
    lp.term(reg).expect("configured").per_sample.value()
}

#[test]
fn linear_dynamics_give_the_closed_form_regularizers() {
    // A = [[a, b], [−b, a]]: z(t) = e^{at} R(bt) x, A z has norm √(a²+b²)‖z‖, A²z norm (a²+b²)‖z‖.
    let (a, b, t) = (-0.4, 0.9, 1.1);
    let s2 = a * a + b * b;
    let mut params = Params::new();
    params.add("A", Tensor::from_f64s(2, 2, &[a, b, -b, a]));
    let base = Cnf::from_fields(vec![(Rc::new(Linear) as Rc<dyn VectorField<f64>>, 0..1)])
        .end_time(t)
        .train_opts(tight())
        .eval_opts(tight())
        .regularizers(&all_regs());
    let mut rng = Pcg64::seed_from_u64(0);
    let x = Tensor::<f64>::randn(5, 2, &mut rng);
    let growth = ((2.0 * a * t).exp() - 1.0) / (2.0 * a); // ∫₀ᵀ e^{2as} ds
    for (trace, mode) in [
        (Trace::hutchinson(Probe::Rademacher), Mode::Train),
        (Trace::Exact, Mode::Train),
        (Trace::hutchinson(Probe::Gaussian), Mode::Eval),
    ] {
        let cnf = base.clone().trace(trace);
        let tape = Tape::new();
        let p = params.vars(&tape);
        let lp = cnf
            .log_prob(&tape, &p, tape.constant(x.clone()), mode)
            .unwrap();
        let (kin, jac, dir) = (
            per_sample(&lp, Reg::Kinetic),
            per_sample(&lp, Reg::JacobianFrobenius),
            per_sample(&lp, Reg::DirectionalDerivative),
        );
        for i in 0..5 {
            let r2 = x.get(i, 0).powi(2) + x.get(i, 1).powi(2);
            let close = |got: f64, want: f64, what: &str| {
                assert!(
                    (got - want).abs() < 1e-8 * (1.0 + want.abs()),
                    "{trace:?} {mode:?} {what} row {i}: {got} vs {want}"
                )
            };
            close(kin.get(i, 0), s2 * r2 * growth, "kinetic");
            close(dir.get(i, 0), s2 * s2 * r2 * growth, "directional");
            // ‖J‖²_F = 2(a²+b²); a Rademacher probe gives ‖εᵀA‖² = (a²+b²)‖ε‖² = 2(a²+b²) too.
            close(jac.get(i, 0), 2.0 * s2 * t, "jacobian");
        }
    }
}

/// A time-dependent ConcatSquash field 2-8-8-2 and its parameters.
fn net() -> (OdeNet, Params<f64>) {
    let mut rng = Pcg64::seed_from_u64(11);
    let mut params = Params::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[8, 8], Act::Tanh, &mut rng);
    (net, params)
}

/// Composite Simpson's rule for samples `y` on an even number of equal intervals of size `h`.
fn simpson(y: &[f64], h: f64) -> f64 {
    let m = y.len() - 1;
    assert!(m.is_multiple_of(2));
    let inner: f64 = (1..m)
        .map(|k| if k % 2 == 1 { 4.0 * y[k] } else { 2.0 * y[k] })
        .sum();
    (y[0] + y[m] + inner) * h / 3.0
}

/// The integrands of every regularizer, per row, at one point of the trajectory, computed
/// without the library's regularizer code: f by the net, the full Jacobian with
/// `Tape::jacobian`, ∂f/∂t by a central difference in t.
fn integrands(
    net: &OdeNet,
    params: &Params<f64>,
    t: f64,
    z: &Tensor<f64>,
    eps: &Tensor<f64>,
) -> Vec<[f64; 5]> {
    let (n, d) = z.shape();
    let tape = Tape::new();
    let p = params.constants(&tape);
    let zv = tape.var(z.clone());
    let f = net.forward(&p, tape.scalar(t), zv);
    let fv = f.value();
    let jac = tape.jacobian(f, zv).unwrap(); // (n·d) × (n·d), block diagonal
    let h = 1e-5;
    let fp = net
        .forward(&p, tape.scalar(t + h), tape.constant(z.clone()))
        .value();
    let fm = net
        .forward(&p, tape.scalar(t - h), tape.constant(z.clone()))
        .value();
    (0..n)
        .map(|i| {
            let j = |r: usize, c: usize| jac.get(i * d + r, i * d + c);
            let fi: Vec<f64> = (0..d).map(|c| fv.get(i, c)).collect();
            let kinetic: f64 = fi.iter().map(|v| v * v).sum();
            let l1: f64 = fi.iter().map(|v| v.abs()).sum();
            let frob: f64 = (0..d)
                .flat_map(|r| (0..d).map(move |c| (r, c)))
                .map(|(r, c)| j(r, c).powi(2))
                .sum();
            let probe: f64 = (0..d)
                .map(|c| (0..d).map(|r| eps.get(i, r) * j(r, c)).sum::<f64>().powi(2))
                .sum();
            let accel: f64 = (0..d)
                .map(|r| {
                    let jf: f64 = (0..d).map(|c| j(r, c) * fi[c]).sum();
                    let ft = (fp.get(i, r) - fm.get(i, r)) / (2.0 * h);
                    (jf + ft).powi(2)
                })
                .sum();
            [kinetic, l1, frob, probe, accel]
        })
        .collect()
}

#[test]
fn regularizer_channels_equal_quadratures_along_a_dense_trajectory() {
    let (net, params) = net();
    let t_end = 0.8;
    let mut rng = Pcg64::seed_from_u64(3);
    let x = Tensor::<f64>::randn(4, 2, &mut rng);
    let seed = 21;
    // The probe the flow draws first from its seeded generator (no STEER: nothing before it).
    let eps = Trace::hutchinson(Probe::Gaussian)
        .draw::<f64, _>(4, 2, &mut Pcg64::seed_from_u64(seed))
        .remove(0);

    // A dense trajectory of the plain ODE dz/dt = f(z, t), on its own.
    let m = 400;
    let times: Vec<f64> = (0..=m).map(|k| t_end * k as f64 / m as f64).collect();
    let field = net.clone();
    let f = dynamics::<f64, _>(move |_tape, t, z, p| Ok(vec![field.forward(p, t, z[0])]));
    let theta: Vec<Tensor<f64>> = params.tensors().cloned().collect();
    let traj = solve(&f, std::slice::from_ref(&x), &theta, &times, &tight()).unwrap();
    let mut samples = vec![vec![[0.0; 5]; m + 1]; 4];
    for (k, (&t, state)) in times.iter().zip(&traj.states).enumerate() {
        for (i, row) in integrands(&net, &params, t, &state[0], &eps)
            .into_iter()
            .enumerate()
        {
            samples[i][k] = row;
        }
    }
    let quad = |i: usize, q: usize| {
        let y: Vec<f64> = samples[i].iter().map(|r| r[q]).collect();
        simpson(&y, t_end / m as f64)
    };

    // Fixed RK4 steps on the quadrature's grid: the L1 integrand has kinks where a component
    // of f changes sign, and the regularizer channels take no part in step-size control, so an
    // adaptive solve would step over them with large steps.
    let grid = Options::fixed(Method::Rk4, m);
    let base = Cnf::new(net)
        .end_time(t_end)
        .train_opts(grid.clone())
        .eval_opts(grid)
        .regularizers(&all_regs());
    let run = |cnf: &Cnf<f64>, mode: Mode| {
        let tape = Tape::new();
        let p = params.vars(&tape);
        let lp = cnf
            .log_prob(&tape, &p, tape.constant(x.clone()), mode)
            .unwrap();
        Reg::ALL.map(|r| per_sample(&lp, r))
    };
    // Hutchinson training: Frobenius term with the trace's probe.
    let hutch = run(
        &base
            .clone()
            .trace(Trace::hutchinson(Probe::Gaussian))
            .seed(seed),
        Mode::Train,
    );
    // Exact trace (evaluation): the exact Frobenius norm.
    let exact = run(&base, Mode::Eval);
    for i in 0..4 {
        let check = |got: f64, want: f64, what: &str| {
            assert!(
                (got - want).abs() < 1e-6 * (1.0 + want.abs()),
                "{what} row {i}: channel {got} vs quadrature {want}"
            )
        };
        for (what, chans) in [("hutchinson", &hutch), ("exact", &exact)] {
            check(chans[0].get(i, 0), quad(i, 0), &format!("{what} kinetic"));
            check(chans[2].get(i, 0), quad(i, 1), &format!("{what} l1"));
            check(
                chans[3].get(i, 0),
                quad(i, 4),
                &format!("{what} directional"),
            );
        }
        check(hutch[1].get(i, 0), quad(i, 3), "probe Jacobian ‖εᵀJ‖²");
        check(exact[1].get(i, 0), quad(i, 2), "exact Jacobian ‖J‖²_F");
    }
}

#[test]
fn the_loss_is_the_nll_plus_the_weighted_terms_and_weights_replace() {
    let (net, params) = net();
    let cnf = Cnf::new(net)
        .end_time(0.5)
        .train_opts(Options::fixed(Method::Rk4, 8))
        .regularize(Reg::Kinetic, 0.7)
        .regularize(Reg::L1, 0.2)
        .regularize(Reg::L2, 0.3); // the same channel as Kinetic: replaces its weight
    assert_eq!(
        cnf.regularizer_terms(),
        &[(Reg::Kinetic, 0.3), (Reg::L1, 0.2)]
    );
    let mut rng = Pcg64::seed_from_u64(4);
    let x = Tensor::<f64>::randn(6, 2, &mut rng);
    let tape = Tape::new();
    let p = params.vars(&tape);
    let lp = cnf
        .log_prob(&tape, &p, tape.constant(x), Mode::Train)
        .unwrap();
    assert_eq!(lp.reg.len(), 2);
    let nll = -lp.log_prob.value().as_slice().iter().sum::<f64>() / 6.0;
    let mean = |r: Reg| {
        lp.term(r)
            .unwrap()
            .per_sample
            .value()
            .as_slice()
            .iter()
            .sum::<f64>()
            / 6.0
    };
    assert!((lp.term(Reg::L1).unwrap().value.item() - mean(Reg::L1)).abs() < 1e-14);
    let want = nll + 0.3 * mean(Reg::Kinetic) + 0.2 * mean(Reg::L1);
    assert!(
        (lp.loss().item() - want).abs() < 1e-12,
        "{} vs {want}",
        lp.loss().item()
    );
    assert!((lp.nll().item() - nll).abs() < 1e-12);
    assert!(mean(Reg::Kinetic) > 0.0 && mean(Reg::L1) > 0.0);
    // The regularizers do not change log p.
    let plain = Cnf::new(net_only())
        .end_time(0.5)
        .train_opts(Options::fixed(Method::Rk4, 8));
    let tape2 = Tape::new();
    let p2 = params.vars(&tape2);
    let mut rng = Pcg64::seed_from_u64(4);
    let x = Tensor::<f64>::randn(6, 2, &mut rng);
    let lp2 = plain
        .log_prob(&tape2, &p2, tape2.constant(x), Mode::Train)
        .unwrap();
    assert!(lp2.reg.is_empty() && lp2.reg_loss().is_none());
    assert!(lp2.log_prob.value().max_abs_diff(&lp.log_prob.value()) < 1e-13);
}

fn net_only() -> OdeNet {
    net().0
}

/// The regularized loss of a small batch as a function of the parameters, with the probes and
/// STEER's end time drawn from the same seed at every evaluation.
fn loss_fn(
    base: Cnf<f64>,
    x: Tensor<f64>,
) -> impl for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Vec<Var<'t, f64>> + Clone {
    tape_fn(move |tape, p| {
        let cnf = base.clone().seed(9);
        vec![cnf
            .log_prob(tape, p, tape.constant(x.clone()), Mode::Train)
            .unwrap()
            .loss()]
    })
}

#[test]
fn regularized_loss_gradients_match_finite_differences() {
    let mut rng = Pcg64::seed_from_u64(5);
    let mut params = Params::<f64>::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[6], Act::Tanh, &mut rng);
    let base = Cnf::new(net)
        .learnable_end_time(&mut params, "sqrt_end_time", 0.6)
        .regularizers(&all_regs())
        .steer(0.2);
    let x = Tensor::<f64>::randn(4, 2, &mut rng);
    let xs: Vec<Tensor<f64>> = params.tensors().cloned().collect();
    let o = CheckOpts {
        eps: 1e-5,
        rtol: 5e-6,
        atol: 1e-7,
        seed: 0,
    };
    for (trace, adjoint) in [
        (Trace::hutchinson(Probe::Gaussian), Adjoint::Backsolve),
        (Trace::Exact, Adjoint::Backsolve),
        (
            Trace::Hutchinson {
                probe: Probe::Rademacher,
                samples: 2,
            },
            Adjoint::Checkpointed { checkpoints: 2 },
        ),
        (Trace::hutchinson(Probe::Gaussian), Adjoint::Direct),
    ] {
        let cnf = base
            .clone()
            .trace(trace)
            .train_opts(Options::fixed(Method::Rk4, 100).adjoint(adjoint));
        let f = loss_fn(cnf, x.clone());
        check_vjp(&f, &xs, &o).unwrap_or_else(|e| panic!("{trace:?} {adjoint:?}: {e}"));
    }
}

#[test]
fn steer_end_times_stay_in_their_interval() {
    let (net, mut params) = net();
    let (t, b) = (1.0, 0.5);
    let cnf = Cnf::new(net.clone()).end_time(t).steer(b).seed(3);
    assert_eq!(cnf.steer_half_width(), Some(b));
    let draws: Vec<f64> = (0..5000)
        .map(|_| cnf.draw_end_time(&params).unwrap())
        .collect();
    assert!(draws.iter().all(|&s| (t - b..=t + b).contains(&s)));
    let (lo, hi) = draws
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &s| (l.min(s), h.max(s)));
    assert!(lo < t - 0.99 * b && hi > t + 0.99 * b, "range [{lo}, {hi}]");
    let mean = draws.iter().sum::<f64>() / draws.len() as f64;
    assert!((mean - t).abs() < 0.02, "mean {mean}"); // sd of the mean ≈ 0.004
                                                     // Distinct draws: the generator advances.
    assert!(draws.windows(2).all(|w| w[0] != w[1]));

    // A training call integrates to the drawn time, as drawing it from the same seed says, and
    // gives what a flow with that fixed end time gives (exact trace: no other draws).
    let trained = Cnf::new(net.clone())
        .end_time(t)
        .steer(b)
        .trace(Trace::Exact)
        .train_opts(Options::fixed(Method::Rk4, 20));
    let mut rng = Pcg64::seed_from_u64(6);
    let x = Tensor::<f64>::randn(5, 2, &mut rng);
    for k in 0..4 {
        let want_t = trained.clone().seed(k).draw_end_time(&params).unwrap();
        let tape = Tape::new();
        let p = params.vars(&tape);
        let lp = trained
            .clone()
            .seed(k)
            .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)
            .unwrap();
        assert_eq!(lp.end_time.item(), want_t);
        let fixed = Cnf::new(net.clone())
            .end_time(want_t)
            .trace(Trace::Exact)
            .train_opts(Options::fixed(Method::Rk4, 20));
        let lf = fixed
            .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)
            .unwrap();
        assert!(lp.log_prob.value().max_abs_diff(&lf.log_prob.value()) < 1e-13);
    }

    // Learnable T: T + u, and the gradient reaches T through the drawn time.
    let learn = Cnf::new(net.clone())
        .learnable_end_time(&mut params, "sqrt_end_time", 0.8)
        .steer(0.3)
        .seed(1);
    for _ in 0..1000 {
        let s = learn.draw_end_time(&params).unwrap();
        assert!((0.5 - 1e-12..=1.1 + 1e-12).contains(&s), "{s}");
    }
    let tape = Tape::new();
    let p = params.vars(&tape);
    let lp = learn
        .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)
        .unwrap();
    let g = tape.grad(lp.end_time, &p).unwrap();
    let i = params.index_of("sqrt_end_time").unwrap();
    // d(s² + u)/ds = 2s.
    assert!((g[i].item() - 2.0 * 0.8f64.sqrt()).abs() < 1e-12);

    // A learnable T that drifted to T ≤ b is a clear error, not a solve to a negative time.
    *params.get_mut("sqrt_end_time").unwrap() = Tensor::scalar(0.2f64.sqrt());
    let err = learn.draw_end_time(&params).unwrap_err();
    let se = err.downcast_ref::<SteerError>().expect("a SteerError");
    assert!((se.end_time - 0.2).abs() < 1e-12 && se.half_width == 0.3);
    assert!(err.to_string().contains("b < T") || se.to_string().contains("b < T"));
    let tape = Tape::new();
    let p = params.vars(&tape);
    let err = learn
        .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)
        .err()
        .expect("T < b must fail");
    assert!(err.downcast_ref::<SteerError>().is_some());
    // Evaluation and sampling still use T.
    assert!(learn.log_prob_values(&params, &x).is_ok());
}

#[test]
fn evaluation_uses_the_fixed_end_time() {
    let (net, params) = net();
    let mut rng = Pcg64::seed_from_u64(7);
    let x = Tensor::<f64>::randn(5, 2, &mut rng);
    let opts = Options::dopri5(1e-7, 1e-7);
    let steer = Cnf::new(net.clone())
        .end_time(0.7)
        .steer(0.3)
        .eval_opts(opts.clone())
        .regularize(Reg::Kinetic, 0.01);
    let plain = Cnf::new(net).end_time(0.7).eval_opts(opts);
    let eval = |cnf: &Cnf<f64>| {
        let tape = Tape::new();
        let p = params.vars(&tape);
        let lp = cnf
            .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Eval)
            .unwrap();
        assert_eq!(lp.end_time.item(), 0.7);
        (lp.log_prob.value(), lp.reg.first().map(|r| r.value.item()))
    };
    let (a, ra) = eval(&steer);
    let (b, rb) = eval(&steer);
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    assert!(ra.unwrap() > 0.0);
    let (c, rc) = eval(&plain);
    assert_eq!(a, c);
    assert_eq!(rc, None);
    assert_eq!(steer.log_prob_values(&params, &x).unwrap(), c);
    // Sampling inverts the fixed-T flow.
    let z = Tensor::<f64>::randn(4, 2, &mut rng);
    let (xs, _) = steer.transport_back(&params, z.clone()).unwrap();
    let (xp, _) = plain.transport_back(&params, z).unwrap();
    assert_eq!(xs, xp);
}

#[test]
#[should_panic(expected = "0 ≤ b < T")]
fn steer_half_width_must_be_below_the_end_time() {
    let _ = Cnf::<f64>::new(net_only()).end_time(0.5).steer(0.5);
}

#[test]
#[should_panic(expected = "0 ≤ b < T")]
fn a_later_end_time_is_checked_against_steer() {
    let _ = Cnf::<f64>::new(net_only()).steer(0.6).end_time(0.5);
}
