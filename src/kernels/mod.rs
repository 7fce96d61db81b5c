//! Low-level loops on contiguous slices: matrix multiply, im2col/col2im, pooling.
//!
//! Kernels know nothing about layers; layers check shapes and call them. Preconditions on
//! slice lengths are asserted (a failed assert is a bug in the calling layer, never a
//! consequence of user input).

pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod im2col;
pub mod norm;
pub mod pool;
pub mod simd;
pub mod winograd;
pub mod workspace;
