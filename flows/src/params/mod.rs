//! `Params`: an ordered store of named parameter tensors, saved and loaded as safetensors.
//!
//! # Naming scheme
//!
//! Names follow PyTorch's `state_dict` keys, so a checkpoint converts by name:
//! `{module path}.{parameter}`, e.g. `odefunc.layers.0._layer.weight`. The layers of
//! [`nn`](crate::nn) document the names they create.
//!
//! # Layout
//!
//! Tensors are stored with PyTorch's layout: a linear map's weight is `[out_features,
//! in_features]` (applied as `x Wᵀ`), its bias `[out_features]`. In memory every tensor is a
//! matrix, so a bias is a `1 × out` row; each entry remembers its *file shape*, which is what
//! [`Params::save`] writes. By default a `1 × n` tensor whose name ends in `bias` is written as
//! the 1-D shape `[n]`, everything else as 2-D `[rows, cols]`; [`Params::add_with_file_shape`]
//! chooses another (e.g. `[]` for a 0-D scalar). On load a tensor is accepted in its file shape
//! or as `[rows, cols]`; a `1 × n` entry also accepts `[n]` and a `1 × 1` entry `[]`.

mod safetensors;

use std::fmt;

use autodiff::{Element, Tape, Tensor, Var};
use indexmap::IndexMap;

use crate::FlowError;

/// Metadata key under which [`Params::save`] records the store order (names joined by `\n`).
pub const ORDER_KEY: &str = "flowtape.order";

#[derive(Clone, PartialEq)]
struct Entry<E: Element> {
    tensor: Tensor<E>,
    file_shape: Vec<usize>,
}

/// An ordered store of named tensors (an `IndexMap<String, Tensor<E>>`).
///
/// Layers are created with `&mut Params<E>` and remember the *indices* of the entries they
/// add; at run time [`Params::vars`] puts every tensor on a tape in store order and the layers
/// address their parameters by index into that slice. The same slice can be handed to an ODE
/// solver as the parameter inputs of a dynamics function.
///
/// ```
/// use autodiff::{Tape, Tensor};
/// use flows::Params;
///
/// let mut p = Params::<f64>::new();
/// let w = p.add("lin.weight", Tensor::ones(3, 2));
/// let b = p.add("lin.bias", Tensor::zeros(1, 3));
/// assert_eq!((w, b), (0, 1));
/// assert_eq!(p.index_of("lin.bias"), Some(1));
/// assert_eq!(p.file_shape(b), &[3]); // written to safetensors as 1-D, as PyTorch does
///
/// let tape = Tape::new();
/// let vars = p.vars(&tape);
/// assert_eq!(vars[w].shape(), (3, 2));
/// ```
#[derive(Clone, PartialEq)]
pub struct Params<E: Element> {
    map: IndexMap<String, Entry<E>>,
}

impl<E: Element> Default for Params<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Element> fmt::Debug for Params<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Params<{}> ({} tensors, {} elements) {{",
            E::NAME,
            self.len(),
            self.num_elements()
        )?;
        for (name, e) in &self.map {
            writeln!(
                f,
                "  {name}: {}x{} (file shape {:?})",
                e.tensor.rows(),
                e.tensor.cols(),
                e.file_shape
            )?;
        }
        write!(f, "}}")
    }
}

fn default_file_shape(name: &str, rows: usize, cols: usize) -> Vec<usize> {
    if rows == 1 && name.ends_with("bias") {
        vec![cols]
    } else {
        vec![rows, cols]
    }
}

/// Whether a file shape can be read into a `rows × cols` entry whose own file shape is `own`.
pub(crate) fn compatible(found: &[usize], own: &[usize], rows: usize, cols: usize) -> bool {
    found == own
        || found == [rows, cols]
        || (rows == 1 && found == [cols])
        || (rows == 1 && cols == 1 && found.is_empty())
}

impl<E: Element> Params<E> {
    /// An empty store.
    pub fn new() -> Self {
        Params {
            map: IndexMap::new(),
        }
    }

    /// Adds a tensor under `name` and returns its index. The file shape follows the default
    /// rule (see the [module docs](self)). Panics if the name is already taken.
    pub fn add(&mut self, name: impl Into<String>, tensor: Tensor<E>) -> usize {
        let name = name.into();
        let shape = default_file_shape(&name, tensor.rows(), tensor.cols());
        self.add_with_file_shape(name, tensor, shape)
    }

    /// Adds a tensor with an explicit file shape (the shape [`save`](Self::save) writes), e.g.
    /// `[]` for a scalar that PyTorch stores 0-D. The shape must have as many elements as the
    /// tensor and be `[]`, `[cols]` (for one row) or `[rows, cols]`. Panics on a duplicate name
    /// or an inconsistent shape.
    pub fn add_with_file_shape(
        &mut self,
        name: impl Into<String>,
        tensor: Tensor<E>,
        file_shape: Vec<usize>,
    ) -> usize {
        let name = name.into();
        let (r, c) = tensor.shape();
        assert!(
            compatible(&file_shape, &[r, c], r, c),
            "Params::add: file shape {file_shape:?} does not describe the {r}x{c} tensor `{name}`"
        );
        assert!(
            !self.map.contains_key(&name),
            "Params::add: a parameter named `{name}` already exists"
        );
        let (idx, _) = self.map.insert_full(name, Entry { tensor, file_shape });
        idx
    }

    /// Replaces the value of the existing entry `name` with `tensor` (in memory; the entry
    /// keeps its index and file shape, so layers holding its index see the new value).
    ///
    /// Errors, leaving the store unchanged: [`FlowError::UnknownParam`] if there is no such
    /// entry (a misspelt name is not silently added; [`insert`](Self::insert) adds), and
    /// [`FlowError::ShapeMismatch`] naming the entry with the expected and the found
    /// `[rows, cols]` if the shapes differ — as loading refuses a tensor of the wrong shape,
    /// since every layer addressing the entry relies on its shape.
    ///
    /// ```
    /// use autodiff::Tensor;
    /// use flows::{FlowError, Params};
    ///
    /// let mut p = Params::<f64>::new();
    /// p.add("lin.weight", Tensor::zeros(3, 2));
    /// p.set("lin.weight", Tensor::ones(3, 2)).unwrap();
    /// assert_eq!(p.get("lin.weight"), Some(&Tensor::ones(3, 2)));
    /// let err = p.set("lin.weight", Tensor::ones(2, 3)).unwrap_err();
    /// assert!(matches!(err, FlowError::ShapeMismatch { .. }));
    /// assert_eq!(err.to_string(), "parameter `lin.weight`: expected shape [3, 2], found [2, 3]");
    /// ```
    pub fn set(&mut self, name: &str, tensor: Tensor<E>) -> Result<(), FlowError> {
        let Some(entry) = self.map.get_mut(name) else {
            return Err(FlowError::UnknownParam { name: name.into() });
        };
        Self::replace(name, entry, tensor)
    }

    /// Adds `tensor` under `name` if there is no such entry (with the default file shape, as
    /// [`add`](Self::add)), or replaces the existing entry's value as [`set`](Self::set)
    /// does, with the same shape check. Returns the entry's index.
    pub fn insert(&mut self, name: &str, tensor: Tensor<E>) -> Result<usize, FlowError> {
        match self.map.get_full_mut(name) {
            Some((i, _, entry)) => Self::replace(name, entry, tensor).map(|()| i),
            None => Ok(self.add(name, tensor)),
        }
    }

    fn replace(name: &str, entry: &mut Entry<E>, tensor: Tensor<E>) -> Result<(), FlowError> {
        let (expected, found) = (entry.tensor.shape(), tensor.shape());
        if expected != found {
            return Err(FlowError::ShapeMismatch {
                name: name.into(),
                expected: vec![expected.0, expected.1],
                found: vec![found.0, found.1],
            });
        }
        entry.tensor = tensor;
        Ok(())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// `true` when the store holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.map.values().map(|e| e.tensor.len()).sum()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor<E>> {
        self.map.get(name).map(|e| &e.tensor)
    }

    /// The tensor named `name`, mutably (its shape must not change).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Tensor<E>> {
        self.map.get_mut(name).map(|e| &mut e.tensor)
    }

    /// Index of the tensor named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.map.get_index_of(name)
    }

    /// Name of entry `i`. Panics if out of range.
    pub fn name(&self, i: usize) -> &str {
        self.entry(i).0
    }

    /// Tensor at index `i`. Panics if out of range.
    pub fn tensor(&self, i: usize) -> &Tensor<E> {
        &self.entry(i).1.tensor
    }

    /// Tensor at index `i`, mutably (its shape must not change). Panics if out of range.
    pub fn tensor_mut(&mut self, i: usize) -> &mut Tensor<E> {
        let n = self.len();
        match self.map.get_index_mut(i) {
            Some((_, e)) => &mut e.tensor,
            None => panic!("Params::tensor_mut: index {i} out of range for {n} tensors"),
        }
    }

    /// The shape entry `i` is written with (see the [module docs](self)).
    pub fn file_shape(&self, i: usize) -> &[usize] {
        &self.entry(i).1.file_shape
    }

    fn entry(&self, i: usize) -> (&str, &Entry<E>) {
        match self.map.get_index(i) {
            Some((n, e)) => (n.as_str(), e),
            None => panic!(
                "Params: index {i} out of range for {} tensors",
                self.map.len()
            ),
        }
    }

    /// `(name, tensor)` pairs in store order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Tensor<E>)> + '_ {
        self.map.iter().map(|(n, e)| (n.as_str(), &e.tensor))
    }

    /// Names in store order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.map.keys().map(String::as_str)
    }

    /// Tensors in store order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = &Tensor<E>> + '_ {
        self.map.values().map(|e| &e.tensor)
    }

    /// Tensors in store order, mutably (shapes must not change).
    pub fn tensors_mut(&mut self) -> impl ExactSizeIterator<Item = &mut Tensor<E>> + '_ {
        self.map.values_mut().map(|e| &mut e.tensor)
    }

    /// Shapes `(rows, cols)` in store order.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        self.tensors().map(Tensor::shape).collect()
    }

    /// Zero tensors shaped like each entry, in store order (optimizer state, gradient buffers).
    pub fn zeros_like(&self) -> Vec<Tensor<E>> {
        self.tensors()
            .map(|t| Tensor::zeros(t.rows(), t.cols()))
            .collect()
    }

    /// Puts every tensor on `tape` as a differentiable leaf ([`Tape::var`]), in store order.
    /// Layers index into the returned slice.
    pub fn vars<'t>(&self, tape: &'t Tape<E>) -> Vec<Var<'t, E>> {
        self.tensors().map(|t| tape.var(t.clone())).collect()
    }

    /// Puts every tensor on `tape` as a constant ([`Tape::constant`]): for evaluation without
    /// parameter gradients.
    pub fn constants<'t>(&self, tape: &'t Tape<E>) -> Vec<Var<'t, E>> {
        self.tensors().map(|t| tape.constant(t.clone())).collect()
    }

    /// Checks that `values` has one tensor per entry with the entry's shape; panics naming
    /// `op`, the entry and both shapes otherwise.
    pub fn assert_matches(&self, values: &[Tensor<E>], op: &str) {
        assert_eq!(
            values.len(),
            self.len(),
            "{op}: {} tensors for a store of {}",
            values.len(),
            self.len()
        );
        for ((name, t), v) in self.iter().zip(values) {
            assert_eq!(
                t.shape(),
                v.shape(),
                "{op}: `{name}` is {:?} but its update is {:?}",
                t.shape(),
                v.shape()
            );
        }
    }

    /// `θᵢ += a · δᵢ` for every entry (an SGD step is `axpy(−lr, grads)`). Panics on a count or
    /// shape mismatch.
    pub fn axpy(&mut self, a: E, deltas: &[Tensor<E>]) {
        self.assert_matches(deltas, "Params::axpy");
        for (t, d) in self.tensors_mut().zip(deltas) {
            t.axpy(a, d);
        }
    }

    /// Copies the values of `other` (same names in the same order, same shapes) into `self`.
    pub fn copy_from(&mut self, other: &Params<E>) {
        assert_eq!(
            self.len(),
            other.len(),
            "Params::copy_from: {} tensors vs {}",
            self.len(),
            other.len()
        );
        for ((n, a), (m, b)) in self.map.iter_mut().zip(&other.map) {
            assert_eq!(n, m, "Params::copy_from: names differ");
            a.tensor.copy_from(&b.tensor);
        }
    }

    /// The same store in another precision.
    pub fn cast<F: Element>(&self) -> Params<F> {
        Params {
            map: self
                .map
                .iter()
                .map(|(n, e)| {
                    (
                        n.clone(),
                        Entry {
                            tensor: e.tensor.cast::<F>(),
                            file_shape: e.file_shape.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}
