//! Low-level loops on contiguous slices: matrix multiply, im2col/col2im, pooling.
//!
//! Kernels know nothing about layers; layers check shapes and call them. Preconditions on
//! slice lengths are asserted (a failed assert is a bug in the calling layer, never a
//! consequence of user input).
//!
//! These are the one place in the library where indexing stays unchecked by the lints
//! (`clippy::indexing_slicing`) that every other module enables: each public entry point
//! asserts the lengths its shapes need on entry (documented under `# Panics`), the layers
//! call them only with shapes they validated (`Error::ShapeMismatch`/`Geometry` otherwise),
//! and the inner loops of gemm, im2col, winograd, pooling and normalisation index slices whose
//! lengths those asserts already established. Replacing that indexing with `get` would add a
//! branch per element to the hottest loops of the crate for no case a user can reach.
// The justification above: asserted entry points, unchecked inner loops. No unwrap or expect.
#![warn(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::indexing_slicing)]

pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod im2col;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod simd;
pub mod winograd;
pub mod workspace;
