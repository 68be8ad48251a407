//! OT-Flow (Onken, Wu Fung, Li & Ruthotto 2021, "OT-Flow: Fast and Accurate Continuous
//! Normalizing Flows via Optimal Transport", AAAI): a continuous normalizing flow whose vector
//! field is the negative gradient of a scalar potential Φ(x, t), trained with the transport
//! cost and the residual of the Hamilton–Jacobi–Bellman equation as extra terms.
//!
//! # The model
//!
//! With s = (x, t) ∈ R^{d+1} (one row per sample),
//!
//! - Φ(s) = wᵀN(s) + ½ sᵀ(AᵀA)s + cᵀs + c₀, A ∈ R^{r×(d+1)}, r = min(10, d+1);
//! - N is a ResNet of M layers of width m: u₀ = σ(K₀s + b₀), uᵢ = uᵢ₋₁ + h σ(Kᵢuᵢ₋₁ + bᵢ),
//!   h = 1/(M−1), N(s) = u_{M−1}, with σ(x) = log(eˣ + e⁻ˣ) (so σ' = tanh, σ'' = 1 − tanh²).
//!
//! Data x sits at t = 0 and the standard normal at t = T. The state `[x, ℓ, L, R]` follows
//!
//! - dx/dt = −∇ₓΦ, dℓ/dt = −tr ∇²ₓΦ (so log p(x) = log N(z(T)) + ℓ(T)),
//! - dL/dt = ½‖∇ₓΦ‖² (transport cost), dR/dt = |−∂ₜΦ + ½‖∇ₓΦ‖²| (HJB residual; the
//!   HJB equation of the potential is −∂ₜΦ + ½‖∇ₓΦ‖² = 0),
//!
//! and the loss is α_L·L + α_C·C + α_R·R (batch means) with C = −log N(z(T)) − ℓ(T), the
//! negative log-likelihood of the data.
//!
//! # Exact gradient and trace at O(d) cost
//!
//! [`OtPotential`] computes ∇Φ (all d+1 components) by the backward recursion through the
//! ResNet written out with tape operations, and tr ∇²ₓΦ by the forward recursion of the
//! paper: with gᵢ = ∂Φ/∂uᵢ (g_{M−1} = w, gᵢ₋₁ = gᵢ + h Kᵢᵀ(σ'(zᵢ) ⊙ gᵢ)),
//! the Hessian of a composition of affine maps and elementwise nonlinearities is a sum over
//! the nonlinearities of (adjoint at the output) · σ'' · (Jacobian of the pre-activation)ᵀ(…),
//! so
//!
//! tr ∇²ₓΦ = (σ''(z₀) ⊙ g₀)ᵀ((K₀ᴱ)² 1) + h Σᵢ₌₁^{M−1} (σ''(zᵢ) ⊙ gᵢ)ᵀ((KᵢJᵢ₋₁)² 1) + tr((AᵀA)ᴱ),
//!
//! where K₀ᴱ is the first d columns of K₀, J₀ = diag(σ'(z₀))K₀ᴱ and Jᵢ = Jᵢ₋₁ + h
//! diag(σ'(zᵢ))KᵢJᵢ₋₁ (the Jacobians ∂uᵢ/∂x, m × d per sample) and the squares are
//! elementwise. Everything is tape operations, so both are differentiable in the weights and
//! in x (training backpropagates through them). The [`Potential`] trait's default methods
//! give the same quantities by automatic differentiation (one VJP for ∇Φ, d forward-over-
//! reverse products for the Laplacian), the reference in tests and the path for user-defined
//! potentials.
//!
//! ```
//! use autodiff::{Tape, Tensor};
//! use flows::otflow::{autodiff_gradient_laplacian, OtPotential, Potential};
//! use flows::Params;
//! use rand::SeedableRng;
//!
//! let mut rng = rand_pcg::Pcg64::seed_from_u64(0);
//! let mut params = Params::<f64>::new();
//! let net = OtPotential::new(&mut params, "otflow", 3, 8, 2, &mut rng);
//! let tape = Tape::new();
//! let p = params.vars(&tape);
//! let x = tape.var(Tensor::randn(5, 3, &mut rng));
//! let t = tape.full(5, 1, 0.3);
//! let (g, lap) = net.gradient_laplacian(&p, x, t);          // structured, O(d)
//! let (g_ad, lap_ad) = autodiff_gradient_laplacian(&net, &p, x, t); // by autodiff
//! assert!(g.grad_x.value().max_abs_diff(&g_ad.grad_x.value()) < 1e-12);
//! assert!(lap.value().max_abs_diff(&lap_ad.value()) < 1e-12);
//! ```

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use autodiff::{Element, Tape, Tensor, Var};
use ode::{odeint, Adjoint, Dynamics, Method, OdeStats, Options, Times};
use rand::Rng;

use crate::nn::uniform_init;
use crate::params::Params;
use crate::trace::{exact_divergence, hutchinson_divergence, Probe};

/// ∇Φ split into its space and time parts.
#[derive(Clone, Copy, Debug)]
pub struct PotentialGrad<'t, E: Element> {
    /// ∇ₓΦ per row (`n × d`).
    pub grad_x: Var<'t, E>,
    /// ∂ₜΦ per row (`n × 1`).
    pub dt: Var<'t, E>,
}

/// A scalar potential Φ(x, t) on batches: `x` is `n × d`, `t` is `n × 1` (the time of each
/// row; in a flow all rows share it) and Φ is `n × 1`, row `i` depending only on row `i`.
///
/// `p` is the potential's own slice of parameter variables (see [`OtFlow::from_potential`]).
/// The default [`gradient`](Potential::gradient) and
/// [`gradient_laplacian`](Potential::gradient_laplacian) differentiate [`phi`](Potential::phi)
/// on the tape ([`autodiff_gradient`], [`autodiff_gradient_laplacian`]); an implementation
/// with structure to exploit overrides them (as [`OtPotential`] does). Either way the results
/// must be recorded with tape operations, so that training can differentiate them again.
pub trait Potential<E: Element> {
    /// Φ(x, t) per row (`n × 1`).
    fn phi<'t>(&self, p: &[Var<'t, E>], x: Var<'t, E>, t: Var<'t, E>) -> Var<'t, E>;

    /// ∇ₓΦ and ∂ₜΦ per row.
    fn gradient<'t>(&self, p: &[Var<'t, E>], x: Var<'t, E>, t: Var<'t, E>) -> PotentialGrad<'t, E> {
        autodiff_gradient(self, p, x, t)
    }

    /// ∇ₓΦ, ∂ₜΦ and the Laplacian tr ∇²ₓΦ (`n × 1`, over the space components only).
    fn gradient_laplacian<'t>(
        &self,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        t: Var<'t, E>,
    ) -> (PotentialGrad<'t, E>, Var<'t, E>) {
        autodiff_gradient_laplacian(self, p, x, t)
    }
}

fn check_xt<E: Element>(op: &str, x: Var<'_, E>, t: Var<'_, E>) -> (usize, usize) {
    let (n, d) = x.shape();
    assert_eq!(
        t.shape(),
        (n, 1),
        "{op}: x is {n}x{d}, so t must be {n}x1, got {:?}",
        t.shape()
    );
    (n, d)
}

fn grad_impl<'t, E: Element, P: Potential<E> + ?Sized>(
    pot: &P,
    p: &[Var<'t, E>],
    x: Var<'t, E>,
    t: Var<'t, E>,
) -> (Var<'t, E>, PotentialGrad<'t, E>) {
    let (n, _) = check_xt("autodiff_gradient", x, t);
    let tape = x.tape();
    let phi = pot.phi(p, x, t);
    assert_eq!(
        phi.shape(),
        (n, 1),
        "Potential::phi: expected {n}x1, got {:?}",
        phi.shape()
    );
    let ones = tape.full(n, 1, E::ONE);
    let g = tape
        .vjp(&[phi], &[ones], &[x, t])
        .expect("vjp of a potential written with tape operations");
    (
        x,
        PotentialGrad {
            grad_x: g[0],
            dt: g[1],
        },
    )
}

/// ∇ₓΦ and ∂ₜΦ by one vector-Jacobian product of Φ with a ones cotangent (rows are
/// independent), recorded on the tape (differentiable again).
pub fn autodiff_gradient<'t, E: Element, P: Potential<E> + ?Sized>(
    pot: &P,
    p: &[Var<'t, E>],
    x: Var<'t, E>,
    t: Var<'t, E>,
) -> PotentialGrad<'t, E> {
    grad_impl(pot, p, x, t).1
}

/// ∇Φ by [`autodiff_gradient`] and tr ∇²ₓΦ by `d` forward-over-reverse products: the JVP of the
/// recorded ∇ₓΦ along eⱼ (column j of every row set to 1) gives column j of each row's Hessian,
/// whose j-th entry is summed. Recorded on the tape.
pub fn autodiff_gradient_laplacian<'t, E: Element, P: Potential<E> + ?Sized>(
    pot: &P,
    p: &[Var<'t, E>],
    x: Var<'t, E>,
    t: Var<'t, E>,
) -> (PotentialGrad<'t, E>, Var<'t, E>) {
    let (x, g) = grad_impl(pot, p, x, t);
    let tape = x.tape();
    let (n, d) = x.shape();
    let mut lap: Option<Var<'t, E>> = None;
    for j in 0..d {
        let e = tape.constant(Tensor::from_fn(
            n,
            d,
            |_, c| if c == j { E::ONE } else { E::ZERO },
        ));
        let hj = tape
            .jvp(&[g.grad_x], &[x], &[e])
            .expect("jvp of a recorded gradient")[0];
        let hjj = hj.slice_cols(j, j + 1);
        lap = Some(match lap {
            None => hjj,
            Some(a) => a + hjj,
        });
    }
    (g, lap.unwrap_or_else(|| tape.zeros(n, 1)))
}

/// The OT-Flow potential Φ(s) = wᵀN(s) + ½ sᵀ(AᵀA)s + cᵀs + c₀ (see the [module docs](self)),
/// with exact structured ∇Φ and tr ∇²ₓΦ.
///
/// Parameters, added to the store under `{prefix}.…` in this order:
///
/// | name | shape (memory) | file | init |
/// |---|---|---|---|
/// | `w` | 1 × m | `[m]` | ones |
/// | `A` | r × (d+1) | `[r, d+1]` | uniform ±1/√(d+1), times 0.1 |
/// | `c` | 1 × (d+1) | `[d+1]` | zeros |
/// | `c0` | 1 × 1 | `[]` | zero |
/// | `K0` | m × (d+1) | `[m, d+1]` | uniform ±1/√(d+1) (PyTorch `nn.Linear`) |
/// | `b0` | 1 × m | `[m]` | uniform ±1/√(d+1) |
/// | `K{i}`, i = 1..M−1 | m × m | `[m, m]` | uniform ±1/√m, times 0.1 |
/// | `b{i}` | 1 × m | `[m]` | uniform ±1/√m, times 0.1 |
///
/// The quadratic part starts small (A cannot start at zero: its gradient ½∂‖As‖²/∂A = Assᵀ
/// would vanish), the linear part at zero, and the residual layers near the identity map.
/// Weights are applied as `s Kᵀ` (PyTorch layout). Indices are kept relative to the
/// potential's [`param_range`](OtPotential::param_range): hand it that slice of the variables
/// (or the whole list when the store holds only this potential).
#[derive(Clone, Debug)]
pub struct OtPotential {
    d: usize,
    m: usize,
    layers: usize,
    rank: usize,
    w: usize,
    a: usize,
    c: usize,
    c0: usize,
    k: Vec<usize>,
    b: Vec<usize>,
    range: Range<usize>,
}

impl OtPotential {
    /// A potential for `d`-dimensional data with a ResNet of `layers` (M ≥ 1) layers of width
    /// `width` (m), registering its parameters in `params` under `prefix`.
    pub fn new<E: Element, R: Rng + ?Sized>(
        params: &mut Params<E>,
        prefix: &str,
        d: usize,
        width: usize,
        layers: usize,
        rng: &mut R,
    ) -> Self {
        assert!(
            d > 0 && width > 0 && layers > 0,
            "OtPotential: d, width and layers must be positive"
        );
        let start = params.len();
        let m = width;
        let rank = (d + 1).min(10);
        let small = |mut t: Tensor<E>| {
            t.scale(E::from_f64(0.1));
            t
        };
        let rel = |i: usize| i - start;
        let w = rel(params.add_with_file_shape(format!("{prefix}.w"), Tensor::ones(1, m), vec![m]));
        let a = rel(params.add(
            format!("{prefix}.A"),
            small(uniform_init(rank, d + 1, d + 1, rng)),
        ));
        let c = rel(params.add_with_file_shape(
            format!("{prefix}.c"),
            Tensor::zeros(1, d + 1),
            vec![d + 1],
        ));
        let c0 =
            rel(params.add_with_file_shape(format!("{prefix}.c0"), Tensor::zeros(1, 1), vec![]));
        let mut k = Vec::with_capacity(layers);
        let mut b = Vec::with_capacity(layers);
        for i in 0..layers {
            let fan_in = if i == 0 { d + 1 } else { m };
            let (ki, bi) = (
                uniform_init(m, fan_in, fan_in, rng),
                uniform_init(1, m, fan_in, rng),
            );
            let (ki, bi) = if i == 0 {
                (ki, bi)
            } else {
                (small(ki), small(bi))
            };
            k.push(rel(params.add(format!("{prefix}.K{i}"), ki)));
            b.push(rel(params.add_with_file_shape(
                format!("{prefix}.b{i}"),
                bi,
                vec![m],
            )));
        }
        OtPotential {
            d,
            m,
            layers,
            rank,
            w,
            a,
            c,
            c0,
            k,
            b,
            range: start..params.len(),
        }
    }

    /// The store range of this potential's parameters.
    pub fn param_range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// Data dimension d.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// ResNet width m.
    pub fn width(&self) -> usize {
        self.m
    }

    /// Number of ResNet layers M.
    pub fn num_layers(&self) -> usize {
        self.layers
    }

    /// Rank r of the quadratic term.
    pub fn rank(&self) -> usize {
        self.rank
    }

    fn step<E: Element>(&self) -> E {
        if self.layers > 1 {
            E::from_f64(1.0 / (self.layers - 1) as f64)
        } else {
            E::ONE
        }
    }

    fn check_params<E: Element>(&self, p: &[Var<'_, E>]) {
        assert!(
            p.len() >= self.range.len(),
            "OtPotential: got {} parameter variables, needs its {} (pass &p[param_range()])",
            p.len(),
            self.range.len()
        );
        let (r, c) = p[self.k[0]].shape();
        assert_eq!(
            (r, c),
            (self.m, self.d + 1),
            "OtPotential: K0 is {r}x{c}, expected {}x{} (wrong parameter slice?)",
            self.m,
            self.d + 1
        );
    }

    /// s = [x, t] and the check of both.
    fn input<'t, E: Element>(&self, x: Var<'t, E>, t: Var<'t, E>) -> Var<'t, E> {
        let (_, d) = check_xt("OtPotential", x, t);
        assert_eq!(
            d, self.d,
            "OtPotential: x has {d} columns, the potential {}",
            self.d
        );
        x.tape().concat_cols(&[x, t])
    }

    /// The structured gradient, and the Laplacian when `laplacian` is set.
    fn structured<'t, E: Element>(
        &self,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        t: Var<'t, E>,
        laplacian: bool,
    ) -> (PotentialGrad<'t, E>, Option<Var<'t, E>>) {
        self.check_params(p);
        let s = self.input(x, t);
        let d = self.d;
        let nl = self.layers;
        let h: E = self.step();
        let (kw, bw) = (|i: usize| p[self.k[i]], |i: usize| p[self.b[i]]);
        // Forward: pre-activations zᵢ (only their tanh is needed) and the states uᵢ₋₁.
        let mut th: Vec<Var<'t, E>> = Vec::with_capacity(nl);
        let z0 = s.linear(kw(0), bw(0));
        th.push(z0.tanh());
        let mut u = if nl > 1 { Some(sigma(z0)) } else { None };
        for i in 1..nl {
            let ui = u.expect("set for every layer but the last");
            let zi = ui.linear(kw(i), bw(i));
            th.push(zi.tanh());
            u = (i + 1 < nl).then(|| ui + sigma(zi) * h);
        }
        // Backward: gᵢ = ∂(wᵀu_{M−1})/∂uᵢ, g_{M−1} = w (a 1 × m row, broadcast).
        let mut g: Vec<Var<'t, E>> = vec![p[self.w]; nl];
        for i in (1..nl).rev() {
            g[i - 1] = g[i] + (th[i] * g[i]).matmul(kw(i)) * h;
        }
        let a = p[self.a];
        let grad_s = (th[0] * g[0]).matmul(kw(0)) + s.matmul_t(a).matmul(a) + p[self.c];
        let grad = PotentialGrad {
            grad_x: grad_s.slice_cols(0, d),
            dt: grad_s.slice_cols(d, d + 1),
        };
        if !laplacian {
            return (grad, None);
        }
        // Trace: layer 0, then the residual layers with the forward Jacobian recursion, kept
        // as d tangents Jᵢ⁽ʲ⁾ = ∂uᵢ/∂xⱼ (n × m each).
        let k0x = kw(0).slice_cols(0, d);
        let dd = |thi: Var<'t, E>| thi.square().affine(-E::ONE, E::ONE); // σ'' = 1 − tanh²
        let mut lap = (dd(th[0]) * g[0]).matmul(k0x.square().sum_axis(1));
        if nl > 1 {
            let mut jac: Vec<Var<'t, E>> = (0..d)
                .map(|j| th[0] * k0x.slice_cols(j, j + 1).t())
                .collect();
            for i in 1..nl {
                let last = i + 1 == nl;
                let mut acc: Option<Var<'t, E>> = None;
                for jj in jac.iter_mut() {
                    let pj = jj.matmul_t(kw(i)); // rows of (Kᵢ Jᵢ₋₁)ᵀ, column j
                    let sq = pj.square();
                    acc = Some(match acc {
                        None => sq,
                        Some(a) => a + sq,
                    });
                    if !last {
                        *jj = *jj + th[i] * pj * h;
                    }
                }
                let acc = acc.expect("d > 0");
                lap = lap + (dd(th[i]) * g[i] * acc).sum_axis(1) * h;
            }
        }
        lap = lap + a.slice_cols(0, d).square().sum();
        (grad, Some(lap))
    }
}

/// OT-Flow's activation σ(x) = log(eˣ + e⁻ˣ) = ln cosh x + ln 2.
fn sigma<E: Element>(x: Var<'_, E>) -> Var<'_, E> {
    x.log_cosh() + E::from_f64(std::f64::consts::LN_2)
}

impl<E: Element> Potential<E> for OtPotential {
    fn phi<'t>(&self, p: &[Var<'t, E>], x: Var<'t, E>, t: Var<'t, E>) -> Var<'t, E> {
        self.check_params(p);
        let s = self.input(x, t);
        let h: E = self.step();
        let mut u = sigma(s.linear(p[self.k[0]], p[self.b[0]]));
        for i in 1..self.layers {
            u = u + sigma(u.linear(p[self.k[i]], p[self.b[i]])) * h;
        }
        let quad = s.matmul_t(p[self.a]).row_sq_norm() * E::from_f64(0.5);
        u.matmul_t(p[self.w]) + quad + s.matmul_t(p[self.c]) + p[self.c0]
    }

    fn gradient<'t>(&self, p: &[Var<'t, E>], x: Var<'t, E>, t: Var<'t, E>) -> PotentialGrad<'t, E> {
        self.structured(p, x, t, false).0
    }

    fn gradient_laplacian<'t>(
        &self,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        t: Var<'t, E>,
    ) -> (PotentialGrad<'t, E>, Var<'t, E>) {
        let (g, lap) = self.structured(p, x, t, true);
        (g, lap.expect("requested"))
    }
}

/// How the dynamics obtain tr ∇²ₓΦ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtTrace {
    /// The potential's own [`Potential::gradient_laplacian`]: the structured O(d) recursion
    /// for [`OtPotential`], autodiff for a potential that does not override it.
    Exact,
    /// [`autodiff_gradient_laplacian`]: d forward-over-reverse products on the tape.
    Autodiff,
    /// The exact divergence of −∇ₓΦ (structured gradient) by d vector-Jacobian products
    /// ([`exact_divergence`]).
    DivergenceVjp,
    /// Hutchinson's estimator of the divergence of −∇ₓΦ with one probe per solve
    /// ([`hutchinson_divergence`]); used in training only, evaluation is exact.
    Hutchinson(Probe),
}

/// The OT-Flow dynamics: `[x, ℓ, L, R]` (`full`) or `[x, ℓ]`.
struct OtDynamics<E: Element> {
    potential: Rc<dyn Potential<E>>,
    trace: OtTrace,
    probes: Vec<Tensor<E>>,
    full: bool,
}

impl<E: Element> Dynamics<E> for OtDynamics<E> {
    fn eval<'t>(
        &self,
        _tape: &'t Tape<E>,
        t: Var<'t, E>,
        z: &[Var<'t, E>],
        p: &[Var<'t, E>],
    ) -> Vec<Var<'t, E>> {
        let x = z[0];
        let (n, _) = x.shape();
        let tc = t.broadcast_to(n, 1);
        let pot = &*self.potential;
        let (grad, dl) = match self.trace {
            OtTrace::Exact => {
                let (g, lap) = pot.gradient_laplacian(p, x, tc);
                (g, -lap)
            }
            OtTrace::Autodiff => {
                let (g, lap) = autodiff_gradient_laplacian(pot, p, x, tc);
                (g, -lap)
            }
            OtTrace::DivergenceVjp | OtTrace::Hutchinson(_) => {
                let g = pot.gradient(p, x, tc);
                let v = -g.grad_x;
                let div = if self.probes.is_empty() {
                    exact_divergence(v, x)
                } else {
                    hutchinson_divergence(v, x, &self.probes).0
                };
                (g, div)
            }
        };
        let v = -grad.grad_x;
        if !self.full {
            return vec![v, dl];
        }
        let kinetic = grad.grad_x.row_sq_norm() * E::from_f64(0.5);
        let hjb = (kinetic - grad.dt).abs();
        vec![v, dl, kinetic, hjb]
    }
}

/// Which solver options a pass uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtMode {
    /// Training options and trace.
    Train,
    /// Evaluation options, exact trace.
    Eval,
}

/// The OT-Flow objective of a batch, recorded on the tape.
pub struct OtLoss<'t, E: Element> {
    /// α_L·L + α_C·C + α_R·R (`1 × 1`).
    pub loss: Var<'t, E>,
    /// L: mean transport cost ∫₀ᵀ ½‖∇ₓΦ‖² dt (`1 × 1`).
    pub transport: Var<'t, E>,
    /// C: mean negative log-likelihood −log N(z(T)) − ℓ(T) (`1 × 1`).
    pub nll: Var<'t, E>,
    /// R: mean HJB residual ∫₀ᵀ |−∂ₜΦ + ½‖∇ₓΦ‖²| dt (`1 × 1`).
    pub hjb: Var<'t, E>,
    /// log p(x) per row (`n × 1`).
    pub log_prob: Var<'t, E>,
    /// z(T) (`n × d`).
    pub z: Var<'t, E>,
    /// Statistics of the solve.
    pub stats: OdeStats,
}

/// The OT-Flow objective's parts as numbers (see [`OtFlow::evaluate`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OtMetrics {
    /// α_L·L + α_C·C + α_R·R.
    pub loss: f64,
    /// Transport cost L.
    pub transport: f64,
    /// Negative log-likelihood C (nats per sample).
    pub nll: f64,
    /// HJB residual R.
    pub hjb: f64,
}

/// An OT-Flow: a potential, the weights α = (α_L, α_C, α_R) of the loss, the end time T and the
/// solver settings.
///
/// Defaults: α = (1, 100, 5) (the paper's toy setting), T = 1, exact trace, training with 8
/// fixed RK4 steps and direct backpropagation through them
/// (`Options::fixed(Method::Rk4, 8).adjoint(Adjoint::Direct)`, as the paper does), evaluation
/// with 32 RK4 steps. The ℓ, L and R channels are always left out of error control (they do
/// not feed back), which matters for adaptive solvers and the adjoint.
#[derive(Clone)]
pub struct OtFlow<E: Element> {
    potential: Rc<dyn Potential<E>>,
    range: Range<usize>,
    alpha: [f64; 3],
    end_time: E,
    trace: OtTrace,
    train_opts: Options<E>,
    eval_opts: Options<E>,
    rng: RefCell<rand_pcg::Pcg64>,
}

impl<E: Element> OtFlow<E> {
    /// The flow of an [`OtPotential`].
    pub fn new(net: OtPotential) -> Self {
        let range = net.param_range();
        Self::from_potential(Rc::new(net), range)
    }

    /// The flow of any potential whose parameters are `range` of the store (it receives
    /// exactly that slice of the variables; `0..0` for a potential without parameters).
    pub fn from_potential(potential: Rc<dyn Potential<E>>, range: Range<usize>) -> Self {
        OtFlow {
            potential,
            range,
            alpha: [1.0, 100.0, 5.0],
            end_time: E::ONE,
            trace: OtTrace::Exact,
            train_opts: Options::fixed(Method::Rk4, 8).adjoint(Adjoint::Direct),
            eval_opts: Options::fixed(Method::Rk4, 32).adjoint(Adjoint::Backsolve),
            rng: RefCell::new(<rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(0)),
        }
    }

    /// The weights (α_L, α_C, α_R) of transport cost, negative log-likelihood and HJB residual.
    pub fn alpha(mut self, alpha: [f64; 3]) -> Self {
        self.alpha = alpha;
        self
    }

    /// The end time T.
    pub fn end_time(mut self, t: E) -> Self {
        self.end_time = t;
        self
    }

    /// How the training dynamics compute the Laplacian (evaluation always uses
    /// [`OtTrace::Exact`]).
    pub fn trace(mut self, trace: OtTrace) -> Self {
        self.trace = trace;
        self
    }

    /// Solver and adjoint for training.
    pub fn train_opts(mut self, opts: Options<E>) -> Self {
        self.train_opts = opts;
        self
    }

    /// Solver for evaluation and sampling.
    pub fn eval_opts(mut self, opts: Options<E>) -> Self {
        self.eval_opts = opts;
        self
    }

    /// Seeds the generator of Hutchinson probes.
    pub fn seed(self, seed: u64) -> Self {
        *self.rng.borrow_mut() = <rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(seed);
        self
    }

    /// The potential.
    pub fn potential(&self) -> &Rc<dyn Potential<E>> {
        &self.potential
    }

    /// The store range of the potential's parameters.
    pub fn param_range(&self) -> Range<usize> {
        self.range.clone()
    }

    /// The weights α.
    pub fn alpha_values(&self) -> [f64; 3] {
        self.alpha
    }

    fn dynamics(&self, trace: OtTrace, probes: Vec<Tensor<E>>, full: bool) -> Rc<dyn Dynamics<E>> {
        Rc::new(OtDynamics {
            potential: self.potential.clone(),
            trace,
            probes,
            full,
        })
    }

    /// The OT-Flow loss of data `x` (`n × d`), recorded on `tape`: solves `[x, ℓ, L, R]` from
    /// `[x, 0, 0, 0]` at t = 0 to T (`p` = every parameter variable of the store).
    pub fn loss<'t>(
        &self,
        tape: &'t Tape<E>,
        p: &[Var<'t, E>],
        x: Var<'t, E>,
        mode: OtMode,
    ) -> autodiff::Result<OtLoss<'t, E>> {
        let (n, d) = x.shape();
        let (opts, trace) = match mode {
            OtMode::Train => (&self.train_opts, self.trace),
            OtMode::Eval => (&self.eval_opts, OtTrace::Exact),
        };
        let probes = match trace {
            OtTrace::Hutchinson(Probe::Gaussian) => {
                vec![Tensor::randn(n, d, &mut *self.rng.borrow_mut())]
            }
            OtTrace::Hutchinson(Probe::Rademacher) => {
                vec![Tensor::rademacher(n, d, &mut *self.rng.borrow_mut())]
            }
            _ => Vec::new(),
        };
        let opts = opts.clone().error_channels(vec![true, false, false, false]);
        let f = self.dynamics(trace, probes, true);
        let zero = || tape.zeros(n, 1);
        let sol = odeint(
            tape,
            &f,
            &[x, zero(), zero(), zero()],
            &p[self.range.clone()],
            Times::Values(vec![E::ZERO, self.end_time]),
            &opts,
        )?;
        let end = sol.last();
        let (z, ell, l, r) = (end[0], end[1], end[2], end[3]);
        let log_prob = z.log_normal() + ell;
        let nll = -log_prob.mean();
        let transport = l.mean();
        let hjb = r.mean();
        let [al, ac, ar] = self.alpha.map(E::from_f64);
        let loss = transport * al + nll * ac + hjb * ar;
        Ok(OtLoss {
            loss,
            transport,
            nll,
            hjb,
            log_prob,
            z,
            stats: sol.stats,
        })
    }

    /// L, C, R and the loss of data `x` with the evaluation solver and the exact trace, as
    /// numbers.
    pub fn evaluate(&self, params: &Params<E>, x: &Tensor<E>) -> autodiff::Result<OtMetrics> {
        let tape = Tape::new();
        let p = tape.no_grad(|| params.vars(&tape));
        let xv = tape.constant(x.clone());
        let out = self.loss(&tape, &p, xv, OtMode::Eval)?;
        Ok(OtMetrics {
            loss: out.loss.item().to_f64(),
            transport: out.transport.item().to_f64(),
            nll: out.nll.item().to_f64(),
            hjb: out.hjb.item().to_f64(),
        })
    }

    /// log p(x) per row (`n × 1`) on plain values: the `[x, ℓ]` system from 0 to T with the
    /// evaluation solver and the exact trace.
    pub fn log_prob_values(
        &self,
        params: &Params<E>,
        x: &Tensor<E>,
    ) -> autodiff::Result<Tensor<E>> {
        let tape = Tape::new();
        let p = tape.no_grad(|| params.vars(&tape));
        let (n, _) = x.shape();
        let f = self.dynamics(OtTrace::Exact, Vec::new(), false);
        let xv = tape.constant(x.clone());
        let sol = odeint(
            &tape,
            &f,
            &[xv, tape.zeros(n, 1)],
            &p[self.range.clone()],
            Times::Values(vec![E::ZERO, self.end_time]),
            &self.eval_opts.clone().error_channels(vec![true, false]),
        )?;
        let end = sol.last();
        Ok((end[0].log_normal() + end[1]).value())
    }

    /// Draws `n` samples in `d` dimensions: z ~ N(0, I) integrated backwards from T to 0.
    /// Returns `(x, log p(x))`.
    pub fn sample<R: Rng + ?Sized>(
        &self,
        params: &Params<E>,
        n: usize,
        d: usize,
        rng: &mut R,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        self.transport_back(params, Tensor::randn(n, d, rng))
    }

    /// Maps base points `z` (`n × d`, at t = T) back to data space (t = 0) with dx/dt = −∇ₓΦ,
    /// returning the points and their log-densities log p(x) = log N(z) − ℓ(0), where ℓ
    /// starts at 0 at T (so ℓ(0) = −∫₀ᵀ dℓ/dt).
    pub fn transport_back(
        &self,
        params: &Params<E>,
        z: Tensor<E>,
    ) -> autodiff::Result<(Tensor<E>, Tensor<E>)> {
        let tape = Tape::new();
        let p = tape.no_grad(|| params.vars(&tape));
        let (n, _) = z.shape();
        let f = self.dynamics(OtTrace::Exact, Vec::new(), false);
        let zv = tape.constant(z);
        let sol = odeint(
            &tape,
            &f,
            &[zv, tape.zeros(n, 1)],
            &p[self.range.clone()],
            Times::Values(vec![self.end_time, E::ZERO]),
            &self.eval_opts.clone().error_channels(vec![true, false]),
        )?;
        let end = sol.last();
        let logp = zv.log_normal() - end[1];
        Ok((end[0].value(), logp.value()))
    }
}
