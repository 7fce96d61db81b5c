//! The crate's single error type.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use thiserror::Error as ThisError;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in convnet.
///
/// Each variant names *where* the problem is (a layer, a file, a tensor key), what was
/// expected and what was found, so that the message alone is enough to fix the call.
/// Operating-system errors are kept as the [`std::error::Error::source`] of
/// [`Error::FileIo`] and [`Error::Io`]. New variants may be added: match with a `_` arm.
#[derive(Debug, ThisError)]
#[non_exhaustive]
pub enum Error {
    /// A tensor reached a layer with a shape the layer cannot take.
    #[error("{layer}: expected input of shape {expected}, got {got:?}")]
    ShapeMismatch {
        /// The layer that rejected the tensor (e.g. `Conv2d(3 -> 96)`).
        layer: String,
        /// A readable description of what was expected (e.g. `[N, 3, H, W]`).
        expected: String,
        /// The shape that arrived.
        got: Vec<usize>,
    },

    /// A convolution or pooling window that does not fit its input, explained with
    /// `O = (N - F + 2P) / S + 1`.
    #[error("{layer}: impossible geometry: {explanation}")]
    Geometry {
        /// The layer whose geometry is impossible.
        layer: String,
        /// The output-size formula with the numbers filled in.
        explanation: String,
    },

    /// A layer, optimizer or loss was configured with values that make no sense
    /// (zero channels, groups that do not divide the channels, a negative learning rate...).
    #[error("{what}: invalid configuration: {message}")]
    InvalidConfig {
        /// The thing being configured.
        what: String,
        /// What is wrong with it.
        message: String,
    },

    /// `backward` was called without a preceding `forward` (nothing cached).
    #[error("{layer}: backward called before forward")]
    BackwardBeforeForward {
        /// The layer.
        layer: String,
    },

    /// A loss or target was malformed (class index out of range, batch sizes that differ...).
    #[error("{what}: {message}")]
    InvalidInput {
        /// The function that rejected its input.
        what: String,
        /// What is wrong.
        message: String,
    },

    /// A loss or a tensor became NaN or infinite.
    #[error("non-finite value: {0}")]
    NonFinite(String),

    /// A file (weights, checkpoint, data, image) that is corrupt or does not match what
    /// reads it.
    #[error("{}: {message}", .path.display())]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A file that the operating system could not read, write, list or rename; the
    /// [`std::io::Error`] is the source.
    #[error("{}: {action}: {source}", .path.display())]
    FileIo {
        /// The file or folder concerned.
        path: PathBuf,
        /// What was being done (`"cannot read"`, `"cannot list folder"`...).
        action: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A weight file whose keys or shapes do not match the model.
    #[error("{}: weights do not match the model: {}", .path.display(), describe_mismatch(.missing, .unexpected, .mismatched))]
    StateDict {
        /// The weight file.
        path: PathBuf,
        /// Model entries the file lacks.
        missing: Vec<String>,
        /// File entries the model does not have.
        unexpected: Vec<String>,
        /// Entries present in both with different shapes: `(name, model shape, file shape)`.
        mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
    },

    /// A PyTorch checkpoint (`torch.save` file) that cannot be read: a damaged zip, the
    /// legacy format, a pickle that names a forbidden global or an unknown opcode...
    #[error("{}: {source}", .path.display())]
    Pth {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: crate::io::PthError,
    },

    /// An ONNX model that cannot be imported: corrupt protobuf, an unsupported operator
    /// (named with its node), a missing initializer, unreadable external data...
    #[error("{}: {source}", .path.display())]
    Onnx {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: crate::onnx::OnnxError,
    },
    /// A collective operation between the processes of a distributed run failed: another
    /// process did not join it within the timeout (it crashed, hangs or took another path),
    /// the MPI library reported an error, or the processes disagree (different models).
    #[error("distributed training: {0}")]
    Distributed(String),

    /// An I/O error from the operating system.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

fn describe_mismatch(
    missing: &[String],
    unexpected: &[String],
    mismatched: &[(String, Vec<usize>, Vec<usize>)],
) -> String {
    let list = |names: &[String]| {
        let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
        let more = names.len().saturating_sub(8);
        if more > 0 {
            format!("{} (+{more} more)", shown.join(", "))
        } else {
            shown.join(", ")
        }
    };
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing keys [{}]", list(missing)));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected keys [{}]", list(unexpected)));
    }
    if !mismatched.is_empty() {
        let shapes: Vec<String> = mismatched
            .iter()
            .map(|(n, model, file)| format!("{n}: model {model:?}, file {file:?}"))
            .collect();
        parts.push(format!("mis-shaped [{}]", list(&shapes)));
    }
    parts.join("; ")
}

impl Error {
    /// Shorthand for [`Error::InvalidConfig`].
    pub fn config(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            what: what.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::FileIo`]: `action` (`"cannot read"`) on `path` failed with
    /// `source`.
    pub fn io(path: impl Into<PathBuf>, action: impl Into<String>, source: std::io::Error) -> Self {
        Error::FileIo {
            path: path.into(),
            action: action.into(),
            source,
        }
    }

    /// Shorthand for [`Error::ShapeMismatch`].
    pub fn shape(layer: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::ShapeMismatch {
            layer: layer.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn input(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            what: what.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::BackwardBeforeForward`].
    pub fn no_cache(layer: impl Into<String>) -> Self {
        Error::BackwardBeforeForward {
            layer: layer.into(),
        }
    }
}

/// A tensor built from data of the wrong length (`Tensor::from_shape_vec`) or reshaped to an
/// impossible shape is an [`Error::InvalidInput`], so `?` works on ndarray's shape errors in
/// code that returns [`Result`].
impl From<ndarray::ShapeError> for Error {
    fn from(e: ndarray::ShapeError) -> Self {
        Error::input("tensor shape", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_errors_from_ndarray_convert_with_question_mark() {
        fn build() -> Result<crate::Tensor<f32>> {
            Ok(crate::Tensor::from_shape_vec(
                ndarray::IxDyn(&[2, 3]),
                vec![0.0; 5],
            )?)
        }
        let err = build().unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert!(err.to_string().starts_with("tensor shape: "), "{err}");
    }
}
