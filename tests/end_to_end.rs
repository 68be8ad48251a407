//! Cross-crate checks: a CNF trained for a few steps improves, its weights round-trip through
//! safetensors with identical log-densities, and the adjoint gradients of its loss agree with
//! discretise-then-optimise.

use autodiff::Tape;
use flows::cnf::{Cnf, Mode};
use flows::nn::{Act, OdeNet};
use flows::optim::{Adam, Optimizer};
use flows::{data, Params};
use ode::{Adjoint, Method, Options};
use rand::SeedableRng;
use rand_pcg::Pcg64;

fn small_cnf(params: &mut Params<f64>, rng: &mut Pcg64, adjoint: Adjoint) -> Cnf<f64> {
    let net = OdeNet::concat_squash(params, "odefunc", 2, &[16, 16], Act::Tanh, rng);
    Cnf::new(net)
        .learnable_end_time(params, "sqrt_end_time", 0.5)
        .train_opts(Options::fixed(Method::Rk4, 8).adjoint(adjoint))
        .eval_opts(Options::dopri5(1e-7, 1e-7))
}

#[test]
fn training_lowers_the_test_nll_and_weights_round_trip() {
    let mut rng = Pcg64::seed_from_u64(0);
    let mut params = Params::new();
    let cnf = small_cnf(&mut params, &mut rng, Adjoint::Backsolve);
    let test = data::eight_gaussians::<f64, _>(500, &mut rng);
    let nll = |params: &Params<f64>| -> f64 {
        let lp = cnf.log_prob_values(params, &test).unwrap();
        -lp.as_slice().iter().sum::<f64>() / 500.0
    };
    let before = nll(&params);
    let mut opt = Adam::new(1e-2);
    for _ in 0..40 {
        let tape = Tape::new();
        let p = params.vars(&tape);
        let x = tape.constant(data::eight_gaussians(256, &mut rng));
        let loss = -cnf
            .log_prob(&tape, &p, x, Mode::Train)
            .unwrap()
            .log_prob
            .mean();
        let g = tape.grad(loss, &p).unwrap();
        opt.step(&mut params, &g);
    }
    let after = nll(&params);
    assert!(after < before - 0.3, "test NLL {before:.3} -> {after:.3}");

    let dir = std::env::temp_dir().join(format!("flowtape-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cnf.safetensors");
    params.save(&path).unwrap();
    let mut fresh = Params::new();
    let mut rng2 = Pcg64::seed_from_u64(99);
    let _ = small_cnf(&mut fresh, &mut rng2, Adjoint::Backsolve);
    fresh.load_into(&path).unwrap();
    assert_eq!(nll(&fresh), after);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn adjoint_and_direct_gradients_of_the_cnf_loss_agree() {
    let grads: Vec<Vec<autodiff::Tensor<f64>>> = [Adjoint::Backsolve, Adjoint::Direct]
        .iter()
        .map(|&adj| {
            let mut rng = Pcg64::seed_from_u64(1);
            let mut params = Params::new();
            let cnf = small_cnf(&mut params, &mut rng, adj)
                .train_opts(Options::dopri5(1e-9, 1e-9).adjoint(adj))
                .seed(3);
            let tape = Tape::new();
            let p = params.vars(&tape);
            let x = tape.constant(data::eight_gaussians(64, &mut rng));
            let loss = -cnf
                .log_prob(&tape, &p, x, Mode::Train)
                .unwrap()
                .log_prob
                .mean();
            tape.grad(loss, &p).unwrap()
        })
        .collect();
    for (a, b) in grads[0].iter().zip(&grads[1]) {
        assert!(
            a.max_abs_diff(b) < 1e-6 * (1.0 + b.max_abs()),
            "backsolve vs direct: {}",
            a.max_abs_diff(b)
        );
    }
}

#[test]
fn hessian_vector_product_of_the_cnf_loss_with_a_learnable_end_time_matches_finite_differences() {
    // The Backsolve HVP passes through the time-gradient rule of the learnable end time; it must
    // agree with central differences of the gradient along the same direction.
    let mut rng = Pcg64::seed_from_u64(5);
    let mut params = Params::new();
    let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[8], Act::Tanh, &mut rng);
    let cnf = Cnf::new(net)
        .learnable_end_time(&mut params, "sqrt_end_time", 0.7)
        .trace(flows::trace::Trace::Exact)
        .train_opts(Options::dopri5(1e-11, 1e-11).adjoint(Adjoint::Backsolve));
    let x = data::eight_gaussians::<f64, _>(16, &mut rng);
    let dirs: Vec<autodiff::Tensor<f64>> = params
        .iter()
        .map(|(_, t)| autodiff::Tensor::randn(t.rows(), t.cols(), &mut rng))
        .collect();
    let grad_at = |params: &Params<f64>| -> Vec<autodiff::Tensor<f64>> {
        let tape = Tape::new();
        let p = params.vars(&tape);
        let loss = -cnf
            .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)
            .unwrap()
            .log_prob
            .mean();
        tape.grad(loss, &p).unwrap()
    };
    let tape = Tape::new();
    let p = params.vars(&tape);
    let loss = -cnf
        .log_prob(&tape, &p, tape.constant(x.clone()), Mode::Train)
        .unwrap()
        .log_prob
        .mean();
    let vs: Vec<_> = dirs.iter().map(|d| tape.constant(d.clone())).collect();
    let hv: Vec<autodiff::Tensor<f64>> = tape
        .hvp(loss, &p, &vs)
        .unwrap()
        .iter()
        .map(|v| v.value())
        .collect();
    let eps = 1e-4;
    let shifted = |s: f64| {
        let mut q = params.clone();
        for (i, d) in dirs.iter().enumerate() {
            q.tensor_mut(i).axpy(s, d);
        }
        grad_at(&q)
    };
    let (gp, gm) = (shifted(eps), shifted(-eps));
    let mut worst = 0.0f64;
    let mut scale = 0.0f64;
    for ((h, a), b) in hv.iter().zip(&gp).zip(&gm) {
        for ((h, a), b) in h.as_slice().iter().zip(a.as_slice()).zip(b.as_slice()) {
            worst = worst.max((h - (a - b) / (2.0 * eps)).abs());
            scale = scale.max(h.abs());
        }
    }
    assert!(
        worst <= 1e-6 * (1.0 + scale),
        "HVP vs finite differences: {worst:e} (scale {scale:e})"
    );
}
