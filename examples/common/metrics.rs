//! The metrics the flow examples log for every iteration.

use autodiff::Element;
use flows::cnf::LogProb;
use flows::train::Metrics;

/// Negative log-likelihood, forward and backward function evaluations (summed over the
/// blocks), the end time of the pass and every regularizer's value, by name. Call it after
/// the gradient, when the backward statistics are filled in.
pub fn flow_metrics<E: Element>(lp: &LogProb<'_, E>) -> Metrics {
    let (fwd, bwd) = lp.stats.iter().fold((0, 0), |(f, b), s| {
        (f + s.forward().nfe, b + s.backward().nfe)
    });
    let mut m = Metrics::new()
        .with("nll", lp.nll().item().to_f64())
        .with("nfe_fwd", fwd as f64)
        .with("nfe_bwd", bwd as f64)
        .with("T", lp.end_time.item().to_f64());
    for r in &lp.reg {
        m.set(r.name.clone(), r.value.item().to_f64());
    }
    m
}
