//! Atomic file writing: a save that fails part-way leaves the previous file intact.
//!
//! [`write_atomic_with`] writes to a temporary file next to the target (same directory, so
//! the final rename never crosses a file system), flushes it, `fsync`s it and only then
//! renames it over the target. A failure at any point — a full disk, the file-size limit, an
//! encoder error, a panic in the writer — removes the temporary and leaves whatever was at
//! the target before untouched. [`Params::save`](crate::Params::save),
//! [`data::save_npy`](crate::data::save_npy) and [`Image::save`](crate::plot::Image::save)
//! all write through it.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("flows_io_doc_{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("notes.txt");
//! flows::io::write_atomic(&path, b"old").unwrap();
//! // A writer that fails half-way: the old contents survive.
//! let err = flows::io::write_atomic_with(&path, |w| {
//!     w.write_all(b"new but incompl").map_err(|e| flows::FlowError::io(&path, e))?;
//!     Err(flows::FlowError::BadFile { path: path.clone(), reason: "gave up".into() })
//! });
//! assert!(err.is_err());
//! assert_eq!(std::fs::read(&path).unwrap(), b"old");
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::FlowError;

/// Distinguishes the temporaries of concurrent saves within one process (the pid
/// distinguishes processes).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// How many names to try when a temporary name is taken (a stale file left by a killed
/// process whose pid has been reused, or a name collision we cannot rule out).
const NAME_ATTEMPTS: u32 = 64;

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), FlowError> {
    let path = path.as_ref();
    write_atomic_with(path, |w| {
        w.write_all(bytes).map_err(|e| FlowError::io(path, e))
    })
}

/// Writes the file at `path` with `write`, atomically: either the whole new file replaces
/// the old one, or (on any error) the old file is left exactly as it was.
///
/// `write` receives a buffered writer on a fresh temporary file in `path`'s directory, named
/// `.{file name}.{pid}.{counter}.tmp`. When it returns `Ok`, the buffer is flushed, the file
/// is `fsync`ed, given the permissions of the file it replaces (if there is one) and renamed
/// over `path`; the directory is then `fsync`ed too (best effort: some file systems refuse
/// it, and the new file is already in place). If `write` returns an error, panics, or any of
/// these steps fails, the temporary is removed and the error returned; I/O failures are
/// [`FlowError::Io`] naming `path`. Errors of `write` itself are returned as they are, so it
/// should label its I/O errors with `path` (e.g. with [`FlowError::io`]).
///
/// A symbolic link at `path` is replaced by a regular file (its target is not written).
pub fn write_atomic_with<F>(path: impl AsRef<Path>, write: F) -> Result<(), FlowError>
where
    F: FnOnce(&mut dyn Write) -> Result<(), FlowError>,
{
    let path = path.as_ref();
    let io_err = |e: std::io::Error| FlowError::io(path, e);
    let (file, temp) = create_temp(path).map_err(io_err)?;
    // From here on the guard deletes the temporary unless the rename succeeded, whichever
    // way this function is left (error return or unwinding panic).
    let mut guard = TempGuard(Some(temp));
    let mut out = BufWriter::new(file);
    write(&mut out)?;
    let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    // The data must be on disk before the rename makes it the file: otherwise a crash right
    // after the rename can leave an empty or partial file under the target's name.
    file.sync_all().map_err(io_err)?;
    if let Ok(meta) = std::fs::metadata(path) {
        // Overwriting a file in place keeps its mode; the rename should not silently change
        // it (e.g. make a group-readable checkpoint private).
        file.set_permissions(meta.permissions()).map_err(io_err)?;
    }
    drop(file);
    let temp = guard
        .0
        .as_deref()
        .expect("temporary path is set until the rename");
    std::fs::rename(temp, path).map_err(io_err)?;
    guard.0 = None;
    sync_dir(&dir_of(path));
    Ok(())
}

/// Deletes the temporary file it holds when dropped (the rename clears it first).
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Nothing more can be done if this fails; the original error is what matters.
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The directory `path` lives in (`.` for a bare file name).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The name of temporary number `n` for `path`: hidden, in the same directory, naming the
/// target so a leftover after a crash is recognisable.
fn temp_name(path: &Path, n: u64) -> Option<PathBuf> {
    let name = path.file_name()?.to_string_lossy();
    Some(dir_of(path).join(format!(".{name}.{}.{n}.tmp", std::process::id())))
}

/// Creates a new temporary file for `path` (never opening an existing one).
fn create_temp(path: &Path) -> std::io::Result<(File, PathBuf)> {
    let mut last = None;
    for _ in 0..NAME_ATTEMPTS {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = temp_name(path, n).ok_or_else(|| {
            std::io::Error::new(ErrorKind::InvalidInput, "the path does not name a file")
        })?;
        match OpenOptions::new().write(true).create_new(true).open(&temp) {
            Ok(f) => return Ok((f, temp)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("at least one attempt was made"))
}

/// `fsync`s a directory so a rename in it survives a crash; best effort.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_live_next_to_the_target_and_are_unique() {
        let a = temp_name(Path::new("out/w.safetensors"), 3).unwrap();
        let b = temp_name(Path::new("out/w.safetensors"), 4).unwrap();
        assert_eq!(a.parent(), Some(Path::new("out")));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(".w.safetensors.") && name.ends_with(".3.tmp"));
        assert!(name.contains(&std::process::id().to_string()));
        // A bare file name is written in the current directory.
        let c = temp_name(Path::new("w.npy"), 0).unwrap();
        assert_eq!(c.parent(), Some(Path::new(".")));
        assert!(temp_name(Path::new("/"), 0).is_none());
    }
}
