//! Small dense and matrix-free linear solvers for the Newton iterations of implicit methods.
//!
//! Everything works on flat `f64` vectors whatever the element type of the state.

/// An LU factorisation with partial pivoting of a dense `n × n` matrix (row-major), done in
/// place (Golub & Van Loan 2013, Algorithm 3.4.1).
pub(crate) struct Lu {
    n: usize,
    lu: Vec<f64>,
    piv: Vec<usize>,
}

impl Lu {
    /// Workspace for `n × n` systems.
    pub(crate) fn new(n: usize) -> Self {
        Lu {
            n,
            lu: vec![0.0; n * n],
            piv: vec![0; n],
        }
    }

    /// The matrix to factor; fill it, then call [`factor`](Lu::factor).
    pub(crate) fn matrix_mut(&mut self) -> &mut [f64] {
        &mut self.lu
    }

    /// Factors the matrix in place. Returns `false` if it is (numerically) singular or not
    /// finite.
    pub(crate) fn factor(&mut self) -> bool {
        let n = self.n;
        let a = &mut self.lu;
        for k in 0..n {
            let mut p = k;
            let mut best = a[k * n + k].abs();
            for i in k + 1..n {
                let v = a[i * n + k].abs();
                if v > best {
                    best = v;
                    p = i;
                }
            }
            if !(best.is_finite() && best > 0.0) {
                return false;
            }
            self.piv[k] = p;
            if p != k {
                for j in 0..n {
                    a.swap(k * n + j, p * n + j);
                }
            }
            let d = a[k * n + k];
            for i in k + 1..n {
                let l = a[i * n + k] / d;
                a[i * n + k] = l;
                if l != 0.0 {
                    for j in k + 1..n {
                        a[i * n + j] -= l * a[k * n + j];
                    }
                }
            }
        }
        true
    }

    /// Solves `A x = b` in place (`b` becomes `x`) with the factored matrix.
    pub(crate) fn solve(&self, b: &mut [f64]) {
        let n = self.n;
        let a = &self.lu;
        for k in 0..n {
            b.swap(k, self.piv[k]);
        }
        for i in 0..n {
            let mut s = b[i];
            for j in 0..i {
                s -= a[i * n + j] * b[j];
            }
            b[i] = s;
        }
        for i in (0..n).rev() {
            let mut s = b[i];
            for j in i + 1..n {
                s -= a[i * n + j] * b[j];
            }
            b[i] = s / a[i * n + i];
        }
    }
}

/// Restarted GMRES(m) with modified Gram–Schmidt and Givens rotations (Saad & Schultz 1986),
/// matrix-free: `matvec(v, out)` computes `out = A v`.
pub(crate) struct Gmres {
    n: usize,
    m: usize,
    v: Vec<f64>,
    h: Vec<f64>,
    cs: Vec<f64>,
    sn: Vec<f64>,
    g: Vec<f64>,
    w: Vec<f64>,
    r: Vec<f64>,
    y: Vec<f64>,
}

impl Gmres {
    /// Workspace for systems of size `n` with restart length `m`.
    pub(crate) fn new(n: usize, m: usize) -> Self {
        let m = m.min(n).max(1);
        Gmres {
            n,
            m,
            v: vec![0.0; n * (m + 1)],
            h: vec![0.0; (m + 1) * m],
            cs: vec![0.0; m],
            sn: vec![0.0; m],
            g: vec![0.0; m + 1],
            w: vec![0.0; n],
            r: vec![0.0; n],
            y: vec![0.0; m],
        }
    }

    /// Solves `A x = b` starting from `x = 0` until `‖b − A x‖ ≤ rtol ‖b‖` or `max_iter`
    /// matrix-vector products; `x` receives the best iterate. Returns the number of products.
    pub(crate) fn solve(
        &mut self,
        matvec: &mut dyn FnMut(&[f64], &mut [f64]),
        b: &[f64],
        x: &mut [f64],
        rtol: f64,
        max_iter: usize,
    ) -> usize {
        let (n, m) = (self.n, self.m);
        x.fill(0.0);
        let bnorm = norm2(b);
        if bnorm == 0.0 || !bnorm.is_finite() {
            return 0;
        }
        let target = rtol * bnorm;
        let mut products = 0;
        self.r.copy_from_slice(b);
        loop {
            let beta = norm2(&self.r);
            if beta <= target || products >= max_iter || !beta.is_finite() {
                return products;
            }
            for i in 0..n {
                self.v[i] = self.r[i] / beta;
            }
            self.g.fill(0.0);
            self.g[0] = beta;
            let mut k_done = 0;
            for k in 0..m {
                let (vk, rest) = self.v.split_at_mut((k + 1) * n);
                matvec(&vk[k * n..], &mut self.w);
                products += 1;
                for j in 0..=k {
                    let vj = &vk[j * n..(j + 1) * n];
                    let hjk = dot(&self.w, vj);
                    self.h[j * m + k] = hjk;
                    for (wi, vi) in self.w.iter_mut().zip(vj) {
                        *wi -= hjk * vi;
                    }
                }
                let hn = norm2(&self.w);
                self.h[(k + 1) * m + k] = hn;
                if hn > 0.0 {
                    for (out, wi) in rest[..n].iter_mut().zip(&self.w) {
                        *out = wi / hn;
                    }
                }
                for j in 0..k {
                    let (a, b) = (self.h[j * m + k], self.h[(j + 1) * m + k]);
                    self.h[j * m + k] = self.cs[j] * a + self.sn[j] * b;
                    self.h[(j + 1) * m + k] = -self.sn[j] * a + self.cs[j] * b;
                }
                let (a, b) = (self.h[k * m + k], self.h[(k + 1) * m + k]);
                let d = a.hypot(b);
                let (c, s) = if d == 0.0 { (1.0, 0.0) } else { (a / d, b / d) };
                self.cs[k] = c;
                self.sn[k] = s;
                self.h[k * m + k] = d;
                self.h[(k + 1) * m + k] = 0.0;
                self.g[k + 1] = -s * self.g[k];
                self.g[k] *= c;
                k_done = k + 1;
                if self.g[k + 1].abs() <= target || hn == 0.0 || products >= max_iter {
                    break;
                }
            }
            // Back-substitute the least-squares coefficients and update x.
            let y = &mut self.y[..k_done];
            for i in (0..k_done).rev() {
                let tail: f64 = self.h[i * m + i + 1..i * m + k_done]
                    .iter()
                    .zip(&y[i + 1..])
                    .map(|(h, y)| h * y)
                    .sum();
                let d = self.h[i * m + i];
                y[i] = if d != 0.0 {
                    (self.g[i] - tail) / d
                } else {
                    0.0
                };
            }
            for (j, yj) in y.iter().enumerate() {
                for (xi, vi) in x.iter_mut().zip(&self.v[j * n..(j + 1) * n]) {
                    *xi += yj * vi;
                }
            }
            // True residual for the restart.
            matvec(x, &mut self.w);
            products += 1;
            for ((r, bi), wi) in self.r.iter_mut().zip(b).zip(&self.w) {
                *r = bi - wi;
            }
        }
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub(crate) fn norm2(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(n: usize) -> Vec<f64> {
        // A diagonally dominant non-symmetric matrix with a zero on the diagonal (needs pivoting).
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = ((i * 7 + j * 3) % 5) as f64 - 2.0;
            }
            a[i * n + i] += 3.0 * n as f64;
        }
        a[0] = 0.0;
        a
    }

    fn mul(a: &[f64], x: &[f64], out: &mut [f64]) {
        let n = x.len();
        for i in 0..n {
            out[i] = dot(&a[i * n..(i + 1) * n], x);
        }
    }

    #[test]
    fn lu_and_gmres_solve_a_pivoting_system() {
        let n = 12;
        let a = matrix(n);
        let x_true: Vec<f64> = (0..n).map(|i| (i as f64).sin() + 0.5).collect();
        let mut b = vec![0.0; n];
        mul(&a, &x_true, &mut b);

        let mut lu = Lu::new(n);
        lu.matrix_mut().copy_from_slice(&a);
        assert!(lu.factor());
        let mut x = b.clone();
        lu.solve(&mut x);
        let err = x
            .iter()
            .zip(&x_true)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "LU error {err}");

        let mut g = Gmres::new(n, 5); // restarts needed
        let mut xg = vec![0.0; n];
        let used = g.solve(&mut |v, out| mul(&a, v, out), &b, &mut xg, 1e-12, 500);
        let err = xg
            .iter()
            .zip(&x_true)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-9, "GMRES error {err} after {used} products");
    }

    #[test]
    fn lu_reports_singular_matrices() {
        let mut lu = Lu::new(2);
        lu.matrix_mut().copy_from_slice(&[1.0, 2.0, 2.0, 4.0]);
        assert!(!lu.factor());
    }
}
