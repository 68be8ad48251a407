//! Divergence tr(∂f/∂z) of a batched vector field: exact, or Hutchinson's estimator.
//!
//! Rows are independent samples (row `i` of `f` depends only on row `i` of `z`), so one
//! reverse pass with a cotangent that is nonzero in column `j` returns `∂f_ij/∂z_ij` for all
//! rows at once. Every product is recorded on the tape, so the divergence can be
//! differentiated again (the adjoint of a CNF needs its gradient with respect to `z` and θ).

use autodiff::{Element, Tensor, Var};
use rand::Rng;

/// The distribution of Hutchinson's probe vectors ε (E(ε) = 0, Cov(ε) = I).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// ε ~ N(0, I).
    Gaussian,
    /// Entries ±1 with equal probability (lower variance for the trace; Hutchinson 1989).
    Rademacher,
}

/// How the divergence is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trace {
    /// `d` vector-Jacobian products, exact.
    Exact,
    /// Hutchinson's estimator εᵀ(∂f/∂z)ε averaged over `samples` probes, one VJP each
    /// (Grathwohl et al. 2019). Probes are drawn once per solve and shared by its adjoint.
    Hutchinson {
        /// Probe distribution.
        probe: Probe,
        /// Probes per evaluation.
        samples: usize,
    },
}

impl Trace {
    /// Hutchinson's estimator with one probe.
    pub fn hutchinson(probe: Probe) -> Self {
        Trace::Hutchinson { probe, samples: 1 }
    }

    /// Draws the probes for one solve of a batch of `n` points in `d` dimensions (none for the
    /// exact trace).
    pub fn draw<E: Element, R: Rng + ?Sized>(
        &self,
        n: usize,
        d: usize,
        rng: &mut R,
    ) -> Vec<Tensor<E>> {
        match *self {
            Trace::Exact => Vec::new(),
            Trace::Hutchinson { probe, samples } => (0..samples.max(1))
                .map(|_| match probe {
                    Probe::Gaussian => Tensor::randn(n, d, rng),
                    Probe::Rademacher => Tensor::rademacher(n, d, rng),
                })
                .collect(),
        }
    }
}

/// The divergence per row (`n × 1`) of `f` (`n × d`) with respect to `z` (`n × d`): exact when
/// `probes` is empty, Hutchinson's average over the probes otherwise. Also returns the
/// vector-Jacobian products it computed — the rows `e_jᵀ∂f/∂z` of the Jacobian for the exact
/// trace, the probes' `εᵀ∂f/∂z` otherwise — which the Jacobian-Frobenius regulariser reuses.
pub fn divergence<'t, E: Element>(
    f: Var<'t, E>,
    z: Var<'t, E>,
    probes: &[Tensor<E>],
) -> (Var<'t, E>, Vec<Var<'t, E>>) {
    if probes.is_empty() {
        exact_divergence_rows(f, z)
    } else {
        hutchinson_divergence(f, z, probes)
    }
}

/// tr(∂f/∂z) per row by `d` vector-Jacobian products.
pub fn exact_divergence<'t, E: Element>(f: Var<'t, E>, z: Var<'t, E>) -> Var<'t, E> {
    exact_divergence_rows(f, z).0
}

/// tr(∂f/∂z) per row, and the Jacobian rows `e_jᵀ∂f/∂z` (`n × d` each, one per output
/// dimension `j`) it was read from.
pub fn exact_divergence_rows<'t, E: Element>(
    f: Var<'t, E>,
    z: Var<'t, E>,
) -> (Var<'t, E>, Vec<Var<'t, E>>) {
    let tape = f.tape();
    let (n, d) = f.shape();
    assert_eq!(
        z.shape(),
        (n, d),
        "exact_divergence: f is {:?} but z is {:?}",
        f.shape(),
        z.shape()
    );
    let mut acc: Option<Var<'t, E>> = None;
    let mut rows = Vec::with_capacity(d);
    for j in 0..d {
        let e = tape.constant(Tensor::from_fn(
            n,
            d,
            |_, c| if c == j { E::ONE } else { E::ZERO },
        ));
        let g = tape
            .vjp(&[f], &[e], &[z])
            .expect("vjp of primitives cannot fail")[0];
        let djj = g.slice_cols(j, j + 1);
        acc = Some(match acc {
            None => djj,
            Some(a) => a + djj,
        });
        rows.push(g);
    }
    (acc.unwrap_or_else(|| tape.zeros(n, 1)), rows)
}

/// Hutchinson's estimate εᵀ(∂f/∂z)ε per row, averaged over the probes, and the products εᵀ∂f/∂z.
pub fn hutchinson_divergence<'t, E: Element>(
    f: Var<'t, E>,
    z: Var<'t, E>,
    probes: &[Tensor<E>],
) -> (Var<'t, E>, Vec<Var<'t, E>>) {
    let tape = f.tape();
    let (n, d) = f.shape();
    assert_eq!(
        z.shape(),
        (n, d),
        "hutchinson_divergence: f is {:?} but z is {:?}",
        f.shape(),
        z.shape()
    );
    let mut acc: Option<Var<'t, E>> = None;
    let mut vjps = Vec::with_capacity(probes.len());
    for eps in probes {
        assert_eq!(
            eps.shape(),
            (n, d),
            "hutchinson_divergence: probe is {:?} but f is {:?}",
            eps.shape(),
            (n, d)
        );
        let e = tape.constant_from(eps);
        let ej = tape
            .vjp(&[f], &[e], &[z])
            .expect("vjp of primitives cannot fail")[0];
        let est = (ej * e).sum_axis(1);
        acc = Some(match acc {
            None => est,
            Some(a) => a + est,
        });
        vjps.push(ej);
    }
    let k = E::from_usize(probes.len());
    (acc.expect("at least one probe") * (E::ONE / k), vjps)
}
