//! The shared training loop: early stopping on a scripted validation sequence, the CSV log
//! read back by the plot module, and resume through the loop equal to an uninterrupted run.

use std::cell::Cell;
use std::path::PathBuf;

use flows::plot::read_csv_series;
use flows::prelude::*;
use flows::train::{Ema, Metrics, ProgressMode, Step, Trainer};

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flows_trainer");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    let _ = std::fs::remove_file(p.with_extension("trainer.safetensors"));
    p
}

fn bits<E: Element>(p: &Params<E>) -> Vec<u64> {
    p.tensors()
        .flat_map(|t| t.as_slice().iter().map(|x| x.to_f64().to_bits()))
        .collect()
}

/// A quadratic with noisy gradients: the loss and gradient depend on the parameters and on
/// the run's generator, so a resume that lost either would show.
fn noisy_step(p: &Params<f64>, rng: &mut Pcg64, _it: u64) -> Result<Step<f64>, FlowError> {
    let w = p.tensor(0);
    let noise = Tensor::<f64>::randn(w.rows(), w.cols(), rng);
    let loss: f64 = w.as_slice().iter().map(|v| (v - 1.0).powi(2)).sum();
    let grads = Tensor::from_fn(w.rows(), w.cols(), |i, j| {
        2.0 * (w.get(i, j) - 1.0) + 0.3 * noise.get(i, j)
    });
    Ok(Step {
        loss,
        grads: vec![grads],
        metrics: Metrics::new().with("nfe_fwd", 10.0).with("w0", w.get(0, 0)),
    })
}

fn fresh() -> (Params<f64>, Adam<f64>, Pcg64, Ema<f64>) {
    let mut rng = Pcg64::seed_from_u64(3);
    let mut params = Params::new();
    params.add("w", Tensor::randn(2, 3, &mut rng));
    let ema = Ema::new(&params, 0.9);
    (params, Adam::new(0.05), rng, ema)
}

#[test]
fn early_stopping_stops_after_patience_validations_without_improvement() {
    // Validations at 10, 20, …: best 3.0 at iteration 30, then 3.5, 3.2, 3.0 (not better),
    // so with patience 3 the run stops at iteration 60 and keeps the weights of 30.
    let script = [5.0, 4.0, 3.0, 3.5, 3.2, 3.0, 1.0, 0.5];
    let calls = Cell::new(0usize);
    let (mut params, mut opt, mut rng, _) = fresh();
    let mut at_30 = None;
    let report = Trainer::new(200)
        .progress(ProgressMode::Off)
        .validate_every(10, |p: &Params<f64>| {
            let k = calls.get();
            calls.set(k + 1);
            if k == 2 {
                at_30 = Some(p.clone());
            }
            Ok(script[k])
        })
        .patience(3)
        .run(&mut params, &mut opt, &mut rng, None, noisy_step)
        .unwrap();
    assert_eq!(calls.get(), 6);
    assert!(report.stopped_early);
    assert_eq!(report.iterations, 60);
    assert_eq!(report.losses.len(), 60);
    let best = report.best.unwrap();
    assert_eq!((best.iteration, best.value), (30, 3.0));
    assert_eq!(Some(best.params), at_30);
}

#[test]
fn min_delta_counts_small_improvements_as_none() {
    let script = [1.0, 0.95, 0.92, 0.5];
    let calls = Cell::new(0usize);
    let (mut params, mut opt, mut rng, _) = fresh();
    let report = Trainer::new(40)
        .progress(ProgressMode::Off)
        .validate_every(5, |_: &Params<f64>| {
            let k = calls.get();
            calls.set(k + 1);
            Ok(script[k])
        })
        .patience(2)
        .min_delta(0.1)
        .run(&mut params, &mut opt, &mut rng, None, noisy_step)
        .unwrap();
    assert_eq!(report.iterations, 15);
    assert_eq!(report.best.unwrap().iteration, 5);
}

#[test]
fn the_csv_log_has_every_column_and_reads_back_as_series() {
    let path = tmp("log.csv");
    let (mut params, mut opt, mut rng, _) = fresh();
    let losses = Trainer::new(25)
        .progress(ProgressMode::Off)
        .csv(&path)
        .validate_every(10, |p: &Params<f64>| Ok(p.tensor(0).sum()))
        .run(&mut params, &mut opt, &mut rng, None, noisy_step)
        .unwrap()
        .losses;
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "iter,loss,nfe_fwd,w0,val,lr,time,step_time"
    );
    let cols = ["loss", "nfe_fwd", "w0", "val", "lr", "time", "step_time"];
    let series = read_csv_series(&path, "iter", &cols).unwrap();
    let loss = &series[0].points;
    assert_eq!(loss.len(), 25);
    for (k, &(x, y)) in loss.iter().enumerate() {
        assert_eq!(x, (k + 1) as f64);
        assert_eq!(y.to_bits(), losses[k].to_bits(), "loss round-trips exactly");
    }
    assert!(series[1].points.iter().all(|&(_, y)| y == 10.0));
    // Validated at 10, 20 and after the last iteration.
    let val_x: Vec<f64> = series[3].points.iter().map(|p| p.0).collect();
    assert_eq!(val_x, [10.0, 20.0, 25.0]);
    assert!(series[4].points.iter().all(|&(_, y)| y == 0.05));
    let times: Vec<f64> = series[5].points.iter().map(|p| p.1).collect();
    assert!(times.windows(2).all(|w| w[1] >= w[0]), "time is cumulative");
    // A training-curve picture from the log.
    let png = path.with_extension("png");
    flows::plot::LinePlot::new("loss")
        .series(series[0].clone())
        .save(&png)
        .unwrap();
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
}

/// Runs 30 iterations with checkpoints every 8, EMA, validation and a CSV log; when `crash_at`
/// is set, the step fails there, and a second loop resumes from the last checkpoint.
fn run_to_30(name: &str, crash_at: Option<u64>) -> (Params<f64>, Ema<f64>, String) {
    let ck = tmp(&format!("{name}.safetensors"));
    let csv = tmp(&format!("{name}.csv"));
    let val = |p: &Params<f64>| -> Result<f64, FlowError> { Ok((p.tensor(0).sum() - 6.0).abs()) };
    let trainer = |resume: bool| {
        Trainer::new(30)
            .progress(ProgressMode::Off)
            .csv(&csv)
            .checkpoint(&ck, 8)
            .resume(resume)
            .validate_every(4, val)
    };
    let (mut params, mut opt, mut rng, mut ema) = fresh();
    let first = trainer(false).run(
        &mut params,
        &mut opt,
        &mut rng,
        Some(&mut ema),
        |p, r, it| {
            if Some(it) == crash_at {
                return Err(FlowError::UnknownParam {
                    name: "crash".into(),
                });
            }
            noisy_step(p, r, it)
        },
    );
    if crash_at.is_some() {
        assert!(first.is_err());
        // A fresh process: the same objects, rebuilt.
        let (p2, o2, r2, e2) = fresh();
        (params, opt, rng, ema) = (p2, o2, r2, e2);
        let report = trainer(true)
            .run(&mut params, &mut opt, &mut rng, Some(&mut ema), noisy_step)
            .unwrap();
        assert_eq!(
            report.start, 16,
            "resumed from the last checkpoint before the crash"
        );
        assert_eq!(report.iterations, 30);
        assert_eq!(
            report.best.as_ref().map(|b| b.iteration),
            Some(first_best_iteration())
        );
    } else {
        first.unwrap();
    }
    let log = std::fs::read_to_string(&csv).unwrap();
    // The time columns differ between runs; the rest must not.
    let stable: Vec<String> = log
        .lines()
        .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
        .collect();
    (params, ema, stable.join("\n"))
}

/// The best validation of the uninterrupted run (checked against the resumed one).
fn first_best_iteration() -> u64 {
    let (mut params, mut opt, mut rng, mut ema) = fresh();
    Trainer::new(30)
        .progress(ProgressMode::Off)
        .validate_every(4, |p: &Params<f64>| -> Result<f64, FlowError> {
            Ok((p.tensor(0).sum() - 6.0).abs())
        })
        .run(&mut params, &mut opt, &mut rng, Some(&mut ema), noisy_step)
        .unwrap()
        .best
        .unwrap()
        .iteration
}

#[test]
fn resuming_through_the_trainer_equals_an_uninterrupted_run() {
    let (p_full, e_full, log_full) = run_to_30("full", None);
    let (p_res, e_res, log_res) = run_to_30("resumed", Some(21));
    assert_eq!(bits(&p_full), bits(&p_res));
    assert_eq!(bits(e_full.params()), bits(e_res.params()));
    assert_eq!(e_full.updates(), e_res.updates());
    // The log of the resumed run has each iteration once, with the same values.
    assert_eq!(log_full.lines().count(), 31);
    assert_eq!(log_full, log_res);
}

#[test]
fn a_non_finite_loss_is_a_typed_error_naming_the_iteration() {
    let (mut params, mut opt, mut rng, _) = fresh();
    let err = Trainer::new(10)
        .progress(ProgressMode::Off)
        .run(&mut params, &mut opt, &mut rng, None, |p, r, it| {
            let mut s = noisy_step(p, r, it)?;
            if it == 4 {
                s.loss = f64::NAN;
            }
            Ok(s)
        })
        .unwrap_err();
    assert!(
        matches!(err, FlowError::Diverged { iteration: 4, .. }),
        "{err}"
    );
}
