//! Kværnø's L-stable ESDIRK pairs 3(2) and 5(4) (Kværnø 2004, "Singly diagonally implicit
//! Runge–Kutta methods with an explicit first stage", BIT 44(3), 489–502), the stiff family that
//! diffrax calls `Kvaerno3` and `Kvaerno5`.
//!
//! Both are stiffly accurate and their second-last stage, also at `c = 1`, is the embedded
//! solution, so `b − b̂` is the last row of `a` minus the second-last one.
#![allow(clippy::excessive_precision)] // digits are kept to the precision they were derived to

use super::EsdirkTableau;

/// `γ` of Kvaerno 3(2): the root near 0.4359 of `6γ³ − 18γ² + 9γ − 1 = 0` (Kværnø quotes
/// 0.4358665215), here to full double precision so that the order conditions hold to rounding.
const G3: f64 = 0.435866521508458999416;

/// Kværnø's four-stage ESDIRK 3(2), L-stable and stiffly accurate (Kværnø 2004),
/// `c = (0, 2γ, 1, 1)`.
///
/// Every coefficient follows from `γ` (derived here, and checked by
/// [`EsdirkTableau::validate`]): the embedded second-order stage at `c = 1` needs
/// `a₂₁ = (1 − 2γ)/(4γ)`, `a₂₀ = 1 − γ − a₂₁`; the third-order weights with `b₃ = γ` solve
/// `Σb = 1`, `bᵀc = 1/2`, `bᵀc² = 1/3`, which give `b₁ = −1/((24γ − 12)γ)`,
/// `b₂ = 1/2 − γ − 2γ b₁`, `b₀ = 1 − γ − b₁ − b₂`, and `bᵀAc = 1/6` then holds for every `γ`.
/// The main formula's stability function vanishes at `−∞`; the embedded one's tends to
/// −0.957 (A- but not L-stable), hence the filtered error estimate.
pub const KVAERNO3: EsdirkTableau = EsdirkTableau {
    name: "kvaerno3",
    order: 3,
    error_order: 2,
    gamma: G3,
    c: &[0.0, 0.871733043016917998832, 1.0, 1.0],
    a: &[
        &[0.0],
        &[G3, G3],
        &[0.4905633884217805706285, 0.07357009006976042995551, G3],
        &[
            0.3088099699767465233482,
            1.490563388421780570628,
            -1.235239879906986093393,
            G3,
        ],
    ],
    b: &[
        0.3088099699767465233482,
        1.490563388421780570628,
        -1.235239879906986093393,
        G3,
    ],
    b_err: &[
        -0.18175341844503404728,
        1.41699329835202014067,
        -1.67110640141544509281,
        G3,
    ],
    citation: "Kværnø 2004, BIT 44(3); coefficients derived from γ",
};

/// `γ` of Kvaerno 5(4).
const G5: f64 = 0.26;

/// Kværnø's seven-stage ESDIRK 5(4), L-stable and stiffly accurate, `γ = 0.26`, with the
/// coefficients as published (Kværnø 2004); `c` are the row sums.
pub const KVAERNO5: EsdirkTableau = EsdirkTableau {
    name: "kvaerno5",
    order: 5,
    error_order: 4,
    gamma: G5,
    c: &[
        0.0,
        0.52,
        1.230333209967908,
        0.8957659843500759,
        0.43639360985864756,
        1.0,
        1.0,
    ],
    a: &[
        &[0.0],
        &[G5, G5],
        &[0.13, 0.84033320996790809, G5],
        &[
            0.22371961478320505,
            0.47675532319799699,
            -0.06470895363112615,
            G5,
        ],
        &[
            0.16648564323248321,
            0.10450018841591720,
            0.03631482272098715,
            -0.13090704451073998,
            G5,
        ],
        &[
            0.13855640231268224,
            0.0,
            -0.04245337201752043,
            0.02446657898003141,
            0.61943039072480676,
            G5,
        ],
        &[
            0.13659751177640291,
            0.0,
            -0.05496908796538376,
            -0.04118626728321046,
            0.62993304899016403,
            0.06962479448202728,
            G5,
        ],
    ],
    b: &[
        0.13659751177640291,
        0.0,
        -0.05496908796538376,
        -0.04118626728321046,
        0.62993304899016403,
        0.06962479448202728,
        G5,
    ],
    b_err: &[
        -0.00195889053627933,
        0.0,
        -0.01251571594786333,
        -0.06565284626324187,
        0.01050265826535727,
        -0.19037520551797272,
        G5,
    ],
    citation: "Kværnø 2004, BIT 44(3)",
};
