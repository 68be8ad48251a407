//! The rooted trees of Butcher's order conditions: their elementary weights and densities,
//! walked one order at a time, and the residuals of a method's weights against them.

#[cfg(doc)]
use super::{SdirkTableau, Tableau};
#[cfg(doc)]
use crate::OdeError;

/// The highest order whose order conditions [`Tableau::validate`], [`SdirkTableau::validate`],
/// [`order_residual`] and [`tree_counts`] will check.
///
/// There is one condition per rooted tree, and their number grows about threefold per order
/// (32 973 trees of order 14, 634 847 of order 17; OEIS A000081), so a claimed order far beyond
/// any practical method would take minutes and gigabytes to check. Practical methods stay well
/// below 14 (DOP853, the highest order here, is 8; Feagin's high-order pairs reach 12 and 14),
/// and the 53 272 conditions up to order 14 are checked in well under a second even for a
/// tableau with dozens of stages. Claims above it are refused with
/// [`OdeError::InvalidTableau`] rather than checked.
pub const MAX_CHECKED_ORDER: usize = 14;

/// The rooted trees, generated one order at a time together with each tree's elementary
/// weight vector for a coefficient matrix `a` (Butcher 1963; Hairer, Nørsett & Wanner 1993,
/// Section II.2).
///
/// A tree of order `n` is a root with a multiset of subtrees whose orders sum to `n − 1`; its
/// weight is `Φ(t) = Π_children A Φ(child)` (elementwise over stages) and its density
/// `γ(t) = n Π_children γ(child)`. Only `A Φ(t)` and `γ(t)` of the smaller trees are kept,
/// which is all the larger ones are built from, and each multiset is enumerated exactly once
/// as a non-decreasing list of tree indices.
struct TreeWalk<'a> {
    /// Full rows of the coefficient matrix (missing entries are zero).
    a: &'a [Vec<f64>],
    /// Number of stages (0 when only counting trees).
    s: usize,
    /// Trees of order `k` are the indices `first[k]..first[k + 1]`; `first[1] = 0`.
    first: Vec<usize>,
    /// Order of every kept tree.
    order: Vec<usize>,
    /// Density `γ(t)` of every kept tree.
    density: Vec<f64>,
    /// `A Φ(t)` of every kept tree, `s` values each.
    a_phi: Vec<f64>,
}

impl<'a> TreeWalk<'a> {
    fn new(a: &'a [Vec<f64>], s: usize) -> Self {
        TreeWalk {
            a,
            s,
            first: vec![0, 0],
            order: Vec::new(),
            density: Vec::new(),
            a_phi: Vec::new(),
        }
    }

    /// Calls `each(Φ(t), γ(t))` for every tree of order `n`, the next order not yet walked,
    /// and, if `keep`, keeps what order `n + 1` will need (the `A Φ` products are the costly
    /// part, so the last order walked skips them; no order may be walked after one that was
    /// not kept). Returns the number of trees of order `n`.
    fn next_order(&mut self, keep: bool, each: &mut dyn FnMut(&[f64], f64)) -> usize {
        let n = self.first.len() - 1;
        let s = self.s;
        let mut density = Vec::new();
        let mut a_phi = Vec::new();
        {
            let a = self.a;
            let mut visit = |phi: &[f64], gamma: f64| {
                each(phi, gamma);
                density.push(gamma);
                if !keep {
                    return;
                }
                a_phi.extend((0..s).map(|i| {
                    (0..s)
                        .map(|j| a[i].get(j).copied().unwrap_or(0.0) * phi[j])
                        .sum::<f64>()
                }));
            };
            // scratch[d] is the product of the A Φ of the first d chosen subtrees.
            let mut scratch = vec![vec![1.0; s]; n];
            if n == 1 {
                visit(&scratch[0], 1.0);
            } else {
                self.forests(n - 1, 0, 0, n as f64, &mut scratch, &mut visit);
            }
        }
        let count = density.len();
        if !keep {
            return count;
        }
        self.order.extend(std::iter::repeat_n(n, count));
        self.density.extend(density);
        self.a_phi.extend(a_phi);
        self.first.push(self.first[n] + count);
        count
    }

    /// Extends the forest in `scratch[d]` (density product `gamma`) by subtrees with index at
    /// least `min` and total order `rest`, calling `out` on every completed forest.
    fn forests(
        &self,
        rest: usize,
        min: usize,
        d: usize,
        gamma: f64,
        scratch: &mut [Vec<f64>],
        out: &mut dyn FnMut(&[f64], f64),
    ) {
        if rest == 0 {
            out(&scratch[d], gamma);
            return;
        }
        // The next subtree has order `o ≥` that of the previous one, so what remains after it
        // can be filled only if `o = rest` or `rest − o ≥ o`: skipping the orders in between
        // keeps every step of the walk on the way to a tree.
        let small = min..self.first[rest / 2 + 1].max(min);
        let whole = self.first[rest].max(min)..self.first[rest + 1];
        for t in small.chain(whole) {
            let (done, next) = scratch.split_at_mut(d + 1);
            let ap = &self.a_phi[t * self.s..(t + 1) * self.s];
            for ((x, &p), &q) in next[0].iter_mut().zip(&done[d]).zip(ap) {
                *x = p * q;
            }
            let g = gamma * self.density[t];
            self.forests(rest - self.order[t], t, d + 1, g, scratch, out);
        }
    }
}

/// Panics (a programming error, as for a shape mismatch) when `order` is above
/// [`MAX_CHECKED_ORDER`]; the `validate` methods check first and return an error instead.
fn assert_checkable(order: usize, what: &str) {
    assert!(
        order <= MAX_CHECKED_ORDER,
        "{what}: order {order} is above MAX_CHECKED_ORDER = {MAX_CHECKED_ORDER} (the number of \
         rooted trees grows about threefold per order)"
    );
}

/// Largest residual `|bᵀ Φ(t) − 1/γ(t)|` among the trees of each order `1..=order`, one entry
/// per order, stopping after the first order whose residual exceeds `stop` (or is NaN).
fn residuals_by_order(a: &[Vec<f64>], b: &[f64], order: usize, stop: f64) -> Vec<f64> {
    let mut walk = TreeWalk::new(a, b.len());
    let mut out = Vec::with_capacity(order);
    for n in 1..=order {
        let mut worst = 0.0f64;
        walk.next_order(n < order, &mut |phi, gamma| {
            let val: f64 = b.iter().zip(phi).map(|(bi, p)| bi * p).sum();
            let r = (val - 1.0 / gamma).abs();
            // NaN must win: `f64::max` would drop it and pass a tableau of NaNs.
            if violates(r, worst) {
                worst = r;
            }
        });
        out.push(worst);
        if violates(worst, stop) {
            break;
        }
    }
    out
}

/// Whether a residual fails a tolerance; NaN always does.
fn violates(r: f64, tol: f64) -> bool {
    r > tol || r.is_nan()
}

/// The first order in `1..=order` whose conditions are violated by more than `tol`, with its
/// residual.
pub(super) fn first_violation(
    a: &[Vec<f64>],
    b: &[f64],
    order: usize,
    tol: f64,
) -> Option<(usize, f64)> {
    let r = residuals_by_order(a, b, order, tol);
    r.iter()
        .position(|&r| violates(r, tol))
        .map(|k| (k + 1, r[k]))
}

/// Largest residual `|bᵀ Φ(t) − 1/γ(t)|` over the rooted trees of order ≤ `order`, for the
/// (full, possibly implicit) coefficient matrix `a` (`a[i][j]`, missing entries are zero).
/// NaN if any residual is NaN.
///
/// # Panics
///
/// If `order` is above [`MAX_CHECKED_ORDER`].
pub fn order_residual(a: &[Vec<f64>], b: &[f64], order: usize) -> f64 {
    assert_checkable(order, "order_residual");
    residuals_by_order(a, b, order, f64::INFINITY)
        .into_iter()
        .fold(0.0, |w, r| if violates(r, w) { r } else { w })
}

/// Number of rooted trees of each order `1..=max_order` (A000081: 1, 1, 2, 4, 9, 20, 48, 115).
///
/// # Panics
///
/// If `max_order` is above [`MAX_CHECKED_ORDER`].
pub fn tree_counts(max_order: usize) -> Vec<usize> {
    assert_checkable(max_order, "tree_counts");
    let mut walk = TreeWalk::new(&[], 0);
    (1..=max_order)
        .map(|_| walk.next_order(true, &mut |_, _| {}))
        .collect()
}
