//! Implicit steps on the tape: each Newton-solved stage recorded by the implicit function
//! theorem, so the replay differentiates the discrete solution exactly to first order.
//!
//! A stage solves `Y = base + hγ f(t_i, Y; θ)`. With `Y*` the converged value (a constant on
//! the tape) and `G(p) = base + hγ f(t_i, Y*; θ) − Y*` (zero in value, recorded with tape
//! ops), the stage is recorded as `Y = Y* + (I − hγJ)⁻¹ G`, `J = ∂f/∂z` at `Y*`. Its value is
//! `Y*`, and its derivative `(I − hγJ)⁻¹ ∂G/∂p` is the implicit function theorem's
//! `dY/dp`. The matrix is applied by [`LinearMap`], a custom op whose VJP and JVP are linear
//! maps again (the transpose and the map itself), so reverse and forward mode both pass.
//! Second derivatives through such a step treat `(I − hγJ)⁻¹` as constant and are therefore
//! not those of the discrete solution.

use std::rc::Rc;

use autodiff::{CustomOp, Element, Tensor, Var};

use super::combine;
use crate::odeint::node::eval_isolated;
use crate::solve::solve_stage;
use crate::tableau::Dirk;
use crate::Dynamics;

/// One step of the diagonally implicit method `d` recorded on the tape: returns `y₁` (the last
/// stage value: the methods are stiffly accurate). `theta` are the parameters' values.
pub(super) fn dirk_step<'t, E: Element>(
    f: &Rc<dyn Dynamics<E>>,
    d: &Dirk,
    t: Var<'t, E>,
    h: Var<'t, E>,
    z: &[Var<'t, E>],
    params: &[Var<'t, E>],
    theta: &[Tensor<E>],
) -> autodiff::Result<Vec<Var<'t, E>>> {
    let tape = t.tape();
    let hg = h * E::from_f64(d.gamma);
    let inv_hg = hg.powi(-1);
    let shapes: Vec<(usize, usize)> = z.iter().map(|v| v.shape()).collect();
    let mut ks: Vec<Vec<Var<'t, E>>> = Vec::with_capacity(d.stages());
    let mut y = z.to_vec();
    for i in 0..d.stages() {
        let ti = t + h * E::from_f64(d.c[i]);
        if !d.implicit_stage(i) {
            ks.push(eval_isolated(f, ti, z, params)?);
            continue;
        }
        let base = combine(z, h, &ks, &d.a[i][..i]);
        let base_vals: Vec<Tensor<E>> = base.iter().map(|v| v.value()).collect();
        let stage = solve_stage(&**f, theta, ti.item(), &base_vals, hg.item().to_f64())
            .map_err(|e| autodiff::Error::new("odeint (direct)", e))?;
        let ystar: Vec<Var<'t, E>> = stage.y.iter().map(|v| tape.constant_from(v)).collect();
        let fy = eval_isolated(f, ti, &ystar, params)?;
        let g: Vec<Var<'t, E>> = (0..z.len())
            .map(|c| base[c] + hg * fy[c] - ystar[c])
            .collect();
        let map = LinearMap {
            m: Rc::new(stage.inverse),
            shapes: shapes.clone(),
            transpose: false,
        };
        let corr = tape.custom(Rc::new(map), &g)?;
        y = (0..z.len()).map(|c| ystar[c] + corr[c]).collect();
        // k_i = (Y − base)/(hγ), as in the solve (it equals f(t_i, Y) to first order).
        ks.push((0..z.len()).map(|c| (y[c] - base[c]) * inv_hg).collect());
    }
    Ok(y)
}

/// `out = M x` (or `Mᵀ x`) for a constant dense `n × n` matrix `M` acting on a list of channels
/// flattened row-major and concatenated.
struct LinearMap {
    m: Rc<Vec<f64>>,
    shapes: Vec<(usize, usize)>,
    transpose: bool,
}

impl LinearMap {
    fn with_transpose(&self, transpose: bool) -> LinearMap {
        LinearMap {
            m: self.m.clone(),
            shapes: self.shapes.clone(),
            transpose,
        }
    }

    /// Applies the map to `vs` (`None` = zero) on their tape; all `None` gives all `None`.
    fn apply<'t, E: Element>(
        &self,
        transpose: bool,
        like: &[Var<'t, E>],
        vs: &[Option<Var<'t, E>>],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        if vs.iter().all(|v| v.is_none()) {
            return Ok(vec![None; self.shapes.len()]);
        }
        let tape = like[0].tape();
        let args: Vec<Var<'t, E>> = vs
            .iter()
            .zip(&self.shapes)
            .map(|(v, &(r, c))| v.unwrap_or_else(|| tape.zeros(r, c)))
            .collect();
        let out = tape.custom(Rc::new(self.with_transpose(transpose)), &args)?;
        Ok(out.into_iter().map(Some).collect())
    }
}

impl<E: Element> CustomOp<E> for LinearMap {
    fn name(&self) -> &str {
        "odeint (direct): implicit stage"
    }

    fn forward(&self, inputs: &[&Tensor<E>]) -> autodiff::Result<Vec<Tensor<E>>> {
        assert_eq!(
            inputs.len(),
            self.shapes.len(),
            "implicit stage: {} inputs for {} channels",
            inputs.len(),
            self.shapes.len()
        );
        let x: Vec<f64> = inputs
            .iter()
            .zip(&self.shapes)
            .flat_map(|(t, &s)| {
                assert_eq!(t.shape(), s, "implicit stage: channel shape");
                t.as_slice().iter().map(|v| v.to_f64())
            })
            .collect();
        let n = x.len();
        let y: Vec<f64> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        let mij = if self.transpose {
                            self.m[j * n + i]
                        } else {
                            self.m[i * n + j]
                        };
                        mij * x[j]
                    })
                    .sum()
            })
            .collect();
        let mut off = 0;
        Ok(self
            .shapes
            .iter()
            .map(|&(r, c)| {
                let t = Tensor::from_fn(r, c, |i, j| E::from_f64(y[off + i * c + j]));
                off += r * c;
                t
            })
            .collect())
    }

    fn vjp<'t>(
        &self,
        inputs: &[Var<'t, E>],
        _outputs: &[Var<'t, E>],
        cotangents: &[Option<Var<'t, E>>],
        _needs: &[bool],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        self.apply(!self.transpose, inputs, cotangents)
    }

    fn jvp<'t>(
        &self,
        inputs: &[Var<'t, E>],
        _outputs: &[Var<'t, E>],
        tangents: &[Option<Var<'t, E>>],
    ) -> autodiff::Result<Vec<Option<Var<'t, E>>>> {
        self.apply(self.transpose, inputs, tangents)
    }
}
