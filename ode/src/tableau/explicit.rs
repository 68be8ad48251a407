//! The explicit methods up to fifth order: Euler, midpoint, Heun, RK4, Bogacki–Shampine 3(2),
//! Dormand–Prince 5(4) and Tsitouras 5(4), both with their continuous extensions.
#![allow(clippy::excessive_precision)] // published digits are kept verbatim for checking

use super::Tableau;

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
    dense_stages: &[],
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
    dense_stages: &[],
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
    dense_stages: &[],
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
    dense_stages: &[],
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
    dense_stages: &[],
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
    dense_stages: &[],
    citation: "Dormand & Prince 1980, J. Comput. Appl. Math. 6(1); dense output Shampine 1986",
};

/// `k θ (θ − r)(θ² + pθ + q)` as the coefficients of `θ, θ², θ³, θ⁴`.
const fn linear_quadratic(k: f64, r: f64, p: f64, q: f64) -> [f64; 4] {
    [-k * r * q, k * (q - r * p), k * (p - r), k]
}

/// `k θ² (θ² + pθ + q)` as the coefficients of `θ, θ², θ³, θ⁴`.
const fn square_quadratic(k: f64, p: f64, q: f64) -> [f64; 4] {
    [0.0, k * q, k * p, k]
}

/// `k θ² (θ − r₁)(θ − r₂)` as the coefficients of `θ, θ², θ³, θ⁴`.
const fn square_roots(k: f64, r1: f64, r2: f64) -> [f64; 4] {
    [0.0, k * r1 * r2, -k * (r1 + r2), k]
}

/// Tsitouras' fourth-order continuous extension in the factored form of the paper (Tsitouras
/// 2011, Section 4), expanded into powers of `θ` at compile time.
const TSIT5_DENSE: [[f64; 4]; 7] = [
    linear_quadratic(
        -1.0530884977290216,
        1.3299890189751412,
        -1.4364028541716351,
        0.7139816917074209,
    ),
    square_quadratic(0.1017, -2.1966568338249754, 1.2949852507374631),
    square_quadratic(
        2.490627285651252793,
        -2.38535645472061657,
        1.57803468208092486,
    ),
    square_roots(
        -16.54810288924490272,
        1.21712927295533244,
        0.61620406037800089,
    ),
    square_roots(
        47.37952196281928122,
        1.203071208372362603,
        0.658047292653547382,
    ),
    square_roots(-34.87065786149660974, 1.2, 0.666666666666666667),
    square_roots(2.5, 1.0, 0.6),
];

/// Tsitouras 5(4) pair, FSAL, with its own fourth-order continuous extension (Tsitouras 2011,
/// Comput. Math. Appl. 62(2)). The last error weight is −1/66, the sign that makes the error
/// weights sum to zero.
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
    dense: Some(&[
        &TSIT5_DENSE[0],
        &TSIT5_DENSE[1],
        &TSIT5_DENSE[2],
        &TSIT5_DENSE[3],
        &TSIT5_DENSE[4],
        &TSIT5_DENSE[5],
        &TSIT5_DENSE[6],
    ]),
    dense_stages: &[],
    citation: "Tsitouras 2011, Comput. Math. Appl. 62(2):770-775",
};
