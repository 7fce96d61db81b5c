//! ONNX models as a [`Graph`] of the library's own layers.
//!
//! ```no_run
//! use convnet::prelude::*;
//! let mut model = convnet::onnx::load_onnx::<f32>("lenet5.onnx".as_ref())?;
//! println!("{}", model.graph.summary(&model.input_shape_for(1)?)?);
//! let x = Tensor::<f32>::zeros(ndarray::IxDyn(&model.input_shape_for(4)?));
//! let logits = model.graph.infer(&x)?;               // evaluation, as exported
//! model.graph.set_mode(Mode::Train);                 // or train it: ordinary layers
//! let y = model.graph.forward(&x)?;
//! model.graph.backward(&y)?;
//! # Ok::<(), convnet::Error>(())
//! ```
//!
//! # What is read
//!
//! An ONNX file is one protobuf message (`ModelProto`). The importer decodes it with its own
//! wire-format reader ([`wire`](self) and `proto`, about 400 lines) rather than a protobuf
//! crate: it needs six message types and a few dozen fields, the bytes are untrusted (every
//! length is checked against what remains before it is used, and element counts against
//! [`MAX_ELEMENTS`](crate::tensor::MAX_ELEMENTS) and the data actually present), and generated
//! code (`prost-build` needs `protoc` at build time) or the whole `onnx.proto` schema
//! (hundreds of fields for training, functions, sparse and sequence types) would be larger
//! than the reader. Unknown fields are skipped, as protobuf prescribes; a known field with the
//! wrong wire type, a truncated message or an over-long varint is an [`OnnxError`].
//!
//! Weights come from the graph's initializers: inline (`raw_data` or the typed fields) or,
//! with `data_location = EXTERNAL`, from a file next to the model (`location` must be a
//! relative path inside the model's folder; `offset` and `length` are checked against the
//! file's size before it is read). float32, float64, float16 and bfloat16 weights load into
//! `f32` or `f64` models.
//!
//! # Operators
//!
//! Each node becomes one layer of [`crate::layers`] (or none, for identities):
//!
//! | ONNX | convnet |
//! |---|---|
//! | Conv (pads, strides, dilations, group, auto_pad) | [`Conv2d`](crate::layers::Conv2d) (+ [`Pad2d`](crate::layers::Pad2d) for uneven pads) |
//! | Relu, LeakyRelu, Sigmoid, Tanh | the activation layers |
//! | MaxPool (pads, dilations, ceil_mode, auto_pad) | [`MaxPool2d`](crate::layers::MaxPool2d) (+ a `-inf` [`Pad2d`](crate::layers::Pad2d) for uneven pads) |
//! | AveragePool (pads, ceil_mode, count_include_pad, auto_pad) | [`AvgPool2d`](crate::layers::AvgPool2d) (+ a zero [`Pad2d`](crate::layers::Pad2d) for uneven counted pads) |
//! | Pad (constant mode, last two axes) | [`Pad2d`](crate::layers::Pad2d) |
//! | GlobalAveragePool | [`AdaptiveAvgPool2d`](crate::layers::AdaptiveAvgPool2d) `[1, 1]` |
//! | LRN (odd size) | [`LocalResponseNorm`](crate::layers::LocalResponseNorm) |
//! | BatchNormalization (inference) | [`BatchNorm2d`](crate::layers::BatchNorm2d) with its running statistics |
//! | Gemm (transB, alpha, beta), MatMul by a constant (+ Add of a constant) | [`Linear`](crate::layers::Linear) |
//! | Flatten (to `[N, rest]`), Reshape merging neighbouring dims after the batch | [`Flatten`](crate::layers::Flatten) |
//! | Concat (any axis but the batch), Add of two values | [`Concat`](crate::layers::Concat), [`Add`](crate::layers::Add) |
//! | Add/Sub of a scalar or per-channel constant (`[C]`, `[C, 1, 1]`, `[1, C, 1, 1]`) | [`Bias`](crate::layers::Bias) (or the bias of the Linear before it) |
//! | Dropout | [`Dropout`](crate::layers::Dropout) (the identity in inference) |
//! | Softmax, LogSoftmax (over dim 1) | [`Softmax`](crate::layers::Softmax), [`LogSoftmax`](crate::layers::LogSoftmax) |
//! | Identity, Cast to float | nothing (the value passes through) |
//! | Constant, ConstantOfShape, Shape, Gather, Slice, Unsqueeze, Squeeze, Concat, Reshape, Transpose, Cast, Add, Sub, Mul, Div on constants | folded while importing |
//!
//! The shape arithmetic that exporters write for `x.view(x.size(0), -1)` (`Shape → Gather →
//! Unsqueeze → Concat → Reshape`) is evaluated while importing; the batch size stays a symbol,
//! so a Reshape to `[batch, -1]` is recognised as a flatten and the model runs at any batch
//! size when the file's batch axis is symbolic. Other symbolic axes (a fully convolutional
//! model exported with dynamic height and width) need a size to import at,
//! [`OnnxOptions::input_shape`]; the shape arithmetic is evaluated at that size and the layers
//! run at any other. `F.pad`'s pad vector, which the exporter computes with ConstantOfShape,
//! Slice and Transpose, folds the same way.
//!
//! Uneven padding (`pads` whose begin and end differ, `SAME_UPPER`/`SAME_LOWER` with an odd
//! total, TensorFlow conversions) becomes a [`Pad2d`](crate::layers::Pad2d) in front of the
//! layer: zeros for Conv and for AveragePool that counts padding, `-inf` for MaxPool (sized
//! so that floor mode gives ONNX's output, which also covers `ceil_mode`); AveragePool that
//! does not count padding pads by the begin amount and picks floor or ceil mode to give ONNX's
//! output size. The output size is checked against ONNX's (PyTorch's rule for ceil mode) in
//! every case, and the one combination no layer can give (uncounted uneven padding that needs
//! floor mode on one axis and ceil mode on the other) is an error.
//!
//! Anything else — an operator not in the table, a Reshape that is not a merge of dims, a
//! Softmax over another axis, an Add whose constant varies along H or W, Mul of a computed
//! value — is an [`OnnxError`] naming the operator and the node.
//!
//! Graph nodes are named after their weights where the exporter kept PyTorch's names
//! (`conv1.weight` → node `conv1`), so [`crate::io::save_weights`] of an imported model writes
//! a `state_dict` with PyTorch's keys; other nodes keep their ONNX names.

#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod import;
mod proto;
mod tensor;
mod wire;

use crate::error::{Error, Result};
use crate::model::Graph;
use crate::tensor::Float;
use std::path::{Path, PathBuf};

/// Why an ONNX file could not be imported; carried by [`Error::Onnx`] with the file name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// A message ends before a field it announces.
    #[error("truncated {message}: a field needs {need} more bytes, {left} are left")]
    Truncated {
        /// The protobuf message being read (`"NodeProto"`).
        message: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes left in the message.
        left: usize,
    },

    /// A known field arrives with a wire type that its declared type cannot have.
    #[error("{message} field {field}: expected a {expected} value, found a {got} value")]
    WireType {
        /// The protobuf message being read.
        message: &'static str,
        /// The field number.
        field: u32,
        /// The wire type of the field's declared type.
        expected: &'static str,
        /// The wire type found.
        got: &'static str,
    },

    /// Bytes that are not protobuf, or a model that breaks an ONNX rule (no graph, two
    /// definitions of a value...).
    #[error("malformed model: {0}")]
    Malformed(String),

    /// A valid ONNX feature this importer does not handle (sparse initializers...).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// An operator with no convnet layer behind it.
    #[error("operator `{op_type}` (node `{node}`) is not supported{}", domain_note(.domain))]
    UnsupportedOperator {
        /// The operator type (`"Resize"`).
        op_type: String,
        /// The operator's domain (empty for the standard `ai.onnx` set).
        domain: String,
        /// The node's name.
        node: String,
    },

    /// A supported operator used in a way convnet cannot represent, or with bad attributes.
    #[error("{op_type} node `{node}`: {message}")]
    Node {
        /// The operator type.
        op_type: String,
        /// The node's name.
        node: String,
        /// What is wrong.
        message: String,
    },

    /// A node reads a value that no initializer, graph input or earlier node defines.
    #[error("{op_type} node `{node}` reads `{value}`, which no initializer, input or earlier node defines")]
    MissingValue {
        /// The operator type.
        op_type: String,
        /// The node's name.
        node: String,
        /// The name of the missing value.
        value: String,
    },

    /// A constant tensor whose dims, type or data do not agree.
    #[error("tensor `{name}`: {message}")]
    Tensor {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// A tensor stored in an external file that cannot be read as described.
    #[error("tensor `{name}`, external data file `{}`: {message}", .file.display())]
    ExternalData {
        /// The tensor's name.
        name: String,
        /// The file, as the model names it (relative to the model's folder).
        file: PathBuf,
        /// What is wrong.
        message: String,
        /// The I/O error, when there was one.
        #[source]
        source: Option<std::io::Error>,
    },

    /// A layer refused the configuration a node describes.
    #[error("{op_type} node `{node}`: {source}")]
    Layer {
        /// The operator type.
        op_type: String,
        /// The node's name.
        node: String,
        /// The layer's error.
        #[source]
        source: Box<Error>,
    },
}

fn domain_note(domain: &str) -> String {
    match domain {
        "" | "ai.onnx" => String::new(),
        d => format!(" (domain `{d}`)"),
    }
}

/// An imported ONNX model: a [`Graph`] of ordinary layers, plus what the file says about its
/// input and output.
pub struct OnnxModel<T: Float> {
    /// The network. Its input node is named like the ONNX graph input; parameters are named
    /// `<node>.weight`, `<node>.bias`...
    pub graph: Graph<T>,
    /// The name of the ONNX graph input.
    pub input_name: String,
    /// The input shape the file declares; `None` for a symbolic axis.
    pub input_shape: Vec<Option<usize>>,
    /// The input shape the graph was imported at (symbolic axes at the sizes given in
    /// [`OnnxOptions::input_shape`], the batch at 1 by default).
    build_shape: Vec<usize>,
    /// The name of the ONNX graph output (the first one, if there are several).
    pub output_name: String,
    /// The version of the default (`ai.onnx`) operator set the model uses.
    pub opset: i64,
}

impl<T: Float> std::fmt::Debug for OnnxModel<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("input_name", &self.input_name)
            .field("input_shape", &self.input_shape)
            .field("build_shape", &self.build_shape)
            .field("output_name", &self.output_name)
            .field("opset", &self.opset)
            .finish_non_exhaustive()
    }
}

impl<T: Float> OnnxModel<T> {
    /// Whether the batch axis is symbolic (the model takes any batch size).
    pub fn dynamic_batch(&self) -> bool {
        self.input_shape.first().is_some_and(Option::is_none)
    }

    /// The input shape for a batch of `batch` items (symbolic axes other than the batch at
    /// the size the model was imported at); an error when the file fixes another batch size.
    pub fn input_shape_for(&self, batch: usize) -> Result<Vec<usize>> {
        match self.input_shape.first() {
            Some(Some(b)) if *b != batch => Err(Error::input(
                "OnnxModel",
                format!("the model's batch size is fixed at {b}, not {batch}"),
            )),
            _ => Ok(std::iter::once(batch)
                .chain(self.build_shape.iter().skip(1).copied())
                .collect()),
        }
    }
}

/// How to import a model: what the file leaves open.
///
/// ```
/// use convnet::onnx::OnnxOptions;
/// // A fully convolutional model exported with symbolic height and width.
/// let options = OnnxOptions::new().input_shape(&[1, 3, 224, 224]);
/// assert_eq!(options.input_shape, Some(vec![1, 3, 224, 224]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OnnxOptions {
    /// The input shape to import at: the sizes of symbolic axes (a file's fixed sizes must
    /// agree, except the batch). Needed when an axis other than the batch is symbolic; the
    /// shape arithmetic exporters emit is evaluated at these sizes. The layers themselves take
    /// other spatial sizes afterwards, as PyTorch's would.
    pub input_shape: Option<Vec<usize>>,
}

impl OnnxOptions {
    /// No sizes given: every axis but the batch must be fixed by the file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the input shape to import at.
    pub fn input_shape(mut self, shape: &[usize]) -> Self {
        self.input_shape = Some(shape.to_vec());
        self
    }
}

/// Reads an ONNX file (external data files are looked up next to it).
pub fn load_onnx<T: Float>(path: &Path) -> Result<OnnxModel<T>> {
    load_onnx_with(path, &OnnxOptions::new())
}

/// Reads an ONNX file with [`OnnxOptions`] (the input size for symbolic axes).
pub fn load_onnx_with<T: Float>(path: &Path, options: &OnnxOptions) -> Result<OnnxModel<T>> {
    let bytes = crate::io::read_regular_file(path, "cannot read")?;
    let dir = path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    });
    import::import(&bytes, dir, options).map_err(|source| Error::Onnx {
        path: path.to_path_buf(),
        source,
    })
}

/// Imports an ONNX model held in memory. `dir` is the folder external data files are read
/// from (`None`: a model with external data is an error); `name` names the model in errors.
pub fn load_onnx_bytes<T: Float>(
    bytes: &[u8],
    dir: Option<&Path>,
    name: &str,
) -> Result<OnnxModel<T>> {
    load_onnx_bytes_with(bytes, dir, name, &OnnxOptions::new())
}

/// [`load_onnx_bytes`] with [`OnnxOptions`].
pub fn load_onnx_bytes_with<T: Float>(
    bytes: &[u8],
    dir: Option<&Path>,
    name: &str,
    options: &OnnxOptions,
) -> Result<OnnxModel<T>> {
    import::import(bytes, dir, options).map_err(|source| Error::Onnx {
        path: name.into(),
        source,
    })
}
