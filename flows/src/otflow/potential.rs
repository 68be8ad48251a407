//! The scalar potential Φ(x, t) of OT-Flow: the [`Potential`] extension point with its
//! autodiff-derived gradient and Laplacian, and the structured [`OtPotential`] whose exact ∇Φ
//! and tr ∇²ₓΦ cost O(d) (the recursions are derived in the [module docs](crate::otflow)).

use std::ops::Range;

use autodiff::{Element, Tensor, Var};

use crate::nn::Init;
use crate::params::Params;

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
/// `p` is the potential's own slice of parameter variables (see [`OtFlow::from_potential`](crate::otflow::OtFlow::from_potential)).
/// The default [`gradient`](Potential::gradient) and
/// [`gradient_laplacian`](Potential::gradient_laplacian) differentiate [`phi`](Potential::phi)
/// on the tape ([`autodiff_gradient`], [`autodiff_gradient_laplacian`]); an implementation
/// with structure to exploit overrides them (as [`OtPotential`] does). Either way the results
/// must be recorded with tape operations, so that training can differentiate them again.
///
/// Arguments come in the order of [`ode::Dynamics::eval`] and
/// [`VectorField::eval`](crate::flow::VectorField::eval): time, state, parameters; results
/// are [`autodiff::Result`]s, so the `vjp`/`jvp` of the autodiff-derived defaults propagate.
pub trait Potential<E: Element> {
    /// Φ(x, t) per row (`n × 1`).
    fn phi<'t>(
        &self,
        t: Var<'t, E>,
        x: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>>;

    /// ∇ₓΦ and ∂ₜΦ per row.
    fn gradient<'t>(
        &self,
        t: Var<'t, E>,
        x: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<PotentialGrad<'t, E>> {
        autodiff_gradient(self, t, x, p)
    }

    /// ∇ₓΦ, ∂ₜΦ and the Laplacian tr ∇²ₓΦ (`n × 1`, over the space components only).
    fn gradient_laplacian<'t>(
        &self,
        t: Var<'t, E>,
        x: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<(PotentialGrad<'t, E>, Var<'t, E>)> {
        autodiff_gradient_laplacian(self, t, x, p)
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
    t: Var<'t, E>,
    x: Var<'t, E>,
    p: &[Var<'t, E>],
) -> autodiff::Result<PotentialGrad<'t, E>> {
    let (n, _) = check_xt("autodiff_gradient", x, t);
    let tape = x.tape();
    let phi = pot.phi(t, x, p)?;
    assert_eq!(
        phi.shape(),
        (n, 1),
        "Potential::phi: expected {n}x1, got {:?}",
        phi.shape()
    );
    let ones = tape.full(n, 1, E::ONE);
    let g = tape.vjp(&[phi], &[ones], &[x, t])?;
    Ok(PotentialGrad {
        grad_x: g[0],
        dt: g[1],
    })
}

/// ∇ₓΦ and ∂ₜΦ by one vector-Jacobian product of Φ with a ones cotangent (rows are
/// independent), recorded on the tape (differentiable again).
pub fn autodiff_gradient<'t, E: Element, P: Potential<E> + ?Sized>(
    pot: &P,
    t: Var<'t, E>,
    x: Var<'t, E>,
    p: &[Var<'t, E>],
) -> autodiff::Result<PotentialGrad<'t, E>> {
    grad_impl(pot, t, x, p)
}

/// ∇Φ by [`autodiff_gradient`] and tr ∇²ₓΦ by `d` forward-over-reverse products: the JVP of the
/// recorded ∇ₓΦ along eⱼ (column j of every row set to 1) gives column j of each row's Hessian,
/// whose j-th entry is summed. Recorded on the tape.
pub fn autodiff_gradient_laplacian<'t, E: Element, P: Potential<E> + ?Sized>(
    pot: &P,
    t: Var<'t, E>,
    x: Var<'t, E>,
    p: &[Var<'t, E>],
) -> autodiff::Result<(PotentialGrad<'t, E>, Var<'t, E>)> {
    let g = grad_impl(pot, t, x, p)?;
    let tape = x.tape();
    let (n, d) = x.shape();
    let mut lap: Option<Var<'t, E>> = None;
    for j in 0..d {
        let e = tape.constant(Tensor::from_fn(
            n,
            d,
            |_, c| if c == j { E::ONE } else { E::ZERO },
        ));
        let hj = tape.jvp(&[g.grad_x], &[x], &[e])?[0];
        let hjj = hj.slice_cols(j, j + 1);
        lap = Some(match lap {
            None => hjj,
            Some(a) => a + hjj,
        });
    }
    Ok((g, lap.unwrap_or_else(|| tape.zeros(n, 1))))
}

/// The OT-Flow potential Φ(s) = wᵀN(s) + ½ sᵀ(AᵀA)s + cᵀs + c₀ (see the [module docs](crate::otflow)),
/// with exact structured ∇Φ and tr ∇²ₓΦ.
///
/// Parameters, added to the store under `{prefix}.…` in this order:
///
/// | name | symbol | shape (memory) | file | init |
/// |---|---|---|---|---|
/// | `A` | A | r × (d+1) | `[r, d+1]` | uniform ±1/√(d+1), times 0.1 |
/// | `c.weight` | cᵀ | 1 × (d+1) | `[1, d+1]` | zeros |
/// | `c.bias` | c₀ | 1 × 1 | `[1]` | zero |
/// | `w.weight` | wᵀ | 1 × m | `[1, m]` | ones |
/// | `N.layers.0.weight` | K₀ | m × (d+1) | `[m, d+1]` | uniform ±1/√(d+1) (PyTorch `nn.Linear`) |
/// | `N.layers.0.bias` | b₀ | 1 × m | `[m]` | uniform ±1/√(d+1) |
/// | `N.layers.{i}.weight`, i = 1..M−1 | Kᵢ | m × m | `[m, m]` | uniform ±1/√m, times 0.1 |
/// | `N.layers.{i}.bias` | bᵢ | 1 × m | `[m]` | uniform ±1/√m, times 0.1 |
///
/// These are the `state_dict` keys and shapes of the `Phi` module of Onken et al.'s OT-Flow
/// code (`A` a parameter, `c = nn.Linear(d+1, 1)`, `w = nn.Linear(m, 1, bias=False)`,
/// `N` a ResNet whose `layers` are `nn.Linear`s), so with an empty `prefix` its checkpoints
/// load by name ([`Params::load_into`]); build the potential with [`Zeros`](crate::nn::Zeros)
/// as the initialiser to load without a random generator.
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
    /// An empty `prefix` gives the bare names of the OT-Flow code (`A`, `c.weight`, ...);
    /// `rng` is a random generator or [`Zeros`](crate::nn::Zeros) (see [`Init`]).
    pub fn new<E: Element, R: Init + ?Sized>(
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
        let name = |key: &str| {
            if prefix.is_empty() {
                key.to_string()
            } else {
                format!("{prefix}.{key}")
            }
        };
        // Registered in the order of the OT-Flow module's state_dict.
        let a = rel(params.add(name("A"), small(rng.uniform(rank, d + 1, d + 1))));
        let c = rel(params.add(name("c.weight"), Tensor::zeros(1, d + 1)));
        let c0 = rel(params.add(name("c.bias"), Tensor::zeros(1, 1)));
        let w = rel(params.add(name("w.weight"), Tensor::ones(1, m)));
        let mut k = Vec::with_capacity(layers);
        let mut b = Vec::with_capacity(layers);
        for i in 0..layers {
            let fan_in = if i == 0 { d + 1 } else { m };
            let (ki, bi) = (rng.uniform(m, fan_in, fan_in), rng.uniform(1, m, fan_in));
            let (ki, bi) = if i == 0 {
                (ki, bi)
            } else {
                (small(ki), small(bi))
            };
            k.push(rel(params.add(name(&format!("N.layers.{i}.weight")), ki)));
            b.push(rel(params.add(name(&format!("N.layers.{i}.bias")), bi)));
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
        t: Var<'t, E>,
        x: Var<'t, E>,
        p: &[Var<'t, E>],
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
    fn phi<'t>(
        &self,
        t: Var<'t, E>,
        x: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<Var<'t, E>> {
        self.check_params(p);
        let s = self.input(x, t);
        let h: E = self.step();
        let mut u = sigma(s.linear(p[self.k[0]], p[self.b[0]]));
        for i in 1..self.layers {
            u = u + sigma(u.linear(p[self.k[i]], p[self.b[i]])) * h;
        }
        let quad = s.matmul_t(p[self.a]).row_sq_norm() * E::from_f64(0.5);
        Ok(u.matmul_t(p[self.w]) + quad + s.matmul_t(p[self.c]) + p[self.c0])
    }

    fn gradient<'t>(
        &self,
        t: Var<'t, E>,
        x: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<PotentialGrad<'t, E>> {
        Ok(self.structured(t, x, p, false).0)
    }

    fn gradient_laplacian<'t>(
        &self,
        t: Var<'t, E>,
        x: Var<'t, E>,
        p: &[Var<'t, E>],
    ) -> autodiff::Result<(PotentialGrad<'t, E>, Var<'t, E>)> {
        let (g, lap) = self.structured(t, x, p, true);
        Ok((g, lap.expect("requested")))
    }
}
