//! Butcher tableaux as data, and their validation (row sums, weights, order conditions).
//!
//! Explicit methods are [`Tableau`]s run by one generic stepper; the two implicit (SDIRK)
//! methods are [`SdirkTableau`]s run by the Newton stepper. Every constant cites its source;
//! [`Tableau::validate`] and [`SdirkTableau::validate`] check the numbers, including the
//! order conditions of every rooted tree up to the claimed order (Butcher 1963; Hairer,
//! Nørsett & Wanner 1993, Section II.2), for claims up to [`MAX_CHECKED_ORDER`].
#![allow(clippy::excessive_precision)] // published digits are kept verbatim for checking

use crate::OdeError;

/// An explicit Runge–Kutta method with an optional embedded pair and continuous extension.
///
/// Stage `i` is `k_i = f(t + c_i h, y + h Σ_{j<i} a_ij k_j)` and the step is
/// `y₁ = y₀ + h Σ b_i k_i`. The fields are public so that a step can be replayed with tape
/// operations (discretise-then-optimise).
#[derive(Clone, Copy, Debug)]
pub struct Tableau {
    /// Short name ("dopri5").
    pub name: &'static str,
    /// Order of the propagated solution `b`.
    pub order: usize,
    /// Order of the embedded solution `b̂ = b − b_err`, if there is one: the error estimate
    /// behaves like `h^(error_order + 1)`.
    pub error_order: Option<usize>,
    /// Nodes `c_i` (`c_0 = 0`).
    pub c: &'static [f64],
    /// Strictly lower-triangular coefficients, row-major per stage: row `i` has `i` entries
    /// `a_i0 … a_i(i−1)` (row 0 is empty).
    pub a: &'static [&'static [f64]],
    /// Weights of the propagated solution.
    pub b: &'static [f64],
    /// Error weights `b − b̂` of the embedded pair; `None` for fixed-step-only methods.
    pub b_err: Option<&'static [f64]>,
    /// First-same-as-last: the last stage is evaluated at `(t + h, y₁)` (its row of `a` equals
    /// `b` and its node is 1), so it is the next step's first stage. Checked by
    /// [`validate`](Tableau::validate) against [`fsal_from_numbers`](Tableau::fsal_from_numbers).
    pub fsal: bool,
    /// Continuous extension: row `i` holds the coefficients of `b_i(θ) = Σ_m d_im θ^(m+1)`,
    /// so `y(t₀ + θh) = y₀ + h Σ b_i(θ) k_i` with `b_i(1) = b_i`. `None`: cubic Hermite.
    pub dense: Option<&'static [&'static [f64]]>,
    /// Where the numbers come from.
    pub citation: &'static str,
}

/// Forward Euler, order 1 (Euler 1768).
pub const EULER: Tableau = Tableau {
    name: "euler",
    order: 1,
    error_order: None,
    c: &[0.0],
    a: &[&[]],
    b: &[1.0],
    b_err: None,
    fsal: false,
    dense: None,
    citation: "Euler 1768",
};

/// Explicit midpoint rule, order 2 (Runge 1895).
pub const MIDPOINT: Tableau = Tableau {
    name: "midpoint",
    order: 2,
    error_order: None,
    c: &[0.0, 0.5],
    a: &[&[], &[0.5]],
    b: &[0.0, 1.0],
    b_err: None,
    fsal: false,
    dense: None,
    citation: "Runge 1895",
};

/// Heun's method (explicit trapezoidal rule), order 2 (Heun 1900).
pub const HEUN: Tableau = Tableau {
    name: "heun",
    order: 2,
    error_order: None,
    c: &[0.0, 1.0],
    a: &[&[], &[1.0]],
    b: &[0.5, 0.5],
    b_err: None,
    fsal: false,
    dense: None,
    citation: "Heun 1900",
};

/// The classical fourth-order Runge–Kutta method (Kutta 1901).
pub const RK4: Tableau = Tableau {
    name: "rk4",
    order: 4,
    error_order: None,
    c: &[0.0, 0.5, 0.5, 1.0],
    a: &[&[], &[0.5], &[0.0, 0.5], &[0.0, 0.0, 1.0]],
    b: &[1.0 / 6.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 6.0],
    b_err: None,
    fsal: false,
    dense: None,
    citation: "Kutta 1901",
};

/// Bogacki–Shampine 3(2) pair, FSAL (Bogacki & Shampine 1989).
pub const BOSH3: Tableau = Tableau {
    name: "bosh3",
    order: 3,
    error_order: Some(2),
    c: &[0.0, 0.5, 0.75, 1.0],
    a: &[
        &[],
        &[0.5],
        &[0.0, 0.75],
        &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0],
    ],
    b: &[2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0, 0.0],
    // b̂ = (7/24, 1/4, 1/3, 1/8)
    b_err: Some(&[
        2.0 / 9.0 - 7.0 / 24.0,
        1.0 / 3.0 - 0.25,
        4.0 / 9.0 - 1.0 / 3.0,
        -0.125,
    ]),
    fsal: true,
    dense: None,
    citation: "Bogacki & Shampine 1989, Appl. Math. Lett. 2(4)",
};

/// Dormand–Prince 5(4) pair, FSAL, with Shampine's fourth-order continuous extension
/// (Dormand & Prince 1980; Shampine 1986; coefficients as in Hairer, Nørsett & Wanner 1993,
/// Section II.5 and II.6).
pub const DOPRI5: Tableau = Tableau {
    name: "dopri5",
    order: 5,
    error_order: Some(4),
    c: &[0.0, 0.2, 0.3, 0.8, 8.0 / 9.0, 1.0, 1.0],
    a: &[
        &[],
        &[0.2],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[
            19372.0 / 6561.0,
            -25360.0 / 2187.0,
            64448.0 / 6561.0,
            -212.0 / 729.0,
        ],
        &[
            9017.0 / 3168.0,
            -355.0 / 33.0,
            46732.0 / 5247.0,
            49.0 / 176.0,
            -5103.0 / 18656.0,
        ],
        &[
            35.0 / 384.0,
            0.0,
            500.0 / 1113.0,
            125.0 / 192.0,
            -2187.0 / 6784.0,
            11.0 / 84.0,
        ],
    ],
    b: &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
        0.0,
    ],
    // b̂ = (5179/57600, 0, 7571/16695, 393/640, −92097/339200, 187/2100, 1/40)
    b_err: Some(&[
        71.0 / 57600.0,
        0.0,
        -71.0 / 16695.0,
        71.0 / 1920.0,
        -17253.0 / 339200.0,
        22.0 / 525.0,
        -1.0 / 40.0,
    ]),
    fsal: true,
    // b_i(θ) = δ_i0 θ + (3b_i − 2δ_i0 − δ_i6 + d_i) θ² + (−2b_i + δ_i0 + δ_i6 − 2d_i) θ³ + d_i θ⁴,
    // the expansion of Hairer's `contd5` with Shampine's (1986) d coefficients.
    dense: Some(&[
        &[
            1.0,
            -8048581381.0 / 2820520608.0,
            8663915743.0 / 2820520608.0,
            -12715105075.0 / 11282082432.0,
        ],
        &[0.0, 0.0, 0.0, 0.0],
        &[
            0.0,
            131558114200.0 / 32700410799.0,
            -68118460800.0 / 10900136933.0,
            87487479700.0 / 32700410799.0,
        ],
        &[
            0.0,
            -1754552775.0 / 470086768.0,
            14199869525.0 / 1410260304.0,
            -10690763975.0 / 1880347072.0,
        ],
        &[
            0.0,
            127303824393.0 / 49829197408.0,
            -318862633887.0 / 49829197408.0,
            701980252875.0 / 199316789632.0,
        ],
        &[
            0.0,
            -282668133.0 / 205662961.0,
            2019193451.0 / 616988883.0,
            -1453857185.0 / 822651844.0,
        ],
        &[
            0.0,
            40617522.0 / 29380423.0,
            -110615467.0 / 29380423.0,
            69997945.0 / 29380423.0,
        ],
    ]),
    citation: "Dormand & Prince 1980, J. Comput. Appl. Math. 6(1); dense output Shampine 1986",
};

/// Tsitouras 5(4) pair, FSAL (Tsitouras 2011, Comput. Math. Appl. 62(2)). The last error
/// weight is −1/66, the sign that makes the error weights sum to zero.
pub const TSIT5: Tableau = Tableau {
    name: "tsit5",
    order: 5,
    error_order: Some(4),
    c: &[0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0],
    a: &[
        &[],
        &[0.161],
        &[-0.008480655492356989, 0.335480655492357],
        &[2.8971530571054935, -6.359448489975075, 4.3622954328695815],
        &[
            5.325864828439257,
            -11.748883564062828,
            7.4955393428898365,
            -0.09249506636175525,
        ],
        &[
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ],
        &[
            0.09646076681806523,
            0.01,
            0.4798896504144996,
            1.379008574103742,
            -3.290069515436081,
            2.324710524099774,
        ],
    ],
    b: &[
        0.09646076681806523,
        0.01,
        0.4798896504144996,
        1.379008574103742,
        -3.290069515436081,
        2.324710524099774,
        0.0,
    ],
    b_err: Some(&[
        0.001780011052226,
        0.000816434459657,
        -0.007880878010262,
        0.144711007173263,
        -0.582357165452555,
        0.458082105929187,
        -1.0 / 66.0,
    ]),
    fsal: true,
    dense: None,
    citation: "Tsitouras 2011, Comput. Math. Appl. 62(2):770-775",
};

/// Dormand–Prince 8th-order method of DOP853 (Prince & Dormand 1981; Hairer, Nørsett &
/// Wanner 1993, Section II.10, code DOP853), 12 stages, with its fifth-order embedded error
/// estimate `b − b̂₅` (the `er` coefficients of DOP853). The third-order estimate DOP853
/// combines it with is not used; the pair is controlled as an 8(5) pair.
pub const DOPRI8: Tableau = Tableau {
    name: "dopri8",
    order: 8,
    error_order: Some(5),
    c: &[
        0.0,
        0.526001519587677318785587544488e-01,
        0.789002279381515978178381316732e-01,
        0.118350341907227396726757197510e+00,
        0.281649658092772603273242802490e+00,
        0.333333333333333333333333333333e+00,
        0.25e+00,
        0.307692307692307692307692307692e+00,
        0.651282051282051282051282051282e+00,
        0.6e+00,
        0.857142857142857142857142857142e+00,
        1.0,
    ],
    a: &[
        &[],
        &[5.26001519587677318785587544488e-2],
        &[
            1.97250569845378994544595329183e-2,
            5.91751709536136983633785987549e-2,
        ],
        &[
            2.95875854768068491816892993775e-2,
            0.0,
            8.87627564304205475450678981324e-2,
        ],
        &[
            2.41365134159266685502369798665e-1,
            0.0,
            -8.84549479328286085344864962717e-1,
            9.24834003261792003115737966543e-1,
        ],
        &[
            3.7037037037037037037037037037e-2,
            0.0,
            0.0,
            1.70828608729473871279604482173e-1,
            1.25467687566822425016691814123e-1,
        ],
        &[
            3.7109375e-2,
            0.0,
            0.0,
            1.70252211019544039314978060272e-1,
            6.02165389804559606850219397283e-2,
            -1.7578125e-2,
        ],
        &[
            3.70920001185047927108779319836e-2,
            0.0,
            0.0,
            1.70383925712239993810214054705e-1,
            1.07262030446373284651809199168e-1,
            -1.53194377486244017527936158236e-2,
            8.27378916381402288758473766002e-3,
        ],
        &[
            6.24110958716075717114429577812e-1,
            0.0,
            0.0,
            -3.36089262944694129406857109825e0,
            -8.68219346841726006818189891453e-1,
            2.75920996994467083049415600797e1,
            2.01540675504778934086186788979e1,
            -4.34898841810699588477366255144e1,
        ],
        &[
            4.77662536438264365890433908527e-1,
            0.0,
            0.0,
            -2.48811461997166764192642586468e0,
            -5.90290826836842996371446475743e-1,
            2.12300514481811942347288949897e1,
            1.52792336328824235832596922938e1,
            -3.32882109689848629194453265587e1,
            -2.03312017085086261358222928593e-2,
        ],
        &[
            -9.3714243008598732571704021658e-1,
            0.0,
            0.0,
            5.18637242884406370830023853209e0,
            1.09143734899672957818500254654e0,
            -8.14978701074692612513997267357e0,
            -1.85200656599969598641566180701e1,
            2.27394870993505042818970056734e1,
            2.49360555267965238987089396762e0,
            -3.0467644718982195003823669022e0,
        ],
        &[
            2.27331014751653820792359768449e0,
            0.0,
            0.0,
            -1.05344954667372501984066689879e1,
            -2.00087205822486249909675718444e0,
            -1.79589318631187989172765950534e1,
            2.79488845294199600508499808837e1,
            -2.85899827713502369474065508674e0,
            -8.87285693353062954433549289258e0,
            1.23605671757943030647266201528e1,
            6.43392746015763530355970484046e-1,
        ],
    ],
    b: &[
        5.42937341165687622380535766363e-2,
        0.0,
        0.0,
        0.0,
        0.0,
        4.45031289275240888144113950566e0,
        1.89151789931450038304281599044e0,
        -5.8012039600105847814672114227e0,
        3.1116436695781989440891606237e-1,
        -1.52160949662516078556178806805e-1,
        2.01365400804030348374776537501e-1,
        4.47106157277725905176885569043e-2,
    ],
    b_err: Some(&[
        0.1312004499419488073250102996e-01,
        0.0,
        0.0,
        0.0,
        0.0,
        -0.1225156446376204440720569753e+01,
        -0.4957589496572501915214079952e+00,
        0.1664377182454986536961530415e+01,
        -0.3503288487499736816886487290e+00,
        0.3341791187130174790297318841e+00,
        0.8192320648511571246570742613e-01,
        -0.2235530786388629525884427845e-01,
    ]),
    fsal: false,
    dense: None,
    citation:
        "Prince & Dormand 1981, J. Comput. Appl. Math. 7(1); Hairer, Nørsett & Wanner 1993 (DOP853)",
};

/// A singly diagonally implicit Runge–Kutta method (all diagonal entries `γ`), stiffly
/// accurate (its last row of `a` is `b`, so `f(t₁, y₁)` is the last stage).
///
/// The error estimate is `h (err_f0 f(t₀, y₀) + Σ b_err_i k_i)`, filtered through
/// `(I − hγJ)⁻¹` so that it stays bounded on stiff components (Hairer & Wanner 1996,
/// Section IV.8).
#[derive(Clone, Copy, Debug)]
pub struct SdirkTableau {
    /// Short name ("sdirk2").
    pub name: &'static str,
    /// Order of the method.
    pub order: usize,
    /// The error estimate behaves like `h^(error_order + 1)`: the companion formula it
    /// compares with has order `error_order` at least.
    pub error_order: usize,
    /// The diagonal entry.
    pub gamma: f64,
    /// Nodes.
    pub c: &'static [f64],
    /// Lower-triangular coefficients including the diagonal: row `i` has `i + 1` entries.
    pub a: &'static [&'static [f64]],
    /// Weights (equal to the last row of `a`).
    pub b: &'static [f64],
    /// Weight of `f(t₀, y₀)` in the error estimate.
    pub err_f0: f64,
    /// Weights of the stages in the error estimate (with `err_f0` they sum to zero).
    pub b_err: &'static [f64],
    /// Where the numbers come from.
    pub citation: &'static str,
}

/// Implicit (backward) Euler, L-stable, order 1. Its error estimate `h (f₁ − f₀) / 2` is
/// the difference to the trapezoidal rule.
pub const IMPLICIT_EULER: SdirkTableau = SdirkTableau {
    name: "implicit_euler",
    order: 1,
    error_order: 1,
    gamma: 1.0,
    c: &[1.0],
    a: &[&[1.0]],
    b: &[1.0],
    err_f0: -0.5,
    b_err: &[0.5],
    citation: "Euler 1768; error estimate as in Hairer & Wanner 1996, Section IV.8",
};

/// `γ = 1 − 1/√2`.
const G2: f64 = 0.29289321881345247559915563789515;

/// Alexander's two-stage SDIRK method, L-stable and stiffly accurate, order 2, with
/// `γ = 1 − 1/√2` (Alexander 1977, SIAM J. Numer. Anal. 14(6); Hairer & Wanner 1996,
/// Section IV.6). Its error estimate `h (−(1−γ) f₀ + k₁ − γ k₂)` is the difference to a
/// second-order companion formula using `f₀` (it satisfies `Σ e = 0` and `Σ e c = 0`), so
/// it behaves like `h³` and the step size grows like that of a second-order method.
pub const SDIRK2: SdirkTableau = SdirkTableau {
    name: "sdirk2",
    order: 2,
    error_order: 2,
    gamma: G2,
    c: &[G2, 1.0],
    a: &[&[G2], &[1.0 - G2, G2]],
    b: &[1.0 - G2, G2],
    err_f0: -(1.0 - G2),
    b_err: &[1.0, -G2],
    citation: "Alexander 1977; Hairer & Wanner 1996",
};

// ------------------------------------------------------------------------------- validation

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
fn first_violation(a: &[Vec<f64>], b: &[f64], order: usize, tol: f64) -> Option<(usize, f64)> {
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

/// Refuses a claimed order that is too high to check (see [`MAX_CHECKED_ORDER`]).
fn check_claim(order: usize, name: &str, what: &str) -> Result<(), OdeError> {
    check(order <= MAX_CHECKED_ORDER, name, || {
        format!(
            "claimed {what} {order} is above {MAX_CHECKED_ORDER}, the highest order whose \
             conditions can be checked (see tableau::MAX_CHECKED_ORDER)"
        )
    })
}

/// Checks the order conditions of `b` up to `order`, naming the first order that fails.
fn check_order(
    a: &[Vec<f64>],
    b: &[f64],
    order: usize,
    tol: f64,
    name: &str,
    what: &str,
) -> Result<(), OdeError> {
    match first_violation(a, b, order, tol) {
        None => Ok(()),
        Some((k, r)) => check(false, name, || {
            format!("{what} {order} conditions violated by {r:e} (trees of order {k})")
        }),
    }
}

fn check(ok: bool, name: &str, what: impl FnOnce() -> String) -> Result<(), OdeError> {
    if ok {
        Ok(())
    } else {
        Err(OdeError::InvalidTableau(format!("{name}: {}", what())))
    }
}

impl Tableau {
    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.c.len()
    }

    /// FSAL as the numbers say: the last row of `a` equals `b` (and `b_s = 0`) and the last
    /// node is 1.
    pub fn fsal_from_numbers(&self) -> bool {
        let s = self.stages();
        s >= 2
            && self.c[s - 1] == 1.0
            && self.b[s - 1] == 0.0
            && self.a[s - 1].iter().zip(self.b).all(|(x, y)| x == y)
    }

    /// The coefficient matrix as full rows (zeros above the diagonal).
    pub fn full_a(&self) -> Vec<Vec<f64>> {
        self.a.iter().map(|r| r.to_vec()).collect()
    }

    /// The embedded weights `b̂ = b − b_err`, if any.
    pub fn b_hat(&self) -> Option<Vec<f64>> {
        self.b_err
            .map(|e| self.b.iter().zip(e).map(|(b, e)| b - e).collect())
    }

    /// Checks the tableau to absolute tolerance `tol`: shapes, `Σ_j a_ij = c_i`, `Σ b = 1`,
    /// `Σ b_err = 0`, the FSAL flag, the dense output (`b_i(1) = b_i`), and the order
    /// conditions of all rooted trees up to `order` for `b` and up to `error_order` for `b̂`.
    ///
    /// A claimed `order` or `error_order` above [`MAX_CHECKED_ORDER`] is an error, found before
    /// any work. The order conditions are checked one order at a time and the first order that
    /// fails is reported, so an overstated claim fails as fast as the true order allows.
    pub fn validate(&self, tol: f64) -> Result<(), OdeError> {
        let n = self.name;
        let s = self.stages();
        check_claim(self.order, n, "order")?;
        if let Some(q) = self.error_order {
            check_claim(q, n, "error order")?;
        }
        check(self.a.len() == s && self.b.len() == s, n, || {
            format!(
                "{s} nodes but {} rows of a and {} weights",
                self.a.len(),
                self.b.len()
            )
        })?;
        for (i, row) in self.a.iter().enumerate() {
            check(row.len() == i, n, || {
                format!("row {i} of a has {} entries, expected {i}", row.len())
            })?;
            let sum: f64 = row.iter().sum();
            check((sum - self.c[i]).abs() <= tol, n, || {
                format!("row {i}: Σa = {sum} but c = {}", self.c[i])
            })?;
        }
        let sb: f64 = self.b.iter().sum();
        check((sb - 1.0).abs() <= tol, n, || format!("Σb = {sb}"))?;
        if let Some(e) = self.b_err {
            check(e.len() == s, n, || {
                format!("{} error weights for {s} stages", e.len())
            })?;
            let se: f64 = e.iter().sum();
            check(se.abs() <= tol, n, || format!("Σb_err = {se}"))?;
            check(self.error_order.is_some(), n, || {
                "error weights without an error order".into()
            })?;
        }
        check(self.fsal == self.fsal_from_numbers(), n, || {
            format!(
                "fsal flag {} but the numbers say {}",
                self.fsal,
                self.fsal_from_numbers()
            )
        })?;
        if let Some(d) = self.dense {
            check(d.len() == s, n, || {
                format!("{} dense rows for {s} stages", d.len())
            })?;
            for (i, row) in d.iter().enumerate() {
                let at1: f64 = row.iter().sum();
                check((at1 - self.b[i]).abs() <= tol, n, || {
                    format!("dense b_{i}(1) = {at1} but b_{i} = {}", self.b[i])
                })?;
            }
        }
        let a = self.full_a();
        check_order(&a, self.b, self.order, tol, n, "order")?;
        if let (Some(bh), Some(q)) = (self.b_hat(), self.error_order) {
            check_order(&a, &bh, q, tol, n, "embedded order")?;
        }
        Ok(())
    }
}

impl SdirkTableau {
    /// Number of stages.
    pub fn stages(&self) -> usize {
        self.c.len()
    }

    /// Checks the tableau to absolute tolerance `tol`: shapes, constant diagonal `γ`,
    /// `Σ_j a_ij = c_i`, stiff accuracy (last row = `b`, last node 1), zero-sum error
    /// weights, and the order conditions up to `order` (and those of the companion formula up
    /// to `error_order`). Claimed orders above [`MAX_CHECKED_ORDER`] are an error.
    pub fn validate(&self, tol: f64) -> Result<(), OdeError> {
        let n = self.name;
        let s = self.stages();
        check_claim(self.order, n, "order")?;
        check_claim(self.error_order, n, "error order")?;
        check(
            self.a.len() == s && self.b.len() == s && self.b_err.len() == s,
            n,
            || "inconsistent lengths".into(),
        )?;
        for (i, row) in self.a.iter().enumerate() {
            check(row.len() == i + 1, n, || {
                format!("row {i} has {} entries, expected {}", row.len(), i + 1)
            })?;
            check(row[i] == self.gamma, n, || {
                format!("diagonal entry {i} is {} not γ = {}", row[i], self.gamma)
            })?;
            let sum: f64 = row.iter().sum();
            check((sum - self.c[i]).abs() <= tol, n, || {
                format!("row {i}: Σa = {sum} but c = {}", self.c[i])
            })?;
        }
        check(self.c[s - 1] == 1.0 && self.a[s - 1] == self.b, n, || {
            "not stiffly accurate".into()
        })?;
        let sb: f64 = self.b.iter().sum();
        check((sb - 1.0).abs() <= tol, n, || format!("Σb = {sb}"))?;
        let se: f64 = self.err_f0 + self.b_err.iter().sum::<f64>();
        check(se.abs() <= tol, n, || format!("error weights sum to {se}"))?;
        let a: Vec<Vec<f64>> = self.a.iter().map(|r| r.to_vec()).collect();
        check_order(&a, self.b, self.order, tol, n, "order")?;
        // The companion formula ŷ = y₀ + h (−err_f0 f₀ + Σ (b_i − b_err_i) k_i), as a tableau
        // with f₀ as an extra explicit first stage, must have order `error_order` at least.
        let mut aug = vec![vec![0.0]];
        aug.extend(self.a.iter().map(|r| {
            std::iter::once(0.0)
                .chain(r.iter().copied())
                .collect::<Vec<f64>>()
        }));
        let mut bh = vec![-self.err_f0];
        bh.extend(self.b.iter().zip(self.b_err).map(|(b, e)| b - e));
        match first_violation(&aug, &bh, self.error_order, tol) {
            None => Ok(()),
            Some((k, r)) => check(false, n, || {
                format!(
                    "error estimate is not O(h^{}) (companion residual {r:e} at order {k})",
                    self.error_order + 1
                )
            }),
        }
    }
}
