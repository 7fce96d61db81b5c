//! Element types and the tensor alias.
//!
//! Activations, parameters and gradients are all `ndarray` arrays with a dynamic number of
//! axes ([`Tensor`]); images are laid out NCHW. Layers check shapes at their boundary and hand
//! contiguous slices to the kernels, so no inner loop indexes an `ArrayD`.

use crate::error::{Error, Result};
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

/// The most elements one tensor (or one scratch buffer) may hold: 2^28.
///
/// Sizes come from user input (layer widths, paddings, file headers), so every allocation
/// whose size a caller controls is checked against this limit first and reported as an
/// [`Error`] naming what asked for it, instead of aborting the process on a failed
/// allocation. 2^28 elements is 1 GiB of `f32` (2 GiB of `f64`), above any activation of the model zoo
/// (ResNet-50's largest at batch 256 is 2^27.6).
pub const MAX_ELEMENTS: usize = 1 << 28;

/// The number of elements of `shape`, or an [`Error::InvalidConfig`] naming `what` when the
/// product overflows or exceeds [`MAX_ELEMENTS`]. The product of the non-zero dims must stay
/// within the limit too (an empty `[2^40, 0]` is refused: ndarray cannot make it either).
pub fn checked_numel(what: &str, shape: &[usize]) -> Result<usize> {
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS);
    let n = nonzero.map(|n| if shape.contains(&0) { 0 } else { n });
    n.ok_or_else(|| {
        Error::config(
            what,
            format!(
                "a tensor of shape {shape:?} would hold {} elements, more than the limit of \
                 {MAX_ELEMENTS} (2^28)",
                describe_product(shape)
            ),
        )
    })
}

/// The product of `shape` as text, exact even when it overflows `usize`.
fn describe_product(shape: &[usize]) -> String {
    let p = shape
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128));
    match p {
        Some(p) => p.to_string(),
        None => "more than 2^128".to_string(),
    }
}

/// A vector of `len` copies of `value`, allocated fallibly: an allocation the system refuses
/// is an [`Error::InvalidConfig`] naming `what`, never an abort. `len` must already be
/// checked against [`MAX_ELEMENTS`] (see [`checked_numel`]).
pub fn try_filled<V: Clone>(what: &str, len: usize, value: V) -> Result<Vec<V>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|e| {
        Error::config(
            what,
            format!(
                "cannot allocate {len} elements ({} bytes): {e}",
                len.saturating_mul(std::mem::size_of::<V>())
            ),
        )
    })?;
    v.resize(len, value);
    Ok(v)
}

/// A zero tensor of `shape`, with its size checked ([`checked_numel`]) and its allocation
/// fallible ([`try_filled`]); errors name `what`.
pub fn try_zeros<T: Float>(what: &str, shape: &[usize]) -> Result<Tensor<T>> {
    let n = checked_numel(what, shape)?;
    let data = try_filled(what, n, T::zero())?;
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| Error::config(what, e.to_string()))
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

/// The tensor itself when it is in standard (row-major, contiguous) layout, else a standard
/// copy: no copy for the intermediate outputs layers hand each other.
pub fn standard<T: Float>(t: Tensor<T>) -> Tensor<T> {
    if t.is_standard_layout() {
        t
    } else {
        t.as_standard_layout().into_owned()
    }
}

/// The elements of a standard-layout tensor as one mutable slice (an internal error
/// otherwise: callers pass tensors from [`standard`] or fresh ones).
pub fn slice_mut<T: Float>(t: &mut Tensor<T>) -> Result<&mut [T]> {
    t.as_slice_mut()
        .ok_or_else(|| Error::input("tensor", "not in standard (row-major) layout"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_before_allocating() {
        assert_eq!(checked_numel("x", &[2, 3, 4]).unwrap(), 24);
        assert_eq!(checked_numel("x", &[]).unwrap(), 1);
        let err = checked_numel("Linear(1 -> 2)", &[usize::MAX / 2, 4]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{msg}");
        assert!(
            msg.contains("Linear(1 -> 2)") && msg.contains("limit"),
            "{msg}"
        );
        assert!(checked_numel("x", &[1 << 20, 1 << 20]).is_err());
        assert!(checked_numel("x", &[MAX_ELEMENTS]).is_ok());
        assert!(checked_numel("x", &[MAX_ELEMENTS + 1]).is_err());
        let z: Tensor<f32> = try_zeros("x", &[2, 0, 3]).unwrap();
        assert_eq!(z.shape(), &[2, 0, 3]);
        assert!(try_zeros::<f64>("x", &[1 << 16, 1 << 16]).is_err());
        // Empty, but not constructible: the non-zero dims overflow.
        assert!(checked_numel("x", &[usize::MAX / 2, 0, 3]).is_err());
        assert_eq!(checked_numel("x", &[5, 0, 3]).unwrap(), 0);
    }
}
