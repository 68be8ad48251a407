//! The loop's own state saved beside a checkpoint: early stopping, the best weights and the
//! elapsed time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use autodiff::Element;
use safetensors::tensor::SafeTensors;

use super::{Best, Watch};
use crate::{FlowError, Params};

const TRAINER_KEY: &str = "flowtape.trainer";
const T_ITER: &str = "flowtape.trainer.iteration";
const T_BAD: &str = "flowtape.trainer.bad";
const T_STOPPED: &str = "flowtape.trainer.stopped";
const T_SECONDS: &str = "flowtape.trainer.seconds";
const T_BEST_ITER: &str = "flowtape.trainer.best_iteration";
const T_BEST_VALUE: &str = "flowtape.trainer.best_value";

/// `checkpoint.safetensors` → `checkpoint.trainer.safetensors`.
pub(super) fn trainer_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("trainer.safetensors")
}

pub(super) fn save_state<E: Element>(
    path: &Path,
    it: u64,
    w: &Watch<E>,
    seconds: f64,
) -> Result<(), FlowError> {
    let mut meta = HashMap::new();
    meta.insert(TRAINER_KEY.to_string(), "1".to_string());
    meta.insert(T_ITER.to_string(), it.to_string());
    meta.insert(T_BAD.to_string(), w.bad.to_string());
    meta.insert(T_STOPPED.to_string(), w.stopped.to_string());
    meta.insert(T_SECONDS.to_string(), format!("{seconds:?}"));
    let empty = Params::<E>::new();
    let store = match &w.best {
        Some(b) => {
            meta.insert(T_BEST_ITER.to_string(), b.iteration.to_string());
            meta.insert(T_BEST_VALUE.to_string(), format!("{:?}", b.value));
            &b.params
        }
        None => &empty,
    };
    let bytes = store.to_safetensors_with(meta)?;
    crate::io::write_atomic(path, &bytes)
}

/// Reads the loop's state saved with the checkpoint of iteration `it`; the best weights are
/// read into a store shaped like `like`.
pub(super) fn load_state<E: Element>(
    path: &Path,
    it: u64,
    like: &Params<E>,
) -> Result<(Watch<E>, f64), FlowError> {
    let bytes = std::fs::read(path).map_err(|e| FlowError::io(path, e))?;
    let bad = |reason: String| FlowError::BadFile {
        path: path.to_path_buf(),
        reason,
    };
    let (_, m) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta = m.metadata().clone().unwrap_or_default();
    if meta.get(TRAINER_KEY).map(String::as_str) != Some("1") {
        return Err(bad(format!("not a trainer state (no `{TRAINER_KEY}` = 1)")));
    }
    fn field<T: std::str::FromStr>(
        meta: &HashMap<String, String>,
        key: &str,
        bad: &dyn Fn(String) -> FlowError,
    ) -> Result<T, FlowError> {
        let s = meta
            .get(key)
            .ok_or_else(|| bad(format!("metadata `{key}` is missing")))?;
        s.parse()
            .map_err(|_| bad(format!("metadata `{key}` = {s:?} is not a number")))
    }
    let saved: u64 = field(&meta, T_ITER, &bad)?;
    if saved != it {
        return Err(FlowError::CheckpointMismatch {
            path: path.to_path_buf(),
            item: "iteration".into(),
            expected: format!("the checkpoint's iteration {it}"),
            found: saved.to_string(),
        });
    }
    let best = if meta.contains_key(T_BEST_ITER) {
        let mut params = like.clone();
        params.load_from_safetensors(&bytes, path, true)?;
        Some(Best {
            iteration: field(&meta, T_BEST_ITER, &bad)?,
            value: field(&meta, T_BEST_VALUE, &bad)?,
            params,
        })
    } else {
        None
    };
    let stopped = meta.get(T_STOPPED).map(String::as_str) == Some("true");
    let watch = Watch {
        best,
        bad: field(&meta, T_BAD, &bad)?,
        stopped,
    };
    Ok((watch, field(&meta, T_SECONDS, &bad)?))
}
