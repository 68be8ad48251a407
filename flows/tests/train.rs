//! Checkpoints resume a run bit for bit; mismatches are typed errors that change nothing; the
//! moving average of the weights follows its closed form.

use std::path::PathBuf;

use flows::prelude::*;
use flows::train::CHECKPOINT_KEY;

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flows_train");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn bits<E: Element>(p: &Params<E>) -> Vec<u64> {
    p.tensors()
        .flat_map(|t| t.as_slice().iter().map(|x| x.to_f64().to_bits()))
        .collect()
}

/// A CNF run: everything built from one seed, as a resumed process would rebuild it.
struct CnfRun {
    rng: Pcg64,
    params: Params<f64>,
    cnf: Cnf<f64>,
    opt: Adam<f64>,
    ema: Ema<f64>,
}

impl CnfRun {
    fn new() -> Self {
        let mut rng = Pcg64::seed_from_u64(7);
        let mut params = Params::new();
        let net = OdeNet::concat_squash(&mut params, "odefunc", 2, &[12, 12], Act::Tanh, &mut rng);
        let cnf = Cnf::new(net)
            .learnable_end_time(&mut params, "sqrt_end_time", 0.8)
            .trace(Trace::hutchinson(Probe::Gaussian))
            .regularize(Reg::Kinetic, 0.05)
            .steer(0.3)
            .train_opts(Options::fixed(Method::Rk4, 4).adjoint(Adjoint::Backsolve));
        let ema = Ema::new(&params, 0.8);
        CnfRun {
            rng,
            params,
            cnf,
            opt: Adam::new(2e-2),
            ema,
        }
    }

    /// One training step; its data, probes and STEER end time all come from `self.rng`.
    fn step(&mut self) {
        self.cnf = self.cnf.clone().seed(self.rng.random());
        let tape = Tape::new();
        let p = self.params.vars(&tape);
        let x = tape.constant(data::eight_gaussians(48, &mut self.rng));
        let loss = self.cnf.log_prob(&tape, &p, x, Mode::Train).unwrap().loss();
        let grads = tape.grad(loss, &p).unwrap();
        self.opt.step(&mut self.params, &grads);
        self.ema.update(&self.params);
    }

    fn save(&self, path: &PathBuf, iteration: u64) {
        save_checkpoint(
            path,
            iteration,
            &self.params,
            &self.opt,
            &self.rng,
            Some(&self.ema),
        )
        .unwrap();
    }

    fn load(&mut self, path: &PathBuf) -> Result<u64, FlowError> {
        load_checkpoint(
            path,
            &mut self.params,
            &mut self.opt,
            &mut self.rng,
            Some(&mut self.ema),
        )
    }
}

#[test]
fn a_resumed_cnf_run_equals_an_uninterrupted_one_bit_for_bit() {
    const N: u64 = 10;
    const K: u64 = 4;
    let mut full = CnfRun::new();
    for _ in 0..N {
        full.step();
    }

    let path = tmp("cnf_resume.safetensors");
    {
        let mut first = CnfRun::new();
        for _ in 0..K {
            first.step();
        }
        first.save(&path, K);
    } // the first run is gone; only the file remains

    let mut resumed = CnfRun::new();
    let start = resumed.load(&path).unwrap();
    assert_eq!(start, K);
    for _ in start..N {
        resumed.step();
    }
    assert_eq!(bits(&resumed.params), bits(&full.params));
    assert_eq!(bits(resumed.ema.params()), bits(full.ema.params()));
    assert_eq!(resumed.ema.updates(), N);
    assert_eq!(resumed.opt.state(), full.opt.state());
    assert_eq!(resumed.rng, full.rng);

    // Each piece matters: resuming without the generator's state, or without the
    // optimizer's, ends elsewhere.
    let mut no_rng = CnfRun::new();
    no_rng.load(&path).unwrap();
    no_rng.rng = Pcg64::seed_from_u64(7);
    let mut no_opt = CnfRun::new();
    no_opt.load(&path).unwrap();
    no_opt.opt = Adam::new(2e-2);
    for _ in K..N {
        no_rng.step();
        no_opt.step();
    }
    assert_ne!(bits(&no_rng.params), bits(&full.params));
    assert_ne!(bits(&no_opt.params), bits(&full.params));
}

/// A plain MLP regression in f32 with data drawn from the run's generator, for the
/// optimizers whose state is not Adam's.
fn mlp_run<O: StatefulOptimizer<f32>>(
    make: impl Fn() -> O,
    n: u64,
    k: u64,
    path: &PathBuf,
) -> (Params<f32>, Params<f32>) {
    let setup = || {
        let mut rng = Pcg64::seed_from_u64(3);
        let mut params = Params::<f32>::new();
        let mlp = Mlp::new(&mut params, "net", &[2, 16, 16, 1], Act::Swish, &mut rng);
        (rng, params, mlp, make())
    };
    let step = |rng: &mut Pcg64, params: &mut Params<f32>, mlp: &Mlp, opt: &mut O| {
        let tape = Tape::new();
        let p = params.vars(&tape);
        let x = tape.constant(Tensor::<f32>::randn(32, 2, rng));
        let target = (x.sin().sum_axis(1) * 0.5).tanh();
        let loss = (mlp.forward(&p, x) - target).square().mean();
        let grads = tape.grad(loss, &p).unwrap();
        opt.step(params, &grads);
    };
    let (mut rng, mut full, mlp, mut opt) = setup();
    for _ in 0..n {
        step(&mut rng, &mut full, &mlp, &mut opt);
    }
    let (mut rng, mut params, mlp, mut opt) = setup();
    for _ in 0..k {
        step(&mut rng, &mut params, &mlp, &mut opt);
    }
    save_checkpoint(path, k, &params, &opt, &rng, None).unwrap();
    let (mut rng, mut resumed, mlp, mut opt) = setup();
    let start = load_checkpoint(path, &mut resumed, &mut opt, &mut rng, None).unwrap();
    for _ in start..n {
        step(&mut rng, &mut resumed, &mlp, &mut opt);
    }
    (full, resumed)
}

#[test]
fn resumed_mlp_runs_equal_uninterrupted_ones_for_sgd_adamw_and_schedules() {
    let path = tmp("mlp_resume.safetensors");
    let (a, b) = mlp_run(|| Sgd::new(0.05).momentum(0.9).nesterov(true), 12, 5, &path);
    assert_eq!(bits(&a), bits(&b));
    let (a, b) = mlp_run(|| AdamW::new(1e-2, 0.1), 12, 7, &path);
    assert_eq!(bits(&a), bits(&b));
    let sched = || {
        flows::optim::Scheduled::new(
            Adam::new(1e-2),
            flows::optim::StepDecay {
                lr: 1e-2,
                gamma: 0.5,
                every: 3,
            },
        )
    };
    let (a, b) = mlp_run(sched, 12, 4, &path);
    assert_eq!(bits(&a), bits(&b));
    // Resuming before the first step (nothing allocated yet) works too.
    let (a, b) = mlp_run(|| Adam::new(1e-2), 3, 0, &path);
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn the_file_is_safetensors_with_prefixed_names_and_readable_metadata() {
    let path = tmp("layout.safetensors");
    let mut run = CnfRun::new();
    run.step();
    run.save(&path, 1);
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta[CHECKPOINT_KEY], "1");
    assert_eq!(meta["flowtape.iteration"], "1");
    assert_eq!(meta["flowtape.optimizer"], "Adam");
    assert_eq!(meta["flowtape.optimizer.steps"], "1");
    // The generator's 128-bit state and increment, exactly.
    let rng: Pcg64 = serde_json::from_str(&meta["flowtape.rng.pcg64"]).unwrap();
    assert_eq!(rng, run.rng);

    // Every parameter appears once per part, in its file shape; plain weights come back with
    // the prefix stripped.
    let all = Params::<f64>::from_safetensors(&bytes, &path).unwrap();
    let n = run.params.len();
    assert_eq!(all.len(), 4 * n); // params, exp_avg, exp_avg_sq, ema
    for (i, name) in run.params.names().enumerate() {
        for prefix in ["params/", "optim/exp_avg/", "optim/exp_avg_sq/", "ema/"] {
            let j = all.index_of(&format!("{prefix}{name}")).unwrap();
            assert_eq!(all.file_shape(j), run.params.file_shape(i));
        }
        let j = all.index_of(&format!("params/{name}")).unwrap();
        assert_eq!(all.tensor(j), run.params.tensor(i));
    }
}

/// Restoring `path` into `run` must fail, leave every object as it was, and return the error.
fn refused(run: &mut CnfRun, path: &PathBuf) -> FlowError {
    let before = (
        bits(&run.params),
        run.opt.state(),
        run.rng.clone(),
        run.ema.clone(),
    );
    let err = run.load(path).unwrap_err();
    assert_eq!(bits(&run.params), before.0);
    assert_eq!(run.opt.state(), before.1);
    assert_eq!(run.rng, before.2);
    assert_eq!(run.ema, before.3);
    err
}

fn mismatch_item(err: &FlowError) -> &str {
    match err {
        FlowError::CheckpointMismatch { item, .. } => item,
        other => panic!("expected CheckpointMismatch, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_that_does_not_fit_is_a_typed_error_and_changes_nothing() {
    let path = tmp("mismatch.safetensors");
    let mut saved = CnfRun::new();
    saved.step();
    saved.save(&path, 1);

    // Another width: the first weight has another shape.
    let mut target = CnfRun::new();
    let mut rng = Pcg64::seed_from_u64(1);
    target.params = Params::new();
    OdeNet::concat_squash(
        &mut target.params,
        "odefunc",
        2,
        &[10, 12],
        Act::Tanh,
        &mut rng,
    );
    target
        .params
        .add_with_file_shape("sqrt_end_time", Tensor::scalar(0.5), vec![]);
    target.ema = Ema::new(&target.params, 0.8);
    let err = refused(&mut target, &path);
    assert_eq!(mismatch_item(&err), "params/odefunc.layers.0._layer.weight");
    let msg = err.to_string();
    assert!(msg.contains("mismatch.safetensors"), "{msg}");
    assert!(msg.contains("[12, 2]") && msg.contains("[10, 2]"), "{msg}");

    // A parameter the checkpoint does not have.
    let mut target = CnfRun::new();
    target.params.add("extra.weight", Tensor::zeros(2, 2));
    target.ema = Ema::new(&target.params, 0.8);
    let err = refused(&mut target, &path);
    assert_eq!(mismatch_item(&err), "params/extra.weight");
    assert!(err.to_string().contains("none"));

    // A checkpoint tensor the store does not have (the learnable end time is missing here).
    let mut target = CnfRun::new();
    let mut rng = Pcg64::seed_from_u64(1);
    target.params = Params::new();
    OdeNet::concat_squash(
        &mut target.params,
        "odefunc",
        2,
        &[12, 12],
        Act::Tanh,
        &mut rng,
    );
    target.ema = Ema::new(&target.params, 0.8);
    let err = refused(&mut target, &path);
    assert_eq!(mismatch_item(&err), "params/sqrt_end_time");

    // Another kind of optimizer.
    let mut rng = Pcg64::seed_from_u64(0);
    let mut params = CnfRun::new().params;
    let mut sgd = Sgd::new(0.1).momentum(0.9);
    let before = bits(&params);
    let err = load_checkpoint(&path, &mut params, &mut sgd, &mut rng, None).unwrap_err();
    assert_eq!(mismatch_item(&err), "optimizer");
    assert!(err.to_string().contains("Sgd") && err.to_string().contains("Adam"));
    assert_eq!(bits(&params), before);
    assert_eq!(sgd.steps(), 0);
    assert_eq!(rng, Pcg64::seed_from_u64(0));

    // An average asked for but not saved.
    let no_ema = tmp("no_ema.safetensors");
    save_checkpoint(&no_ema, 1, &saved.params, &saved.opt, &saved.rng, None).unwrap();
    let err = refused(&mut CnfRun::new(), &no_ema);
    assert_eq!(mismatch_item(&err), "ema");
    // ... while an average saved but not asked for is skipped.
    let mut plain = CnfRun::new();
    let it = load_checkpoint(
        &path,
        &mut plain.params,
        &mut plain.opt,
        &mut plain.rng,
        None,
    )
    .unwrap();
    assert_eq!(it, 1);
    assert_eq!(bits(&plain.params), bits(&saved.params));
}

#[test]
fn files_that_are_not_checkpoints_are_refused_naming_the_file() {
    let run = CnfRun::new();
    // Plain weights.
    let weights = tmp("plain_weights.safetensors");
    run.params.save(&weights).unwrap();
    let err = refused(&mut CnfRun::new(), &weights);
    assert!(matches!(err, FlowError::BadFile { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("plain_weights.safetensors") && msg.contains("not a flowtape checkpoint"));

    // Garbage.
    let garbage = tmp("garbage.safetensors");
    std::fs::write(&garbage, b"definitely not safetensors").unwrap();
    let err = refused(&mut CnfRun::new(), &garbage);
    assert!(matches!(err, FlowError::BadFile { .. }), "{err:?}");

    // Missing.
    let missing = tmp("does_not_exist.safetensors");
    let _ = std::fs::remove_file(&missing);
    let err = refused(&mut CnfRun::new(), &missing);
    assert!(matches!(err, FlowError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("does_not_exist.safetensors"));

    // A save into a directory that does not exist fails with an I/O error naming the path.
    let bad = tmp("no_such_dir").join("ckpt.safetensors");
    let err = save_checkpoint(&bad, 0, &run.params, &run.opt, &run.rng, None).unwrap_err();
    assert!(matches!(err, FlowError::Io { .. }), "{err:?}");
}

#[test]
fn saving_over_a_checkpoint_replaces_it_whole() {
    let path = tmp("overwrite.safetensors");
    let mut run = CnfRun::new();
    run.save(&path, 0);
    run.step();
    run.step();
    run.save(&path, 2);
    let mut back = CnfRun::new();
    assert_eq!(back.load(&path).unwrap(), 2);
    assert_eq!(bits(&back.params), bits(&run.params));
    assert_eq!(back.ema.updates(), 2);
    // No temporaries are left next to it.
    let dir = path.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".overwrite.safetensors")
        })
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn the_moving_average_follows_its_closed_form() {
    // θ̄_n = dⁿ θ₀ + (1 − d) Σ_{k=1}^{n} d^{n−k} θ_k for the sequence θ_k the average is fed.
    let d = 0.9;
    let theta = |k: usize| -> Vec<f64> {
        let k = k as f64;
        vec![k.sin(), (0.3 * k).cos() * 2.0, k * k / 10.0, -1.0 + 0.5 * k]
    };
    let mut params = Params::<f64>::new();
    params.add("w", Tensor::from_f64s(1, 3, &theta(0)[..3]));
    params.add("b.bias", Tensor::from_f64s(1, 1, &theta(0)[3..]));
    let mut ema = Ema::new(&params, d);
    let n = 25;
    for k in 1..=n {
        let t = theta(k);
        params.set("w", Tensor::from_f64s(1, 3, &t[..3])).unwrap();
        params
            .set("b.bias", Tensor::from_f64s(1, 1, &t[3..]))
            .unwrap();
        ema.update(&params);
    }
    assert_eq!(ema.updates(), n as u64);
    let got: Vec<f64> = ema
        .params()
        .tensors()
        .flat_map(|t| t.as_slice().to_vec())
        .collect();
    for (j, &g) in got.iter().enumerate() {
        let mut exact = d.powi(n as i32) * theta(0)[j];
        for k in 1..=n {
            exact += (1.0 - d) * d.powi((n - k) as i32) * theta(k)[j];
        }
        assert!(
            (g - exact).abs() <= 1e-12 * exact.abs().max(1.0),
            "{g} vs {exact}"
        );
    }
    // The names and order are the store's, so layers index into it unchanged.
    assert_eq!(
        ema.params().names().collect::<Vec<_>>(),
        params.names().collect::<Vec<_>>()
    );

    // The extremes: d = 0 is the latest parameters, d = 1 the initial ones, exactly.
    let mut follow = Ema::new(&params, 0.0);
    let mut frozen = Ema::new(&params, 1.0);
    let start = params.clone();
    params
        .set("w", Tensor::from_f64s(1, 3, &[1.5, -2.5, 3.5]))
        .unwrap();
    follow.update(&params);
    frozen.update(&params);
    assert_eq!(follow.params(), &params);
    assert_eq!(frozen.params(), &start);

    // copy_to puts the average into a training store.
    let mut into = params.clone();
    frozen.copy_to(&mut into);
    assert_eq!(into, start);
}

#[test]
#[should_panic(expected = "decay must be in [0, 1]")]
fn an_ema_decay_outside_the_unit_interval_is_refused() {
    let params = Params::<f64>::new();
    let _ = Ema::new(&params, 1.5);
}
