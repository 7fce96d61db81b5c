//! The layers, one per file. Each file states its math once, then gives `forward` and
//! `backward` side by side.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod adaptive_avg_pool2d;
mod add;
mod avg_pool2d;
mod batch_norm2d;
mod bias;
mod concat;
mod conv2d;
mod dropout;
mod flatten;
mod leaky_relu;
mod linear;
mod local_response_norm;
mod log_softmax;
mod max_pool2d;
mod pad2d;
mod pool2d;
mod relu;
mod sigmoid;
mod softmax;
mod tanh;

pub use adaptive_avg_pool2d::*;
pub use add::*;
pub use avg_pool2d::*;
pub use batch_norm2d::*;
pub use bias::*;
pub use concat::*;
pub use conv2d::*;
pub use dropout::*;
pub use flatten::*;
pub use leaky_relu::*;
pub use linear::*;
pub use local_response_norm::*;
pub use log_softmax::*;
pub use max_pool2d::*;
pub use pad2d::*;
pub use pool2d::*;
pub use relu::*;
pub use sigmoid::*;
pub use softmax::*;
pub use tanh::*;

use crate::error::{Error, Result};
use crate::tensor::{checked_numel, Float, Tensor};

/// The elements of a tensor as a mutable row-major slice, re-laid out first when it is not in
/// standard layout (a parameter or gradient the caller set through `visit_mut` may be, say, a
/// transposed copy).
pub(crate) fn standard_mut<T: Float>(t: &mut Tensor<T>) -> &mut [T] {
    if !t.is_standard_layout() {
        *t = t.as_standard_layout().into_owned();
    }
    // A standard-layout array is always one slice: the empty fallback is never taken.
    t.as_slice_mut().unwrap_or_default()
}

/// Takes the cached tensor of a layer for `backward`, or reports that `forward` never ran.
pub(crate) fn cached<'a, T: Float>(
    cache: &'a Option<Tensor<T>>,
    layer: &str,
) -> Result<&'a Tensor<T>> {
    cache.as_ref().ok_or_else(|| Error::no_cache(layer))
}

/// Checks that `grad_output` has the shape the last `forward` produced.
pub(crate) fn expect_shape(layer: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::shape(
            format!("{layer} (backward)"),
            format!("{expected:?}"),
            got,
        ))
    }
}

/// Checks that an input is 4-D `[N, C, H, W]` (with `C == channels` when given) and returns
/// its dimensions.
pub(crate) fn expect_nchw(
    layer: &str,
    shape: &[usize],
    channels: Option<usize>,
) -> Result<[usize; 4]> {
    let expected = || match channels {
        Some(c) => format!("[N, {c}, H, W]"),
        None => "[N, C, H, W]".to_string(),
    };
    match shape {
        &[n, c, h, w] if channels.is_none_or(|want| want == c) => Ok([n, c, h, w]),
        _ => Err(Error::shape(layer, expected(), shape)),
    }
}

/// Checks that an input shape describes a tensor that can exist (its element count fits the
/// [`MAX_ELEMENTS`](crate::tensor::MAX_ELEMENTS) limit), so that `output_shape` can multiply
/// its dims without overflow. Any real tensor passes.
pub(crate) fn expect_numel(layer: &str, shape: &[usize]) -> Result<usize> {
    checked_numel(layer, shape).map_err(|_| {
        Error::shape(
            layer,
            format!(
                "a shape of at most {} elements",
                crate::tensor::MAX_ELEMENTS
            ),
            shape,
        )
    })
}

/// Returns `shape` if a tensor of that shape may be allocated, or an [`Error::Geometry`]
/// naming the layer and the size when the output would exceed the element limit.
pub(crate) fn check_output(layer: &str, shape: Vec<usize>) -> Result<Vec<usize>> {
    match checked_numel(layer, &shape) {
        Ok(_) => Ok(shape),
        Err(Error::InvalidConfig { message, .. }) => Err(Error::Geometry {
            layer: layer.to_string(),
            explanation: format!("the output: {message}"),
        }),
        Err(e) => Err(e),
    }
}
