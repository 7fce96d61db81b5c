//! Element types and the tensor alias.
//!
//! Activations, parameters and gradients are all `ndarray` arrays with a dynamic number of
//! axes ([`Tensor`]); images are laid out NCHW. Layers check shapes at their boundary and hand
//! contiguous slices to the kernels, so no inner loop indexes an `ArrayD`.

use ndarray::{ArrayD, IxDyn, LinalgScalar, ScalarOperand};
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A tensor of any rank: `ndarray::ArrayD`.
pub type Tensor<T> = ArrayD<T>;

/// The element type of every tensor: implemented for `f32` and `f64`.
///
/// It bundles the numeric traits the layers need and adds two lossless-enough conversions
/// (`of` from `f64`, `as_f64` to `f64`) so that layer code can write constants once.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + LinalgScalar
    + ScalarOperand
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
    + private::Sealed
{
    /// `"F32"` or `"F64"`, as safetensors names the dtype.
    const DTYPE: &'static str;

    /// Converts an `f64` constant to this type (rounding for `f32`).
    fn of(x: f64) -> Self;

    /// Widens to `f64`.
    fn as_f64(self) -> f64;
}

impl Float for f32 {
    const DTYPE: &'static str = "F32";
    #[inline(always)]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    const DTYPE: &'static str = "F64";
    #[inline(always)]
    fn of(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self
    }
}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A zero tensor of the given shape.
pub fn zeros<T: Float>(shape: &[usize]) -> Tensor<T> {
    ArrayD::zeros(IxDyn(shape))
}

/// Returns the tensor's elements as a contiguous row-major slice, copying only when the
/// array is not already in standard layout.
pub fn contiguous<T: Float>(t: &Tensor<T>) -> std::borrow::Cow<'_, [T]> {
    match t.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.iter().copied().collect()),
    }
}

/// Builds a tensor from a shape and a row-major vector of exactly `shape.product()` elements.
///
/// # Panics
/// If the length does not match the shape; kernels call it with lengths they computed.
pub fn from_vec<T: Float>(shape: &[usize], data: Vec<T>) -> Tensor<T> {
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("from_vec: length matches shape")
}

/// Formats a shape as `[2, 3, 32, 32]`.
pub fn fmt_shape(shape: &[usize]) -> String {
    format!("{shape:?}")
}
