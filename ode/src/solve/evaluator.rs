//! The evaluator: runs the dynamics on the solve's scratch tape and copies the results out, and
//! keeps one evaluation on the tape as a linearisation for Jacobian-vector products.

use autodiff::{Element, Tape, Tensor, Var};

use crate::dynamics::check_output;
use crate::Dynamics;

/// The state variables and outputs of an evaluation kept on the tape for Jacobian products.
pub(super) type Linearization<'t, E> = (Vec<Var<'t, E>>, Vec<Var<'t, E>>);

/// Evaluates the dynamics on the scratch tape and copies the results out.
pub(super) struct Evaluator<'t, 'f, E: Element> {
    f: &'f dyn Dynamics<E>,
    tape: &'t Tape<E>,
    params: Vec<Var<'t, E>>,
    shapes: Vec<(usize, usize)>,
    /// Tape length to truncate back to after each evaluation (the parameters, plus a recorded
    /// linearisation while one is active).
    base: usize,
    mark: usize,
    lin: Option<Linearization<'t, E>>,
    pub(super) nfe: usize,
    pub(super) njvp: usize,
}

impl<'t, 'f, E: Element> Evaluator<'t, 'f, E> {
    pub(super) fn new(
        f: &'f dyn Dynamics<E>,
        tape: &'t Tape<E>,
        params: Vec<Var<'t, E>>,
        z0: &[Tensor<E>],
    ) -> Self {
        let mark = tape.len();
        Evaluator {
            f,
            tape,
            params,
            shapes: z0.iter().map(|z| z.shape()).collect(),
            base: mark,
            mark,
            lin: None,
            nfe: 0,
            njvp: 0,
        }
    }

    fn record(&mut self, t: E, y: &[Tensor<E>]) -> (Vec<Var<'t, E>>, Vec<Var<'t, E>>) {
        let tv = self.tape.var(Tensor::scalar(t));
        let zv: Vec<Var<'t, E>> = y.iter().map(|c| self.tape.var_from(c)).collect();
        let fo = self.f.eval(self.tape, tv, &zv, &self.params);
        let shapes: Vec<(usize, usize)> = fo.iter().map(|v| v.shape()).collect();
        check_output(&shapes, &self.shapes);
        self.nfe += 1;
        (zv, fo)
    }

    /// `out = f(t, y)`.
    pub(super) fn eval(&mut self, t: E, y: &[Tensor<E>], out: &mut [Tensor<E>]) {
        self.tape.truncate(self.base);
        let (_, fo) = self.record(t, y);
        for (o, v) in out.iter_mut().zip(&fo) {
            v.with_value(|val| o.copy_from(val));
        }
        self.tape.truncate(self.base);
    }

    /// Records `f(t, y)` and keeps it on the tape for Jacobian products; writes `f(t, y)`.
    pub(super) fn linearize(&mut self, t: E, y: &[Tensor<E>], out: &mut [Tensor<E>]) {
        self.release();
        let (zv, fo) = self.record(t, y);
        for (o, v) in out.iter_mut().zip(&fo) {
            v.with_value(|val| o.copy_from(val));
        }
        self.lin = Some((zv, fo));
        self.base = self.tape.len();
    }

    pub(super) fn release(&mut self) {
        self.lin = None;
        self.base = self.mark;
        self.tape.truncate(self.mark);
    }

    /// `out = J v` (flattened) at the recorded linearisation point, by one forward sweep.
    pub(super) fn jvp(&mut self, v: &[f64], out: &mut [f64]) {
        let (zv, fo) = self.lin.as_ref().expect("jvp without a linearisation");
        let mut off = 0;
        let tangents: Vec<Var<'t, E>> = self
            .shapes
            .iter()
            .map(|&(r, c)| {
                let t = Tensor::from_fn(r, c, |i, j| E::from_f64(v[off + i * c + j]));
                off += r * c;
                self.tape.constant(t)
            })
            .collect();
        let res = self
            .tape
            .jvp(fo, zv, &tangents)
            .expect("jvp of the dynamics failed");
        let mut off = 0;
        for r in &res {
            r.with_value(|val| {
                for (o, x) in out[off..off + val.len()].iter_mut().zip(val.as_slice()) {
                    *o = x.to_f64();
                }
                off += val.len();
            });
        }
        self.tape.truncate(self.base);
        self.njvp += 1;
    }
}
