//! Optimizer state for checkpoints: its contents against the closed forms, and loading it into
//! a fresh optimizer continues exactly like the original.

use autodiff::{Tape, Tensor};
use flows::optim::{
    Adam, AdamW, Cosine, Optimizer, OptimizerState, Scheduled, Sgd, StatefulOptimizer,
};
use flows::Params;

fn store() -> Params<f64> {
    let mut p = Params::new();
    p.add("a", Tensor::from_f64s(1, 3, &[0.3, -1.0, 2.0]));
    p.add("b.bias", Tensor::from_f64s(1, 1, &[0.5]));
    p
}

/// Gradients of Σ cᵢ sin(θᵢ)² + (b − 1)²: they change with θ, so the trajectory depends on
/// every piece of state.
fn grads(p: &Params<f64>) -> Vec<Tensor<f64>> {
    let tape = Tape::new();
    let v = p.vars(&tape);
    let c = tape.constant(Tensor::from_f64s(1, 3, &[1.0, 10.0, 0.1]));
    let loss = (v[0].sin().square() * c).sum() + (v[1] - 1.0).square().sum();
    tape.grad(loss, &v).unwrap()
}

fn run<O: Optimizer<f64>>(opt: &mut O, p: &mut Params<f64>, steps: usize) {
    for _ in 0..steps {
        let g = grads(p);
        opt.step(p, &g);
    }
}

fn bits(p: &Params<f64>) -> Vec<u64> {
    p.tensors()
        .flat_map(|t| t.as_slice().iter().map(|x| x.to_bits()))
        .collect()
}

/// Runs `make()` for 7 steps uninterrupted, and for 3 steps, moves its state into a fresh
/// `make()` and runs 4 more; the parameters must agree bit for bit. Also checks that a fresh
/// optimizer *without* the state ends elsewhere, so the state is what made the difference.
fn resumes_exactly<O: StatefulOptimizer<f64>>(make: impl Fn() -> O) {
    let mut p_full = store();
    let mut full = make();
    run(&mut full, &mut p_full, 7);

    let mut p = store();
    let mut first = make();
    run(&mut first, &mut p, 3);
    let state = first.state();
    let p_at_3 = p.clone();

    let mut resumed = make();
    resumed.load_state(state).unwrap();
    assert_eq!(resumed.steps(), 3);
    run(&mut resumed, &mut p, 4);
    assert_eq!(bits(&p), bits(&p_full));
    assert_eq!(resumed.state(), full.state());

    let mut p_fresh = p_at_3;
    let mut fresh = make();
    run(&mut fresh, &mut p_fresh, 4);
    assert_ne!(bits(&p_fresh), bits(&p_full));
}

#[test]
fn adam_adamw_and_sgd_resume_exactly_from_their_state() {
    resumes_exactly(|| Adam::new(0.05).weight_decay(0.01));
    resumes_exactly(|| AdamW::new(0.05, 0.1).betas(0.8, 0.99));
    resumes_exactly(|| Sgd::new(0.05).momentum(0.9).nesterov(true));
    resumes_exactly(|| Sgd::new(0.05).momentum(0.5).dampening(0.2));
    // The schedule derives the rate from the restored step count.
    resumes_exactly(|| {
        Scheduled::new(
            Adam::new(0.1),
            Cosine {
                lr: 0.1,
                min_lr: 0.0,
                total: 7,
            },
        )
    });
}

#[test]
fn adam_state_holds_the_bias_free_moments_of_a_constant_gradient() {
    // With a constant gradient g: m_t = (1 − β₁ᵗ) g and v_t = (1 − β₂ᵗ) g².
    let mut p = store();
    let g = vec![
        Tensor::from_f64s(1, 3, &[0.5, -2.0, 1e-3]),
        Tensor::from_f64s(1, 1, &[3.0]),
    ];
    let mut opt = Adam::new(1e-3);
    assert_eq!(opt.state().buffers, vec![]); // nothing allocated before the first step
    for _ in 0..5 {
        opt.step(&mut p, &g);
    }
    let s = opt.state();
    assert_eq!((s.kind.as_str(), s.steps, s.lr), ("Adam", 5, 1e-3));
    let names: Vec<&str> = s.buffers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["exp_avg", "exp_avg_sq"]);
    let (c1, c2) = (1.0 - 0.9f64.powi(5), 1.0 - 0.999f64.powi(5));
    for (i, gi) in g.iter().enumerate() {
        for (k, &gk) in gi.as_slice().iter().enumerate() {
            let m = s.buffers[0].1[i].as_slice()[k];
            let v = s.buffers[1].1[i].as_slice()[k];
            assert!(
                (m - c1 * gk).abs() <= 1e-15 * gk.abs(),
                "{m} vs {}",
                c1 * gk
            );
            assert!((v - c2 * gk * gk).abs() <= 1e-14 * gk * gk);
        }
    }
}

#[test]
fn plain_sgd_keeps_no_buffer_and_momentum_sgd_keeps_one() {
    let mut p = store();
    let mut plain = Sgd::new(0.1);
    run(&mut plain, &mut p, 2);
    let s = plain.state();
    assert!(s.buffers.is_empty());
    assert_eq!(s.steps, 2);

    let mut heavy = Sgd::new(0.1).momentum(0.9);
    run(&mut heavy, &mut p, 2);
    let s = heavy.state();
    assert_eq!(s.buffers.len(), 1);
    assert_eq!(s.buffers[0].0, "momentum_buffer");
    assert_eq!(s.buffers[0].1.len(), 2);
}

#[test]
fn state_of_another_kind_or_configuration_is_refused_and_nothing_changes() {
    let mut p = store();
    let mut adam = Adam::new(0.1);
    run(&mut adam, &mut p, 2);
    let adam_state = adam.state();

    // Adam's state into AdamW: another kind.
    let mut adamw = AdamW::new(0.3, 0.0);
    let err = adamw.load_state(adam_state.clone()).unwrap_err();
    assert_eq!(err.item, "optimizer");
    assert!(err.to_string().contains("AdamW") && err.to_string().contains("Adam state"));
    assert_eq!((adamw.steps(), adamw.lr()), (0, 0.3));

    // Plain SGD's state (no buffer, two steps) into SGD with momentum: the buffer is missing.
    let mut plain = Sgd::new(0.1);
    run(&mut plain, &mut p, 2);
    let mut heavy = Sgd::new(0.2).momentum(0.9);
    let err = heavy.load_state(plain.state()).unwrap_err();
    assert_eq!(err.item, "momentum_buffer");
    assert_eq!((heavy.steps(), heavy.lr()), (0, 0.2));

    // A momentum buffer into plain SGD: unexpected.
    let mut heavy = Sgd::new(0.1).momentum(0.9);
    run(&mut heavy, &mut p, 1);
    let err = Sgd::<f64>::new(0.1).load_state(heavy.state()).unwrap_err();
    assert_eq!(err.item, "momentum_buffer");

    // Buffers of different lengths.
    let mut broken = adam_state.clone();
    broken.buffers[1].1.pop();
    let mut fresh = Adam::new(0.1);
    let err = fresh.load_state(broken).unwrap_err();
    assert_eq!(err.item, "exp_avg_sq");
    assert_eq!(fresh.steps(), 0);

    // One of Adam's two buffers missing.
    let mut half: OptimizerState<f64> = adam_state;
    half.buffers.pop();
    assert_eq!(fresh.load_state(half).unwrap_err().item, "exp_avg_sq");
}
