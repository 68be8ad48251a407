//! The error type of the differentiation transforms.

use std::fmt;

/// A failure while evaluating or differentiating a recorded computation.
///
/// Primitives cannot fail (shape errors are programming errors and panic); custom operations
/// such as an ODE solve can, and their errors surface here with the operation's name.
#[derive(Debug)]
pub struct Error {
    /// Name of the operation that failed.
    pub op: String,
    /// What went wrong.
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl Error {
    /// Wraps an operation's error.
    pub fn new(
        op: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error {
            op: op.into(),
            source: source.into(),
        }
    }

    /// The wrapped error, downcast to a concrete type if it is one (looking through errors
    /// of nested operations, e.g. a solve inside the VJP of a solve).
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        match self.source.downcast_ref::<T>() {
            Some(t) => Some(t),
            None => self
                .source
                .downcast_ref::<Error>()
                .and_then(|e| e.downcast_ref::<T>()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.op, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Result alias for fallible tape transforms.
pub type Result<T> = std::result::Result<T, Error>;
