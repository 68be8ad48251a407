//! Optimizers, clipping and schedules against their closed forms.

use autodiff::{Tape, Tensor};
use flows::optim::{
    clip_grad_norm, Adam, AdamW, Constant, Cosine, Optimizer, Schedule, Scheduled, Sgd, StepDecay,
    Warmup,
};
use flows::Params;

fn store(values: &[f64]) -> Params<f64> {
    let mut p = Params::new();
    p.add("a", Tensor::from_f64s(1, values.len(), values));
    p.add("b.bias", Tensor::from_f64s(1, 1, &[0.5]));
    p
}

/// Loss Σ cᵢ (θᵢ − targetᵢ)² over both tensors: an ill-conditioned quadratic.
fn quadratic_grads(p: &Params<f64>) -> (f64, Vec<Tensor<f64>>) {
    let tape = Tape::new();
    let v = p.vars(&tape);
    let scale = tape.constant(Tensor::from_f64s(1, 3, &[1.0, 10.0, 0.1]));
    let target = tape.constant(Tensor::from_f64s(1, 3, &[1.0, -2.0, 3.0]));
    let loss = ((v[0] - target).square() * scale).sum() + (v[1] + 1.0).square().sum();
    let g = tape.grad(loss, &v).unwrap();
    (loss.item(), g)
}

fn minimise(opt: &mut dyn Optimizer<f64>, steps: usize) -> f64 {
    let mut p = store(&[0.0, 0.0, 0.0]);
    let (first, _) = quadratic_grads(&p);
    for _ in 0..steps {
        let (_, g) = quadratic_grads(&p);
        opt.step(&mut p, &g);
    }
    let (last, _) = quadratic_grads(&p);
    assert!(last < first);
    last
}

#[test]
fn adam_first_step_is_lr_times_sign() {
    let mut p = store(&[1.0, -2.0, 3.0]);
    let g = vec![
        Tensor::from_f64s(1, 3, &[0.3, -5.0, 1e-3]),
        Tensor::from_f64s(1, 1, &[-2.0]),
    ];
    let lr = 0.01;
    let mut opt = Adam::new(lr);
    opt.step(&mut p, &g);
    // Bias-corrected first step: m̂ = g, v̂ = g², so Δθ = −lr·g/(|g| + ε) ≈ −lr·sign(g).
    let (theta0, g0) = ([1.0, -2.0, 3.0], [0.3, -5.0, 1e-3]);
    for ((a, th), gi) in p.tensor(0).as_slice().iter().zip(theta0).zip(g0) {
        let exact: f64 = th - lr * gi / (f64::abs(gi) + 1e-8);
        assert!((a - exact).abs() < 1e-15, "{a} vs {exact}");
        assert!((a - (th - lr * f64::signum(gi))).abs() < 1e-7);
    }
    assert!((p.tensor(1).item() - (0.5 + lr * 2.0 / (2.0 + 1e-8))).abs() < 1e-15);
    assert_eq!(opt.steps(), 1);
}

#[test]
fn adam_second_step_matches_recursion() {
    let mut p = store(&[0.0, 0.0, 0.0]);
    let g1 = vec![
        Tensor::from_f64s(1, 3, &[1.0, 2.0, -1.0]),
        Tensor::scalar(0.0),
    ];
    let g2 = vec![
        Tensor::from_f64s(1, 3, &[3.0, -2.0, -1.0]),
        Tensor::scalar(0.0),
    ];
    let (lr, b1, b2, eps) = (0.1, 0.8, 0.9, 1e-6);
    let mut opt = Adam::new(lr).betas(b1, b2).eps(eps);
    opt.step(&mut p, &g1);
    opt.step(&mut p, &g2);
    for j in 0..3 {
        let (a, b) = (g1[0].get(0, j), g2[0].get(0, j));
        let th1 = -lr * a / (a.abs() + eps);
        let m = b1 * (1.0 - b1) * a + (1.0 - b1) * b;
        let v = b2 * (1.0 - b2) * a * a + (1.0 - b2) * b * b;
        let th2 = th1 - lr * (m / (1.0 - b1 * b1)) / ((v / (1.0 - b2 * b2)).sqrt() + eps);
        assert!((p.tensor(0).get(0, j) - th2).abs() < 1e-12);
    }
    // Zero gradient, zero state: the parameter does not move.
    assert_eq!(p.tensor(1).item(), 0.5);
}

#[test]
fn adamw_decay_is_decoupled() {
    let (lr, wd) = (0.1, 0.5);
    // Zero gradient: only the decay acts, θ ← θ(1 − lr·λ).
    let mut p = store(&[1.0, -2.0, 4.0]);
    let zero = p.zeros_like();
    let mut opt = AdamW::new(lr, wd);
    opt.step(&mut p, &zero);
    for (a, w) in p.tensor(0).as_slice().iter().zip([1.0, -2.0, 4.0]) {
        assert!((a - w * (1.0 - lr * wd)).abs() < 1e-15);
    }
    // With a gradient: the decay is not rescaled by the adaptive denominator.
    let mut p = store(&[1.0, -2.0, 4.0]);
    let g = vec![
        Tensor::from_f64s(1, 3, &[0.5, 0.5, -3.0]),
        Tensor::scalar(1.0),
    ];
    let mut opt = AdamW::new(lr, wd).eps(0.0);
    opt.step(&mut p, &g);
    for ((a, w), gi) in p
        .tensor(0)
        .as_slice()
        .iter()
        .zip([1.0, -2.0, 4.0])
        .zip([0.5, 0.5, -3.0])
    {
        let want: f64 = w * (1.0 - lr * wd) - lr * f64::signum(gi);
        assert!((a - want).abs() < 1e-12);
    }
    // Adam's coupled decay differs: it goes through the normalisation.
    let mut q = store(&[1.0, -2.0, 4.0]);
    let mut adam = Adam::new(lr).weight_decay(wd).eps(0.0);
    adam.step(&mut q, &g);
    assert!((q.tensor(0).get(0, 0) - p.tensor(0).get(0, 0)).abs() > 1e-3);
}

#[test]
fn sgd_momentum_and_nesterov_follow_torch_recursion() {
    let g1 = vec![
        Tensor::from_f64s(1, 3, &[1.0, -1.0, 2.0]),
        Tensor::scalar(0.0),
    ];
    let g2 = vec![
        Tensor::from_f64s(1, 3, &[0.5, 0.5, 0.5]),
        Tensor::scalar(0.0),
    ];
    let (lr, mu) = (0.1, 0.9);
    for nesterov in [false, true] {
        let mut p = store(&[0.0, 0.0, 0.0]);
        let mut opt = Sgd::new(lr).momentum(mu).nesterov(nesterov);
        opt.step(&mut p, &g1);
        opt.step(&mut p, &g2);
        for j in 0..3 {
            let (a, b) = (g1[0].get(0, j), g2[0].get(0, j));
            let (b1, b2) = (a, mu * a + b);
            let (d1, d2) = if nesterov {
                (a + mu * b1, b + mu * b2)
            } else {
                (b1, b2)
            };
            let want = -lr * (d1 + d2);
            assert!((p.tensor(0).get(0, j) - want).abs() < 1e-12);
        }
    }
    // Plain SGD with weight decay: θ ← θ − lr(g + λθ).
    let mut p = store(&[1.0, 1.0, 1.0]);
    Sgd::new(0.1).weight_decay(0.5).step(&mut p, &g1);
    assert!((p.tensor(0).get(0, 2) - (1.0 - 0.1 * (2.0 + 0.5))).abs() < 1e-15);
}

#[test]
fn optimizers_minimise_a_quadratic() {
    assert!(minimise(&mut Adam::new(0.05), 2000) < 1e-6);
    assert!(minimise(&mut AdamW::new(0.05, 0.0), 2000) < 1e-6);
    assert!(minimise(&mut Sgd::new(0.04), 2000) < 1e-6);
    assert!(minimise(&mut Sgd::new(0.02).momentum(0.9), 2000) < 1e-6);
    assert!(minimise(&mut Sgd::new(0.02).momentum(0.9).nesterov(true), 2000) < 1e-6);
}

#[test]
fn optimizers_work_in_f32() {
    let mut p = Params::<f32>::new();
    p.add("w", Tensor::from_f64s(2, 2, &[1.0, 2.0, 3.0, 4.0]));
    let mut opt = Adam::new(0.1);
    for _ in 0..300 {
        let tape = Tape::new();
        let v = p.vars(&tape);
        let loss = v[0].square().sum();
        let g = tape.grad(loss, &v).unwrap();
        opt.step(&mut p, &g);
    }
    assert!(p.tensor(0).max_abs() < 0.05);
}

#[test]
fn clip_grad_norm_scales_to_the_max_norm() {
    let mut g: Vec<Tensor<f64>> = vec![
        Tensor::from_f64s(1, 2, &[3.0, 0.0]),
        Tensor::from_f64s(2, 1, &[0.0, 4.0]),
    ];
    let total = clip_grad_norm(&mut g, 1.0);
    assert!((total - 5.0).abs() < 1e-12);
    let after: f64 = g.iter().map(|t| t.dot(t)).sum::<f64>().sqrt();
    assert!((after - 1.0).abs() < 1e-6);
    assert!(
        (g[0].get(0, 0) / g[1].get(1, 0) - 0.75).abs() < 1e-12,
        "direction is kept"
    );

    let mut small: Vec<Tensor<f64>> = vec![Tensor::from_f64s(1, 2, &[0.3, 0.4])];
    let before = small.clone();
    assert!((clip_grad_norm(&mut small, 1.0) - 0.5).abs() < 1e-12);
    assert_eq!(small, before);

    let mut bad: Vec<Tensor<f64>> = vec![Tensor::from_f64s(1, 2, &[f64::NAN, 1.0])];
    assert!(clip_grad_norm(&mut bad, 1.0).is_nan());
    assert_eq!(bad[0].get(0, 1), 1.0);
}

#[test]
fn schedules() {
    assert_eq!(Constant(0.1).lr_at(1000), 0.1);
    let s = StepDecay {
        lr: 1.0,
        gamma: 0.5,
        every: 10,
    };
    assert_eq!(
        (s.lr_at(0), s.lr_at(9), s.lr_at(10), s.lr_at(25)),
        (1.0, 1.0, 0.5, 0.25)
    );
    let c = Cosine {
        lr: 1.0,
        min_lr: 0.1,
        total: 100,
    };
    assert!((c.lr_at(0) - 1.0).abs() < 1e-15);
    assert!((c.lr_at(50) - 0.55).abs() < 1e-12);
    assert!((c.lr_at(100) - 0.1).abs() < 1e-15 && (c.lr_at(500) - 0.1).abs() < 1e-15);
    let w = Warmup {
        steps: 4,
        inner: Constant(2.0),
    };
    assert_eq!(
        (w.lr_at(0), w.lr_at(1), w.lr_at(3), w.lr_at(9)),
        (0.5, 1.0, 2.0, 2.0)
    );
    let f = |step: u64| 1.0 / (1.0 + step as f64);
    assert_eq!(f.lr_at(3), 0.25);
}

#[test]
fn scheduled_optimizer_sets_the_rate_before_each_step() {
    let mut p = store(&[0.0, 0.0, 0.0]);
    let g = vec![
        Tensor::from_f64s(1, 3, &[1.0, 1.0, 1.0]),
        Tensor::scalar(0.0),
    ];
    let mut opt = Scheduled::new(Sgd::new(123.0), |k: u64| [0.1, 0.01][k as usize]);
    opt.step(&mut p, &g);
    assert_eq!(opt.lr(), 0.1);
    opt.step(&mut p, &g);
    assert_eq!(opt.lr(), 0.01);
    assert!((p.tensor(0).get(0, 0) + 0.11).abs() < 1e-15);
    assert_eq!(opt.steps(), 2);
}

#[test]
#[should_panic(expected = "Adam::step: 1 tensors for a store of 2")]
fn gradient_count_mismatch_panics() {
    let mut p = store(&[0.0, 0.0, 0.0]);
    Adam::new(0.1).step(&mut p, &[Tensor::zeros(1, 3)]);
}

#[test]
#[should_panic(expected = "`a` is (1, 3) but its update is (3, 1)")]
fn gradient_shape_mismatch_panics() {
    let mut p = store(&[0.0, 0.0, 0.0]);
    Sgd::new(0.1).step(&mut p, &[Tensor::zeros(3, 1), Tensor::zeros(1, 1)]);
}
