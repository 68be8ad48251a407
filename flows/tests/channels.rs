//! User-defined integrated channels are first class: a channel written outside the crate is
//! integrated exactly like the built-in regularizers, with every trace estimator and adjoint,
//! STEER and stacked blocks, and its value and gradients match closed forms.

use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use flows::cnf::{Cnf, Mode, VectorField};
use flows::nn::{Act, OdeNet};
use flows::regularizers::{Channel, RateInputs, Reg};
use flows::trace::{Probe, Trace};
use flows::Params;
use ode::{Adjoint, Method, Options};
use rand::SeedableRng;
use rand_pcg::Pcg64;

/// The kinetic energy written as a user would: must agree bit for bit with [`Reg::Kinetic`].
struct MyKinetic;

impl<E: Element> Channel<E> for MyKinetic {
    fn name(&self) -> String {
        "my_kinetic".into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        Ok(x.f.square().sum_axis(1))
    }
}

/// `‖∂f/∂t‖²`, by a forward-mode product along `t` alone.
struct TimeSmoothness;

impl<E: Element> Channel<E> for TimeSmoothness {
    fn name(&self) -> String {
        "time_smoothness".into()
    }

    fn rate<'t>(&self, x: &RateInputs<'_, 't, E>) -> autodiff::Result<Var<'t, E>> {
        let tape = x.f.tape();
        let one = tape.scalar(E::ONE);
        let ft = tape.jvp(&[x.f], &[x.t], &[one])?[0];
        Ok(ft.square().sum_axis(1))
    }
}

fn cnf_with(adjoint: Adjoint, trace: Trace, params: &mut Params<f64>, rng: &mut Pcg64) -> Cnf<f64> {
    let a = OdeNet::concat_squash(params, "b0", 2, &[8], Act::Tanh, rng);
    let b = OdeNet::concat_squash(params, "b1", 2, &[8], Act::Tanh, rng);
    let steps = Options::fixed(Method::Rk4, 6).adjoint(adjoint);
    Cnf::stack(vec![a, b])
        .learnable_end_time(params, "sqrt_end_time", 0.8)
        .trace(trace)
        .train_opts(steps)
        .steer(0.3)
        .seed(11)
}

#[test]
fn a_users_channel_is_integrated_exactly_like_the_built_in_one() {
    let adjoints = [
        Adjoint::Backsolve,
        Adjoint::Checkpointed { checkpoints: 2 },
        Adjoint::Direct,
    ];
    let traces = [Trace::Exact, Trace::hutchinson(Probe::Gaussian)];
    for adj in adjoints {
        for trace in traces {
            let run = |mine: bool| {
                let mut rng = Pcg64::seed_from_u64(3);
                let mut params = Params::new();
                let cnf = cnf_with(adj, trace, &mut params, &mut rng);
                let cnf = if mine {
                    cnf.channel(Rc::new(MyKinetic), 0.5)
                } else {
                    cnf.regularize(Reg::Kinetic, 0.5)
                };
                let x = Tensor::<f64>::randn(12, 2, &mut rng);
                let tape = Tape::new();
                let p = params.vars(&tape);
                let lp = cnf
                    .log_prob(&tape, &p, tape.constant(x), Mode::Train)
                    .unwrap();
                assert_eq!(lp.reg.len(), 1);
                let term = lp.reg[0].per_sample.value();
                let g = tape.grad(lp.loss(), &p).unwrap();
                (term, g, lp.reg[0].name.clone())
            };
            let (t_builtin, g_builtin, n_builtin) = run(false);
            let (t_mine, g_mine, n_mine) = run(true);
            assert_eq!(n_builtin, "kinetic");
            assert_eq!(n_mine, "my_kinetic");
            assert_eq!(t_builtin, t_mine, "{adj:?} {trace:?}: values");
            assert_eq!(g_builtin, g_mine, "{adj:?} {trace:?}: gradients");
        }
    }
}

/// `f(t, z) = z A + t c`: `∂f/∂t = c`, so `∫₀ᵀ ‖∂f/∂t‖² dt = T ‖c‖²` for every sample.
struct LinearInTime;

impl<E: Element> VectorField<E> for LinearInTime {
    fn eval<'t>(
        &self,
        t: Var<'t, E>,
        z: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>> {
        Ok(z.matmul(p[0]) + t * p[1])
    }
}

#[test]
fn a_time_derivative_channel_matches_its_closed_form_with_a_learnable_end_time() {
    for adj in [Adjoint::Backsolve, Adjoint::Direct] {
        let mut params = Params::<f64>::new();
        params.add("a", Tensor::from_f64s(2, 2, &[-0.3, 0.2, 0.1, -0.4]));
        params.add("c", Tensor::from_f64s(1, 2, &[0.7, -0.5]));
        let field: Rc<dyn VectorField<f64>> = Rc::new(LinearInTime);
        let lambda = 0.25;
        let cnf = Cnf::from_fields(vec![(field, 0..2)])
            .learnable_end_time(&mut params, "sqrt_end_time", 0.9)
            .trace(Trace::Exact)
            .train_opts(Options::dopri5(1e-10, 1e-10).adjoint(adj))
            .channel(Rc::new(TimeSmoothness), lambda);
        let x = Tensor::<f64>::from_f64s(3, 2, &[0.1, 0.2, -0.3, 0.4, 0.5, -0.6]);
        let tape = Tape::new();
        let p = params.vars(&tape);
        let lp = cnf
            .log_prob(&tape, &p, tape.constant(x), Mode::Train)
            .unwrap();
        let term = lp.term_named("time_smoothness").unwrap();
        let (s, c2) = (0.9f64.sqrt(), 0.7f64 * 0.7 + 0.5 * 0.5);
        for v in term.per_sample.value().as_slice() {
            assert!(
                (v - s * s * c2).abs() < 1e-9,
                "{adj:?}: R = {v}, want {}",
                s * s * c2
            );
        }
        // Gradients of λ R alone: ∂/∂c = 2 λ T c, ∂/∂s = 2 λ s ‖c‖², ∂/∂A = 0.
        let reg = lp.reg_loss().unwrap();
        let g = tape.grad(reg, &p).unwrap();
        let t = s * s;
        assert!(g[0].max_abs() < 1e-9, "{adj:?}: ∂/∂A = {:?}", g[0]);
        let gc = g[1].as_slice();
        assert!(
            (gc[0] - 2.0 * lambda * t * 0.7).abs() < 1e-8,
            "{adj:?}: {gc:?}"
        );
        assert!(
            (gc[1] + 2.0 * lambda * t * 0.5).abs() < 1e-8,
            "{adj:?}: {gc:?}"
        );
        assert!(
            (g[2].item() - 2.0 * lambda * s * c2).abs() < 1e-8,
            "{adj:?}: ∂/∂s = {}",
            g[2].item()
        );
    }
}

#[test]
fn a_flow_with_a_users_channel_still_samples_and_evaluates() {
    let mut rng = Pcg64::seed_from_u64(8);
    let mut params = Params::new();
    let cnf = cnf_with(Adjoint::Backsolve, Trace::Exact, &mut params, &mut rng)
        .channel(Rc::new(TimeSmoothness), 0.1);
    let (xs, logp) = cnf.sample(&params, 5, 2, &mut rng).unwrap();
    let back = cnf.log_prob_values(&params, &xs).unwrap();
    assert!(
        back.max_abs_diff(&logp) < 1e-4,
        "{}",
        back.max_abs_diff(&logp)
    );
    let tape = Tape::new();
    let p = params.vars(&tape);
    let lp = cnf
        .log_prob(&tape, &p, tape.constant(xs), Mode::Eval)
        .unwrap();
    assert_eq!(lp.reg[0].name, "time_smoothness");
    assert!(lp.reg[0].value.item() > 0.0);
}
