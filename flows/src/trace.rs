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

/// tr(∂f/∂z) per row, exactly (see [`exact_divergence_rows`]).
pub fn exact_divergence<'t, E: Element>(f: Var<'t, E>, z: Var<'t, E>) -> Var<'t, E> {
    exact_divergence_rows(f, z).0
}

/// tr(∂f/∂z) per row, and the Jacobian rows `e_jᵀ∂f/∂z` (`n × d` each, one per output
/// dimension `j`) it was read from.
///
/// The `d` products are taken in one batched reverse sweep ([`Tape::vjp_batched`]): the
/// one-hot cotangents are stacked into a `d·n × d` matrix, so each layer of the network
/// pulls all of them back with one matrix product of `d·n` rows instead of `d` products of
/// `n` rows (the same FLOPs, in kernels that run closer to the machine's peak, and `d` times
/// fewer recorded nodes for the adjoint to walk). If the field uses an op without a batched
/// rule, the products are taken one by one ([`exact_divergence_rows_per_dim`]); the result
/// is the same either way.
///
/// [`Tape::vjp_batched`]: autodiff::Tape::vjp_batched
pub fn exact_divergence_rows<'t, E: Element>(
    f: Var<'t, E>,
    z: Var<'t, E>,
) -> (Var<'t, E>, Vec<Var<'t, E>>) {
    let tape = f.tape();
    let (n, d) = check_square("exact_divergence", f, z);
    if d == 0 {
        return (tape.zeros(n, 1), Vec::new());
    }
    // Block j of the stacked cotangent is e_j in every row.
    let one_hot = tape.constant(Tensor::from_fn(d * n, d, |i, c| {
        if c == i / n.max(1) {
            E::ONE
        } else {
            E::ZERO
        }
    }));
    let Some(stacked) = tape.vjp_batched(f, one_hot, d, z) else {
        return exact_divergence_rows_per_dim(f, z);
    };
    // Block j of the stacked products is row j of the Jacobian at every point, so the
    // one-hot cotangent is also the mask of the diagonal: ∂f_j/∂z_j sits where it is 1. Reading
    // the trace this way keeps its backward pass O(n·d²), which slicing the blocks is not.
    let div = (stacked * one_hot).sum_axis(1).sum_row_blocks(d);
    // The Jacobian rows are read out through the transpose, where the blocks are column
    // ranges; only the regularisers that use them pay for their backward pass.
    let blocks = stacked.t();
    let rows: Vec<Var<'t, E>> = (0..d)
        .map(|j| blocks.slice_cols(j * n, (j + 1) * n).t())
        .collect();
    (div, rows)
}

/// [`exact_divergence_rows`] by `d` separate vector-Jacobian products, one per output
/// dimension: the reference the batched sweep is tested against, and its fallback for fields
/// whose ops have no batched rule.
pub fn exact_divergence_rows_per_dim<'t, E: Element>(
    f: Var<'t, E>,
    z: Var<'t, E>,
) -> (Var<'t, E>, Vec<Var<'t, E>>) {
    let tape = f.tape();
    let (n, d) = check_square("exact_divergence", f, z);
    let rows: Vec<Var<'t, E>> = (0..d)
        .map(|j| {
            let e = tape.constant(Tensor::from_fn(
                n,
                d,
                |_, c| if c == j { E::ONE } else { E::ZERO },
            ));
            tape.vjp(&[f], &[e], &[z])
                .expect("vjp of primitives cannot fail")[0]
        })
        .collect();
    if d == 0 {
        return (tape.zeros(n, 1), rows);
    }
    (diagonal_sum(&rows), rows)
}

/// Σ_j (e_jᵀ∂f/∂z)_j per row, from the `d ≥ 1` Jacobian rows.
fn diagonal_sum<'t, E: Element>(rows: &[Var<'t, E>]) -> Var<'t, E> {
    rows.iter()
        .enumerate()
        .map(|(j, g)| g.slice_cols(j, j + 1))
        .reduce(|a, b| a + b)
        .expect("at least one dimension")
}

/// `f`'s shape `(n, d)` after checking that `z` has it too.
fn check_square<E: Element>(op: &str, f: Var<'_, E>, z: Var<'_, E>) -> (usize, usize) {
    assert_eq!(
        z.shape(),
        f.shape(),
        "{op}: f is {:?} but z is {:?}",
        f.shape(),
        z.shape()
    );
    f.shape()
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
