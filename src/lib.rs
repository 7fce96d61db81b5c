//! # convnet
//!
//! Convolutional neural networks in plain Rust. Every layer carries its own hand-written
//! forward and backward pass (no autograd tape), generic over `f32` and `f64`.
//!
//! * [`layer::Layer`] — the trait every layer implements; [`layer::Merge`] for two-input ops.
//! * [`layers`] — Conv2d, pooling, Linear, activations, normalisation, dropout, flatten.
//! * [`model::Sequential`] — a chain of layers with PyTorch `state_dict` names.
//! * [`loss`] and [`optim`] — cross-entropy, MSE; SGD, Adam, AdamW, schedules.
//! * [`onnx`] — ONNX models (`torch.onnx.export`) imported as a graph of these layers.
//! * `distributed` (feature `mpi`, off by default) — data-parallel training over MPI.
//! * [`kernels`] — GEMM and im2col on raw slices, where the time goes.
//! * `vision` (feature `image`, on by default) — PNG/JPEG decoding, torchvision-style
//!   transforms, `ImageFolder` and CIFAR.
//!
//! Convolution and pooling sizes follow the course formula `O = (N - F + 2P) / S + 1`
//! (see [`geometry`]); an impossible geometry is an [`Error::Geometry`] that shows the formula
//! with the numbers filled in.
#![deny(missing_docs)]

pub mod blocks;
pub mod collective;
pub mod data;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod error;
pub mod explain;
pub mod geometry;
pub mod gradcheck;
pub mod init;
pub mod io;
pub mod kernels;
pub mod layer;
pub mod layers;
pub mod loss;
pub mod model;
pub mod onnx;
pub mod optim;
mod parallel;
pub mod progress;
pub mod rng;
pub mod summary;
pub mod tensor;
#[cfg(test)]
pub(crate) mod testutil;
pub mod threads;
pub mod train;
#[cfg(feature = "image")]
pub mod vision;
pub mod zoo;

pub use error::{Error, Result};
pub use layer::{Epilogue, Layer, Merge, Mode, Param, Slot, SlotMut};
pub use tensor::{Float, Tensor};
pub use threads::{num_threads, set_num_threads};

/// The names most programs need: `use convnet::prelude::*;`.
pub mod prelude {
    pub use crate::error::{Error, Result};
    pub use crate::init::Init;
    pub use crate::layer::{Epilogue, Layer, Merge, Mode, Param};
    pub use crate::layers::*;
    pub use crate::loss::{CrossEntropyLoss, MseLoss};
    pub use crate::model::{Graph, GraphBuilder, Sequential};
    pub use crate::optim::{
        Adam, AdamConfig, AdamW, AdamWConfig, LrSchedule, Optimizer, Sgd, SgdConfig,
    };
    pub use crate::rng::Rng64;
    pub use crate::tensor::{Float, Tensor};
}

/// The guide `docs/GUIDE.md`: CNNs in the course's order, every idea shown with runnable code
/// and the output it prints. Every block runs as a doc test (`cargo test --doc guide`).
#[doc = include_str!("../docs/GUIDE.md")]
pub mod guide {}

/// The Korean guide `docs/GUIDE.ko.md` (같은 가이드의 한국어판), its blocks run as doc tests too.
#[doc = include_str!("../docs/GUIDE.ko.md")]
pub mod guide_ko {}

/// The README's example, compiled and run as a doc test so that it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
