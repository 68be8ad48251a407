//! The CSV log of a training run: one line per iteration with every metric, readable by
//! [`read_csv_series`](crate::plot::read_csv_series).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::FlowError;

/// A CSV file with a fixed header, one record per iteration, flushed after every record (a
/// run that dies leaves every completed iteration in the log).
pub(super) struct CsvLog {
    path: PathBuf,
    columns: Vec<String>,
    out: BufWriter<File>,
}

impl CsvLog {
    /// Creates (truncates) `path` and writes the header.
    pub(super) fn create(path: &Path, columns: Vec<String>) -> Result<Self, FlowError> {
        let file = File::create(path).map_err(|e| FlowError::io(path, e))?;
        let mut log = CsvLog {
            path: path.to_path_buf(),
            columns,
            out: BufWriter::new(file),
        };
        let header = log.columns.join(",");
        log.line(&header)?;
        Ok(log)
    }

    /// Opens the log of a resumed run: keeps the header and the records of iterations
    /// `≤ keep_through` (those the checkpoint covers; later ones are run again), rewritten
    /// atomically, then appends. Fails if the header is not `columns` (the run logs other
    /// metrics than the one that wrote the file).
    pub(super) fn resume(
        path: &Path,
        columns: Vec<String>,
        keep_through: u64,
    ) -> Result<Self, FlowError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Self::create(path, columns)
            }
            Err(e) => return Err(FlowError::io(path, e)),
        };
        let mut lines = text.lines();
        let header = columns.join(",");
        if lines.next() != Some(header.as_str()) {
            return Err(FlowError::BadFile {
                path: path.to_path_buf(),
                reason: format!(
                    "the log's header is not `{header}`: it was written by a run with other metrics"
                ),
            });
        }
        let mut kept = format!("{header}\n");
        for line in lines {
            let iter = line
                .split(',')
                .next()
                .and_then(|f| f.trim().parse::<u64>().ok());
            match iter {
                Some(i) if i <= keep_through => {
                    kept.push_str(line);
                    kept.push('\n');
                }
                Some(_) => {}
                None => {
                    return Err(FlowError::BadFile {
                        path: path.to_path_buf(),
                        reason: format!("a record does not start with an iteration: `{line}`"),
                    })
                }
            }
        }
        crate::io::write_atomic(path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| FlowError::io(path, e))?;
        Ok(CsvLog {
            path: path.to_path_buf(),
            columns,
            out: BufWriter::new(file),
        })
    }

    /// The column names.
    pub(super) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Writes one record: the iteration (as an integer) under the first column, then
    /// `values[i]` under column `i + 1`, `None` as an empty field.
    pub(super) fn record(&mut self, iter: u64, values: &[Option<f64>]) -> Result<(), FlowError> {
        debug_assert_eq!(values.len() + 1, self.columns.len());
        let mut fields = vec![iter.to_string()];
        fields.extend(values.iter().map(|v| match v {
            // `{:?}` is the shortest text that parses back to the same f64.
            Some(x) => format!("{x:?}"),
            None => String::new(),
        }));
        self.line(&fields.join(","))
    }

    fn line(&mut self, line: &str) -> Result<(), FlowError> {
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| FlowError::io(&self.path, e))
    }
}
