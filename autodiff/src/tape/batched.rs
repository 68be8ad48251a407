//! `Tape::vjp_batched`: several vector-Jacobian products of one output in one reverse sweep.

use std::collections::HashMap;

use smallvec::SmallVec;

use super::{accumulate, Kind, Tape};
use crate::{Element, Var};

impl<E: Element> Tape<E> {
    /// `k` vector-Jacobian products of `output` (`r × c`) with respect to `x` in one reverse
    /// sweep — JAX's `vmap` of a `vjp` over its cotangent. The cotangents come stacked by rows
    /// in `cotangents` (`k·r × c`, block `i` = cotangent `i`), and so does the result
    /// (`k·rₓ × cₓ`, block `i` = `cotangentᵢᵀ ∂output/∂x`). Each matrix product on the way
    /// back is then one GEMM of `k·r` rows instead of `k` GEMMs of `r` rows.
    ///
    /// Recorded on the tape like [`vjp`](Tape::vjp), so the result can be differentiated again
    /// (primal values that meet the stacked cotangents are tiled with
    /// [`Var::tile_rows`], whose adjoint sums the blocks back).
    ///
    /// Returns `None`, leaving the tape as it was, when a primitive between `x` and `output`
    /// has no batched rule: one whose pullback mixes rows (a transpose, a sum over rows, the
    /// right factor of a matrix product depending on `x`, an operand broadcast along rows
    /// depending on `x`) or a custom op. The caller then takes the `k` products one by one.
    ///
    /// Panics (naming the op and shapes) if `cotangents` is not `k·r × c`, `k = 0`, or a
    /// handle is stale or of another tape.
    pub fn vjp_batched<'t>(
        &'t self,
        output: Var<'t, E>,
        cotangents: Var<'t, E>,
        k: usize,
        x: Var<'t, E>,
    ) -> Option<Var<'t, E>> {
        for v in [output, cotangents, x] {
            self.check_same(v, "vjp_batched");
        }
        let (r, c) = output.shape();
        assert!(
            k >= 1 && cotangents.shape() == (k * r, c),
            "vjp_batched: {k} cotangents of a {r}x{c} output must be stacked as {}x{c}, got {:?}",
            k * r,
            cotangents.shape()
        );
        let mark = self.len();
        let res = self.backward_mode(true, || self.batched_sweep(output, cotangents, k, x));
        if res.is_none() {
            self.truncate(mark);
        }
        res
    }

    /// The reverse sweep of [`vjp_batched`](Tape::vjp_batched): as the plain sweep, with
    /// stacked cotangents and the batched rules.
    fn batched_sweep<'t>(
        &'t self,
        output: Var<'t, E>,
        cts: Var<'t, E>,
        k: usize,
        x: Var<'t, E>,
    ) -> Option<Var<'t, E>> {
        let (start, end) = (x.id, output.id);
        let stacked_zeros = || {
            let (xr, xc) = x.shape();
            self.zeros(k * xr, xc)
        };
        if end < start {
            return Some(stacked_zeros());
        }
        let len = (end - start + 1) as usize;
        // Only nodes downstream of `x` can pass a cotangent on to it (as in the plain sweep).
        let mut active = vec![false; len];
        active[0] = true;
        {
            let inner = self.inner.borrow();
            for id in start + 1..=end {
                active[(id - start) as usize] = inner.nodes[id as usize]
                    .inputs
                    .iter()
                    .any(|&j| j >= start && active[(j - start) as usize]);
            }
        }
        let mut cot: Vec<Option<Var<'t, E>>> = vec![None; len];
        cot[len - 1] = Some(cts);
        // Each primal value is tiled at most once, however many rules read it.
        let mut tiles: HashMap<usize, Var<'t, E>> = HashMap::new();
        let mut tile = |v: Var<'t, E>| *tiles.entry(v.id()).or_insert_with(|| v.tile_rows(k));
        for id in (start..=end).rev() {
            let slot = (id - start) as usize;
            let Some(g) = cot[slot] else { continue };
            if !active[slot] {
                continue;
            }
            let (kind, inputs, xs_in, y) = self.sweep_node(id);
            let needs: SmallVec<[bool; 4]> = inputs
                .iter()
                .map(|&j| j >= start && active[(j - start) as usize])
                .collect();
            match kind {
                Kind::Leaf => {}
                Kind::Prim(p) => {
                    if !needs.iter().any(|&b| b) {
                        continue;
                    }
                    let gs = p.vjp_batched(&xs_in, y, g, k, &needs, &mut tile)?;
                    for ((&j, gj), &need) in inputs.iter().zip(gs).zip(&needs) {
                        if let (Some(gj), true) = (gj, need) {
                            accumulate(&mut cot[(j - start) as usize], gj);
                        }
                    }
                }
                // A custom op's VJP takes one cotangent per output: no batched form.
                Kind::Output(_) | Kind::Custom(..) => return None,
            }
        }
        Some(cot[0].unwrap_or_else(stacked_zeros))
    }
}
