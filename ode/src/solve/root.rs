//! Root finding in a bracket, for locating events on the dense output.

/// How [`illinois`] failed.
#[derive(Debug, PartialEq)]
pub(crate) enum RootFailure {
    /// The iteration cap was reached before the bracket met the tolerance.
    NotConverged {
        /// The bracket left, which holds the root.
        bracket: (f64, f64),
        /// Iterations taken.
        iterations: usize,
    },
    /// The function was not finite at this point.
    NonFinite(f64),
}

/// The Illinois variant of regula falsi (Dowell & Jarratt 1971) on `[a, b]` with
/// `g(a)·g(b) < 0` or `g(b) = 0`: secant steps through the bracket's ends, halving the
/// retained end's value when the same end is kept twice, so the bracket shrinks
/// superlinearly from both sides. Two safeguards: a secant step shorter than `xtol/2` is
/// lengthened to `xtol/2` (as in Brent's method), so an end whose `g` is at its rounding level
/// cannot stall the bracket, and a bracket that has not halved in three iterations is bisected,
/// which bounds the work on strongly curved functions. Returns the root and the iterations
/// taken; stops when the bracket is narrower than `xtol` or `g` is exactly zero, and gives up
/// after `max_iter` iterations (never loops forever).
pub(crate) fn illinois(
    mut g: impl FnMut(f64) -> f64,
    (mut a, mut ga): (f64, f64),
    (mut b, mut gb): (f64, f64),
    xtol: f64,
    max_iter: usize,
) -> Result<(f64, usize), RootFailure> {
    if gb == 0.0 {
        return Ok((b, 0));
    }
    // Bracket widths at the last three iterations: a bracket that has not halved in three
    // iterations is bisected, which bounds the work by about three times bisection's.
    let mut widths = [f64::INFINITY; 3];
    for it in 0..max_iter {
        let w = (b - a).abs();
        if w <= xtol {
            return Ok((b, it));
        }
        let bisect = w > 0.5 * widths[0];
        widths = [widths[1], widths[2], w];
        let (lo, hi) = (a.min(b), a.max(b));
        let mut c = b - gb * (b - a) / (gb - ga);
        if bisect {
            c = 0.5 * (a + b);
        } else if (c - b).abs() < 0.5 * xtol {
            // The secant no longer moves b (g(b) is at its rounding level): step half a
            // tolerance towards a, so the next point either closes the bracket or moves b on.
            c = b + 0.5 * xtol * (a - b).signum();
        } else if !(c > lo && c < hi) {
            // A NaN secant point, or one rounded onto or past an end: bisect.
            c = 0.5 * (a + b);
        }
        if !(c > lo && c < hi) {
            return Ok((b, it));
        }
        let gc = g(c);
        if gc == 0.0 {
            return Ok((c, it + 1));
        }
        if !gc.is_finite() {
            return Err(RootFailure::NonFinite(c));
        }
        if gc * gb < 0.0 {
            // The root is between b and c: b becomes the retained end.
            a = b;
            ga = gb;
        } else {
            // The same end a is retained again: halve its value (the Illinois modification).
            ga *= 0.5;
        }
        b = c;
        gb = gc;
    }
    if (b - a).abs() <= xtol {
        return Ok((b, max_iter));
    }
    Err(RootFailure::NotConverged {
        bracket: (a.min(b), a.max(b)),
        iterations: max_iter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the root finder on `g` over `[a, b]` and returns the root and the iterations.
    fn run(g: impl Fn(f64) -> f64, a: f64, b: f64, xtol: f64) -> (f64, usize) {
        illinois(&g, (a, g(a)), (b, g(b)), xtol, 100).expect("converges")
    }

    #[test]
    fn converges_superlinearly_on_smooth_roots() {
        // (g, a, b, root, most iterations): the steep exponential, whose |g| differs by 10⁴
        // between the ends, and the cubic, nearly flat at its root, need Illinois' halvings and
        // a few bisections.
        type Case<'a> = (&'a dyn Fn(f64) -> f64, f64, f64, f64, usize);
        let cases: [Case<'_>; 5] = [
            (&|x: f64| x.cos() - x, 0.0, 1.0, 0.739_085_133_215_160_6, 8),
            (
                &|x: f64| x * x - 2.0,
                0.0,
                3.0,
                std::f64::consts::SQRT_2,
                10,
            ),
            (
                &|x: f64| (5.0 * x).exp() - 3.0,
                2.0,
                -1.0,
                3f64.ln() / 5.0,
                18,
            ),
            (
                &|x: f64| (x - 0.3).powi(3) + 0.01 * (x - 0.3),
                0.0,
                1.0,
                0.3,
                20,
            ),
            (&|x: f64| 1e-6 * (x - 1.7), 1.0, 2.0, 1.7, 3),
        ];
        for (g, a, b, root, most) in cases {
            let (r, it) = run(g, a, b, 1e-13);
            assert!((r - root).abs() < 2e-13, "root {r} vs {root}");
            assert!(it <= most, "{it} iterations for the root {root}");
        }
    }

    #[test]
    fn an_end_at_the_rounding_level_does_not_stall_the_bracket() {
        // g(b) is 0 to rounding after the first secant step; the bracket must still close.
        let g = |x: f64| (x - 0.5) * (1.0 + x * x);
        let (r, it) = run(g, 0.0, 1.0, 1e-14);
        assert!((r - 0.5).abs() < 1e-14 && it <= 12, "{r} after {it}");
    }

    #[test]
    fn the_cap_and_non_finite_values_are_reported() {
        let g = |x: f64| x.cos() - x;
        let err = illinois(g, (0.0, g(0.0)), (1.0, g(1.0)), 1e-15, 2).unwrap_err();
        assert!(matches!(
            err,
            RootFailure::NotConverged { iterations: 2, .. }
        ));
        let h = |x: f64| {
            if x > 0.0 && x < 1.0 {
                f64::NAN
            } else {
                x - 0.5
            }
        };
        let err = illinois(h, (0.0, -0.5), (1.0, 0.5), 1e-12, 50).unwrap_err();
        assert!(matches!(err, RootFailure::NonFinite(_)));
        // An exact zero at the end is the root, with no work.
        assert_eq!(illinois(g, (0.0, 1.0), (0.5, 0.0), 1e-12, 0), Ok((0.5, 0)));
    }
}
