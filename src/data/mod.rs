//! Data: the IDX reader, MNIST, a [`Dataset`] trait and a seeded batch iterator.
//!
//! File bytes and dataset indices reach everything here: no `unwrap`, `expect` or unchecked
//! indexing (the lints below keep it so).
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod idx;
mod loader;
mod mnist;

pub use idx::{decode_idx, encode_idx, parse_idx, read_idx, IdxArray, MAX_IDX_BYTES};
pub use loader::{Batch, Batches, DataLoader, LoaderConfig};
pub use mnist::{ImageSet, Mnist, MNIST_MEAN, MNIST_STD};

/// A finite collection of labelled samples of one shape.
pub trait Dataset: Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one sample, `[C, H, W]` for images.
    fn sample_shape(&self) -> Vec<usize>;

    /// Number of classes the labels range over.
    fn num_classes(&self) -> usize;

    /// Writes sample `index` (values in `[0, 1]` for images) into `out`, which has
    /// `sample_shape().product()` elements, and returns its label.
    ///
    /// # Errors
    /// An index at or past [`Dataset::len`], an `out` of another length, or a sample that
    /// cannot be read (an image file that does not decode) is an error, never a panic.
    fn sample(&self, index: usize, out: &mut [f32]) -> crate::Result<usize>;
}

/// The checks every [`Dataset::sample`] starts with: `index` is below `data.len()` and `out`
/// holds one sample's values. Returns `index` for the caller to read.
pub(crate) fn check_sample<D: Dataset + ?Sized>(
    what: &str,
    data: &D,
    index: usize,
    out: &[f32],
) -> crate::Result<usize> {
    let len = data.len();
    if index >= len {
        return Err(crate::Error::input(
            what,
            format!("index {index} is past the end: the dataset holds {len} samples"),
        ));
    }
    let per: usize = data.sample_shape().iter().product();
    if out.len() != per {
        return Err(crate::Error::input(
            what,
            format!(
                "the output buffer holds {} values, a sample of shape {:?} holds {per}",
                out.len(),
                data.sample_shape()
            ),
        ));
    }
    Ok(index)
}
