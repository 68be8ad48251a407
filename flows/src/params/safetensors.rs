//! Saving and loading a [`Params`] store as safetensors.

use std::collections::HashMap;
use std::path::Path;

use autodiff::{Element, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{compatible, Params, ORDER_KEY};
use crate::FlowError;

impl<E: Element> Params<E> {
    /// Serializes the store as safetensors bytes, in the element type `E` (`F32` or `F64`),
    /// each tensor in its file shape. The metadata records `format = pt` and the store order.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, FlowError> {
        self.to_safetensors_with(HashMap::new())
    }

    /// [`to_safetensors`](Self::to_safetensors) with more metadata entries (checkpoints
    /// record their counters and the generator there).
    pub(crate) fn to_safetensors_with(
        &self,
        mut meta: HashMap<String, String>,
    ) -> Result<Vec<u8>, FlowError> {
        let dtype = dtype_of::<E>();
        let bytes: Vec<Vec<u8>> = self.tensors().map(|t| to_le_bytes(t)).collect();
        let mut views = Vec::with_capacity(self.len());
        for ((name, e), b) in self.map.iter().zip(&bytes) {
            let v = TensorView::new(dtype, e.file_shape.clone(), b).map_err(|err| {
                FlowError::BadFile {
                    path: "<memory>".into(),
                    reason: format!("cannot serialize `{name}`: {err}"),
                }
            })?;
            views.push((name.as_str(), v));
        }
        meta.insert("format".to_string(), "pt".to_string());
        meta.insert(
            ORDER_KEY.to_string(),
            self.names().collect::<Vec<_>>().join("\n"),
        );
        safetensors::serialize(views, Some(meta)).map_err(|err| FlowError::BadFile {
            path: "<memory>".into(),
            reason: format!("cannot serialize: {err}"),
        })
    }

    /// Writes the store to a safetensors file (see [`to_safetensors`](Self::to_safetensors)).
    /// To write another precision, save a [`cast`](Self::cast) copy.
    ///
    /// The file is replaced atomically ([`crate::io::write_atomic`]): if the write fails
    /// (disk full, file-size limit, ...) the error is a [`FlowError::Io`] naming `path` and a
    /// previous file at `path` is left intact.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), FlowError> {
        let bytes = self.to_safetensors()?;
        crate::io::write_atomic(path, &bytes)
    }

    /// Reads a store from safetensors bytes. `path` only labels errors.
    ///
    /// Accepts `F32` and `F64` tensors of rank 0, 1 or 2 and converts them to `E` (an `f32`
    /// file read into `Params<f64>` is widened exactly; an `f64` file read into `Params<f32>`
    /// is rounded, and a finite value beyond `f32`'s range is a [`FlowError::BadFile`] naming
    /// the tensor and the value instead of a silent infinity; NaN and ±∞ in the file are
    /// loaded as they are). Rank 0 becomes `1 × 1`, rank 1 `[n]` becomes a `1 × n` row;
    /// each entry keeps the file's shape as its file shape. The order is the one recorded by
    /// [`save`](Self::save) when present, otherwise names are sorted.
    pub fn from_safetensors(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self, FlowError> {
        let path = path.as_ref();
        let st = parse(bytes, path)?;
        let mut out = Params::new();
        for name in ordered_names(bytes, &st) {
            let view = st.tensor(&name).map_err(|e| bad(path, e.to_string()))?;
            let shape = view.shape().to_vec();
            let (r, c) = match shape.as_slice() {
                [] => (1, 1),
                [n] => (1, *n),
                [r, c] => (*r, *c),
                _ => {
                    return Err(bad(
                        path,
                        format!(
                        "tensor `{name}` has shape {shape:?}; only rank 0, 1 and 2 are supported"
                    ),
                    ))
                }
            };
            let data = decode::<E>(&view, &name, path)?;
            out.add_with_file_shape(name, Tensor::from_vec(r, c, data), shape);
        }
        Ok(out)
    }

    /// Reads a store from a safetensors file (see [`from_safetensors`](Self::from_safetensors)
    /// for the accepted contents and the `f32`/`f64` conversion).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, FlowError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
        Self::from_safetensors(&bytes, path)
    }

    /// Overwrites every entry with the file's tensor of the same name (strict, like PyTorch's
    /// `load_state_dict(strict=True)`).
    ///
    /// Errors: [`FlowError::MissingParam`] if an entry has no tensor in the file,
    /// [`FlowError::UnexpectedParam`] if the file holds a tensor the store does not,
    /// [`FlowError::ShapeMismatch`] (expected vs found shape) if shapes disagree,
    /// [`FlowError::BadFile`] for a corrupt file, an unsupported dtype, or a finite `f64`
    /// value too large for `f32` parameters (naming the tensor; NaN and ±∞ in the file are
    /// loaded as they are). On error the store is left unchanged. `F32` and `F64` files are
    /// both accepted and converted to `E` (an `f32` file loaded into `f64` parameters is
    /// widened exactly, an `f64` file into `f32` parameters rounded).
    pub fn load_into(&mut self, path: impl AsRef<Path>) -> Result<(), FlowError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
        self.load_from_safetensors(&bytes, path, true).map(|_| ())
    }

    /// Like [`load_into`](Self::load_into), but tensors in the file that the store does not
    /// hold are skipped instead of rejected; their names are returned (for converting a larger
    /// checkpoint, e.g. one with an optimizer's or another module's entries).
    pub fn load_into_lenient(&mut self, path: impl AsRef<Path>) -> Result<Vec<String>, FlowError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
        self.load_from_safetensors(&bytes, path, false)
    }

    /// [`load_into`](Self::load_into) from bytes; `strict` rejects unexpected names, otherwise
    /// they are returned. `path` only labels errors.
    pub fn load_from_safetensors(
        &mut self,
        bytes: &[u8],
        path: impl AsRef<Path>,
        strict: bool,
    ) -> Result<Vec<String>, FlowError> {
        let path = path.as_ref();
        let st = parse(bytes, path)?;
        let mut unused: Vec<String> = st
            .names()
            .into_iter()
            .filter(|n| !self.map.contains_key(*n))
            .map(str::to_string)
            .collect();
        unused.sort();
        if strict {
            if let Some(name) = unused.first() {
                return Err(FlowError::UnexpectedParam { name: name.clone() });
            }
        }
        // Decode and check everything first so a failure leaves the store untouched.
        let mut loaded = Vec::with_capacity(self.len());
        for (name, e) in &self.map {
            let view = match st.tensor(name) {
                Ok(v) => v,
                Err(_) => return Err(FlowError::MissingParam { name: name.clone() }),
            };
            let (r, c) = e.tensor.shape();
            if !compatible(view.shape(), &e.file_shape, r, c) {
                return Err(FlowError::ShapeMismatch {
                    name: name.clone(),
                    expected: e.file_shape.clone(),
                    found: view.shape().to_vec(),
                });
            }
            loaded.push(decode::<E>(&view, name, path)?);
        }
        for (e, data) in self.map.values_mut().zip(loaded) {
            e.tensor.as_mut_slice().copy_from_slice(&data);
        }
        Ok(unused)
    }
}

fn bad(path: &Path, reason: String) -> FlowError {
    FlowError::BadFile {
        path: path.to_path_buf(),
        reason,
    }
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<SafeTensors<'a>, FlowError> {
    SafeTensors::deserialize(bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))
}

fn ordered_names(bytes: &[u8], st: &SafeTensors<'_>) -> Vec<String> {
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let recorded = SafeTensors::read_metadata(bytes)
        .ok()
        .and_then(|(_, m)| m.metadata().as_ref()?.get(ORDER_KEY).cloned());
    if let Some(order) = recorded {
        let rec: Vec<String> = order.split('\n').map(str::to_string).collect();
        let mut sorted = rec.clone();
        sorted.sort();
        if sorted == names {
            names = rec;
        }
    }
    names
}

fn dtype_of<E: Element>() -> Dtype {
    if std::mem::size_of::<E>() == 4 {
        Dtype::F32
    } else {
        Dtype::F64
    }
}

fn to_le_bytes<E: Element>(t: &Tensor<E>) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len() * std::mem::size_of::<E>());
    if std::mem::size_of::<E>() == 4 {
        for &x in t.as_slice() {
            out.extend_from_slice(&(x.to_f64() as f32).to_le_bytes());
        }
    } else {
        for &x in t.as_slice() {
            out.extend_from_slice(&x.to_f64().to_le_bytes());
        }
    }
    out
}

fn decode<E: Element>(view: &TensorView<'_>, name: &str, path: &Path) -> Result<Vec<E>, FlowError> {
    let data = view.data();
    match view.dtype() {
        Dtype::F32 => Ok(data
            .chunks_exact(4)
            .map(|b| E::from_f64(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64))
            .collect()),
        Dtype::F64 => {
            let mut out = Vec::with_capacity(data.len() / 8);
            for (i, b) in data.chunks_exact(8).enumerate() {
                let v = f64::from_le_bytes(b.try_into().expect("8-byte chunk"));
                let x = E::from_f64(v);
                // Rounding to f32 maps every finite value beyond ±f32::MAX to ±inf without a
                // word; weights that large are a wrong file or a wrong precision, not data to
                // train on. A NaN or infinity already in the file is passed through: it is
                // what was saved, and rejecting it would make such a checkpoint unreadable.
                if v.is_finite() && !x.is_finite() {
                    return Err(bad(
                        path,
                        format!(
                            "tensor `{name}`: element {i} is {v:e}, which overflows {} \
                             (largest finite magnitude {:e})",
                            E::NAME,
                            f32::MAX
                        ),
                    ));
                }
                out.push(x);
            }
            Ok(out)
        }
        other => Err(bad(
            path,
            format!("tensor `{name}` has dtype {other:?}; only F32 and F64 are supported"),
        )),
    }
}
