//! The evaluator: runs the dynamics on the solve's scratch tape and copies the results out, and
//! keeps one evaluation on the tape as a linearisation for Jacobian-vector products.

use autodiff::{Element, Tape, Tensor, Var};

use crate::dynamics::check_output;
use crate::error::DynamicsError;
use crate::{Dynamics, OdeError};

/// The state variables and outputs of an evaluation kept on the tape for Jacobian products.
pub(super) type Linearization<'t, E> = (Vec<Var<'t, E>>, Vec<Var<'t, E>>);

/// Evaluates the dynamics on the scratch tape and copies the results out.
///
/// When the dynamics return an error, the evaluator keeps the first one and writes NaN into
/// the output: every stepper already stops on a non-finite derivative (so no stepper needs an
/// error path of its own), and [`solve`](super::solve) then reports the kept error in place of
/// whatever the stepper returned, so a failed evaluation can never end in an `Ok`.
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
    /// Time of the recorded linearisation (named in a failing JVP's error).
    lin_t: E,
    error: Option<OdeError>,
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
            lin_t: E::ZERO,
            error: None,
        }
    }

    /// The first error the dynamics returned, if any (see the type's docs).
    pub(super) fn take_error(&mut self) -> Option<OdeError> {
        self.error.take()
    }

    fn fail(&mut self, t: E, e: autodiff::Error) {
        if self.error.is_none() {
            self.error = Some(OdeError::Dynamics {
                t: t.to_f64(),
                source: DynamicsError(std::sync::Arc::new(e)),
            });
        }
    }

    fn record(&mut self, t: E, y: &[Tensor<E>]) -> Option<Linearization<'t, E>> {
        let tv = self.tape.var(Tensor::scalar(t));
        let zv: Vec<Var<'t, E>> = y.iter().map(|c| self.tape.var_from(c)).collect();
        self.nfe += 1;
        match self.f.eval(self.tape, tv, &zv, &self.params) {
            Ok(fo) => {
                let shapes: Vec<(usize, usize)> = fo.iter().map(|v| v.shape()).collect();
                check_output(&shapes, &self.shapes);
                Some((zv, fo))
            }
            Err(e) => {
                self.fail(t, e);
                None
            }
        }
    }

    fn write(fo: Option<&[Var<'t, E>]>, out: &mut [Tensor<E>]) {
        match fo {
            Some(fo) => {
                for (o, v) in out.iter_mut().zip(fo) {
                    v.with_value(|val| o.copy_from(val));
                }
            }
            None => out.iter_mut().for_each(|o| o.fill(E::from_f64(f64::NAN))),
        }
    }

    /// `out = f(t, y)`.
    pub(super) fn eval(&mut self, t: E, y: &[Tensor<E>], out: &mut [Tensor<E>]) {
        self.tape.truncate(self.base);
        let rec = self.record(t, y);
        Self::write(rec.as_ref().map(|(_, fo)| fo.as_slice()), out);
        self.tape.truncate(self.base);
    }

    /// Records `f(t, y)` and keeps it on the tape for Jacobian products; writes `f(t, y)`.
    pub(super) fn linearize(&mut self, t: E, y: &[Tensor<E>], out: &mut [Tensor<E>]) {
        self.release();
        let rec = self.record(t, y);
        Self::write(rec.as_ref().map(|(_, fo)| fo.as_slice()), out);
        if rec.is_some() {
            self.lin = rec;
            self.lin_t = t;
            self.base = self.tape.len();
        }
    }

    pub(super) fn release(&mut self) {
        self.lin = None;
        self.base = self.mark;
        self.tape.truncate(self.mark);
    }

    /// `out = J v` (flattened) at the recorded linearisation point, by one forward sweep.
    pub(super) fn jvp(&mut self, v: &[f64], out: &mut [f64]) {
        let Some((zv, fo)) = self.lin.as_ref() else {
            // The linearisation failed (its error is kept): poison the product as well.
            out.fill(f64::NAN);
            return;
        };
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
        let res = match self.tape.jvp(fo, zv, &tangents) {
            Ok(res) => res,
            Err(e) => {
                self.fail(self.lin_t, e);
                out.fill(f64::NAN);
                self.tape.truncate(self.base);
                return;
            }
        };
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
